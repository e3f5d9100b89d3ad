//! Where the CA private key lives, and how it is written so nobody else can
//! read it.
//!
//! Two places:
//! - the OS keyring (macOS Keychain, Windows Credential Manager), used by
//!   `auto` on those systems;
//! - a PKCS#8 PEM file `state_dir/ca/ca.key`, created with mode 0600 in a
//!   0700 directory, written to a temporary name and renamed so a crash never
//!   leaves half a key.
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
         Run `outpost ca rotate` to make a new CA, or `chmod 600` it if you know it was not"
    )]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The keyring refused.
    #[error("OS keyring: {0}")]
    Keyring(String),
    /// `ca_key_store = "keyring"` where no keyring is usable.
    #[error("`ca_key_store = \"keyring\"` is not supported on this OS: {0}")]
    NoKeyring(&'static str),
    /// The certificate exists but its key is nowhere.
    #[error("the CA key is missing (looked in {0}); run `outpost ca rotate` to make a new CA")]
    Missing(String),
}

/// Directory holding the CA under `state_dir`.
pub fn ca_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("ca")
}

/// The key file path (used when the key is kept in a file).
pub fn key_file(state_dir: &Path) -> PathBuf {
    ca_dir(state_dir).join("ca.key")
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
    let use_keyring = match choice {
        KeyStoreChoice::File => false,
        KeyStoreChoice::Keyring => {
            keyring_supported()?;
            true
        }
        KeyStoreChoice::Auto => keyring_supported().is_ok(),
    };
    if use_keyring {
        match keyring_set(state_dir, pem) {
            Ok(location) => {
                let _ = fs::remove_file(key_file(state_dir));
                return Ok(location);
            }
            Err(err) if choice == KeyStoreChoice::Keyring => return Err(err),
            Err(err) => tracing::warn!("keyring unusable ({err}); keeping the CA key in a file"),
        }
    }
    create_private_dir(&ca_dir(state_dir))?;
    let path = key_file(state_dir);
    write_atomic(&path, pem.as_bytes(), 0o600)?;
    Ok(KeyLocation::File(path))
}

/// Load the CA key: the file if there is one, else the keyring.
pub fn load_key(state_dir: &Path) -> Result<(String, KeyLocation), StoreError> {
    let path = key_file(state_dir);
    if path.exists() {
        check_private(&path)?;
        let pem = fs::read_to_string(&path).map_err(|source| StoreError::Io {
            path: path.clone(),
            source,
        })?;
        return Ok((pem, KeyLocation::File(path)));
    }
    if keyring_supported().is_ok() {
        if let Some(found) = keyring_get(state_dir)? {
            return Ok(found);
        }
        return Err(StoreError::Missing(format!(
            "{} and the OS keyring",
            path.display()
        )));
    }
    Err(StoreError::Missing(path.display().to_string()))
}

/// Refuse a key file that group or others can read.
#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), StoreError> {
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
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> Result<(), StoreError> {
    // Windows: the state dir lives under the service's profile or
    // ProgramData with inherited ACLs; the keyring is preferred there anyway.
    Ok(())
}

/// The keyring account for one state dir, so two agents on one machine
/// (a test, a second user) never share a key.
#[cfg_attr(not(any(target_os = "macos", target_os = "windows")), allow(dead_code))]
fn keyring_account(state_dir: &Path) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(state_dir.to_string_lossy().as_bytes());
    let short: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("ca-key-{short}")
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
fn keyring_set(state_dir: &Path, pem: &str) -> Result<KeyLocation, StoreError> {
    let account = keyring_account(state_dir);
    let entry = keyring::Entry::new(KEYRING_SERVICE, &account)
        .map_err(|e| StoreError::Keyring(e.to_string()))?;
    entry
        .set_password(pem)
        .map_err(|e| StoreError::Keyring(e.to_string()))?;
    Ok(KeyLocation::Keyring {
        service: KEYRING_SERVICE.to_string(),
        account,
    })
}

#[cfg(not(any(target_os = "macos", target_os = "windows")))]
fn keyring_set(_state_dir: &Path, _pem: &str) -> Result<KeyLocation, StoreError> {
    let _ = KEYRING_SERVICE;
    Err(StoreError::NoKeyring("not available on this OS"))
}

#[cfg(any(target_os = "macos", target_os = "windows"))]
fn keyring_get(state_dir: &Path) -> Result<Option<(String, KeyLocation)>, StoreError> {
    let account = keyring_account(state_dir);
    let entry = keyring::Entry::new(KEYRING_SERVICE, &account)
        .map_err(|e| StoreError::Keyring(e.to_string()))?;
    match entry.get_password() {
        Ok(pem) => Ok(Some((
            pem,
            KeyLocation::Keyring {
                service: KEYRING_SERVICE.to_string(),
                account,
            },
        ))),
        Err(keyring::Error::NoEntry) => Ok(None),
        Err(e) => Err(StoreError::Keyring(e.to_string())),
    }
}

#[cfg(not(any(target_os = "macos", target_os = "windows")))]
fn keyring_get(_state_dir: &Path) -> Result<Option<(String, KeyLocation)>, StoreError> {
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

    #[test]
    fn keyring_choice_is_an_error_on_linux() {
        let dir = tempfile::tempdir().unwrap();
        if cfg!(target_os = "linux") {
            assert!(store_key(dir.path(), "KEY", KeyStoreChoice::Keyring).is_err());
        }
    }
}
