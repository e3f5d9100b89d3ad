//! The trust stores an install puts the Outpost CA into (the certificate
//! only: the key never leaves the agent's state directory).
//!
//! - Linux, system mode: the distribution's anchors (Debian/Ubuntu,
//!   Fedora/RHEL, Arch, openSUSE), told apart by `/etc/os-release`.
//! - NSS databases (Firefox and Chromium profiles, `/etc/pki/nssdb`) where
//!   `certutil` is installed; Java `cacerts` where `keytool` is (system mode).
//! - macOS: the System keychain (`--system`, the admin prompt) or the login
//!   keychain (`--user`).
//!
//! Each CA is its own anchor file / nickname / alias, named by its short
//! fingerprint, so that two CAs can be trusted side by side while a
//! rotation overlaps. Windows' Root store is the installer script's
//! (`installer/windows/outpost-service.ps1`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::layout::{Layout, Mode, Platform};
use super::{Installer, Options};

/// One trust store holding the Outpost CA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Store {
    /// `/usr/local/share/ca-certificates` + `update-ca-certificates`.
    Debian,
    /// `/etc/pki/ca-trust/source/anchors` + `update-ca-trust extract`.
    Fedora,
    /// `/etc/ca-certificates/trust-source/anchors` + `update-ca-trust`.
    Arch,
    /// `/etc/pki/trust/anchors` + `update-ca-certificates` (SUSE's own).
    Suse,
    /// An NSS database (`certutil -d sql:DIR`).
    Nss {
        /// The database directory (staged path).
        db: PathBuf,
    },
    /// A Java keystore (`keytool`), the JDK's default password.
    Java {
        /// The `cacerts` file (staged path).
        keystore: PathBuf,
    },
    /// A macOS keychain (`security add-trusted-cert`).
    Keychain {
        /// The keychain file.
        keychain: PathBuf,
        /// The System keychain (admin trust settings, `-d`).
        admin: bool,
    },
}

/// A distribution's anchor directory, file extension and system bundle.
struct Anchors {
    dir: &'static str,
    ext: &'static str,
    bundle: &'static str,
}

impl Store {
    fn anchors(&self) -> Option<Anchors> {
        let (dir, ext, bundle) = match self {
            Store::Debian => (
                "/usr/local/share/ca-certificates",
                "crt",
                "/etc/ssl/certs/ca-certificates.crt",
            ),
            Store::Fedora => (
                "/etc/pki/ca-trust/source/anchors",
                "pem",
                "/etc/pki/tls/certs/ca-bundle.crt",
            ),
            Store::Arch => (
                "/etc/ca-certificates/trust-source/anchors",
                "crt",
                "/etc/ssl/certs/ca-certificates.crt",
            ),
            Store::Suse => ("/etc/pki/trust/anchors", "pem", "/etc/ssl/ca-bundle.pem"),
            _ => return None,
        };
        Some(Anchors { dir, ext, bundle })
    }

    /// For messages and the manifest listing.
    pub fn describe(&self) -> String {
        match self {
            Store::Debian => "Debian/Ubuntu system store".into(),
            Store::Fedora => "Fedora/RHEL system store".into(),
            Store::Arch => "Arch system store".into(),
            Store::Suse => "openSUSE system store".into(),
            Store::Nss { db } => format!("NSS database {}", db.display()),
            Store::Java { keystore } => format!("Java keystore {}", keystore.display()),
            Store::Keychain { keychain, .. } => format!("keychain {}", keychain.display()),
        }
    }
}

/// One CA certificate, as the stores see it.
#[derive(Debug, Clone)]
pub struct CaCert {
    /// PEM text.
    pub pem: String,
    /// DER bytes.
    pub der: Vec<u8>,
    /// Lower-case hex SHA-256 of the DER.
    pub sha256: String,
}

impl CaCert {
    /// From a PEM certificate.
    pub fn from_pem(pem: &str) -> anyhow::Result<CaCert> {
        use rustls_pki_types::pem::PemObject;
        let der = rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| anyhow::anyhow!("not a PEM certificate: {e}"))?
            .to_vec();
        Ok(CaCert {
            pem: pem.to_string(),
            sha256: super::hex(&Sha256::digest(&der)),
            der,
        })
    }

    /// SHA-256 as `outpost ca show` prints it (colon-separated, upper case).
    pub fn fingerprint(&self) -> String {
        let upper = self.sha256.to_uppercase();
        let pairs: Vec<&str> = (0..upper.len())
            .step_by(2)
            .map(|i| &upper[i..i + 2])
            .collect();
        pairs.join(":")
    }

    /// The first 16 hex digits of the SHA-256: file names, nicknames.
    pub fn short(&self) -> &str {
        &self.sha256[..16]
    }

    /// The name NSS and Java list it under.
    pub fn nickname(&self) -> String {
        format!("Outpost CA {}", self.short())
    }

    /// SHA-1 (what `security delete-certificate -Z` and Windows'
    /// `certutil -delstore` select by).
    pub fn sha1(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &self.der);
        super::hex(digest.as_ref()).to_uppercase()
    }
}

/// The stores this machine (or staged root) has, for this mode.
pub fn detect(options: &Options, layout: &Layout) -> Vec<Store> {
    let mut stores = Vec::new();
    match (layout.platform, layout.mode) {
        (Platform::Linux, Mode::System) => {
            if let Some(distro) = distro_store(options) {
                stores.push(distro);
            }
        }
        (Platform::Macos, Mode::System) => stores.push(Store::Keychain {
            keychain: options.path(Path::new("/Library/Keychains/System.keychain")),
            admin: true,
        }),
        (Platform::Macos, Mode::User) => {
            if let Some(home) = &layout.home {
                stores.push(Store::Keychain {
                    keychain: options.path(&home.join("Library/Keychains/login.keychain-db")),
                    admin: false,
                });
            }
        }
        _ => {}
    }
    if layout.platform != Platform::Windows && find_tool("certutil").is_some() {
        stores.extend(
            nss_dbs(options, layout)
                .into_iter()
                .map(|db| Store::Nss { db }),
        );
    }
    if layout.mode == Mode::System && find_tool("keytool").is_some() {
        stores.extend(
            java_keystores(options, layout)
                .into_iter()
                .map(|keystore| Store::Java { keystore }),
        );
    }
    stores
}

/// The distribution's store: `/etc/os-release` (ID, then ID_LIKE), else
/// whichever anchor directory exists.
fn distro_store(options: &Options) -> Option<Store> {
    let release = ["/etc/os-release", "/usr/lib/os-release"]
        .iter()
        .find_map(|p| std::fs::read_to_string(options.path(Path::new(p))).ok())
        .unwrap_or_default();
    let field = |key: &str| {
        release
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim_matches('"').to_ascii_lowercase())
            .unwrap_or_default()
    };
    let ids = format!("{} {}", field("ID"), field("ID_LIKE"));
    for id in ids.split_whitespace() {
        let store = match id {
            "debian" | "ubuntu" => Store::Debian,
            "fedora" | "rhel" | "centos" => Store::Fedora,
            "arch" => Store::Arch,
            id if id.contains("suse") || id == "sles" => Store::Suse,
            _ => continue,
        };
        return Some(store);
    }
    [Store::Debian, Store::Fedora, Store::Arch, Store::Suse]
        .into_iter()
        .find(|s| {
            s.anchors()
                .is_some_and(|a| options.path(Path::new(a.dir)).is_dir())
        })
}

/// NSS databases (`cert9.db`) of the users this install serves.
fn nss_dbs(options: &Options, layout: &Layout) -> Vec<PathBuf> {
    let mut homes = Vec::new();
    match (&layout.mode, &layout.home) {
        (Mode::User, Some(home)) => homes.push(options.path(home)),
        _ => {
            for base in ["/home", "/Users"] {
                if let Ok(entries) = std::fs::read_dir(options.path(Path::new(base))) {
                    homes.extend(entries.flatten().map(|e| e.path()));
                }
            }
            homes.push(options.path(Path::new("/root")));
        }
    }
    let mut candidates = Vec::new();
    if layout.mode == Mode::System {
        candidates.push(options.path(Path::new("/etc/pki/nssdb")));
    }
    for home in homes {
        candidates.push(home.join(".pki/nssdb"));
        candidates.push(home.join("snap/chromium/current/.pki/nssdb"));
        for profiles in [
            ".mozilla/firefox",
            "snap/firefox/common/.mozilla/firefox",
            "Library/Application Support/Firefox/Profiles",
        ] {
            if let Ok(entries) = std::fs::read_dir(home.join(profiles)) {
                candidates.extend(entries.flatten().map(|e| e.path()));
            }
        }
    }
    candidates.sort();
    candidates.retain(|dir| dir.join("cert9.db").is_file());
    candidates
}

/// JDK `cacerts` files (regular files only: a link points at one listed
/// anyway, and in a staged root it would point outside it).
fn java_keystores(options: &Options, layout: &Layout) -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    let jvms = match layout.platform {
        Platform::Macos => (
            "/Library/Java/JavaVirtualMachines",
            "Contents/Home/lib/security/cacerts",
        ),
        _ => ("/usr/lib/jvm", "lib/security/cacerts"),
    };
    if let Ok(entries) = std::fs::read_dir(options.path(Path::new(jvms.0))) {
        for jdk in entries.flatten() {
            candidates.push(jdk.path().join(jvms.1));
            candidates.push(jdk.path().join("jre").join(jvms.1));
        }
    }
    for shared in ["/etc/ssl/certs/java/cacerts", "/etc/pki/java/cacerts"] {
        candidates.push(options.path(Path::new(shared)));
    }
    if !options.staged() {
        if let Some(home) = std::env::var_os("JAVA_HOME") {
            candidates.push(PathBuf::from(home).join("lib/security/cacerts"));
        }
    }
    candidates.sort();
    candidates.dedup();
    candidates.retain(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file()));
    candidates
}

/// Put `ca` into `store` (its PEM file, `layout.ca_cert`, is written).
/// `Ok(false)`: an optional store (NSS, Java) refused it; said, not fatal.
pub fn add(
    ins: &mut Installer,
    layout: &Layout,
    store: &Store,
    ca: &CaCert,
) -> anyhow::Result<bool> {
    let file = ins.options.path(&layout.ca_cert(ca.short()));
    let file_arg = file.display().to_string();
    match store {
        Store::Nss { .. } | Store::Java { .. } => {
            let command = tool_command(store, ca, Tool::Add(file_arg)).context("a tool store")?;
            let held = ins.try_run(command)?;
            if !held && !ins.options.dry_run {
                // `certutil -A` on a database it may not write trust to
                // still stores the certificate, untrusted: take it back
                // out, since the manifest will not list this store.
                if let Some(undo) = tool_command(store, ca, Tool::Remove) {
                    let _ = super::run_command(&undo);
                }
            }
            Ok(held)
        }
        Store::Keychain { keychain, admin } => {
            let mut command = vec!["security".to_string(), "add-trusted-cert".to_string()];
            if *admin {
                command.push("-d".into());
            }
            command.extend([
                "-r".into(),
                "trustRoot".into(),
                "-k".into(),
                keychain.display().to_string(),
                file_arg,
            ]);
            ins.live_run(command).map(|()| true)
        }
        distro => {
            let anchors = distro.anchors().context("not an anchor store")?;
            let anchor =
                Path::new(anchors.dir).join(format!("outpost-ca-{}.{}", ca.short(), anchors.ext));
            ins.file(ins.options.path(&anchor), ca.pem.as_bytes(), 0o644)?;
            Ok(true)
        }
    }
}

/// Take `ca` out of `store`. Errors are said and skipped: a store someone
/// deleted, or a tool uninstalled since, must not stop the rest.
pub fn remove(ins: &mut Installer, store: &Store, ca: &CaCert) {
    let command = match store {
        Store::Nss { .. } | Store::Java { .. } => match tool_command(store, ca, Tool::Remove) {
            Some(command) => command,
            None => return,
        },
        Store::Keychain { keychain, .. } => vec![
            "security".into(),
            "delete-certificate".into(),
            "-Z".into(),
            ca.sha1(),
            keychain.display().to_string(),
        ],
        distro => {
            if let Some(anchors) = distro.anchors() {
                let anchor = Path::new(anchors.dir).join(format!(
                    "outpost-ca-{}.{}",
                    ca.short(),
                    anchors.ext
                ));
                ins.forget_file(&ins.options.path(&anchor));
            }
            return;
        }
    };
    let live = matches!(store, Store::Keychain { .. });
    if live && ins.options.staged() {
        println!("skip   {} (staged root)", command.join(" "));
        return;
    }
    println!("run    {}", command.join(" "));
    if !ins.options.dry_run {
        if let Err(e) = super::run_command(&command) {
            println!("  ({e}; continuing)");
        }
    }
}

/// What to do with a CA in an NSS or Java store.
enum Tool {
    /// Import it from this PEM file.
    Add(String),
    /// Delete it.
    Remove,
    /// List it (succeeds only when the store holds it).
    Check,
}

/// The `certutil` / `keytool` command line for `ca` in `store` (`None` for
/// the other stores).
fn tool_command(store: &Store, ca: &CaCert, tool: Tool) -> Option<Vec<String>> {
    let mut command: Vec<String> = match store {
        Store::Nss { db } => {
            let action: &[&str] = match &tool {
                Tool::Add(_) => &["-A", "-t", "C,,"],
                Tool::Remove => &["-D"],
                Tool::Check => &["-L"],
            };
            let mut command = vec!["certutil".to_string()];
            command.extend(action.iter().map(|a| a.to_string()));
            command.extend([
                "-d".into(),
                format!("sql:{}", db.display()),
                "-n".into(),
                ca.nickname(),
            ]);
            if !matches!(tool, Tool::Check) {
                // An empty password: a database protected by one is
                // refused at once (and skipped) instead of prompting on the
                // terminal in the middle of an install.
                command.extend(["-f".into(), "/dev/null".into()]);
            }
            if let Tool::Add(file) = tool {
                command.extend(["-i".into(), file]);
            }
            return Some(command);
        }
        Store::Java { keystore } => {
            let action: &[&str] = match &tool {
                Tool::Add(_) => &["-importcert", "-noprompt"],
                Tool::Remove => &["-delete"],
                Tool::Check => &["-list"],
            };
            let mut command = vec![find_tool("keytool").unwrap_or_else(|| "keytool".into())];
            command.extend(action.iter().map(|a| a.to_string()));
            command.extend([
                "-alias".into(),
                ca.nickname().to_lowercase().replace(' ', "-"),
                "-keystore".into(),
                keystore.display().to_string(),
                "-storepass".into(),
                JAVA_STOREPASS.into(),
            ]);
            command
        }
        _ => return None,
    };
    if let Tool::Add(file) = tool {
        command.extend(["-file".into(), file]);
    }
    Some(command)
}

/// Whether an NSS or Java `store` holds `ca` (`None`: a store this cannot
/// ask, or whose tool is gone).
pub fn holds(store: &Store, ca: &CaCert) -> Option<bool> {
    let command = tool_command(store, ca, Tool::Check)?;
    let out = super::command(&command).ok()?.output().ok()?;
    Some(out.status.success())
}

/// After anchors changed: the distribution's command that rebuilds its
/// bundle. Debian's can run on a staged root; the others only live.
pub fn refresh(ins: &mut Installer, store: &Store, removed: bool) -> anyhow::Result<()> {
    let command: Vec<String> = match store {
        Store::Debian => return ins.run(update_ca_certificates(ins.options, removed)),
        Store::Fedora => vec!["update-ca-trust".into(), "extract".into()],
        Store::Arch => vec!["update-ca-trust".into()],
        Store::Suse => vec!["update-ca-certificates".into()],
        _ => return Ok(()),
    };
    ins.live_run(command)
}

/// The system bundle a store's distribution builds (staged path).
pub fn system_bundle(options: &Options, stores: &[Store]) -> Option<PathBuf> {
    let known = [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/ca-bundle.pem",
        "/etc/ssl/cert.pem",
    ];
    stores
        .iter()
        .filter_map(|s| s.anchors().map(|a| a.bundle))
        .chain(known)
        .map(|p| options.path(Path::new(p)))
        .find(|p| p.is_file())
}

/// The combined bundle: every certificate of `system` that is not one of
/// ours, then ours.
pub fn combined_bundle(system: Option<&str>, cas: &[CaCert]) -> String {
    use rustls_pki_types::pem::PemObject;
    let mut out = String::new();
    if let Some(system) = system {
        for block in pem_blocks(system) {
            let ours = rustls_pki_types::CertificateDer::from_pem_slice(block.as_bytes())
                .is_ok_and(|der| cas.iter().any(|ca| ca.der == der.as_ref()));
            if !ours {
                out.push_str(block);
                out.push('\n');
            }
        }
    }
    for ca in cas {
        out.push_str(ca.pem.trim_end());
        out.push('\n');
    }
    out
}

/// The `-----BEGIN CERTIFICATE-----` … `-----END CERTIFICATE-----` blocks.
fn pem_blocks(text: &str) -> Vec<&str> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let Some(len) = rest[start..].find(END) else {
            break;
        };
        let end = start + len + END.len();
        blocks.push(&rest[start..end]);
        rest = &rest[end..];
    }
    blocks
}

/// The JDK's default `cacerts` password.
const JAVA_STOREPASS: &str = "changeit";

/// `update-ca-certificates`, on the staged tree when there is one.
pub fn update_ca_certificates(options: &Options, fresh: bool) -> Vec<String> {
    // Debian keeps it in /usr/sbin, which a non-root PATH may not list.
    let program = [
        "/usr/sbin/update-ca-certificates",
        "/usr/bin/update-ca-certificates",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .unwrap_or("update-ca-certificates");
    let mut command = vec![program.to_string()];
    if fresh {
        command.push("--fresh".into());
    }
    if options.staged() {
        let at = |flag: &str, live: &str| {
            [
                flag.to_string(),
                options.path(Path::new(live)).display().to_string(),
            ]
        };
        command.extend(at("--certsconf", "/etc/ca-certificates.conf"));
        command.extend(at("--certsdir", "/usr/share/ca-certificates"));
        command.extend(at("--localcertsdir", "/usr/local/share/ca-certificates"));
        command.extend(at("--etccertsdir", "/etc/ssl/certs"));
        command.extend(at("--hooksdir", "/etc/ca-certificates/update.d"));
    }
    command
}

/// `name` on PATH (or, for keytool, under `JAVA_HOME`).
pub fn find_tool(name: &str) -> Option<String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from));
    if let Some(java) = std::env::var_os("JAVA_HOME") {
        dirs.push(PathBuf::from(java).join("bin"));
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed_pem() -> String {
        rcgen::generate_simple_self_signed(vec!["ca.test".to_string()])
            .unwrap()
            .cert
            .pem()
    }

    fn staged(files: &[(&str, &str)]) -> (tempfile::TempDir, Options) {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let options = Options {
            root: dir.path().to_path_buf(),
            dry_run: false,
            keep_state: false,
            mode: Mode::System,
        };
        (dir, options)
    }

    #[test]
    fn the_distribution_is_read_from_os_release_then_from_its_anchor_directory() {
        for (release, store) in [
            ("ID=ubuntu\nID_LIKE=debian\n", Store::Debian),
            (
                "ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n",
                Store::Fedora,
            ),
            ("ID=arch\n", Store::Arch),
            (
                "ID=\"opensuse-tumbleweed\"\nID_LIKE=\"opensuse suse\"\n",
                Store::Suse,
            ),
        ] {
            let (_dir, options) = staged(&[("etc/os-release", release)]);
            assert_eq!(distro_store(&options), Some(store), "{release}");
        }
        let (_dir, options) = staged(&[("etc/pki/trust/anchors/.keep", "")]);
        assert_eq!(distro_store(&options), Some(Store::Suse));
        let (_dir, options) = staged(&[("etc/hostname", "x")]);
        assert_eq!(distro_store(&options), None);
    }

    #[test]
    fn the_combined_bundle_keeps_system_roots_once_and_ours_last() {
        let ours = CaCert::from_pem(&self_signed_pem()).unwrap();
        let other = self_signed_pem();
        let system = format!("{}\n{}\n", other.trim(), ours.pem.trim());
        let bundle = combined_bundle(Some(&system), std::slice::from_ref(&ours));
        assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 2, "{bundle}");
        assert!(bundle.starts_with(other.trim()));
        assert!(bundle.trim_end().ends_with(ours.pem.trim()));
        assert_eq!(
            combined_bundle(None, std::slice::from_ref(&ours)).trim(),
            ours.pem.trim()
        );
    }

    #[test]
    fn stores_are_discovered_only_where_they_exist() {
        let (dir, options) = staged(&[
            ("home/ana/.pki/nssdb/cert9.db", ""),
            ("home/ana/.mozilla/firefox/abc.default/cert9.db", ""),
            ("home/ana/.mozilla/firefox/old.default/cert8.db", ""),
            ("usr/lib/jvm/jdk-21/lib/security/cacerts", "x"),
        ]);
        let layout = Layout::new(Platform::Linux, Mode::System, None).unwrap();
        let dbs = nss_dbs(&options, &layout);
        assert_eq!(
            dbs,
            vec![
                dir.path().join("home/ana/.mozilla/firefox/abc.default"),
                dir.path().join("home/ana/.pki/nssdb"),
            ]
        );
        std::fs::create_dir_all(dir.path().join("usr/lib/jvm/jdk-17/lib/security")).unwrap();
        std::os::unix::fs::symlink(
            "/etc/ssl/certs/java/cacerts",
            dir.path().join("usr/lib/jvm/jdk-17/lib/security/cacerts"),
        )
        .unwrap();
        assert_eq!(
            java_keystores(&options, &layout),
            vec![dir.path().join("usr/lib/jvm/jdk-21/lib/security/cacerts")]
        );
    }

    #[test]
    fn a_certificate_has_stable_names_in_every_store() {
        let ca = CaCert::from_pem(&self_signed_pem()).unwrap();
        assert_eq!(ca.sha256.len(), 64);
        assert_eq!(ca.short().len(), 16);
        assert_eq!(ca.sha1().len(), 40);
        assert!(ca.nickname().starts_with("Outpost CA "));
        assert!(CaCert::from_pem("not pem").is_err());
    }
}
