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
//!
//! Sections besides the top level:
//! - `[upstream]`: how providers are dialled and trusted;
//! - `[identity]`: the user and device every audit record names (default:
//!   the OS user the agent runs as, and the host name);
//! - `[audit]`, `[audit.export]`: the audit log's retention, queue, checkpoint
//!   interval, and where (if anywhere) it is shipped over OTLP/HTTP.

use std::collections::{BTreeMap, HashMap};
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

/// `[websocket] mode`: what happens to WebSocket upgrades on intercepted hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WebSocketMode {
    /// Frames are parsed both ways and every call over the socket goes
    /// through policy, as over HTTPS (the default).
    #[default]
    Govern,
    /// Upgrades are refused with a clear error, so that clients that can
    /// fall back to HTTPS (Codex does) do.
    Refuse,
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
    /// Who and which device the agent acts for (named in audit records).
    pub identity: Identity,
    /// The audit log.
    pub audit: AuditConfig,
    /// WebSocket upgrades on intercepted hosts.
    pub websocket: WebSocketMode,
    /// Bounds on what a client can hold.
    pub limits: Limits,
    /// `[sync]`: where the managed policy bundle is pulled from; `None`
    /// when no `url` is set.
    pub sync: Option<SyncConfig>,
    /// `[gateway]`: the company's AI gateway, for providers policy routes
    /// there; `None` when no `url` is set.
    pub gateway: Option<GatewayConfig>,
}

/// `[gateway]`: where `route = "gateway"` calls go.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Base URL (`https://…`; `http://` only to this machine).
    pub url: http::Uri,
    /// Path prefix per provider name, put before the provider's own path;
    /// a provider not listed gets `/<name>`.
    pub prefixes: BTreeMap<String, String>,
    /// The header that carries the device's gateway credential;
    /// `Authorization` gets `Bearer <key>`, any other the key as is.
    pub header: http::HeaderName,
    /// Whether the client's provider credentials are removed (`strip`,
    /// default) or passed on (`keep`).
    pub keep_provider_keys: bool,
    /// When the gateway cannot be reached: refuse (default), or send the
    /// call to the provider directly.
    pub fallback_direct: bool,
}

/// `[sync]`: the signed managed-policy bundle.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// The bundle's URL (`https://…`, any static file server).
    pub url: http::Uri,
    /// Pinned signing keys (`ed25519:<base64>` lines); listing two rotates.
    pub public_keys: Vec<crate::sync::bundle::PublicKey>,
    /// Time between polls (a tenth of it is added as jitter).
    pub interval: Duration,
    /// A whole fetch, connect to last byte.
    pub timeout: Duration,
    /// A CA file trusted for the server besides the system roots.
    pub ca_file: Option<PathBuf>,
}

/// `[limits]`: what one local client may hold of the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Client connections open at once; at the cap the longest-idle one is
    /// closed to make room (or, with none idle, the new one is refused).
    pub max_connections: usize,
    /// A client connection with nothing in flight and no bytes either way
    /// for this long is closed (before its first request too).
    pub idle_timeout: Duration,
    /// The client's TLS handshake on an intercepted CONNECT.
    pub handshake_timeout: Duration,
    /// Reading a whole request body (408 after).
    pub body_timeout: Duration,
    /// An intercepted HTTP/2 connection silent this long is pinged, and
    /// closed if the ping is not answered within the same time.
    pub h2_keepalive: Duration,
    /// A governed WebSocket session with no message either way this long is
    /// closed (1001), its unfinished calls recorded as cut.
    pub socket_idle_timeout: Duration,
    /// Memory the request bodies held for inspection may take, all calls
    /// together (a body costs three times its length); calls beyond it wait
    /// (up to `body_timeout`) for room.
    pub max_buffered_bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 1024,
            idle_timeout: Duration::from_secs(120),
            handshake_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(120),
            h2_keepalive: Duration::from_secs(30),
            socket_idle_timeout: Duration::from_secs(3600),
            max_buffered_bytes: 256 * 1024 * 1024,
        }
    }
}

/// The user and device named in every audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `[identity] user`; default the OS user the agent runs as.
    pub user: String,
    /// `[identity] device`; default the host name.
    pub device: String,
}

impl Identity {
    /// The defaults: the account this process runs as (from the OS user
    /// database; else `$USER`, `$USERNAME`, `$LOGNAME`) and the host name
    /// (from the OS; else `$HOSTNAME`, `$COMPUTERNAME`,
    /// `/proc/sys/kernel/hostname`, `/etc/hostname`), each `"unknown"` when
    /// nothing says.
    pub fn from_os() -> Identity {
        Identity::from_sources(
            whoami::fallible::username().ok(),
            whoami::fallible::hostname().ok(),
            |name| std::env::var(name).ok(),
            |path| std::fs::read_to_string(path).ok(),
        )
    }

    /// [`Identity::from_os`] with the OS answers, the environment and file
    /// reads supplied.
    fn from_sources(
        os_user: Option<String>,
        os_host: Option<String>,
        env: impl Fn(&str) -> Option<String>,
        read: impl Fn(&Path) -> Option<String>,
    ) -> Identity {
        let present = |v: Option<String>| v.map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let user = present(os_user).or_else(|| {
            ["USER", "USERNAME", "LOGNAME"]
                .iter()
                .find_map(|name| present(env(name)))
        });
        let device = present(os_host)
            .or_else(|| {
                ["HOSTNAME", "COMPUTERNAME"]
                    .iter()
                    .find_map(|name| present(env(name)))
            })
            .or_else(|| {
                ["/proc/sys/kernel/hostname", "/etc/hostname"]
                    .iter()
                    .find_map(|path| present(read(Path::new(path))))
            });
        Identity {
            user: user.unwrap_or_else(|| UNKNOWN.to_string()),
            device: device.unwrap_or_else(|| UNKNOWN.to_string()),
        }
    }
}

/// What an identity field is when nothing names it.
const UNKNOWN: &str = "unknown";

/// `[audit]`: the local audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditConfig {
    /// `[audit] enabled`: false turns the audit log off entirely (for
    /// measurement and throwaway set-ups; no record is written).
    pub enabled: bool,
    /// Day files kept; 0 keeps them forever. Files not yet shipped are kept
    /// regardless.
    pub retention_days: u32,
    /// Records in flight or queued before new requests see a full backlog.
    pub queue_capacity: usize,
    /// A keyed checkpoint record after at most this many records (and at
    /// least every minute while records are written, and at shutdown).
    pub checkpoint_every: u64,
    /// `[audit.export]`, when an OTLP endpoint is set.
    pub export: Option<ExportConfig>,
    /// The agent's identity, for the records the writer makes itself
    /// (checkpoints, repairs). A copy of [`Config::identity`].
    pub identity: Identity,
}

/// Default `[audit] retention_days`.
pub const DEFAULT_AUDIT_RETENTION_DAYS: u32 = 90;
/// Default `[audit] queue_capacity`.
pub const DEFAULT_AUDIT_QUEUE_CAPACITY: usize = 8192;
/// Smallest `[audit] queue_capacity`.
pub const MIN_AUDIT_QUEUE_CAPACITY: usize = 16;
/// Largest `[audit] queue_capacity` (each slot may hold a request's record).
pub const MAX_AUDIT_QUEUE_CAPACITY: usize = 1 << 20;
/// Default `[audit] checkpoint_every`.
pub const DEFAULT_AUDIT_CHECKPOINT_EVERY: u64 = 1000;
/// Default `[audit.export] batch_size`.
pub const DEFAULT_EXPORT_BATCH_SIZE: usize = 512;
/// Largest `[audit.export] batch_size`.
pub const MAX_EXPORT_BATCH_SIZE: usize = 100_000;

impl Default for AuditConfig {
    /// The embedded defaults, with the OS identity.
    fn default() -> AuditConfig {
        AuditConfig {
            enabled: true,
            retention_days: DEFAULT_AUDIT_RETENTION_DAYS,
            queue_capacity: DEFAULT_AUDIT_QUEUE_CAPACITY,
            checkpoint_every: DEFAULT_AUDIT_CHECKPOINT_EVERY,
            export: None,
            identity: Identity::from_os(),
        }
    }
}

/// `[audit.export]`: shipping records to a collector as OTLP/HTTP logs.
#[derive(Clone, PartialEq)]
pub struct ExportConfig {
    /// `otlp_endpoint`, an `http` or `https` URL (base, e.g. `http://host:4318`).
    pub endpoint: http::Uri,
    /// Records per export request.
    pub batch_size: usize,
    /// Extra request headers (validated names and values), e.g. authorization.
    pub headers: Vec<(String, String)>,
}

impl std::fmt::Debug for ExportConfig {
    // Header values are often credentials: never in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("ExportConfig")
            .field("endpoint", &self.endpoint)
            .field("batch_size", &self.batch_size)
            .field("headers (values hidden)", &names)
            .finish()
    }
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
    /// Bound on silence in an upstream response body, between any two of
    /// its bytes (streams and whole bodies alike).
    pub body_idle_timeout: Duration,
    /// Destinations on this machine (loopback, link-local, the metadata
    /// service) that may still be reached: `host`, `host:port`, `ip` or
    /// `ip:port` (`danger_allow_destinations`).
    pub allow_local: Vec<String>,
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
    #[serde(default)]
    identity: RawIdentity,
    #[serde(default)]
    audit: RawAudit,
    #[serde(default)]
    websocket: RawWebSocket,
    #[serde(default)]
    limits: RawLimits,
    sync: Option<RawSync>,
    gateway: Option<RawGateway>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    url: Option<Spanned<String>>,
    #[serde(default)]
    prefixes: BTreeMap<String, String>,
    header: Option<Spanned<String>>,
    provider_keys: Option<Spanned<String>>,
    fallback: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSync {
    url: Option<Spanned<String>>,
    #[serde(default)]
    public_keys: Vec<Spanned<String>>,
    interval_secs: Option<Spanned<u64>>,
    timeout_secs: Option<Spanned<u64>>,
    ca_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_connections: Option<Spanned<usize>>,
    idle_timeout_secs: Option<Spanned<u64>>,
    handshake_timeout_secs: Option<Spanned<u64>>,
    body_timeout_secs: Option<Spanned<u64>>,
    h2_keepalive_secs: Option<Spanned<u64>>,
    socket_idle_timeout_secs: Option<Spanned<u64>>,
    max_buffered_bytes: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWebSocket {
    #[serde(default)]
    mode: WebSocketMode,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    user: Option<Spanned<String>>,
    device: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    enabled: Option<bool>,
    retention_days: Option<u32>,
    queue_capacity: Option<Spanned<usize>>,
    checkpoint_every: Option<Spanned<u64>>,
    export: Option<RawExport>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawExport {
    otlp_endpoint: Option<Spanned<String>>,
    batch_size: Option<Spanned<usize>>,
    #[serde(default)]
    headers: BTreeMap<String, Spanned<String>>,
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
    body_idle_timeout_secs: Option<Spanned<u64>>,
    #[serde(default)]
    danger_allow_destinations: Vec<String>,
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
    let body_idle_timeout = positive_secs(
        file,
        text,
        "upstream.body_idle_timeout_secs",
        up.body_idle_timeout_secs,
        300,
    )?;

    let identity = identity(file, text, raw.identity)?;
    let audit = audit(file, text, raw.audit, &identity)?;

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
            body_idle_timeout,
            allow_local: up
                .danger_allow_destinations
                .iter()
                .map(|d| d.trim().to_ascii_lowercase())
                .collect(),
        },
        identity,
        audit,
        websocket: raw.websocket.mode,
        limits: limits(file, text, raw.limits)?,
        sync: match raw.sync {
            Some(sync) => sync_config(file, text, base, sync)?,
            None => None,
        },
        gateway: match raw.gateway {
            Some(gateway) => gateway_config(file, text, gateway)?,
            None => None,
        },
    })
}

/// `[gateway]`; `None` without a `url`.
fn gateway_config(
    file: &Path,
    text: &str,
    raw: RawGateway,
) -> Result<Option<GatewayConfig>, Located> {
    let at = |span, message: String| Located::span(file, text, Some(span), message);
    let Some(url) = raw.url else {
        return Ok(None);
    };
    let uri: http::Uri = url.get_ref().trim_end_matches('/').parse().map_err(|_| {
        at(
            url.span(),
            format!("`gateway.url`: not a URL: {:?}", url.get_ref()),
        )
    })?;
    let host = uri.host().unwrap_or_default();
    let local = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match uri.scheme_str() {
        Some("https") if !host.is_empty() => {}
        Some("http") if local => {}
        _ => {
            return Err(at(
                url.span(),
                format!(
                    "`gateway.url`: expected https://… (http:// only to this machine: prompts \
                     and the device credential would cross the network in clear), got {:?}",
                    url.get_ref()
                ),
            ))
        }
    }
    if uri.query().is_some() {
        return Err(at(url.span(), "`gateway.url`: no query string".into()));
    }
    let header = match &raw.header {
        None => http::header::AUTHORIZATION,
        Some(h) => http::HeaderName::try_from(h.get_ref().trim()).map_err(|_| {
            at(
                h.span(),
                format!("`gateway.header`: not a header name: {:?}", h.get_ref()),
            )
        })?,
    };
    let choice = |value: &Option<Spanned<String>>, key: &str, options: [&str; 2]| match value {
        None => Ok(false),
        Some(v) if v.get_ref() == options[0] => Ok(false),
        Some(v) if v.get_ref() == options[1] => Ok(true),
        Some(v) => Err(at(
            v.span(),
            format!(
                "`gateway.{key}`: expected {:?} or {:?}, got {:?}",
                options[0],
                options[1],
                v.get_ref()
            ),
        )),
    };
    let keep_provider_keys = choice(&raw.provider_keys, "provider_keys", ["strip", "keep"])?;
    let fallback_direct = choice(&raw.fallback, "fallback", ["refuse", "direct"])?;
    let mut prefixes = BTreeMap::new();
    for (name, prefix) in raw.prefixes {
        let prefix = prefix.trim_end_matches('/');
        if !(prefix.is_empty() || prefix.starts_with('/')) || prefix.contains(['?', '#']) {
            return Err(Located::at(
                file,
                text,
                text.find(&format!("{name} =")).unwrap_or(0),
                format!("`gateway.prefixes.{name}`: a path prefix starts with /, got {prefix:?}"),
            ));
        }
        prefixes.insert(name, prefix.to_string());
    }
    Ok(Some(GatewayConfig {
        url: uri,
        prefixes,
        header,
        keep_provider_keys,
        fallback_direct,
    }))
}

/// `[sync]`; `None` without a `url`.
fn sync_config(
    file: &Path,
    text: &str,
    base: &Path,
    raw: RawSync,
) -> Result<Option<SyncConfig>, Located> {
    let at = |span, message: String| Located::span(file, text, Some(span), message);
    let Some(url) = raw.url else {
        if let Some(key) = raw.public_keys.first() {
            return Err(at(
                key.span(),
                "`sync.public_keys` without `sync.url`".into(),
            ));
        }
        return Ok(None);
    };
    let uri: http::Uri = url.get_ref().parse().map_err(|_| {
        at(
            url.span(),
            format!("`sync.url`: not a URL: {:?}", url.get_ref()),
        )
    })?;
    if uri.scheme_str() != Some("https") || uri.host().is_none_or(str::is_empty) {
        return Err(at(
            url.span(),
            format!(
                "`sync.url`: expected an https:// URL of the bundle, got {:?}",
                url.get_ref()
            ),
        ));
    }
    if raw.public_keys.is_empty() {
        return Err(at(
            url.span(),
            "`sync.public_keys`: list the bundle signing key (the line of `bundle.pub`); \
             a bundle is never used unverified"
                .into(),
        ));
    }
    let mut public_keys = Vec::new();
    for key in &raw.public_keys {
        let parsed = crate::sync::bundle::PublicKey::parse(key.get_ref())
            .map_err(|e| at(key.span(), format!("`sync.public_keys`: {e}")))?;
        public_keys.push(parsed);
    }
    let interval = positive_secs(file, text, "sync.interval_secs", raw.interval_secs, 60)?;
    let timeout = positive_secs(file, text, "sync.timeout_secs", raw.timeout_secs, 30)?;
    Ok(Some(SyncConfig {
        url: uri,
        public_keys,
        interval,
        timeout,
        ca_file: raw.ca_file.map(|p| absolutize(base, p)),
    }))
}

fn limits(file: &Path, text: &str, raw: RawLimits) -> Result<Limits, Located> {
    let defaults = Limits::default();
    let max_connections = match raw.max_connections {
        None => defaults.max_connections,
        Some(n) if *n.get_ref() >= 16 => *n.get_ref(),
        Some(n) => {
            return Err(Located::span(
                file,
                text,
                Some(n.span()),
                "`limits.max_connections`: must be at least 16".to_string(),
            ))
        }
    };
    let secs = |key: &str, value, default: Duration| {
        positive_secs(file, text, key, value, default.as_secs())
    };
    Ok(Limits {
        max_connections,
        idle_timeout: secs(
            "limits.idle_timeout_secs",
            raw.idle_timeout_secs,
            defaults.idle_timeout,
        )?,
        handshake_timeout: secs(
            "limits.handshake_timeout_secs",
            raw.handshake_timeout_secs,
            defaults.handshake_timeout,
        )?,
        body_timeout: secs(
            "limits.body_timeout_secs",
            raw.body_timeout_secs,
            defaults.body_timeout,
        )?,
        h2_keepalive: secs(
            "limits.h2_keepalive_secs",
            raw.h2_keepalive_secs,
            defaults.h2_keepalive,
        )?,
        socket_idle_timeout: secs(
            "limits.socket_idle_timeout_secs",
            raw.socket_idle_timeout_secs,
            defaults.socket_idle_timeout,
        )?,
        max_buffered_bytes: match raw.max_buffered_bytes {
            None => defaults.max_buffered_bytes,
            Some(n) if *n.get_ref() >= 1024 * 1024 => *n.get_ref(),
            Some(n) => {
                return Err(Located::span(
                    file,
                    text,
                    Some(n.span()),
                    "`limits.max_buffered_bytes`: must be at least 1048576 (1 MiB)".to_string(),
                ))
            }
        },
    })
}

fn identity(file: &Path, text: &str, raw: RawIdentity) -> Result<Identity, Located> {
    let defaults = Identity::from_os();
    let named = |key: &str, value: Option<Spanned<String>>, default: String| match value {
        None => Ok(default),
        Some(v) => {
            let trimmed = v.get_ref().trim();
            if trimmed.is_empty() || trimmed.chars().any(char::is_control) {
                Err(Located::span(
                    file,
                    text,
                    Some(v.span()),
                    format!(
                        "`identity.{key}`: must be a non-empty name without control characters"
                    ),
                ))
            } else {
                Ok(trimmed.to_string())
            }
        }
    };
    Ok(Identity {
        user: named("user", raw.user, defaults.user)?,
        device: named("device", raw.device, defaults.device)?,
    })
}

fn audit(
    file: &Path,
    text: &str,
    raw: RawAudit,
    identity: &Identity,
) -> Result<AuditConfig, Located> {
    let queue_capacity = match raw.queue_capacity {
        None => DEFAULT_AUDIT_QUEUE_CAPACITY,
        Some(v) => {
            let n = *v.get_ref();
            if !(MIN_AUDIT_QUEUE_CAPACITY..=MAX_AUDIT_QUEUE_CAPACITY).contains(&n) {
                return Err(Located::span(
                    file,
                    text,
                    Some(v.span()),
                    format!(
                        "`audit.queue_capacity`: must be between {MIN_AUDIT_QUEUE_CAPACITY} \
                         and {MAX_AUDIT_QUEUE_CAPACITY}, got {n}"
                    ),
                ));
            }
            n
        }
    };
    let checkpoint_every = match raw.checkpoint_every {
        None => DEFAULT_AUDIT_CHECKPOINT_EVERY,
        Some(v) if *v.get_ref() == 0 => {
            return Err(Located::span(
                file,
                text,
                Some(v.span()),
                "`audit.checkpoint_every`: must be at least 1 record",
            ))
        }
        Some(v) => *v.get_ref(),
    };
    let export = match raw.export {
        Some(export) => export_config(file, text, export)?,
        None => None,
    };
    Ok(AuditConfig {
        enabled: raw.enabled.unwrap_or(true),
        retention_days: raw.retention_days.unwrap_or(DEFAULT_AUDIT_RETENTION_DAYS),
        queue_capacity,
        checkpoint_every,
        export,
        identity: identity.clone(),
    })
}

/// `[audit.export]`; `None` when it sets no endpoint (shipping off).
fn export_config(file: &Path, text: &str, raw: RawExport) -> Result<Option<ExportConfig>, Located> {
    let Some(endpoint) = raw.otlp_endpoint else {
        return Ok(None);
    };
    let bad_endpoint = |why: &str| {
        Located::span(
            file,
            text,
            Some(endpoint.span()),
            format!(
                "`audit.export.otlp_endpoint`: {why}; expected a URL such as \
                 \"http://collector:4318\", got {:?}",
                endpoint.get_ref()
            ),
        )
    };
    let uri: http::Uri = endpoint
        .get_ref()
        .parse()
        .map_err(|_| bad_endpoint("not a URL"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(bad_endpoint("the scheme must be http or https")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad_endpoint("no host"));
    }
    let batch_size = match raw.batch_size {
        None => DEFAULT_EXPORT_BATCH_SIZE,
        Some(v) => {
            let n = *v.get_ref();
            if !(1..=MAX_EXPORT_BATCH_SIZE).contains(&n) {
                return Err(Located::span(
                    file,
                    text,
                    Some(v.span()),
                    format!(
                        "`audit.export.batch_size`: must be between 1 and {MAX_EXPORT_BATCH_SIZE}, got {n}"
                    ),
                ));
            }
            n
        }
    };
    let mut headers = Vec::with_capacity(raw.headers.len());
    for (name, value) in raw.headers {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(Located::span(
                file,
                text,
                Some(value.span()),
                format!("`audit.export.headers`: {name:?} is not a valid HTTP header name"),
            ));
        }
        if http::HeaderValue::from_str(value.get_ref()).is_err() {
            // Never echo the value: it is usually a credential.
            return Err(Located::span(
                file,
                text,
                Some(value.span()),
                format!(
                    "`audit.export.headers.\"{name}\"`: not a valid HTTP header value \
                     (control characters or non-ASCII)"
                ),
            ));
        }
        headers.push((name.to_ascii_lowercase(), value.into_inner()));
    }
    Ok(Some(ExportConfig {
        endpoint: uri,
        batch_size,
        headers,
    }))
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
    fn identity_defaults_follow_the_lookup_order() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let files = |name: &'static str| {
            move |path: &Path| (path == Path::new("/etc/hostname")).then(|| format!("{name}\n"))
        };
        let id = Identity::from_sources(
            Some("svc-outpost".into()),
            Some("host-a".into()),
            env(&[("USER", "bob")]),
            files("ignored"),
        );
        assert_eq!(id.user, "svc-outpost", "the OS account comes first");
        assert_eq!(id.device, "host-a");
        let id = Identity::from_sources(
            None,
            None,
            env(&[
                ("USERNAME", "bob"),
                ("LOGNAME", "carol"),
                ("USER", " "),
                ("COMPUTERNAME", "WIN-1"),
            ]),
            files("ignored"),
        );
        assert_eq!(id.user, "bob");
        assert_eq!(id.device, "WIN-1");
        let id = Identity::from_sources(None, None, env(&[("LOGNAME", "carol")]), files(" box-7 "));
        assert_eq!(id.user, "carol");
        assert_eq!(id.device, "box-7");
        let id = Identity::from_sources(None, Some(" ".into()), env(&[]), |_: &Path| None);
        assert_eq!(id.user, "unknown");
        assert_eq!(id.device, "unknown");
    }

    #[test]
    fn identity_and_audit_sections_parse() {
        let cfg = parse(
            r#"
[identity]
user = " alice@example.com "
device = "laptop-42"
[audit]
retention_days = 0
queue_capacity = 16
checkpoint_every = 10
[audit.export]
otlp_endpoint = "https://collector.example:4318"
batch_size = 100
headers = { "Authorization" = "Bearer s3cret", "x-tenant" = "acme" }
"#,
        )
        .unwrap();
        assert_eq!(cfg.identity.user, "alice@example.com");
        assert_eq!(cfg.identity.device, "laptop-42");
        assert_eq!(cfg.audit.retention_days, 0);
        assert_eq!(cfg.audit.queue_capacity, 16);
        assert_eq!(cfg.audit.checkpoint_every, 10);
        assert_eq!(cfg.audit.identity, cfg.identity);
        let export = cfg.audit.export.as_ref().unwrap();
        assert_eq!(
            export.endpoint.to_string(),
            "https://collector.example:4318/"
        );
        assert_eq!(export.batch_size, 100);
        assert_eq!(
            export.headers,
            vec![
                ("authorization".to_string(), "Bearer s3cret".to_string()),
                ("x-tenant".to_string(), "acme".to_string())
            ]
        );
        assert!(!format!("{cfg:?}").contains("s3cret"));
    }

    #[test]
    fn audit_defaults() {
        let cfg = parse("").unwrap();
        assert_eq!(cfg.audit.retention_days, 90);
        assert_eq!(cfg.audit.queue_capacity, 8192);
        assert_eq!(cfg.audit.checkpoint_every, 1000);
        assert!(cfg.audit.export.is_none());
        assert!(!cfg.identity.user.is_empty());
        assert!(!cfg.identity.device.is_empty());
        let cfg = parse("[audit.export]\nbatch_size = 5\n").unwrap();
        assert!(cfg.audit.export.is_none(), "no endpoint, no shipping");
    }

    #[test]
    fn bad_audit_settings_are_located() {
        let cases = [
            ("[audit]\nqueue_capacity = 15\n", ":2:", "audit.queue_capacity"),
            ("[audit]\ncheckpoint_every = 0\n", ":2:", "audit.checkpoint_every"),
            ("[audit]\nretention_days = -1\n", ":2:", "retention_days"),
            ("[audit]\nrotate = 1\n", ":2:", "rotate"),
            ("[audit.export]\notlp_endpoint = \"ftp://x:1\"\n", ":2:", "http or https"),
            ("[audit.export]\notlp_endpoint = \"not a url\"\n", ":2:", "otlp_endpoint"),
            ("[audit.export]\notlp_endpoint = \"http://c:4318\"\nbatch_size = 0\n", ":3:", "batch_size"),
            ("[audit.export]\notlp_endpoint = \"http://c:4318\"\nheaders = { \"bad name\" = \"v\" }\n", ":3:", "header name"),
            ("[identity]\nuser = \"  \"\n", ":2:", "identity.user"),
        ];
        for (text, at, needle) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(at), "{text:?}: {err}");
            assert!(err.contains(needle), "{text:?}: {err}");
        }
        let err = parse("[audit.export]\notlp_endpoint = \"http://c:4318\"\nheaders = { a = \"sec\\u0001ret\" }\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("header value") && !err.contains("sec"),
            "{err}"
        );
    }

    #[test]
    fn zero_timeout_is_refused() {
        let err = parse("[upstream]\nconnect_timeout_secs = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("connect_timeout_secs"), "got: {err}");
    }
}
