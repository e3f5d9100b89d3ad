//! Where the agent's secrets live, and how they are written so nobody else
//! can read them.
//!
//! A *secret* is a small text value only the agent may read: the CA private
//! key ([`CA_KEY`]) and the audit log's HMAC key (`audit::key`). Each is
//! described by a [`Secret`] (its file under `state_dir`, its keyring
//! account, and what to tell the operator when it is missing or exposed),
//! and kept in one of two places:
//! - the OS keyring (macOS Keychain, Windows Credential Manager), used by
//!   `auto` on those systems;
//! - a file such as `state_dir/ca/ca.key` (a PKCS#8 PEM), created with mode
//!   0600 in a 0700 directory, written to a temporary name and renamed so a
//!   crash never leaves half a key.
//!
//! Linux has no keyring a system service can use: the kernel keyutils keyring
//! does not survive a reboot, and the Secret Service needs a logged-in desktop
//! session. So on Linux `auto` means the file, and `keyring` is an error.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::KeyStoreChoice;

/// Where a key was found or put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLocation {
    /// A file readable only by the owner.
    File(PathBuf),
    /// An OS keyring entry.
    Keyring {
        /// Keyring service name.
        service: String,
        /// Keyring account name.
        account: String,
    },
}

impl std::fmt::Display for KeyLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyLocation::File(path) => write!(f, "file {} (mode 0600)", path.display()),
            KeyLocation::Keyring { service, account } => {
                write!(f, "OS keyring (service {service:?}, account {account:?})")
            }
        }
    }
}

/// Why a key could not be stored or loaded.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Filesystem trouble, with the path.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key file can be read by others: it may already have been copied.
    #[error(
        "{path} is readable by group or others (mode {mode:o}); it may have been copied. \
         {remedy}, or `chmod 600` it if you know it was not"
    )]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// What to do about it (the secret's [`Secret::remedy_exposed`]).
        remedy: &'static str,
    },
    /// The keyring refused.
    #[error("OS keyring: {0}")]
    Keyring(String),
    /// `ca_key_store = "keyring"` where no keyring is usable.
    #[error("`ca_key_store = \"keyring\"` is not supported on this OS: {0}")]
    NoKeyring(&'static str),
    /// The secret is needed but is nowhere (for the CA: the certificate
    /// exists but its key does not).
    #[error("{what} is missing (looked in {looked}); {remedy}")]
    Missing {
        /// Which secret ([`Secret::what`]).
        what: &'static str,
        /// Where it was looked for.
        looked: String,
        /// What to do about it ([`Secret::remedy_missing`]).
        remedy: &'static str,
    },
    /// The stored value is not what this secret should look like.
    #[error("{what} in {location} is unreadable: {reason}")]
    Malformed {
        /// Which secret.
        what: &'static str,
        /// Where it was found.
        location: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// One secret the agent keeps: where its file goes and what its keyring
/// entry is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Secret {
    /// Directory under `state_dir` holding the file.
    pub dir: &'static str,
    /// File name in that directory.
    pub file: &'static str,
    /// Keyring account prefix; a hash of the state dir is appended so two
    /// agents on one machine never share an entry.
    pub account: &'static str,
    /// Human name, for messages ("the CA key").
    pub what: &'static str,
    /// What to do when it is missing.
    pub remedy_missing: &'static str,
    /// What to do when its file is readable by others.
    pub remedy_exposed: &'static str,
}

/// The CA private key (PKCS#8 PEM): `state_dir/ca/ca.key`.
pub const CA_KEY: Secret = Secret {
    dir: "ca",
    file: "ca.key",
    account: "ca-key",
    what: "the CA key",
    remedy_missing: "run `outpost ca rotate` to make a new CA",
    remedy_exposed: "Run `outpost ca rotate` to make a new CA",
};

/// The file `secret` is kept in (when it is kept in a file).
pub fn secret_file(state_dir: &Path, secret: &Secret) -> PathBuf {
    state_dir.join(secret.dir).join(secret.file)
}

/// Directory holding the CA under `state_dir`.
pub fn ca_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("ca")
}

/// The CA key file path (used when the key is kept in a file).
pub fn key_file(state_dir: &Path) -> PathBuf {
    secret_file(state_dir, &CA_KEY)
}

/// Create `dir` (and parents) readable only by the owner.
pub fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    let io = |source| StoreError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(io)
}

/// Write `bytes` to `path` atomically (temp file, fsync, rename), with the
/// given unix mode from the first byte on.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StoreError> {
    let tmp = path.with_extension("tmp");
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| StoreError::Io { path: p, source }
    };
    let _ = fs::remove_file(&tmp);
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&tmp).map_err(io(&tmp))?;
    file.write_all(bytes).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(parent) = path.parent() {
        // Make the rename itself durable; not all platforms can open a dir.
        if let Ok(dir) = fs::File::open(parent) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

/// Store a new CA key per `choice`, replacing any previous one.
pub fn store_key(
    state_dir: &Path,
    pem: &str,
    choice: KeyStoreChoice,
) -> Result<KeyLocation, StoreError> {
    store_secret(state_dir, &CA_KEY, pem, choice)
}

/// Load the CA key: the file if there is one, else the keyring.
pub fn load_key(state_dir: &Path) -> Result<(String, KeyLocation), StoreError> {
    load_secret(state_dir, &CA_KEY)
}

/// Store `value` as `secret` per `choice`, replacing any previous value.
pub fn store_secret(
    state_dir: &Path,
    secret: &Secret,
    value: &str,
    choice: KeyStoreChoice,
) -> Result<KeyLocation, StoreError> {
    let use_keyring = match choice {
        KeyStoreChoice::File => false,
        KeyStoreChoice::Keyring => {
            keyring_supported()?;
            true
        }
        KeyStoreChoice::Auto => keyring_supported().is_ok(),
    };
    let path = secret_file(state_dir, secret);
    if use_keyring {
        match keyring_set(&keyring_account(state_dir, secret), value) {
            Ok(location) => {
                let _ = fs::remove_file(&path);
                return Ok(location);
            }
            Err(err) if choice == KeyStoreChoice::Keyring => return Err(err),
            Err(err) => tracing::warn!(
                "keyring unusable ({err}); keeping {} in a file",
                secret.what
            ),
        }
    }
    create_private_dir(&state_dir.join(secret.dir))?;
    write_atomic(&path, value.as_bytes(), 0o600)?;
    Ok(KeyLocation::File(path))
}

/// Load `secret`: the file if there is one, else the keyring.
pub fn load_secret(state_dir: &Path, secret: &Secret) -> Result<(String, KeyLocation), StoreError> {
    match find_secret(state_dir, secret)? {
        Some(found) => Ok(found),
        None => {
            let path = secret_file(state_dir, secret);
            let looked = if keyring_supported().is_ok() {
                format!("{} and the OS keyring", path.display())
            } else {
                path.display().to_string()
            };
            Err(StoreError::Missing {
                what: secret.what,
                looked,
                remedy: secret.remedy_missing,
            })
        }
    }
}

/// Look for `secret`: the file if there is one, else the keyring; `None`
/// when it is in neither.
pub fn find_secret(
    state_dir: &Path,
    secret: &Secret,
) -> Result<Option<(String, KeyLocation)>, StoreError> {
    let path = secret_file(state_dir, secret);
    if path.exists() {
        check_private(&path, secret)?;
        let value = fs::read_to_string(&path).map_err(|source| StoreError::Io {
            path: path.clone(),
            source,
        })?;
        return Ok(Some((value, KeyLocation::File(path))));
    }
    if keyring_supported().is_ok() {
        return keyring_get(&keyring_account(state_dir, secret));
    }
    Ok(None)
}

/// Remove `secret` from its file and from the keyring; whether there was
/// one.
pub fn remove_secret(state_dir: &Path, secret: &Secret) -> Result<bool, StoreError> {
    let path = secret_file(state_dir, secret);
    let in_file = match fs::remove_file(&path) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(source) => return Err(StoreError::Io { path, source }),
    };
    let in_keyring =
        keyring_supported().is_ok() && keyring_delete(&keyring_account(state_dir, secret))?;
    Ok(in_file || in_keyring)
}

#[cfg(any(target_os = "macos", target_os = "windows"))]
fn keyring_delete(account: &str) -> Result<bool, StoreError> {
    let entry = keyring::Entry::new(KEYRING_SERVICE, account)
        .map_err(|e| StoreError::Keyring(e.to_string()))?;
    match entry.delete_credential() {
        Ok(()) => Ok(true),
        Err(keyring::Error::NoEntry) => Ok(false),
        Err(e) => Err(StoreError::Keyring(e.to_string())),
    }
}

#[cfg(not(any(target_os = "macos", target_os = "windows")))]
fn keyring_delete(_account: &str) -> Result<bool, StoreError> {
    Ok(false)
}

/// Refuse a key file that group or others can read.
#[cfg(unix)]
fn check_private(path: &Path, secret: &Secret) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::metadata(path).map_err(|source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(StoreError::TooOpen {
            path: path.to_path_buf(),
            mode,
            remedy: secret.remedy_exposed,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path, _secret: &Secret) -> Result<(), StoreError> {
    // Windows: the state dir lives under the service's profile or
    // ProgramData with inherited ACLs; the keyring is preferred there anyway.
    Ok(())
}

/// The keyring account for `secret` of one state dir, so two agents on one
/// machine (a test, a second user) never share a key.
fn keyring_account(state_dir: &Path, secret: &Secret) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(state_dir.to_string_lossy().as_bytes());
    let short: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{short}", secret.account)
}

const KEYRING_SERVICE: &str = "outpost";

#[cfg(any(target_os = "macos", target_os = "windows"))]
fn keyring_supported() -> Result<(), StoreError> {
    Ok(())
}

#[cfg(not(any(target_os = "macos", target_os = "windows")))]
fn keyring_supported() -> Result<(), StoreError> {
    Err(StoreError::NoKeyring(
        "no keyring that a system service can use survives a reboot here; the key is kept in a 0600 file",
    ))
}

#[cfg(any(target_os = "macos", target_os = "windows"))]
fn keyring_set(account: &str, value: &str) -> Result<KeyLocation, StoreError> {
    let entry = keyring::Entry::new(KEYRING_SERVICE, account)
        .map_err(|e| StoreError::Keyring(e.to_string()))?;
    entry
        .set_password(value)
        .map_err(|e| StoreError::Keyring(e.to_string()))?;
    Ok(KeyLocation::Keyring {
        service: KEYRING_SERVICE.to_string(),
        account: account.to_string(),
    })
}

#[cfg(not(any(target_os = "macos", target_os = "windows")))]
fn keyring_set(_account: &str, _value: &str) -> Result<KeyLocation, StoreError> {
    let _ = KEYRING_SERVICE;
    Err(StoreError::NoKeyring("not available on this OS"))
}

#[cfg(any(target_os = "macos", target_os = "windows"))]
fn keyring_get(account: &str) -> Result<Option<(String, KeyLocation)>, StoreError> {
    let entry = keyring::Entry::new(KEYRING_SERVICE, account)
        .map_err(|e| StoreError::Keyring(e.to_string()))?;
    match entry.get_password() {
        Ok(value) => Ok(Some((
            value,
            KeyLocation::Keyring {
                service: KEYRING_SERVICE.to_string(),
                account: account.to_string(),
            },
        ))),
        Err(keyring::Error::NoEntry) => Ok(None),
        Err(e) => Err(StoreError::Keyring(e.to_string())),
    }
}

#[cfg(not(any(target_os = "macos", target_os = "windows")))]
fn keyring_get(_account: &str) -> Result<Option<(String, KeyLocation)>, StoreError> {
    Ok(None)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn key_file_is_private_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let loc = store_key(dir.path(), "KEY", KeyStoreChoice::Auto).unwrap();
        let path = key_file(dir.path());
        assert_eq!(loc, KeyLocation::File(path.clone()));
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = fs::metadata(ca_dir(dir.path()))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        assert_eq!(load_key(dir.path()).unwrap().0, "KEY");
    }

    #[test]
    fn readable_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        store_key(dir.path(), "KEY", KeyStoreChoice::File).unwrap();
        let path = key_file(dir.path());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_key(dir.path()).unwrap_err().to_string();
        assert!(err.contains("readable by group or others"), "{err}");
        assert!(err.contains("644"), "{err}");
    }

    #[test]
    fn missing_key_says_where_it_looked() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_key(dir.path()).unwrap_err().to_string();
        assert!(err.contains("ca.key"), "{err}");
        assert!(err.contains("ca rotate"), "{err}");
    }

    const OTHER: Secret = Secret {
        dir: "other",
        file: "other.key",
        account: "other-key",
        what: "the other key",
        remedy_missing: "make another",
        remedy_exposed: "Replace it",
    };

    #[test]
    fn a_second_secret_lives_beside_the_ca_key_without_touching_it() {
        let dir = tempfile::tempdir().unwrap();
        store_key(dir.path(), "CA", KeyStoreChoice::File).unwrap();
        assert!(find_secret(dir.path(), &OTHER).unwrap().is_none());
        let err = load_secret(dir.path(), &OTHER).unwrap_err().to_string();
        assert!(err.contains("the other key is missing"), "{err}");
        assert!(err.contains("make another"), "{err}");
        let loc = store_secret(dir.path(), &OTHER, "SECRET", KeyStoreChoice::Auto).unwrap();
        let path = dir.path().join("other").join("other.key");
        assert_eq!(loc, KeyLocation::File(path.clone()));
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_secret(dir.path(), &OTHER).unwrap().0, "SECRET");
        assert_eq!(load_key(dir.path()).unwrap().0, "CA");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let err = load_secret(dir.path(), &OTHER).unwrap_err().to_string();
        assert!(err.contains("Replace it"), "{err}");
        assert!(!err.contains("ca rotate"), "{err}");
    }

    #[test]
    fn keyring_choice_is_an_error_on_linux() {
        let dir = tempfile::tempdir().unwrap();
        if cfg!(target_os = "linux") {
            assert!(store_key(dir.path(), "KEY", KeyStoreChoice::Keyring).is_err());
        }
    }
}
