//! `outpost install` / `outpost uninstall`: the agent as a service, its CA
//! in the trust stores, and the proxy environment for every login.
//!
//! Everything install changes is written to a manifest
//! (`install-manifest.json` in the config directory): each file and
//! directory it created, each file it replaced (with a backup), each line it
//! added to a shell start-up file, each trust store it put the CA in, each
//! command it ran. Uninstall reverses exactly that, so the machine is as it
//! was (the state directory stays only with `--keep-state`). Both are
//! idempotent. `--root DIR` stages every path under DIR (packagers, tests)
//! and runs no command that would touch the live system; `--dry-run` prints
//! what would be done and changes nothing.
//!
//! Linux and macOS are driven from here ([`layout`], [`service`],
//! [`trust`]); on Windows install runs `installer/windows/outpost-service.ps1`.
//! `outpost ca rotate` and `ca prune` ([`rotate`]) use the same manifest.

pub mod layout;
pub mod rotate;
pub mod service;
pub mod trust;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use layout::{Layout, Mode, Platform};
use trust::{CaCert, Store};

const WINDOWS_SCRIPT: &str = include_str!("../../installer/windows/outpost-service.ps1");

/// Where a packaged binary lives; install leaves it there.
const PACKAGED_BIN: &str = "/usr/bin/outpost";

/// What install and uninstall are asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// `/`, or a staging directory.
    pub root: PathBuf,
    /// Print, change nothing.
    pub dry_run: bool,
    /// Uninstall: leave the state directory (CA, audit log, ledger).
    pub keep_state: bool,
    /// System or user install.
    pub mode: Mode,
}

impl Options {
    /// Is this a staged root (not the live system)?
    pub fn staged(&self) -> bool {
        self.root != Path::new("/")
    }

    /// `live` under the root.
    pub fn path(&self, live: &Path) -> PathBuf {
        if !self.staged() {
            return live.to_path_buf();
        }
        let relative: PathBuf = live
            .components()
            .filter(|c| matches!(c, std::path::Component::Normal(_)))
            .collect();
        self.root.join(relative)
    }
}

/// Everything one install changed.
#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// System or user.
    pub mode: Mode,
    /// The platform installed for.
    pub platform: Platform,
    /// The home directory a user install used.
    #[serde(default)]
    pub home: Option<PathBuf>,
    /// Directories it created, outermost first.
    pub created_dirs: Vec<PathBuf>,
    /// Files it created, with their SHA-256.
    pub created_files: Vec<(PathBuf, String)>,
    /// Files that existed and were replaced: (path, backup).
    pub replaced_files: Vec<(PathBuf, PathBuf)>,
    /// Text appended to files that existed (shell start-up files), exactly.
    #[serde(default)]
    pub appended: Vec<(PathBuf, String)>,
    /// Commands it ran, as run.
    pub commands: Vec<Vec<String>>,
    /// Trust stores holding the Outpost CA.
    #[serde(default)]
    pub trust: Vec<Store>,
    /// The CA certificates in those stores (PEM): the current one, and any
    /// retiring one while a rotation overlaps.
    #[serde(default)]
    pub cas: Vec<String>,
    /// The `outpost` system user was created by install.
    #[serde(default)]
    pub user_created: bool,
}

impl Manifest {
    fn new(layout: &Layout) -> Manifest {
        Manifest {
            mode: layout.mode,
            platform: layout.platform,
            home: layout.home.clone(),
            created_dirs: Vec::new(),
            created_files: Vec::new(),
            replaced_files: Vec::new(),
            appended: Vec::new(),
            commands: Vec::new(),
            trust: Vec::new(),
            cas: Vec::new(),
            user_created: false,
        }
    }

    /// The layout this manifest was made with.
    pub fn layout(&self) -> anyhow::Result<Layout> {
        Layout::new(self.platform, self.mode, self.home.as_deref())
    }
}

/// The changes of one install (or rotation), carried out or printed in
/// order, and recorded.
pub struct Installer<'a> {
    options: &'a Options,
    manifest: Manifest,
    /// Where the manifest is saved after every change, so that an install
    /// cut short (killed, a closed pipe) can still be uninstalled.
    save_to: Option<PathBuf>,
}

impl<'a> Installer<'a> {
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
            self.save()?;
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
                let backups = self.options.path(&self.layout_backups());
                self.dir(backups.clone())?;
                let backup = backups.join(hex(&Sha256::digest(path.to_string_lossy().as_bytes())));
                println!("backup {} -> {}", path.display(), backup.display());
                if !self.options.dry_run {
                    std::fs::copy(&path, &backup)
                        .with_context(|| format!("{}: cannot back up", path.display()))?;
                }
                self.manifest.replaced_files.push((path.clone(), backup));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self
                .manifest
                .created_files
                .push((path.clone(), hex(&Sha256::digest(bytes)))),
            Err(e) => return Err(e).with_context(|| format!("{}: cannot read", path.display())),
        }
        // Recorded before it is written: a file listed but never written
        // is simply not there to remove.
        self.save()?;
        println!("write  {}", path.display());
        if !self.options.dry_run {
            crate::tls::store::write_atomic(&path, bytes, mode)
                .with_context(|| format!("{}: cannot write", path.display()))?;
        }
        Ok(())
    }

    /// Remove a file this install created (a retired CA's anchor).
    fn forget_file(&mut self, path: &Path) {
        println!("remove {}", path.display());
        if !self.options.dry_run {
            if let Err(e) = remove_file(path) {
                println!("  ({e}; continuing)");
            }
        }
        self.manifest.created_files.retain(|(p, _)| p != path);
    }

    /// Make `path` contain `line`: a file of its own if there is none,
    /// else the line appended (and exactly that taken out on uninstall).
    fn line(&mut self, path: PathBuf, line: &str) -> anyhow::Result<()> {
        let existing = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(_) => return self.file(path, format!("{line}\n").as_bytes(), 0o644),
        };
        if existing.lines().any(|l| l == line) {
            println!(
                "keep   {} (already sources Outpost's environment)",
                path.display()
            );
            return Ok(());
        }
        let sep = if existing.is_empty() || existing.ends_with('\n') {
            ""
        } else {
            "\n"
        };
        let added = format!("{sep}{line}\n");
        println!("append {}", path.display());
        if !self.options.dry_run {
            use std::io::Write;
            std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .and_then(|mut f| f.write_all(added.as_bytes()))
                .with_context(|| format!("{}: cannot append", path.display()))?;
        }
        self.manifest.appended.push((path, added));
        self.save()
    }

    fn layout_backups(&self) -> PathBuf {
        self.manifest
            .layout()
            .map(|l| l.backups)
            .unwrap_or_else(|_| PathBuf::from("/etc/outpost/install-backups"))
    }

    /// Run `command`; its failure fails the install.
    fn run(&mut self, command: Vec<String>) -> anyhow::Result<()> {
        println!("run    {}", command.join(" "));
        if !self.options.dry_run {
            run_command(&command)?;
        }
        if !self.manifest.commands.contains(&command) {
            self.manifest.commands.push(command);
        }
        self.save()
    }

    /// Run `command` for an optional part (an NSS or Java store): a failure
    /// is said and returns `false`.
    fn try_run(&mut self, command: Vec<String>) -> anyhow::Result<bool> {
        match self.run(command) {
            Ok(()) => Ok(true),
            Err(e) => {
                println!("  skipped: {e}");
                Ok(false)
            }
        }
    }

    /// Run a command that only makes sense on the live system; on a staged
    /// root it is printed and skipped.
    fn live_run(&mut self, command: Vec<String>) -> anyhow::Result<()> {
        if self.options.staged() {
            println!("skip   {} (staged root)", command.join(" "));
            return Ok(());
        }
        self.run(command)
    }

    /// Save the manifest as it is now (where there is a place for it yet).
    fn save(&self) -> anyhow::Result<()> {
        match &self.save_to {
            Some(path) if path.parent().is_some_and(Path::is_dir) => self.write_manifest(path),
            _ => Ok(()),
        }
    }

    fn write_manifest(&self, path: &Path) -> anyhow::Result<()> {
        if self.options.dry_run {
            return Ok(());
        }
        let bytes = serde_json::to_vec_pretty(&self.manifest)?;
        crate::tls::store::write_atomic(path, &bytes, 0o644)
            .with_context(|| format!("{}: cannot write", path.display()))
    }

    /// The Outpost CA files for clients (one PEM per CA, the CA-only file,
    /// the combined bundle), the CAs added to every store in `stores`, and
    /// the distributions' bundles rebuilt. `cas`: current first.
    fn trust(&mut self, layout: &Layout, stores: &[Store], cas: &[CaCert]) -> anyhow::Result<()> {
        let options = self.options;
        for ca in cas {
            self.file(
                options.path(&layout.ca_cert(ca.short())),
                ca.pem.as_bytes(),
                0o644,
            )?;
        }
        for store in stores {
            // A store already listed holds every CA the manifest lists.
            let listed = self.manifest.trust.contains(store);
            let mut held = listed;
            for ca in cas {
                if listed && self.manifest.cas.contains(&ca.pem) {
                    continue;
                }
                held |= trust::add(self, layout, store, ca)?;
            }
            if held && !listed {
                self.manifest.trust.push(store.clone());
            }
        }
        self.client_files(layout, cas, false)
    }

    /// After the CAs changed: the distributions' bundles rebuilt, then the
    /// CA-only file and the combined bundle written for `cas`.
    fn client_files(
        &mut self,
        layout: &Layout,
        cas: &[CaCert],
        removed: bool,
    ) -> anyhow::Result<()> {
        let options = self.options;
        for store in self.manifest.trust.clone() {
            trust::refresh(self, &store, removed)?;
        }
        let ca_only: String = cas
            .iter()
            .map(|c| format!("{}\n", c.pem.trim_end()))
            .collect();
        self.file(options.path(&layout.ca_pem), ca_only.as_bytes(), 0o644)?;
        let system = trust::system_bundle(options, &self.manifest.trust)
            .and_then(|p| std::fs::read_to_string(p).ok());
        if system.is_none() {
            println!(
                "  note: no system CA bundle found; {} holds only the Outpost CA",
                layout.bundle.display()
            );
        }
        let bundle = trust::combined_bundle(system.as_deref(), cas);
        self.file(options.path(&layout.bundle), bundle.as_bytes(), 0o644)?;
        self.manifest.cas = cas.iter().map(|c| c.pem.clone()).collect();
        Ok(())
    }
}

/// The layout for `options` on this machine.
fn layout_for(options: &Options) -> anyhow::Result<Layout> {
    let home = directories::BaseDirs::new().map(|d| d.home_dir().to_path_buf());
    Layout::new(Platform::current(), options.mode, home.as_deref())
}

/// The manifest under `options.root`: the system install's, else the
/// user's.
pub fn find_manifest(options: &Options) -> Option<(PathBuf, Manifest)> {
    find_manifest_of(options, &[Mode::System, Mode::User])
}

fn find_manifest_of(options: &Options, modes: &[Mode]) -> Option<(PathBuf, Manifest)> {
    let home = directories::BaseDirs::new().map(|d| d.home_dir().to_path_buf());
    modes.iter().find_map(|&mode| {
        let layout = Layout::new(Platform::current(), mode, home.as_deref()).ok()?;
        let path = options.path(&layout.manifest);
        read_manifest(&path).map(|m| (path, m))
    })
}

/// `outpost install`.
pub fn install(options: &Options) -> anyhow::Result<()> {
    let mut layout = layout_for(options)?;
    if options.mode == Mode::System && !options.staged() && !is_root() {
        bail!(match layout.platform {
            Platform::Macos => "`outpost install --system` changes system files and the System keychain: run it as an administrator (sudo), or use --user",
            Platform::Windows => "`outpost install` registers a service: run it from an Administrator prompt",
            Platform::Linux => "`outpost install --system` changes system files: run it as root (sudo), stage it with --root DIR, or use --user",
        });
    }
    if layout.platform == Platform::Windows {
        return windows_script(options, &layout, "Install");
    }
    let manifest_path = options.path(&layout.manifest);
    let mut ins = Installer {
        options,
        manifest: read_manifest(&manifest_path).unwrap_or_else(|| Manifest::new(&layout)),
        save_to: Some(manifest_path.clone()),
    };
    // The config directory first: the manifest lives there from the first
    // change on.
    ins.dir(options.path(&layout.config_dir))?;

    // The binary (a packaged one stays where the package put it), the
    // config, the policy directory, the state directory.
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    if !options.staged() && std::fs::canonicalize(&exe).is_ok_and(|p| p == Path::new(PACKAGED_BIN))
    {
        layout.bin = PathBuf::from(PACKAGED_BIN);
        println!("keep   {PACKAGED_BIN} (installed by the package)");
    } else {
        let bin = std::fs::read(&exe).with_context(|| format!("{}: cannot read", exe.display()))?;
        ins.file(options.path(&layout.bin), &bin, 0o755)?;
    }
    let config_path = options.path(&layout.config);
    if !config_path.exists() {
        let quote = |p: &Path| serde_json::to_string(&p.display().to_string()).unwrap_or_default();
        let config = format!(
            "# Outpost agent configuration (see the README for every key).\n\
             state_dir = {}\npolicy_dir = {}\n",
            quote(&layout.state),
            quote(&layout.policy)
        );
        ins.file(config_path, config.as_bytes(), 0o644)?;
    }
    ins.dir(options.path(&layout.policy))?;
    let state = options.path(&layout.state);
    let fresh_state = !state.exists();
    ins.dir(state.clone())?;
    #[cfg(not(unix))]
    let _ = fresh_state;
    #[cfg(unix)]
    if fresh_state && !options.dry_run {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("{}: cannot restrict", state.display()))?;
    }
    if layout.platform == Platform::Macos {
        ins.dir(options.path(&layout.logs))?;
    }

    // The CA, made now so that it can be trusted before the first call; a
    // CA still retiring from a rotation stays trusted with it.
    let cas = if options.dry_run && !crate::tls::ca::cert_file(&state).exists() {
        println!("(dry run: the CA would be created in {})", state.display());
        Vec::new()
    } else {
        current_cas(&state)?
    };

    // The service.
    for (path, text) in service::files(&layout) {
        ins.file(options.path(&path), text.as_bytes(), 0o644)?;
    }

    // Trust.
    let stores = trust::detect(options, &layout);
    if stores.is_empty() {
        println!(
            "  note: no trust store found to add the CA to; clients can use {}",
            layout.bundle.display()
        );
    }
    for store in &stores {
        println!("trust  {}", store.describe());
    }
    ins.trust(&layout, &stores, &cas)?;

    // The proxy environment for logins and for graphical sessions.
    let vars = layout.proxy_env();
    let env_sh: String =
        std::iter::once("# Outpost: send AI traffic through the local agent.\n".to_string())
            .chain(
                vars.iter()
                    .map(|(k, v)| format!("export {k}={}\n", sh_quote(v))),
            )
            .collect();
    ins.file(options.path(&layout.env_sh), env_sh.as_bytes(), 0o644)?;
    if let Some(environment_d) = &layout.environment_d {
        let environment: String = vars.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        ins.file(options.path(environment_d), environment.as_bytes(), 0o644)?;
    }
    let source = format!(
        "[ -r {0} ] && . {0} # Outpost proxy environment",
        sh_quote(&layout.env_sh.display().to_string())
    );
    for rc in &layout.shell_rcs {
        ins.line(options.path(rc), &source)?;
    }

    if !options.staged() {
        if layout.platform == Platform::Linux && layout.mode == Mode::System {
            service_user(&mut ins, &layout)?;
        }
        service::start(&mut ins, &layout)?;
    }

    ins.write_manifest(&manifest_path)?;
    if options.dry_run {
        println!("(dry run: nothing was changed)");
    } else {
        println!("installed; the manifest is {}", manifest_path.display());
        if layout.mode == Mode::User
            || !layout.shell_rcs.is_empty()
            || layout.environment_d.is_some()
        {
            println!(
                "new logins get the proxy environment; for this shell: . {}",
                layout.env_sh.display()
            );
        }
    }
    Ok(())
}

/// The CA certificates to trust: the current one (created if none) and
/// those still retiring from a rotation.
fn current_cas(state: &Path) -> anyhow::Result<Vec<CaCert>> {
    let hosts = crate::policy::intercept::InterceptList::embedded_default()
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .hosts()
        .to_vec();
    let ca = crate::tls::ca::LocalCa::load_or_create(
        state,
        &hosts,
        crate::config::KeyStoreChoice::File,
        crate::clock::Clock::system().now(),
    )?;
    let mut cas = vec![CaCert::from_pem(ca.cert_pem())?];
    for (_, retiring) in crate::tls::ca::retiring(state) {
        cas.push(CaCert::from_pem(&retiring.cert_pem)?);
    }
    Ok(cas)
}

/// Linux system mode: the service's own user, owning the state directory
/// (the CA key is 0600).
fn service_user(ins: &mut Installer, layout: &Layout) -> anyhow::Result<()> {
    let user = service::SERVICE_USER;
    let exists = std::process::Command::new("id")
        .args(["-u", user])
        .output()
        .is_ok_and(|o| o.status.success());
    let state = layout.state.display().to_string();
    if !exists {
        ins.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--home-dir",
                &state,
                "--shell",
                "/usr/sbin/nologin",
                user,
            ]
            .map(String::from)
            .to_vec(),
        )?;
        ins.manifest.user_created = true;
    }
    ins.run(
        ["chown", "-R", &format!("{user}:{user}"), &state]
            .map(String::from)
            .to_vec(),
    )
}

/// `outpost uninstall`: reverse what the manifest lists (`only_mode`: the
/// install of `options.mode` only; else the system's, then the user's).
pub fn uninstall(options: &Options, only_mode: bool) -> anyhow::Result<()> {
    if Platform::current() == Platform::Windows {
        let layout = layout_for(options)?;
        return windows_script(options, &layout, "Uninstall");
    }
    let modes = if only_mode {
        vec![options.mode]
    } else {
        vec![Mode::System, Mode::User]
    };
    let Some((manifest_path, manifest)) = find_manifest_of(options, &modes) else {
        println!(
            "nothing to do: no install manifest under {}",
            options.root.display()
        );
        return Ok(());
    };
    let layout = manifest.layout()?;
    if layout.mode == Mode::System && !options.staged() && !is_root() {
        bail!(
            "`outpost uninstall` changes system files: run it as root (sudo), or give --root DIR"
        );
    }
    let act = |what: &str, path: &Path| println!("{what} {}", path.display());
    if !options.staged() {
        service::stop(options, &layout);
    }
    let mut ins = Installer {
        options,
        manifest,
        save_to: None,
    };
    let cas: Vec<CaCert> = ins
        .manifest
        .cas
        .iter()
        .filter_map(|pem| CaCert::from_pem(pem).ok())
        .collect();
    for store in ins.manifest.trust.clone() {
        for ca in &cas {
            trust::remove(&mut ins, &store, ca);
        }
    }
    let manifest = ins.manifest;
    for (path, sha256) in &manifest.created_files {
        // A file someone changed since (an edited config) is theirs now.
        let changed = std::fs::read(path).is_ok_and(|b| hex(&Sha256::digest(&b)) != *sha256);
        if changed {
            println!("keep   {} (changed since install)", path.display());
            continue;
        }
        act("remove", path);
        if !options.dry_run {
            remove_file(path)?;
        }
    }
    for (path, backup) in &manifest.replaced_files {
        if !backup.exists() && path.exists() {
            // An uninstall cut short already put it back.
            continue;
        }
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
    for (path, added) in &manifest.appended {
        act("edit  ", path);
        if !options.dry_run {
            if let Ok(text) = std::fs::read_to_string(path) {
                if let Some(at) = text.rfind(added.as_str()) {
                    let kept = format!("{}{}", &text[..at], &text[at + added.len()..]);
                    std::fs::write(path, kept)
                        .with_context(|| format!("{}: cannot edit", path.display()))?;
                }
            }
        }
    }
    let mut ins = Installer {
        options,
        manifest,
        save_to: None,
    };
    for store in ins.manifest.trust.clone() {
        // The anchors are gone: the distribution's bundle is rebuilt.
        if let Err(e) = trust::refresh(&mut ins, &store, true) {
            println!("  ({e}; continuing)");
        }
    }
    let manifest = ins.manifest;
    if manifest.user_created && !options.staged() {
        let user = service::SERVICE_USER;
        println!("run    userdel {user}");
        if !options.dry_run {
            if let Err(e) = run_command(&["userdel".to_string(), user.to_string()]) {
                println!("  ({e}; continuing)");
            }
        }
    }
    let state = options.path(&layout.state);
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

/// Windows: the installer script does it (service, `%ProgramData%`, the
/// Root store, machine environment), with its own manifest.
fn windows_script(options: &Options, layout: &Layout, action: &str) -> anyhow::Result<()> {
    if options.staged() {
        bail!("--root: staging is for Linux and macOS; on Windows use installer\\windows\\outpost-service.ps1 from your packaging");
    }
    let script = std::env::temp_dir().join("outpost-service.ps1");
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let mut command = vec![
        "powershell.exe".to_string(),
        "-NoProfile".into(),
        "-ExecutionPolicy".into(),
        "Bypass".into(),
        "-File".into(),
        script.display().to_string(),
        "-Action".into(),
        action.to_string(),
        "-Binary".into(),
        exe.display().to_string(),
    ];
    if options.keep_state {
        command.push("-KeepState".into());
    }
    println!("run    {}", command.join(" "));
    if options.dry_run {
        println!(
            "(dry run: nothing was changed; the script's own manifest is in {})",
            layout.config_dir.display()
        );
        return Ok(());
    }
    std::fs::write(&script, WINDOWS_SCRIPT)
        .with_context(|| format!("{}: cannot write", script.display()))?;
    let result = run_command(&command);
    let _ = std::fs::remove_file(&script);
    result
}

/// A value safe inside POSIX `sh` single quotes.
fn sh_quote(value: &str) -> String {
    if value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/.,:_-=".contains(c))
    {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

/// `command` with no terminal input: a tool that would prompt (`certutil`
/// on a password-protected NSS database) fails instead of waiting.
fn command(command: &[String]) -> anyhow::Result<std::process::Command> {
    let (program, args) = command.split_first().context("empty command")?;
    let mut cmd = std::process::Command::new(program);
    cmd.args(args).stdin(std::process::Stdio::null());
    Ok(cmd)
}

fn run_command(command: &[String]) -> anyhow::Result<()> {
    let out = self::command(command)?
        .output()
        .with_context(|| format!("cannot run {}", command[0]))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let said = if stderr.trim().is_empty() {
            stdout
        } else {
            stderr
        };
        bail!(
            "`{}` failed ({}): {}",
            command.join(" "),
            out.status,
            said.trim()
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
fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

#[cfg(not(unix))]
fn euid() -> u32 {
    0
}

#[cfg(unix)]
fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[cfg(windows)]
fn is_root() -> bool {
    // `net session` succeeds only from an elevated prompt.
    std::process::Command::new("net")
        .arg("session")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_staged_path_stays_under_the_root() {
        let options = Options {
            root: PathBuf::from("/tmp/stage"),
            dry_run: false,
            keep_state: false,
            mode: Mode::System,
        };
        assert_eq!(
            options.path(Path::new("/etc/outpost/outpost.toml")),
            Path::new("/tmp/stage/etc/outpost/outpost.toml")
        );
        assert_eq!(
            options.path(Path::new("/etc/../../x")),
            Path::new("/tmp/stage/etc/x")
        );
        let live = Options {
            root: PathBuf::from("/"),
            ..options
        };
        assert_eq!(live.path(Path::new("/etc/x")), Path::new("/etc/x"));
    }

    #[test]
    fn shell_values_are_quoted_only_when_they_need_it() {
        assert_eq!(sh_quote("http://127.0.0.1:8877"), "http://127.0.0.1:8877");
        assert_eq!(
            sh_quote("/Library/Application Support/Outpost/env.sh"),
            "'/Library/Application Support/Outpost/env.sh'"
        );
        assert_eq!(sh_quote("a'b"), r"'a'\''b'");
    }
}
