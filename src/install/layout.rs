//! Where an install puts things, per platform and mode.
//!
//! Every path here is the *live* path (what the unit, the config and the
//! environment name); [`super::Options::path`] puts it under `--root`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// A system service for every user, or a service of the current user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `--system`: root, a system service, the system trust store.
    System,
    /// `--user`: this user's service manager, home directory and stores.
    User,
}

/// The operating system an install targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// systemd, `/etc`, the distribution's trust store.
    Linux,
    /// launchd, `/Library`, the keychain.
    Macos,
    /// The service control manager, `%ProgramData%`, the Root store.
    Windows,
}

impl Platform {
    /// The platform this binary was built for.
    pub fn current() -> Platform {
        if cfg!(target_os = "macos") {
            Platform::Macos
        } else if cfg!(windows) {
            Platform::Windows
        } else {
            Platform::Linux
        }
    }
}

/// The launchd label (and plist name) of the agent.
pub const LAUNCHD_LABEL: &str = "com.outpost.agent";

/// Every path one install uses.
#[derive(Debug, Clone)]
pub struct Layout {
    /// System or user.
    pub mode: Mode,
    /// The platform.
    pub platform: Platform,
    /// The installed binary.
    pub bin: PathBuf,
    /// Config and policy live here; so do the CA files for clients.
    pub config_dir: PathBuf,
    /// `outpost.toml`.
    pub config: PathBuf,
    /// The local policy directory.
    pub policy: PathBuf,
    /// The agent's state (CA key, audit log, ledger).
    pub state: PathBuf,
    /// Service logs (launchd's stdout/stderr; the agent also logs under state).
    pub logs: PathBuf,
    /// The install manifest.
    pub manifest: PathBuf,
    /// Backups of files install replaced.
    pub backups: PathBuf,
    /// The Outpost CA certificates only (`NODE_EXTRA_CA_CERTS`).
    pub ca_pem: PathBuf,
    /// System roots plus the Outpost CA (`SSL_CERT_FILE`, …).
    pub bundle: PathBuf,
    /// One PEM per installed CA, the source for every trust-store command.
    pub ca_certs: PathBuf,
    /// The service definition.
    pub service: PathBuf,
    /// The shell snippet that sets the proxy environment.
    pub env_sh: PathBuf,
    /// systemd's `environment.d` file (Linux), for graphical sessions.
    pub environment_d: Option<PathBuf>,
    /// Shell start-up files that get a marked line sourcing `env_sh`
    /// (where there is no `profile.d` to drop a file into).
    pub shell_rcs: Vec<PathBuf>,
    /// The home directory (user mode).
    pub home: Option<PathBuf>,
}

impl Layout {
    /// The layout for `mode` on `platform`. `home` is the user's home
    /// directory (user mode, and per-user trust stores).
    pub fn new(platform: Platform, mode: Mode, home: Option<&Path>) -> anyhow::Result<Layout> {
        let home = home.map(Path::to_path_buf);
        let layout = match (platform, mode) {
            (Platform::Linux, Mode::System) => {
                let config_dir = PathBuf::from("/etc/outpost");
                let state = PathBuf::from("/var/lib/outpost");
                Layout {
                    bin: PathBuf::from("/usr/local/bin/outpost"),
                    logs: state.join("logs"),
                    service: PathBuf::from("/etc/systemd/system/outpost.service"),
                    env_sh: PathBuf::from("/etc/profile.d/outpost.sh"),
                    environment_d: Some(PathBuf::from("/etc/environment.d/90-outpost.conf")),
                    shell_rcs: Vec::new(),
                    ..Layout::common(platform, mode, config_dir, state, home)
                }
            }
            (Platform::Linux, Mode::User) => {
                let home = home.context("user mode needs a home directory ($HOME)")?;
                let config_dir = home.join(".config/outpost");
                let state = home.join(".local/share/outpost");
                Layout {
                    bin: home.join(".local/bin/outpost"),
                    logs: state.join("logs"),
                    service: home.join(".config/systemd/user/outpost.service"),
                    env_sh: config_dir.join("env.sh"),
                    environment_d: Some(home.join(".config/environment.d/90-outpost.conf")),
                    shell_rcs: vec![home.join(".profile")],
                    ..Layout::common(platform, mode, config_dir, state, Some(home.clone()))
                }
            }
            (Platform::Macos, Mode::System) => {
                let config_dir = PathBuf::from("/Library/Application Support/Outpost");
                let state = config_dir.join("state");
                Layout {
                    bin: PathBuf::from("/usr/local/bin/outpost"),
                    logs: PathBuf::from("/Library/Logs/Outpost"),
                    service: PathBuf::from(format!("/Library/LaunchDaemons/{LAUNCHD_LABEL}.plist")),
                    env_sh: config_dir.join("env.sh"),
                    environment_d: None,
                    // zsh (the default shell) and bash/sh logins.
                    shell_rcs: vec![PathBuf::from("/etc/zshenv"), PathBuf::from("/etc/profile")],
                    ..Layout::common(platform, mode, config_dir, state, home)
                }
            }
            (Platform::Macos, Mode::User) => {
                let home = home.context("user mode needs a home directory ($HOME)")?;
                let config_dir = home.join("Library/Application Support/Outpost");
                let state = config_dir.join("state");
                Layout {
                    bin: config_dir.join("bin/outpost"),
                    logs: home.join("Library/Logs/Outpost"),
                    service: home.join(format!("Library/LaunchAgents/{LAUNCHD_LABEL}.plist")),
                    env_sh: config_dir.join("env.sh"),
                    environment_d: None,
                    shell_rcs: vec![home.join(".zshenv"), home.join(".profile")],
                    ..Layout::common(platform, mode, config_dir, state, Some(home.clone()))
                }
            }
            (Platform::Windows, Mode::System) => {
                let program_data =
                    std::env::var_os("ProgramData").unwrap_or_else(|| "C:\\ProgramData".into());
                let program_files =
                    std::env::var_os("ProgramFiles").unwrap_or_else(|| "C:\\Program Files".into());
                let config_dir = PathBuf::from(program_data).join("Outpost");
                let state = config_dir.join("state");
                Layout {
                    bin: PathBuf::from(program_files)
                        .join("Outpost")
                        .join("outpost.exe"),
                    logs: state.join("logs"),
                    service: config_dir.join("outpost-service.ps1"),
                    env_sh: config_dir.join("env.ps1"),
                    environment_d: None,
                    shell_rcs: Vec::new(),
                    ..Layout::common(platform, mode, config_dir, state, home)
                }
            }
            (Platform::Windows, Mode::User) => anyhow::bail!(
                "`outpost install --user` is for Linux and macOS; on Windows the agent is a \
                 system service (run `outpost install` as Administrator)"
            ),
        };
        Ok(layout)
    }

    /// The paths every platform derives the same way from its config and
    /// state directories.
    fn common(
        platform: Platform,
        mode: Mode,
        config_dir: PathBuf,
        state: PathBuf,
        home: Option<PathBuf>,
    ) -> Layout {
        Layout {
            mode,
            platform,
            bin: PathBuf::new(),
            config: config_dir.join("outpost.toml"),
            policy: config_dir.join("policy"),
            manifest: config_dir.join("install-manifest.json"),
            backups: config_dir.join("install-backups"),
            ca_pem: config_dir.join("outpost-ca.pem"),
            bundle: config_dir.join("ca-bundle.pem"),
            ca_certs: config_dir.join("ca"),
            logs: PathBuf::new(),
            service: PathBuf::new(),
            env_sh: PathBuf::new(),
            environment_d: None,
            shell_rcs: Vec::new(),
            state,
            config_dir,
            home,
        }
    }

    /// The PEM file of one installed CA (by its short fingerprint).
    pub fn ca_cert(&self, short: &str) -> PathBuf {
        self.ca_certs.join(format!("outpost-ca-{short}.pem"))
    }

    /// The proxy environment every login of this install gets.
    pub fn proxy_env(&self) -> Vec<(&'static str, String)> {
        let proxy = format!("http://{}", crate::config::DEFAULT_LISTEN);
        let no_proxy =
            "localhost,127.0.0.1,::1,.local,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16".to_string();
        let bundle = self.bundle.display().to_string();
        let mut vars = vec![
            ("HTTPS_PROXY", proxy.clone()),
            ("https_proxy", proxy),
            ("NO_PROXY", no_proxy.clone()),
            ("no_proxy", no_proxy),
        ];
        // Windows clients use the Root store; elsewhere OpenSSL-, Python-
        // and curl-based tools read a bundle file.
        if self.platform != Platform::Windows {
            vars.extend([
                ("SSL_CERT_FILE", bundle.clone()),
                ("REQUESTS_CA_BUNDLE", bundle.clone()),
                ("CURL_CA_BUNDLE", bundle),
            ]);
        }
        vars.extend([
            ("NODE_EXTRA_CA_CERTS", self.ca_pem.display().to_string()),
            // Node ≥ 24 honours HTTPS_PROXY for its built-in fetch.
            ("NODE_USE_ENV_PROXY", "1".to_string()),
        ]);
        vars
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_platform_and_mode_keeps_its_files_apart_and_absolute() {
        let home = Path::new("/home/ana");
        for (platform, mode) in [
            (Platform::Linux, Mode::System),
            (Platform::Linux, Mode::User),
            (Platform::Macos, Mode::System),
            (Platform::Macos, Mode::User),
            (Platform::Windows, Mode::System),
        ] {
            let l = Layout::new(platform, mode, Some(home)).unwrap();
            let paths = [
                &l.bin,
                &l.config,
                &l.policy,
                &l.state,
                &l.manifest,
                &l.bundle,
                &l.ca_pem,
                &l.service,
                &l.env_sh,
            ];
            for (i, a) in paths.iter().enumerate() {
                assert!(
                    a.is_absolute() || platform == Platform::Windows,
                    "{platform:?} {mode:?}: {}",
                    a.display()
                );
                for b in &paths[i + 1..] {
                    assert_ne!(a, b, "{platform:?} {mode:?}");
                }
            }
            if mode == Mode::User {
                for p in paths {
                    assert!(p.starts_with(home), "{platform:?}: {}", p.display());
                }
            }
        }
        assert!(Layout::new(Platform::Windows, Mode::User, Some(home)).is_err());
        assert!(Layout::new(Platform::Linux, Mode::User, None).is_err());
    }

    #[test]
    fn the_environment_points_at_the_install_s_own_bundle_and_ca() {
        let l = Layout::new(Platform::Linux, Mode::System, None).unwrap();
        let env: std::collections::HashMap<_, _> = l.proxy_env().into_iter().collect();
        assert_eq!(env["HTTPS_PROXY"], "http://127.0.0.1:8877");
        assert_eq!(env["SSL_CERT_FILE"], "/etc/outpost/ca-bundle.pem");
        assert_eq!(env["NODE_EXTRA_CA_CERTS"], "/etc/outpost/outpost-ca.pem");
        let w = Layout::new(Platform::Windows, Mode::System, None).unwrap();
        assert!(!w.proxy_env().iter().any(|(k, _)| *k == "SSL_CERT_FILE"));
    }
}
