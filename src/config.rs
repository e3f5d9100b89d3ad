//! The agent's configuration: raw TOML in, a validated [`Config`] out.
//!
//! Lookup order: `--config FILE`, else `$OUTPOST_CONFIG`, else
//! `<platform config dir>/outpost.toml`; when none of them names an existing
//! file the agent runs on embedded defaults. A file that exists but is wrong
//! is an error naming the file, line, column and key, reported before any
//! port is bound.
//!
//! Everything after this module takes [`Config`]: addresses are parsed,
//! loopback is enforced unless `danger_allow_non_loopback` says otherwise,
//! durations are durations.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::located::{parse_toml, Located};

/// Default proxy listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8877";
/// Default admin listen address.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8878";
/// Environment variable naming the config file.
pub const CONFIG_ENV: &str = "OUTPOST_CONFIG";

/// Why a configuration could not be loaded. All of these are exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but is not a valid configuration.
    #[error("{0}")]
    Invalid(#[from] Located),
    /// The named file could not be read.
    #[error("{path}: cannot read config: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No file was given and the platform has no home directory to derive
    /// `state_dir`/`policy_dir` from.
    #[error("no home directory to derive {0} from; set it in the config file")]
    NoDefaultDir(&'static str),
}

/// Where the CA private key is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStoreChoice {
    /// The OS keyring where one is usable for a service, else a 0600 file.
    Auto,
    /// Always a file readable only by the owner.
    File,
    /// The OS keyring; an error where none is usable.
    Keyring,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from; `None` for embedded defaults.
    pub source: Option<PathBuf>,
    /// Proxy listen address (loopback unless opted out).
    pub listen: SocketAddr,
    /// Admin listen address (loopback unless opted out).
    pub admin_listen: SocketAddr,
    /// CA, logs, ledger, audit, managed policy.
    pub state_dir: PathBuf,
    /// Local policy files (`*.toml`).
    pub policy_dir: PathBuf,
    /// `tracing` filter directive used when `RUST_LOG` is unset.
    pub log_level: String,
    /// Daily log files kept under `state_dir/logs`.
    pub log_retention_days: usize,
    /// How long in-flight requests may run after SIGTERM before the agent exits.
    pub shutdown_grace: Duration,
    /// Where the CA key lives.
    pub ca_key_store: KeyStoreChoice,
    /// How Outpost reaches providers.
    pub upstream: UpstreamConfig,
}

/// How Outpost dials and trusts upstream hosts.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// PEM files whose certificates are trusted in addition to the system roots.
    pub extra_ca_files: Vec<PathBuf>,
    /// Host → address overrides (like curl `--resolve`); the certificate is
    /// still verified under the host name.
    pub resolve: HashMap<String, SocketAddr>,
    /// TCP connect + TLS handshake bound.
    pub connect_timeout: Duration,
    /// Pooled idle connections are closed after this long.
    pub idle_timeout: Duration,
    /// Bound on waiting for the upstream's response headers (504 after).
    pub response_timeout: Duration,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<Spanned<String>>,
    admin_listen: Option<Spanned<String>>,
    state_dir: Option<PathBuf>,
    policy_dir: Option<PathBuf>,
    #[serde(default)]
    danger_allow_non_loopback: bool,
    log_level: Option<String>,
    log_retention_days: Option<usize>,
    shutdown_grace_secs: Option<u64>,
    ca_key_store: Option<KeyStoreChoice>,
    #[serde(default)]
    upstream: RawUpstream,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    #[serde(default)]
    extra_ca_files: Vec<PathBuf>,
    #[serde(default)]
    resolve: HashMap<String, Spanned<String>>,
    connect_timeout_secs: Option<Spanned<u64>>,
    idle_timeout_secs: Option<u64>,
    response_timeout_secs: Option<Spanned<u64>>,
}

/// Which file to read, following the lookup order; `None` means defaults.
pub fn locate(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return Some(path.to_path_buf());
    }
    if let Some(path) = std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let default = project_dirs()?.config_dir().join("outpost.toml");
    default.exists().then_some(default)
}

/// Load the configuration following the lookup order.
///
/// An explicitly named file (`--config` or `$OUTPOST_CONFIG`) must exist.
pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
    match locate(explicit) {
        Some(path) => {
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            from_toml(&path, &text)
        }
        None => from_raw(None, "", RawConfig::default()),
    }
}

/// Parse and validate `text` as if read from `path`.
pub fn from_toml(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig = parse_toml(path, text)?;
    from_raw(Some(path), text, raw)
}

fn from_raw(path: Option<&Path>, text: &str, raw: RawConfig) -> Result<Config, ConfigError> {
    let file = path.unwrap_or(Path::new("<embedded defaults>"));
    let base = path
        .and_then(Path::parent)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let allow_public = raw.danger_allow_non_loopback;
    let listen = socket_addr(
        file,
        text,
        "listen",
        raw.listen.as_ref(),
        DEFAULT_LISTEN,
        allow_public,
    )?;
    let admin_listen = socket_addr(
        file,
        text,
        "admin_listen",
        raw.admin_listen.as_ref(),
        DEFAULT_ADMIN_LISTEN,
        allow_public,
    )?;
    let dirs = project_dirs();
    let state_dir = match raw.state_dir {
        Some(dir) => absolutize(base, dir),
        None => dirs
            .as_ref()
            .ok_or(ConfigError::NoDefaultDir("state_dir"))?
            .data_local_dir()
            .to_path_buf(),
    };
    let policy_dir = match raw.policy_dir {
        Some(dir) => absolutize(base, dir),
        None => dirs
            .as_ref()
            .ok_or(ConfigError::NoDefaultDir("policy_dir"))?
            .config_dir()
            .join("policy"),
    };

    let up = raw.upstream;
    let mut resolve = HashMap::new();
    for (host, addr) in up.resolve {
        let parsed = addr.get_ref().parse::<SocketAddr>().map_err(|_| {
            Located::span(
                file,
                text,
                Some(addr.span()),
                format!(
                    "`upstream.resolve.\"{host}\"`: expected \"ip:port\", got {:?}",
                    addr.get_ref()
                ),
            )
        })?;
        resolve.insert(normalize_host(&host), parsed);
    }
    let connect_timeout = positive_secs(
        file,
        text,
        "upstream.connect_timeout_secs",
        up.connect_timeout_secs,
        10,
    )?;
    let response_timeout = positive_secs(
        file,
        text,
        "upstream.response_timeout_secs",
        up.response_timeout_secs,
        600,
    )?;

    Ok(Config {
        source: path.map(Path::to_path_buf),
        listen,
        admin_listen,
        state_dir,
        policy_dir,
        log_level: raw.log_level.unwrap_or_else(|| "info".to_string()),
        log_retention_days: raw.log_retention_days.unwrap_or(14),
        shutdown_grace: Duration::from_secs(raw.shutdown_grace_secs.unwrap_or(10)),
        ca_key_store: raw.ca_key_store.unwrap_or(KeyStoreChoice::Auto),
        upstream: UpstreamConfig {
            extra_ca_files: up
                .extra_ca_files
                .into_iter()
                .map(|p| absolutize(base, p))
                .collect(),
            resolve,
            connect_timeout,
            idle_timeout: Duration::from_secs(up.idle_timeout_secs.unwrap_or(90)),
            response_timeout,
        },
    })
}

/// Lower-case a host name and drop a trailing dot, so lookups agree.
pub fn normalize_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

fn project_dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "outpost")
}

/// Relative paths in a config file are relative to the file's directory.
fn absolutize(base: &Path, path: PathBuf) -> PathBuf {
    let joined = if path.is_absolute() {
        path
    } else {
        base.join(path)
    };
    std::path::absolute(&joined).unwrap_or(joined)
}

fn socket_addr(
    file: &Path,
    text: &str,
    key: &str,
    value: Option<&Spanned<String>>,
    default: &str,
    allow_public: bool,
) -> Result<SocketAddr, Located> {
    let (raw, span) = match value {
        Some(v) => (v.get_ref().as_str(), Some(v.span())),
        None => (default, None),
    };
    let addr: SocketAddr = raw.parse().map_err(|_| {
        Located::span(
            file,
            text,
            span.clone(),
            format!("`{key}`: expected \"ip:port\" such as \"{default}\", got {raw:?}"),
        )
    })?;
    if !addr.ip().is_loopback() && !allow_public {
        return Err(Located::span(
            file,
            text,
            span,
            format!(
                "`{key}`: {addr} is not a loopback address; anyone who can reach it could use \
                 this machine's identity and CA. Set `danger_allow_non_loopback = true` if you mean it"
            ),
        ));
    }
    Ok(addr)
}

fn positive_secs(
    file: &Path,
    text: &str,
    key: &str,
    value: Option<Spanned<u64>>,
    default: u64,
) -> Result<Duration, Located> {
    match value {
        None => Ok(Duration::from_secs(default)),
        Some(v) if *v.get_ref() == 0 => Err(Located::span(
            file,
            text,
            Some(v.span()),
            format!("`{key}`: must be at least 1 second"),
        )),
        Some(v) => Ok(Duration::from_secs(*v.get_ref())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        from_toml(Path::new("/etc/outpost/outpost.toml"), text)
    }

    #[test]
    fn empty_file_gives_defaults() {
        let cfg = parse("").unwrap();
        assert_eq!(cfg.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(cfg.admin_listen.to_string(), DEFAULT_ADMIN_LISTEN);
        assert_eq!(cfg.upstream.connect_timeout, Duration::from_secs(10));
        assert_eq!(cfg.ca_key_store, KeyStoreChoice::Auto);
    }

    #[test]
    fn full_file_parses() {
        let cfg = parse(
            r#"
listen = "127.0.0.1:0"
admin_listen = "[::1]:9000"
state_dir = "state"
policy_dir = "/srv/policy"
ca_key_store = "file"
[upstream]
extra_ca_files = ["ca.pem"]
connect_timeout_secs = 3
[upstream.resolve]
"API.OpenAI.com." = "127.0.0.1:9443"
"#,
        )
        .unwrap();
        assert_eq!(cfg.state_dir, PathBuf::from("/etc/outpost/state"));
        assert_eq!(cfg.policy_dir, PathBuf::from("/srv/policy"));
        assert_eq!(
            cfg.upstream.extra_ca_files,
            vec![PathBuf::from("/etc/outpost/ca.pem")]
        );
        assert_eq!(
            cfg.upstream.resolve["api.openai.com"].to_string(),
            "127.0.0.1:9443"
        );
        assert_eq!(cfg.upstream.connect_timeout, Duration::from_secs(3));
    }

    #[test]
    fn unknown_key_is_located() {
        let err = parse("listen = \"127.0.0.1:1\"\n[upstream]\nconect_timeout_secs = 3\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("/etc/outpost/outpost.toml:3:1:"),
            "got: {err}"
        );
        assert!(err.contains("conect_timeout_secs"), "got: {err}");
    }

    #[test]
    fn bad_address_is_located_and_names_key() {
        let err = parse("\n\nlisten = \"nope\"\n").unwrap_err().to_string();
        assert!(err.contains(":3:10:"), "got: {err}");
        assert!(err.contains("`listen`"), "got: {err}");
    }

    #[test]
    fn public_listen_needs_opt_in() {
        let err = parse("admin_listen = \"0.0.0.0:8878\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("danger_allow_non_loopback"), "got: {err}");
        parse("admin_listen = \"0.0.0.0:8878\"\ndanger_allow_non_loopback = true\n").unwrap();
    }

    #[test]
    fn bad_resolve_value_names_host() {
        let err = parse("[upstream.resolve]\n\"api.openai.com\" = \"localhost\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains(":2:"), "got: {err}");
        assert!(err.contains("api.openai.com"), "got: {err}");
    }

    #[test]
    fn zero_timeout_is_refused() {
        let err = parse("[upstream]\nconnect_timeout_secs = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("connect_timeout_secs"), "got: {err}");
    }
}
