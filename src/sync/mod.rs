//! The managed layer: a signed policy bundle pulled from any static file
//! server (nginx, an object store, a CDN), checked, kept on disk, and
//! merged between the baseline and the local files.
//!
//! Each poll sends `If-None-Match` / `If-Modified-Since` from the last
//! answer; a `304` is nothing to do. A new bundle is put in force only if
//! its signature is by a pinned key ([`bundle::verify`]), its `version` is
//! higher than the one in force (a replayed old bundle is refused), it has
//! not expired (a server frozen on an old bundle is refused), and the
//! policy it makes with the local files is valid. Then it replaces
//! `state_dir/managed/bundle.json` atomically and the policy reloads.
//! Anything else (the server unreachable, a bad signature, a lower
//! version, an expired or cut-off download, an invalid policy) keeps the
//! last good bundle, is audited and shown in `/status` with its reason,
//! and is retried with backoff. The stored bundle is verified again on
//! every load, so it survives restarts but not tampering.

pub mod bundle;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::audit::record::{AuditEvent, Decision, Kind};
use crate::audit::writer::AuditLog;
use crate::clock::Clock;
use crate::config::{Config, SyncConfig};
use crate::located::Located;
use crate::policy::load::{self, Layer, LayerKind};
use crate::policy::watch::{self, Loader, PolicyHandle};
use crate::upstream::{error_chain, Connector};

use self::bundle::{Payload, Verified, MAX_BUNDLE_BYTES};

/// The bundle in force, as fetched (`state_dir/managed/`).
const STORED: &str = "bundle.json";
/// The validators of the last answer, for conditional requests.
const VALIDATORS: &str = "validators.json";
/// What status says before any bundle is in force.
const NEVER_SYNCED: &str = "never synced: the baseline and local files only";
/// One poll in this many ignores the validators.
const FULL_FETCH_EVERY: u64 = 10;
/// First retry after a failure; doubled up to the poll interval.
const FIRST_RETRY: Duration = Duration::from_secs(2);

/// Where the managed bundle is kept.
pub fn managed_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("managed")
}

/// A bundle's provider table entries: the file name in a policy
/// directory `outpost bundle build` reads them from.
pub const PROVIDERS_FILE: &str = "providers.toml";

/// The stored bundle's payload, verified with `config`'s pinned keys;
/// `None` when there is no bundle or no `[sync]`. A stored bundle that no
/// longer verifies is an error naming the file.
pub fn stored_payload(config: &Config) -> Result<Option<Payload>, Located> {
    Ok(stored(config)?.map(|verified| verified.payload))
}

/// The provider table a bundle makes: the shipped one plus its entries.
pub fn providers_of(
    payload: &Payload,
) -> Result<Option<crate::provider::ProviderTable>, crate::provider::ProviderTableError> {
    payload
        .providers
        .as_ref()
        .map(|text| {
            let file = PathBuf::from(format!("managed v{}/{PROVIDERS_FILE}", payload.version));
            crate::provider::ProviderTable::embedded_with(&file, text)
        })
        .transpose()
}

/// The stored bundle, verified.
fn stored(config: &Config) -> Result<Option<Verified>, Located> {
    let Some(sync) = &config.sync else {
        return Ok(None);
    };
    let path = managed_dir(&config.state_dir).join(STORED);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(file_error(&path, format!("cannot read: {e}"))),
    };
    bundle::verify(&bytes, &sync.public_keys)
        .map(Some)
        .map_err(|e| {
            file_error(
                &path,
                format!("the stored managed bundle is not usable: {e}"),
            )
        })
}

fn file_error(path: &Path, message: String) -> Located {
    Located {
        file: path.to_path_buf(),
        line: 1,
        col: 1,
        message,
    }
}

/// A bundle's policy files as managed layers, named `managed vN/<file>`.
pub fn layers_of(payload: &Payload) -> Vec<Layer> {
    let label = format!("managed v{}", payload.version);
    let mut files = payload.files.clone();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    files
        .into_iter()
        .map(|file| Layer {
            path: PathBuf::from(format!("{label}/{}", file.name)),
            text: file.text,
            kind: LayerKind::Managed {
                label: label.clone(),
            },
        })
        .collect()
}

/// What `/status` shows of the sync.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncStatus {
    /// `in force`, or `never synced` (the baseline and local files only).
    pub state: &'static str,
    /// The bundle URL.
    pub url: String,
    /// The managed version in force; `None`: never synced (baseline and
    /// local files only).
    pub version: Option<u64>,
    /// Its signing key.
    pub key_id: Option<String>,
    /// When it was issued.
    pub issued_at: Option<String>,
    /// When it expires, if it does.
    pub expires_at: Option<String>,
    /// Seconds since it was issued.
    pub age_secs: Option<i64>,
    /// When the last poll ran.
    pub last_attempt: Option<String>,
    /// What came of it: `applied v3`, `not modified`, `unchanged`,
    /// `refused` or `failed`.
    pub last_result: Option<String>,
    /// Why the last poll failed; cleared by a good one.
    pub last_error: Option<String>,
    /// Failures in a row.
    pub failures: u32,
    /// Why the bundle stored on disk was not used at start (it no longer
    /// verifies); cleared when a new bundle goes in force.
    pub stored_error: Option<String>,
}

/// Shared sync status.
pub type SyncStatusHandle = Arc<Mutex<SyncStatus>>;

/// The status with `age_secs` as of now.
pub fn status_now(handle: &SyncStatusHandle, now: Timestamp) -> SyncStatus {
    let mut status = handle
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    status.age_secs = status
        .issued_at
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok())
        .map(|issued| now.as_second() - issued.as_second());
    status
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Validators {
    etag: Option<String>,
    last_modified: Option<String>,
}

/// One poll's outcome.
enum Outcome {
    Applied(u64),
    NotModified,
    Unchanged,
}

/// Why a poll did not put a bundle in force, for status and audit.
struct Failure {
    /// `refused` (the server answered with something unusable) or
    /// `failed` (no usable answer).
    result: &'static str,
    message: String,
}

impl Failure {
    fn refused(message: impl Into<String>) -> Failure {
        Failure {
            result: "refused",
            message: message.into(),
        }
    }

    fn failed(message: impl Into<String>) -> Failure {
        Failure {
            result: "failed",
            message: message.into(),
        }
    }
}

/// The sync task.
pub struct Syncer {
    config: Config,
    sync: SyncConfig,
    client: Client<Connector, Empty<Bytes>>,
    policy: Arc<PolicyHandle>,
    load: Loader,
    audit: Option<AuditLog>,
    status: SyncStatusHandle,
    clock: Clock,
    /// Polls so far.
    polls: std::sync::atomic::AtomicU64,
}

impl Syncer {
    /// A syncer for `config` (which has a `[sync]`), reloading `policy`
    /// with `load` when a bundle goes in force.
    pub fn new(
        config: &Config,
        sync: &SyncConfig,
        policy: Arc<PolicyHandle>,
        load: Loader,
        audit: Option<AuditLog>,
        clock: Clock,
    ) -> Result<Syncer, crate::upstream::TrustError> {
        let mut extra = config.upstream.extra_ca_files.clone();
        extra.extend(sync.ca_file.clone());
        let roots = crate::upstream::trust_roots(&extra)?;
        // The server is the config's own choice, on this machine or not.
        let connector = Connector::with_roots(&config.upstream, roots).for_configured_endpoint();
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(sync.interval.max(Duration::from_secs(1)) * 2)
            .pool_max_idle_per_host(1)
            .build(connector);
        let status = SyncStatus {
            state: NEVER_SYNCED,
            url: sync.url.to_string(),
            ..SyncStatus::default()
        };
        let syncer = Syncer {
            config: config.clone(),
            sync: sync.clone(),
            client,
            policy,
            load,
            audit,
            status: Arc::new(Mutex::new(status)),
            clock,
            polls: std::sync::atomic::AtomicU64::new(0),
        };
        match stored(config) {
            Ok(Some(verified)) => syncer.set_in_force(&verified.payload),
            Ok(None) => {}
            Err(e) => {
                let mut status = syncer.status.lock().unwrap_or_else(PoisonError::into_inner);
                status.stored_error = Some(e.to_string());
            }
        }
        Ok(syncer)
    }

    /// The status, shared with `/status`.
    pub fn status(&self) -> SyncStatusHandle {
        self.status.clone()
    }

    /// Poll until `shutdown`: at once, then every interval (with jitter),
    /// sooner with backoff after a failure.
    pub async fn run(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        let mut retry = FIRST_RETRY;
        loop {
            let wait = match this.poll_once().await {
                Ok(()) => {
                    retry = FIRST_RETRY;
                    jittered(this.sync.interval)
                }
                Err(()) => {
                    let wait = retry.min(this.sync.interval);
                    retry = (retry * 2).min(this.sync.interval);
                    wait
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// One poll, recorded in status and (unless nothing changed) audited.
    async fn poll_once(self: &Arc<Self>) -> Result<(), ()> {
        let started = self.clock.now();
        let outcome = self.fetch_and_apply().await;
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        status.last_attempt = Some(started.to_string());
        match outcome {
            Ok(outcome) => {
                status.last_result = Some(match outcome {
                    Outcome::Applied(v) => format!("applied v{v}"),
                    Outcome::NotModified => "not modified".to_string(),
                    Outcome::Unchanged => "unchanged".to_string(),
                });
                status.last_error = None;
                status.failures = 0;
                drop(status);
                if let Outcome::Applied(version) = outcome {
                    tracing::info!(version, url = %self.sync.url, "managed policy in force");
                    self.record(Decision::Allow, Some(format!("managed v{version}")), None);
                }
                Ok(())
            }
            Err(failure) => {
                status.last_result = Some(failure.result.to_string());
                status.last_error = Some(failure.message.clone());
                status.failures += 1;
                let in_force = status.version;
                drop(status);
                tracing::warn!(
                    url = %self.sync.url,
                    "managed policy not updated: {}; {}",
                    failure.message,
                    match in_force {
                        Some(v) => format!("managed v{v} stays in force"),
                        None => "running on the baseline and local files".to_string(),
                    }
                );
                self.record(Decision::Error, None, Some(failure.message));
                Err(())
            }
        }
    }

    async fn fetch_and_apply(self: &Arc<Self>) -> Result<Outcome, Failure> {
        let fetched = tokio::time::timeout(self.sync.timeout, self.fetch())
            .await
            .unwrap_or_else(|_| {
                Err(Failure::failed(format!(
                    "no complete answer within sync.timeout_secs = {}",
                    self.sync.timeout.as_secs()
                )))
            })?;
        let Some((body, fresh)) = fetched else {
            return Ok(Outcome::NotModified);
        };
        // Verifying and compiling the policy takes a fraction of a second:
        // off the runtime that also accepts connections (and not under the
        // fetch's timeout, which would leave it running unreported).
        let this = self.clone();
        let outcome = tokio::task::spawn_blocking(move || this.apply(&body))
            .await
            .map_err(|e| Failure::failed(format!("applying the bundle failed: {e}")))??;
        let json = serde_json::to_vec(&fresh).unwrap_or_default();
        let dir = managed_dir(&self.config.state_dir);
        if let Err(e) = crate::tls::store::write_atomic(&dir.join(VALIDATORS), &json, 0o600) {
            tracing::warn!("cannot keep the sync validators: {e}");
        }
        Ok(outcome)
    }

    /// One conditional GET: the bundle and its validators, or `None` for a
    /// `304`.
    async fn fetch(&self) -> Result<Option<(Bytes, Validators)>, Failure> {
        let dir = managed_dir(&self.config.state_dir);
        // Every tenth poll asks unconditionally: a server's validators can
        // miss a change (nginx's ETag is the mtime in seconds and the size).
        let polls = self
            .polls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let validators: Validators = if polls % FULL_FETCH_EVERY == FULL_FETCH_EVERY - 1 {
            Validators::default()
        } else {
            std::fs::read(dir.join(VALIDATORS))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default()
        };
        let mut request = Request::get(self.sync.url.clone());
        if let Some(etag) = &validators.etag {
            request = request.header(header::IF_NONE_MATCH, etag);
        }
        if let Some(modified) = &validators.last_modified {
            request = request.header(header::IF_MODIFIED_SINCE, modified);
        }
        let request = request
            .header(
                header::USER_AGENT,
                concat!("outpost/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::new())
            .map_err(|e| Failure::failed(format!("bad request: {e}")))?;
        let response = self.client.request(request).await.map_err(|e| {
            Failure::failed(format!(
                "cannot reach {}: {}",
                self.sync.url,
                error_chain(&e)
            ))
        })?;
        let status = response.status();
        if status == StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        if status != StatusCode::OK {
            return Err(Failure::failed(format!(
                "{} answered {status}",
                self.sync.url
            )));
        }
        let header_text = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &http::HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let fresh = Validators {
            etag: header_text(header::ETAG),
            last_modified: header_text(header::LAST_MODIFIED),
        };
        let body = Limited::new(response.into_body(), MAX_BUNDLE_BYTES)
            .collect()
            .await
            .map_err(|e| Failure::failed(format!("download cut off: {e}")))?
            .to_bytes();
        Ok(Some((body, fresh)))
    }

    /// Check a downloaded bundle and, if it is newer and good, put it in
    /// force.
    fn apply(&self, bytes: &[u8]) -> Result<Outcome, Failure> {
        let verified = bundle::verify(bytes, &self.sync.public_keys)
            .map_err(|e| Failure::refused(e.to_string()))?;
        let payload = &verified.payload;
        let current = stored(&self.config).ok().flatten();
        if let Some(current) = &current {
            let in_force = current.payload.version;
            if payload.version < in_force {
                return Err(Failure::refused(format!(
                    "version {} is older than managed v{in_force} in force (a rollback)",
                    payload.version
                )));
            }
            if payload.version == in_force {
                if *payload == current.payload {
                    return Ok(Outcome::Unchanged);
                }
                return Err(Failure::refused(format!(
                    "version {} is in force with other content; a changed bundle needs a higher version",
                    payload.version
                )));
            }
        }
        let now = self.clock.now();
        if let Some(expires) = payload.expires_at {
            if expires <= now {
                return Err(Failure::refused(format!(
                    "version {} expired at {expires}",
                    payload.version
                )));
            }
        }
        if let Err(e) = providers_of(payload) {
            return Err(Failure::refused(format!(
                "version {}: its provider table is invalid: {e}",
                payload.version
            )));
        }
        let local = load::read_dir_layers(&self.config.policy_dir).unwrap_or_default();
        if let Err(errors) = load::load_stack(layers_of(payload), local) {
            let first = errors.first().map(ToString::to_string).unwrap_or_default();
            return Err(Failure::refused(format!(
                "version {}: its policy is invalid ({} problem{}): {first}",
                payload.version,
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            )));
        }
        let dir = managed_dir(&self.config.state_dir);
        crate::tls::store::create_private_dir(&dir)
            .and_then(|()| crate::tls::store::write_atomic(&dir.join(STORED), bytes, 0o600))
            .map_err(|e| Failure::failed(format!("cannot store the bundle: {e}")))?;
        watch::reload(&self.load, &self.policy);
        self.set_in_force(payload);
        Ok(Outcome::Applied(payload.version))
    }

    fn set_in_force(&self, payload: &Payload) {
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        status.state = "in force";
        status.stored_error = None;
        status.version = Some(payload.version);
        status.key_id = Some(payload.key_id.clone());
        status.issued_at = Some(payload.issued_at.to_string());
        status.expires_at = payload.expires_at.map(|t| t.to_string());
    }

    fn record(&self, decision: Decision, version: Option<String>, error: Option<String>) {
        let Some(audit) = &self.audit else { return };
        let Some(permit) = audit.try_reserve() else {
            audit.note_dropped();
            return;
        };
        let identity = &self.config.identity;
        let mut event = AuditEvent::new(
            Kind::Sync,
            self.clock.now().to_string(),
            &identity.user,
            &identity.device,
            decision,
        );
        event.host = self.sync.url.host().map(str::to_string);
        event.path = Some(self.sync.url.path().to_string());
        event.policy_version = version;
        event.error = error;
        drop(permit.submit(event));
    }
}

/// `base` plus up to a tenth of it, so that a fleet does not poll in step.
fn jittered(base: Duration) -> Duration {
    let mut byte = [0u8; 2];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut byte);
    let fraction = f64::from(u16::from_le_bytes(byte)) / f64::from(u16::MAX);
    base + base.mul_f64(0.1 * fraction)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bundle::BundleFile;

    fn payload(providers: Option<&str>) -> Payload {
        Payload {
            version: 7,
            issued_at: Timestamp::from_second(1_800_000_000).unwrap(),
            expires_at: None,
            key_id: "k".into(),
            files: vec![
                BundleFile {
                    name: "20-b.toml".into(),
                    text: "[models]\ndeny = [\"b\"]\n".into(),
                },
                BundleFile {
                    name: "10-a.toml".into(),
                    text: "[models]\ndeny = [\"a\"]\n".into(),
                },
            ],
            providers: providers.map(str::to_string),
        }
    }

    #[test]
    fn a_bundle_becomes_managed_layers_in_name_order() {
        let layers = layers_of(&payload(None));
        let paths: Vec<String> = layers
            .iter()
            .map(|l| l.path.display().to_string())
            .collect();
        assert_eq!(paths, ["managed v7/10-a.toml", "managed v7/20-b.toml"]);
        assert!(layers.iter().all(|l| l.kind.label() == "managed v7"));
        let policy = load::load_stack(layers, Vec::new()).unwrap();
        let deny = policy.origins.iter().find(|o| o.id == "b").unwrap();
        assert_eq!(deny.layer, "managed v7");
    }

    #[test]
    fn a_bundles_provider_table_adds_to_the_shipped_one() {
        assert!(providers_of(&payload(None)).unwrap().is_none());
        let corp = "[[provider]]\nname = \"corp-llm\"\nkind = \"openai-compatible\"\nhosts = [\"llm.corp.example\"]\n";
        let table = providers_of(&payload(Some(corp))).unwrap().unwrap();
        assert_eq!(
            table.lookup("llm.corp.example").map(|e| e.name.as_str()),
            Some("corp-llm")
        );
        assert_eq!(
            table.lookup("api.openai.com").map(|e| e.name.as_str()),
            Some("openai")
        );
        // Replacing a shipped entry by name.
        let openai =
            "[[provider]]\nname = \"openai\"\nkind = \"openai\"\nhosts = [\"api.openai.com\"]\n";
        let table = providers_of(&payload(Some(openai))).unwrap().unwrap();
        let entry = table.lookup("api.openai.com").unwrap();
        assert!(
            !entry.stream_options,
            "the bundle's entry replaced the shipped one"
        );
        // A bad table names the bundle's file.
        let bad =
            "[[provider]]\nname = \"x\"\nkind = \"openai\"\nhosts = [\"api.anthropic.com\"]\n";
        let err = providers_of(&payload(Some(bad))).unwrap_err().to_string();
        assert!(err.contains("managed v7/providers.toml"), "{err}");
    }
}
