//! `outpost install` / `outpost uninstall`: the agent as a system service,
//! its CA in the trust store, and the proxy environment for every login.
//!
//! Everything install changes is written to a manifest
//! (`/etc/outpost/install-manifest.json`): each file and directory it
//! created, each file it replaced (with a backup), each command it ran.
//! Uninstall reverses exactly that, so the machine is as it was (the
//! state directory stays only with `--keep-state`). Both are idempotent.
//! `--root DIR` stages every path under DIR (packagers, tests), and runs
//! no command that would touch the live system; `--dry-run` prints what
//! would be done and changes nothing.
//!
//! Today: Linux, system mode, with the Debian trust store
//! (`update-ca-certificates`). The service definitions for every platform
//! live in `installer/`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The systemd unit, with `{{BIN}}`, `{{CONFIG}}` and `{{STATE}}` to fill.
const SYSTEMD_UNIT: &str = include_str!("../../installer/systemd/outpost.service");

/// Live paths (under the root).
const BIN: &str = "usr/local/bin/outpost";
const CONFIG: &str = "etc/outpost/outpost.toml";
const POLICY: &str = "etc/outpost/policy";
const MANIFEST: &str = "etc/outpost/install-manifest.json";
const BACKUPS: &str = "etc/outpost/install-backups";
const STATE: &str = "var/lib/outpost";
const UNIT: &str = "etc/systemd/system/outpost.service";
const PROFILE: &str = "etc/profile.d/outpost.sh";
const ENVIRONMENT_D: &str = "etc/environment.d/90-outpost.conf";
/// The user the service runs as.
const SERVICE_USER: &str = "outpost";
/// Debian's local anchors, and the bundle `update-ca-certificates` builds.
const DEBIAN_ANCHOR: &str = "usr/local/share/ca-certificates/outpost-ca.crt";
const DEBIAN_BUNDLE: &str = "etc/ssl/certs/ca-certificates.crt";

/// What install and uninstall are asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// `/`, or a staging directory.
    pub root: PathBuf,
    /// Print, change nothing.
    pub dry_run: bool,
    /// Uninstall: leave the state directory (CA, audit log, ledger).
    pub keep_state: bool,
}

impl Options {
    fn staged(&self) -> bool {
        self.root != Path::new("/")
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }
}

/// Everything one install changed.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    /// Directories it created, outermost first.
    created_dirs: Vec<PathBuf>,
    /// Files it created, with their SHA-256.
    created_files: Vec<(PathBuf, String)>,
    /// Files that existed and were replaced: (path, backup).
    replaced_files: Vec<(PathBuf, PathBuf)>,
    /// Commands it ran, as run.
    commands: Vec<Vec<String>>,
    /// Trust stores the CA was added to (`debian`).
    trust_stores: Vec<String>,
    /// The `outpost` system user was created by install.
    #[serde(default)]
    user_created: bool,
}

/// A change install makes, carried out (or printed) in order.
struct Installer<'a> {
    options: &'a Options,
    manifest: Manifest,
}

impl Installer<'_> {
    fn dir(&mut self, path: PathBuf) -> anyhow::Result<()> {
        let mut missing = Vec::new();
        let mut at = path.as_path();
        while !at.exists() {
            missing.push(at.to_path_buf());
            match at.parent() {
                Some(parent) => at = parent,
                None => break,
            }
        }
        for dir in missing.into_iter().rev() {
            println!("create {}/", dir.display());
            if !self.options.dry_run {
                std::fs::create_dir(&dir)
                    .with_context(|| format!("{}: cannot create", dir.display()))?;
            }
            self.manifest.created_dirs.push(dir);
        }
        Ok(())
    }

    /// Write `bytes` to `path` (mode `mode`); an existing different file is
    /// backed up first, an identical one left alone.
    fn file(&mut self, path: PathBuf, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
        if let Some(parent) = path.parent() {
            self.dir(parent.to_path_buf())?;
        }
        let ours = self
            .manifest
            .created_files
            .iter()
            .position(|(p, _)| *p == path);
        match std::fs::read(&path) {
            Ok(existing) if existing == bytes => {
                println!("keep   {} (already as installed)", path.display());
                return Ok(());
            }
            // Written by an earlier install: replaced, still ours to remove.
            Ok(_) if ours.is_some() => {
                if let Some(i) = ours {
                    self.manifest.created_files[i].1 = hex(&Sha256::digest(bytes));
                }
            }
            Ok(_) => {
                let backups = self.options.path(BACKUPS);
                self.dir(backups.clone())?;
                let backup = backups.join(hex(&Sha256::digest(path.to_string_lossy().as_bytes())));
                println!("backup {} -> {}", path.display(), backup.display());
                if !self.options.dry_run {
                    std::fs::copy(&path, &backup)
                        .with_context(|| format!("{}: cannot back up", path.display()))?;
                }
                self.manifest.replaced_files.push((path.clone(), backup));
            }
            Err(_) => self
                .manifest
                .created_files
                .push((path.clone(), hex(&Sha256::digest(bytes)))),
        }
        println!("write  {}", path.display());
        if !self.options.dry_run {
            crate::tls::store::write_atomic(&path, bytes, mode)
                .with_context(|| format!("{}: cannot write", path.display()))?;
        }
        Ok(())
    }

    fn run(&mut self, command: Vec<String>) -> anyhow::Result<()> {
        println!("run    {}", command.join(" "));
        if !self.options.dry_run {
            run_command(&command)?;
        }
        if !self.manifest.commands.contains(&command) {
            self.manifest.commands.push(command);
        }
        Ok(())
    }
}

/// `outpost install --system`.
pub fn install(options: &Options) -> anyhow::Result<()> {
    if !cfg!(target_os = "linux") {
        bail!("`outpost install` supports Linux so far; see installer/ for the other platforms' service files");
    }
    if !options.staged() && !is_root() {
        bail!("`outpost install --system` changes system files: run it as root (sudo), or stage it with --root DIR");
    }
    let manifest_path = options.path(MANIFEST);
    let mut installer = Installer {
        options,
        manifest: read_manifest(&manifest_path).unwrap_or_default(),
    };

    // The binary, the config, the policy directory, the state directory.
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let bin = std::fs::read(&exe).with_context(|| format!("{}: cannot read", exe.display()))?;
    installer.file(options.path(BIN), &bin, 0o755)?;
    if !options.path(CONFIG).exists() {
        let config = format!(
            "# Outpost agent configuration (see the README for every key).\n\
             state_dir = \"/{STATE}\"\npolicy_dir = \"/{POLICY}\"\n"
        );
        installer.file(options.path(CONFIG), config.as_bytes(), 0o644)?;
    }
    installer.dir(options.path(POLICY))?;
    installer.dir(options.path(STATE))?;

    // The CA, made now so that it can be trusted before the first call.
    let state = options.path(STATE);
    let hosts = crate::policy::intercept::InterceptList::embedded_default()
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .hosts()
        .to_vec();
    let ca_pem = if options.dry_run && !state.join("ca").exists() {
        String::new()
    } else {
        crate::tls::ca::LocalCa::load_or_create(
            &state,
            &hosts,
            crate::config::KeyStoreChoice::File,
            crate::clock::Clock::system().now(),
        )?
        .cert_pem()
        .to_string()
    };

    // The service.
    let unit = SYSTEMD_UNIT
        .replace("{{BIN}}", &format!("/{BIN}"))
        .replace("{{CONFIG}}", &format!("/{CONFIG}"))
        .replace("{{STATE}}", &format!("/{STATE}"));
    installer.file(options.path(UNIT), unit.as_bytes(), 0o644)?;

    // Trust: Debian's anchors and bundle.
    installer.file(options.path(DEBIAN_ANCHOR), ca_pem.as_bytes(), 0o644)?;
    installer.run(update_ca_certificates(options, false))?;
    if !installer
        .manifest
        .trust_stores
        .iter()
        .any(|t| t == "debian")
    {
        installer.manifest.trust_stores.push("debian".to_string());
    }

    // The proxy environment for login shells and for systemd user sessions.
    let vars = proxy_env();
    let profile: String =
        std::iter::once("# Outpost: send AI traffic through the local agent.\n".to_string())
            .chain(vars.iter().map(|(k, v)| format!("export {k}={v}\n")))
            .collect();
    installer.file(options.path(PROFILE), profile.as_bytes(), 0o644)?;
    let environment: String = vars.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    installer.file(options.path(ENVIRONMENT_D), environment.as_bytes(), 0o644)?;

    if !options.staged() {
        // The service's own user, owning the state directory (the CA key
        // is 0600).
        let exists = std::process::Command::new("id")
            .args(["-u", SERVICE_USER])
            .output()
            .is_ok_and(|o| o.status.success());
        if !exists {
            installer.run(
                [
                    "useradd",
                    "--system",
                    "--no-create-home",
                    "--home-dir",
                    &format!("/{STATE}"),
                    "--shell",
                    "/usr/sbin/nologin",
                    SERVICE_USER,
                ]
                .map(String::from)
                .to_vec(),
            )?;
            installer.manifest.user_created = true;
        }
        installer.run(
            [
                "chown",
                "-R",
                &format!("{SERVICE_USER}:{SERVICE_USER}"),
                &format!("/{STATE}"),
            ]
            .map(String::from)
            .to_vec(),
        )?;
        installer.run(vec!["systemctl".into(), "daemon-reload".into()])?;
        installer.run(vec![
            "systemctl".into(),
            "enable".into(),
            "--now".into(),
            "outpost.service".into(),
        ])?;
    }

    let manifest = serde_json::to_vec_pretty(&installer.manifest)?;
    if options.dry_run {
        println!("(dry run: nothing was changed)");
    } else {
        crate::tls::store::write_atomic(&manifest_path, &manifest, 0o644)?;
        println!("installed; the manifest is {}", manifest_path.display());
    }
    Ok(())
}

/// `outpost uninstall`: reverse what the manifest lists.
pub fn uninstall(options: &Options) -> anyhow::Result<()> {
    if !options.staged() && !is_root() {
        bail!(
            "`outpost uninstall` changes system files: run it as root (sudo), or give --root DIR"
        );
    }
    let manifest_path = options.path(MANIFEST);
    let Some(manifest) = read_manifest(&manifest_path) else {
        println!(
            "nothing to do: no install manifest at {}",
            manifest_path.display()
        );
        return Ok(());
    };
    let act = |what: &str, path: &Path| println!("{what} {}", path.display());
    if !options.staged() {
        for command in [
            vec!["systemctl", "disable", "--now", "outpost.service"],
            vec!["systemctl", "daemon-reload"],
        ] {
            let command: Vec<String> = command.into_iter().map(String::from).collect();
            println!("run    {}", command.join(" "));
            if !options.dry_run {
                if let Err(e) = run_command(&command) {
                    println!("  ({e}; continuing)");
                }
            }
        }
    }
    for (path, _) in &manifest.created_files {
        act("remove", path);
        if !options.dry_run {
            remove_file(path)?;
        }
    }
    for (path, backup) in &manifest.replaced_files {
        act("restore", path);
        if !options.dry_run {
            std::fs::copy(backup, path).with_context(|| {
                format!(
                    "{}: cannot restore from {}",
                    path.display(),
                    backup.display()
                )
            })?;
            remove_file(backup)?;
        }
    }
    if manifest.trust_stores.iter().any(|t| t == "debian") {
        let command = update_ca_certificates(options, true);
        println!("run    {}", command.join(" "));
        if !options.dry_run {
            run_command(&command)?;
        }
    }
    if manifest.user_created && !options.staged() {
        println!("run    userdel {SERVICE_USER}");
        if !options.dry_run {
            if let Err(e) = run_command(&["userdel".to_string(), SERVICE_USER.to_string()]) {
                println!("  ({e}; continuing)");
            }
        }
    }
    let state = options.path(STATE);
    if !options.keep_state && state.exists() {
        act("remove", &state);
        if !options.dry_run {
            std::fs::remove_dir_all(&state)
                .with_context(|| format!("{}: cannot remove", state.display()))?;
        }
    }
    act("remove", &manifest_path);
    if !options.dry_run {
        remove_file(&manifest_path)?;
    }
    for dir in manifest.created_dirs.iter().rev() {
        if options.keep_state && dir.starts_with(&state) {
            continue;
        }
        if !options.dry_run && dir.exists() {
            // Only what is empty now: never a directory someone else filled.
            if std::fs::remove_dir(dir).is_ok() {
                act("remove", dir);
            } else {
                println!("keep   {}/ (not empty)", dir.display());
            }
        }
    }
    println!(
        "{}",
        if options.dry_run {
            "(dry run: nothing was changed)"
        } else {
            "uninstalled"
        }
    );
    Ok(())
}

/// The variables every login gets.
fn proxy_env() -> Vec<(&'static str, String)> {
    let proxy = "http://127.0.0.1:8877".to_string();
    let no_proxy =
        "localhost,127.0.0.1,::1,.local,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16".to_string();
    let bundle = format!("/{DEBIAN_BUNDLE}");
    vec![
        ("HTTPS_PROXY", proxy.clone()),
        ("https_proxy", proxy),
        ("NO_PROXY", no_proxy.clone()),
        ("no_proxy", no_proxy),
        ("SSL_CERT_FILE", bundle.clone()),
        ("REQUESTS_CA_BUNDLE", bundle.clone()),
        ("CURL_CA_BUNDLE", bundle),
        ("NODE_EXTRA_CA_CERTS", format!("/{DEBIAN_ANCHOR}")),
        ("NODE_USE_ENV_PROXY", "1".to_string()),
    ]
}

/// `update-ca-certificates`, on the staged tree when there is one.
fn update_ca_certificates(options: &Options, fresh: bool) -> Vec<String> {
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
        let at = |flag: &str, relative: &str| {
            [
                flag.to_string(),
                options.path(relative).display().to_string(),
            ]
        };
        command.extend(at("--certsconf", "etc/ca-certificates.conf"));
        command.extend(at("--certsdir", "usr/share/ca-certificates"));
        command.extend(at("--localcertsdir", "usr/local/share/ca-certificates"));
        command.extend(at("--etccertsdir", "etc/ssl/certs"));
        command.extend(at("--hooksdir", "etc/ca-certificates/update.d"));
    }
    command
}

fn run_command(command: &[String]) -> anyhow::Result<()> {
    let (program, args) = command.split_first().context("empty command")?;
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            command.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn read_manifest(path: &Path) -> Option<Manifest> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

fn remove_file(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("{}: cannot remove", path.display())),
    }
}

#[cfg(unix)]
fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[cfg(not(unix))]
fn is_root() -> bool {
    false
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
