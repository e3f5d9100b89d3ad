//! Signed policy bundles: the managed layer as one file any static server
//! can serve.
//!
//! A bundle is a JSON document:
//!
//! ```json
//! {"outpost_bundle": 1, "key_id": "…", "payload": "<base64>", "signature": "<base64>"}
//! ```
//!
//! `payload` is the base64 of a JSON [`Payload`]: the monotonic `version`,
//! `issued_at`, the optional `expires_at`, the `key_id` again, and the
//! policy files by name. `signature` is the Ed25519 signature of exactly
//! those payload bytes, so everything the agent acts on is signed and
//! nothing has to be canonicalised. Keys are pinned in the agent's config
//! (`[sync] public_keys`); a key id is the first 8 bytes of the SHA-256 of
//! the raw public key, in hex.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use jiff::Timestamp;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `outpost_bundle` format number.
const FORMAT: u32 = 1;
/// Prefix of a public key line.
const KEY_PREFIX: &str = "ed25519:";
/// PEM label of the private key file (PKCS#8).
const PEM_LABEL: &str = "PRIVATE KEY";
/// Largest bundle accepted, in bytes.
pub const MAX_BUNDLE_BYTES: usize = 8 << 20;

/// Why a bundle, or a key, cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BundleError {
    /// Not a bundle document (truncated, not JSON, a field missing).
    #[error("not a valid bundle: {0}")]
    Malformed(String),
    /// Signed with a key the agent does not pin.
    #[error("signed with key {0}, which is not in [sync] public_keys")]
    UnknownKey(String),
    /// The signature does not match the payload.
    #[error("bad signature (key {0}): the bundle was changed after it was signed")]
    BadSignature(String),
    /// A public key line that does not parse.
    #[error("bad public key {0:?}: expected \"ed25519:<base64 of 32 bytes>\"")]
    BadPublicKey(String),
}

/// A pinned public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    raw: Vec<u8>,
    id: String,
}

impl PublicKey {
    /// Parse a `bundle.pub` line (`ed25519:<base64>`).
    pub fn parse(line: &str) -> Result<PublicKey, BundleError> {
        let bad = || BundleError::BadPublicKey(line.trim().to_string());
        let encoded = line.trim().strip_prefix(KEY_PREFIX).ok_or_else(bad)?;
        let raw = BASE64.decode(encoded).map_err(|_| bad())?;
        if raw.len() != 32 {
            return Err(bad());
        }
        Ok(PublicKey::from_raw(raw))
    }

    fn from_raw(raw: Vec<u8>) -> PublicKey {
        let id = key_id(&raw);
        PublicKey { raw, id }
    }

    /// Its key id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The `bundle.pub` line.
    pub fn to_line(&self) -> String {
        format!("{KEY_PREFIX}{}", BASE64.encode(&self.raw))
    }
}

fn key_id(raw: &[u8]) -> String {
    Sha256::digest(raw)[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One policy file of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleFile {
    /// File name (`10-models.toml`): no directories.
    pub name: String,
    /// Its text.
    pub text: String,
}

/// What a bundle carries; all of it is signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payload {
    /// Monotonic: the agent refuses a version not higher than its own.
    pub version: u64,
    /// When it was built.
    pub issued_at: Timestamp,
    /// After this the agent refuses it (a server frozen on an old bundle).
    pub expires_at: Option<Timestamp>,
    /// The signing key's id.
    pub key_id: String,
    /// The policy files, in name order.
    pub files: Vec<BundleFile>,
    /// Provider table entries added to the shipped ones (the text of a
    /// `providers.toml`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub providers: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    outpost_bundle: u32,
    key_id: String,
    payload: String,
    signature: String,
}

/// A bundle whose signature checked out, and the bytes it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// What it carries.
    pub payload: Payload,
}

/// Check `bytes` as a bundle signed by one of `keys`, and read its payload.
pub fn verify(bytes: &[u8], keys: &[PublicKey]) -> Result<Verified, BundleError> {
    let malformed = |what: String| BundleError::Malformed(what);
    if bytes.len() > MAX_BUNDLE_BYTES {
        return Err(malformed(format!(
            "{} bytes, more than the {MAX_BUNDLE_BYTES} a bundle may have",
            bytes.len()
        )));
    }
    let envelope: Envelope = serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
    if envelope.outpost_bundle != FORMAT {
        return Err(malformed(format!(
            "format {} (this agent reads format {FORMAT})",
            envelope.outpost_bundle
        )));
    }
    let key = keys
        .iter()
        .find(|k| k.id == envelope.key_id)
        .ok_or_else(|| BundleError::UnknownKey(envelope.key_id.clone()))?;
    let payload = BASE64
        .decode(&envelope.payload)
        .map_err(|e| malformed(format!("payload: {e}")))?;
    let signature = BASE64
        .decode(&envelope.signature)
        .map_err(|e| malformed(format!("signature: {e}")))?;
    UnparsedPublicKey::new(&ED25519, &key.raw)
        .verify(&payload, &signature)
        .map_err(|_| BundleError::BadSignature(key.id.clone()))?;
    let payload: Payload =
        serde_json::from_slice(&payload).map_err(|e| malformed(format!("payload: {e}")))?;
    if payload.key_id != key.id {
        return Err(malformed(format!(
            "payload names key {} but is signed by {}",
            payload.key_id, key.id
        )));
    }
    if let Some(file) = payload.files.iter().find(|f| !plain_name(&f.name)) {
        return Err(malformed(format!(
            "file name {:?} is not a plain *.toml name",
            file.name
        )));
    }
    Ok(Verified { payload })
}

/// A file name a bundle may carry: `*.toml`, no directories, not hidden.
fn plain_name(name: &str) -> bool {
    name.ends_with(".toml")
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
        && name != ".toml"
}

/// A signing key, read from a `bundle.key` file.
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl SigningKey {
    /// Read a PKCS#8 PEM key file.
    pub fn read(path: &Path) -> anyhow::Result<SigningKey> {
        let pem = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", path.display()))?;
        let der = pem_decode(&pem)
            .ok_or_else(|| anyhow::anyhow!("{}: not a PEM \"{PEM_LABEL}\" file", path.display()))?;
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
            .map_err(|e| anyhow::anyhow!("{}: not an Ed25519 key: {e}", path.display()))?;
        Ok(SigningKey { pair })
    }

    /// Its public key.
    pub fn public(&self) -> PublicKey {
        PublicKey::from_raw(self.pair.public_key().as_ref().to_vec())
    }

    /// A bundle of `payload` (whose `key_id` is set to this key's).
    pub fn sign(&self, mut payload: Payload) -> Vec<u8> {
        payload.key_id = self.public().id;
        let bytes = serde_json::to_vec(&payload).unwrap_or_default();
        let signature = self.pair.sign(&bytes);
        let envelope = Envelope {
            outpost_bundle: FORMAT,
            key_id: payload.key_id,
            payload: BASE64.encode(&bytes),
            signature: BASE64.encode(signature.as_ref()),
        };
        let mut out = serde_json::to_vec_pretty(&envelope).unwrap_or_default();
        out.push(b'\n');
        out
    }
}

/// `outpost bundle keygen`: a new key pair in `dir`, as `bundle.key`
/// (0600) and `bundle.pub`. Refuses to overwrite a key.
pub fn keygen(dir: &Path) -> anyhow::Result<(PathBuf, PublicKey)> {
    let key_path = dir.join("bundle.key");
    let pub_path = dir.join("bundle.pub");
    for path in [&key_path, &pub_path] {
        if path.exists() {
            anyhow::bail!("{} exists; move it away to make a new key", path.display());
        }
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("{}: cannot create: {e}", dir.display()))?;
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| anyhow::anyhow!("the system random source failed"))?;
    crate::tls::store::write_atomic(&key_path, pem_encode(pkcs8.as_ref()).as_bytes(), 0o600)
        .map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", key_path.display()))?;
    let key = SigningKey::read(&key_path)?.public();
    std::fs::write(&pub_path, format!("{}\n", key.to_line()))
        .map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", pub_path.display()))?;
    Ok((key_path, key))
}

fn pem_encode(der: &[u8]) -> String {
    let body = BASE64.encode(der);
    let mut out = format!("-----BEGIN {PEM_LABEL}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {PEM_LABEL}-----\n"));
    out
}

fn pem_decode(pem: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {PEM_LABEL}-----");
    let end = format!("-----END {PEM_LABEL}-----");
    let body = pem.split_once(&begin)?.1.split_once(&end)?.0;
    let body: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    BASE64.decode(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(version: u64) -> Payload {
        Payload {
            version,
            issued_at: Timestamp::from_second(1_800_000_000).unwrap(),
            expires_at: None,
            key_id: String::new(),
            files: vec![BundleFile {
                name: "10-models.toml".into(),
                text: "[models]\ndeny = [\"gpt-4*\"]\n".into(),
            }],
            providers: None,
        }
    }

    #[test]
    fn a_signed_bundle_verifies_only_unchanged_and_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let (key_path, public) = keygen(dir.path()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let line = std::fs::read_to_string(dir.path().join("bundle.pub")).unwrap();
        assert_eq!(line.trim().lines().count(), 1);
        assert_eq!(PublicKey::parse(&line).unwrap(), public);
        let key = SigningKey::read(&key_path).unwrap();
        let bundle = key.sign(payload(3));
        let verified = verify(&bundle, std::slice::from_ref(&public)).unwrap();
        assert_eq!(verified.payload.version, 3);
        assert_eq!(verified.payload.key_id, public.id());

        // Every single flipped byte of the payload or signature is refused.
        let text = String::from_utf8(bundle.clone()).unwrap();
        let start = text.find("\"payload\": \"").unwrap() + 12;
        for at in [
            start,
            start + 40,
            text.find("\"signature\": \"").unwrap() + 20,
        ] {
            let mut bad = bundle.clone();
            bad[at] = if bad[at] == b'A' { b'B' } else { b'A' };
            assert!(
                verify(&bad, std::slice::from_ref(&public)).is_err(),
                "flip at {at}"
            );
        }
        // Truncated, or signed by a key that is not pinned.
        let cut = verify(&bundle[..bundle.len() / 2], std::slice::from_ref(&public));
        assert!(matches!(cut, Err(BundleError::Malformed(_))), "{cut:?}");
        let other_dir = tempfile::tempdir().unwrap();
        let (_, other) = keygen(other_dir.path()).unwrap();
        assert_eq!(
            verify(&bundle, std::slice::from_ref(&other)),
            Err(BundleError::UnknownKey(public.id().to_string()))
        );
        // Either of two pinned keys will do (rotation).
        assert!(verify(&bundle, &[other, public]).is_ok());
        // keygen never overwrites.
        assert!(keygen(dir.path()).is_err());
    }

    #[test]
    fn public_keys_and_file_names_are_checked() {
        assert!(PublicKey::parse("ed25519:AAAA").is_err());
        assert!(PublicKey::parse("rsa:AAAA").is_err());
        for bad in ["../x.toml", "a/b.toml", ".hidden.toml", "x.txt"] {
            assert!(!plain_name(bad), "{bad}");
        }
        assert!(plain_name("10-models.toml"));
    }
}
