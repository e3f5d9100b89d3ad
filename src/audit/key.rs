//! The per-device audit HMAC key and checkpoint MACs.
//!
//! A *checkpoint* record's `mac` is `HMAC-SHA-256(key, hash of the record
//! before it)`, hex. Anyone who can edit the day files can recompute every
//! hash, but not a MAC without the key, so an edit before the last
//! checkpoint is detected.
//!
//! The key is 32 random bytes, stored (hex) like the CA key: the OS keyring
//! on macOS and Windows, else `state_dir/audit/hmac.key`, mode 0600 (see
//! `tls::store`). It is made on first start.

use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::record::hex;
use super::AuditError;
use crate::config::KeyStoreChoice;
use crate::tls::store::{self, KeyLocation, Secret, StoreError};

type HmacSha256 = Hmac<Sha256>;

/// Where the audit HMAC key is kept.
pub const AUDIT_KEY: Secret = Secret {
    dir: "audit",
    file: "hmac.key",
    account: "audit-hmac",
    what: "the audit HMAC key",
    remedy_missing: "the agent makes one when it starts; checkpoints made with a lost key \
                     can no longer be verified",
    remedy_exposed: "Anyone who read it can forge checkpoints: delete it and restart the agent \
                     to make a new one (older checkpoints will then no longer verify)",
};

/// The HMAC key. Its bytes are never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct AuditKey {
    bytes: [u8; 32],
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(..)")
    }
}

/// A key loaded (or made) at start.
#[derive(Debug)]
pub struct LoadedKey {
    /// The key.
    pub key: AuditKey,
    /// Where it lives.
    pub location: KeyLocation,
    /// It was made just now (there was none).
    pub created: bool,
}

impl AuditKey {
    /// A key from raw bytes (tests).
    pub fn from_bytes(bytes: [u8; 32]) -> AuditKey {
        AuditKey { bytes }
    }

    /// 32 fresh random bytes.
    pub fn generate() -> Result<AuditKey, AuditError> {
        let mut bytes = [0u8; 32];
        crate::tls::provider()
            .secure_random
            .fill(&mut bytes)
            .map_err(|_| AuditError::Random)?;
        Ok(AuditKey { bytes })
    }

    /// The existing key of `state_dir` (for `audit verify`).
    pub fn load(state_dir: &Path) -> Result<(AuditKey, KeyLocation), AuditError> {
        let (text, location) = store::load_secret(state_dir, &AUDIT_KEY)?;
        Ok((AuditKey::from_stored(&text, &location)?, location))
    }

    /// The key of `state_dir`, made and stored per `choice` if there is none.
    pub fn load_or_create(
        state_dir: &Path,
        choice: KeyStoreChoice,
    ) -> Result<LoadedKey, AuditError> {
        if let Some((text, location)) = store::find_secret(state_dir, &AUDIT_KEY)? {
            let key = AuditKey::from_stored(&text, &location)?;
            return Ok(LoadedKey {
                key,
                location,
                created: false,
            });
        }
        let key = AuditKey::generate()?;
        let location = store::store_secret(state_dir, &AUDIT_KEY, &hex(&key.bytes), choice)?;
        Ok(LoadedKey {
            key,
            location,
            created: true,
        })
    }

    fn from_stored(text: &str, location: &KeyLocation) -> Result<AuditKey, StoreError> {
        let malformed = |reason: &str| StoreError::Malformed {
            what: AUDIT_KEY.what,
            location: location.to_string(),
            reason: reason.to_string(),
        };
        let bytes = unhex(text.trim()).ok_or_else(|| malformed("not hex"))?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| malformed("not 32 bytes"))?;
        Ok(AuditKey { bytes })
    }

    fn hmac(&self) -> Option<HmacSha256> {
        // HMAC accepts keys of any length, so this never fails.
        HmacSha256::new_from_slice(&self.bytes).ok()
    }

    /// The checkpoint MAC over `chain_head` (the previous record's hash), hex.
    pub fn checkpoint_mac(&self, chain_head: &str) -> String {
        match self.hmac() {
            Some(mut mac) => {
                mac.update(chain_head.as_bytes());
                hex(&mac.finalize().into_bytes())
            }
            None => String::new(),
        }
    }

    /// Does `mac_hex` authenticate `chain_head`? (Constant-time compare.)
    pub fn verify_checkpoint(&self, chain_head: &str, mac_hex: &str) -> bool {
        let (Some(expected), Some(mut mac)) = (unhex(mac_hex), self.hmac()) else {
            return false;
        };
        mac.update(chain_head.as_bytes());
        mac.verify_slice(&expected).is_ok()
    }
}

/// Lower- or upper-case hex to bytes.
fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16);
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some((nibble(pair[0])? * 16 + nibble(pair[1])?) as u8))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_verifies_only_with_the_same_key_and_head() {
        let key = AuditKey::from_bytes([7; 32]);
        let other = AuditKey::from_bytes([8; 32]);
        let head = "ab".repeat(32);
        let mac = key.checkpoint_mac(&head);
        assert_eq!(mac.len(), 64);
        assert!(key.verify_checkpoint(&head, &mac));
        assert!(!other.verify_checkpoint(&head, &mac));
        assert!(!key.verify_checkpoint(&"cd".repeat(32), &mac));
        assert!(!key.verify_checkpoint(&head, "zz"));
        assert!(!key.verify_checkpoint(&head, &mac[..62]));
    }

    #[cfg(unix)]
    #[test]
    fn key_is_made_once_kept_private_and_loads_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let made = AuditKey::load_or_create(dir.path(), KeyStoreChoice::File).unwrap();
        assert!(made.created);
        let path = dir.path().join("audit").join("hmac.key");
        assert_eq!(made.location, KeyLocation::File(path.clone()));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = AuditKey::load_or_create(dir.path(), KeyStoreChoice::File).unwrap();
        assert!(!again.created);
        assert_eq!(again.key, made.key);
        assert_eq!(AuditKey::load(dir.path()).unwrap().0, made.key);
        assert!(!format!("{:?}", made.key).contains(&hex(&made.key.bytes)[..8]));

        std::fs::write(&path, "nothex").unwrap();
        let err = AuditKey::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not hex"), "{err}");
    }
}
