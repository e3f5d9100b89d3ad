//! `outpost doctor`: one screen that checks the install end to end and
//! says, for each check that fails, what to do about it.
//!
//! Checks: the service answers; the CA is there, not expiring, and covers
//! the intercept list; a leaf the agent mints right now verifies against the
//! system store, the client bundle, and the NSS and Java stores the install
//! listed; this user's proxy environment reaches the agent; the policy is
//! valid; sync is fresh; every intercepted provider is reachable upstream.
//! Exit 1 when any check fails.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::Config;
use crate::install::layout::{Mode, Platform};
use crate::install::trust::{self, CaCert};
use crate::install::{self, Manifest, Options};
use crate::tls::ca::{self, CaFacts};

/// How long one network check may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// A CA expiring sooner than this is a warning.
const CA_WARN_DAYS: i64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Ok,
    Warn,
    Fail,
}

struct Check {
    name: &'static str,
    level: Level,
    detail: String,
    fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            level: Level::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            level: Level::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            level: Level::Warn,
            ..Check::fail(name, detail, fix)
        }
    }
}

/// Run every check and print them; `true` when none failed.
pub fn run(config: &Config, root: PathBuf) -> anyhow::Result<bool> {
    let options = Options {
        root,
        dry_run: false,
        keep_state: false,
        mode: Mode::System,
    };
    let manifest = install::find_manifest(&options).map(|(_, m)| m);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut checks = Vec::new();

    let status = runtime.block_on(agent_status(config));
    checks.push(service(&status, manifest.as_ref(), &options));
    let status = status.ok();
    let hosts = intercept_hosts(config, status.as_ref());
    let ca_pem = std::fs::read_to_string(ca::cert_file(&config.state_dir)).ok();
    checks.push(ca_check(ca_pem.as_deref(), &hosts, config));

    let proxy = status
        .as_ref()
        .and_then(|s| s["proxy"].as_str()?.parse::<SocketAddr>().ok())
        .unwrap_or(config.listen);
    let probe_host = ca_pem
        .as_deref()
        .and_then(|pem| CaCert::from_pem(pem).ok())
        .and_then(|c| CaFacts::parse(&c.der).ok())
        .and_then(|facts| {
            hosts
                .iter()
                .find(|h| !h.starts_with("*.") && facts.permits(h))
                .cloned()
        });
    let leaf = match (&status, &probe_host) {
        (Some(_), Some(host)) => Some(runtime.block_on(leaf_via(proxy, host))),
        _ => None,
    };
    checks.extend(trust_checks(
        &options,
        manifest.as_ref(),
        ca_pem.as_deref(),
        leaf.as_ref(),
        probe_host.as_deref(),
    ));
    checks.push(runtime.block_on(proxy_env(
        manifest.as_ref(),
        ca_pem.as_deref(),
        probe_host.as_deref(),
    )));
    checks.push(policy(config, status.as_ref()));
    checks.push(sync(
        config
            .sync
            .as_ref()
            .map(|s| (s.url.to_string(), s.interval)),
        status.as_ref(),
        jiff::Timestamp::now(),
    ));
    checks.push(runtime.block_on(upstream(config, &hosts)));

    println!("outpost doctor ({})", config.state_dir.display());
    for check in &checks {
        let tag = match check.level {
            Level::Ok => "ok  ",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        println!("  {tag}  {:<9} {}", check.name, check.detail);
        if let Some(fix) = &check.fix {
            println!("        {:<9} fix: {fix}", "");
        }
    }
    let failed = checks.iter().filter(|c| c.level == Level::Fail).count();
    if failed > 0 {
        println!("{failed} check(s) failed");
    } else {
        println!("all checks passed");
    }
    Ok(failed == 0)
}

/// `/status` of the agent for this state directory.
async fn agent_status(config: &Config) -> Result<Value, String> {
    let addr = match crate::admin::AgentFile::read(&config.state_dir) {
        Ok(Some(file)) => file.admin,
        _ => config.admin_listen,
    };
    let call = crate::admin::call(addr, http::Method::GET, "/status", None, None);
    match tokio::time::timeout(PROBE_TIMEOUT, call).await {
        Ok(Ok((status, body))) if status.is_success() => serde_json::from_str(&body)
            .map_err(|e| format!("{addr} answered /status with something else: {e}")),
        Ok(Ok((status, _))) => Err(format!("{addr} answered /status with {status}")),
        Ok(Err(e)) => Err(format!("no agent answers on {addr}: {e}")),
        Err(_) => Err(format!(
            "{addr} did not answer within {} s",
            PROBE_TIMEOUT.as_secs()
        )),
    }
}

fn service(
    status: &Result<Value, String>,
    manifest: Option<&Manifest>,
    options: &Options,
) -> Check {
    match status {
        Ok(s) => Check::ok(
            "service",
            format!(
                "agent {} answering; proxy on {}",
                s["version"].as_str().unwrap_or("?"),
                s["proxy"].as_str().unwrap_or("?")
            ),
        ),
        Err(e) => {
            let fix = match manifest {
                _ if options.staged() => "start the agent: `outpost run --config <its config>`".to_string(),
                Some(m) => match (m.platform, m.mode) {
                    (Platform::Linux, Mode::System) => "sudo systemctl restart outpost.service; its log: journalctl -u outpost.service".into(),
                    (Platform::Linux, Mode::User) => "systemctl --user restart outpost.service; its log: journalctl --user -u outpost.service".into(),
                    (Platform::Macos, Mode::System) => "sudo launchctl kickstart -k system/com.outpost.agent; logs in /Library/Logs/Outpost".into(),
                    (Platform::Macos, Mode::User) => "launchctl kickstart -k gui/$(id -u)/com.outpost.agent; logs in ~/Library/Logs/Outpost".into(),
                    (Platform::Windows, _) => "Start-Service Outpost (an Administrator PowerShell)".into(),
                },
                None => "not installed as a service: `sudo outpost install`, or run `outpost run`".into(),
            };
            Check::fail("service", e.clone(), fix)
        }
    }
}

/// The intercepted host patterns: the agent's, else the policy on disk's.
fn intercept_hosts(config: &Config, status: Option<&Value>) -> Vec<String> {
    if let Some(list) = status.and_then(|s| s["intercept"].as_array()) {
        return list
            .iter()
            .filter_map(|h| h.as_str().map(String::from))
            .collect();
    }
    match crate::app::load_policy(config) {
        Ok(policy) => policy
            .intercept
            .hosts()
            .iter()
            .map(|h| h.to_string())
            .collect(),
        Err(_) => crate::policy::intercept::InterceptList::embedded_default()
            .map(|l| l.hosts().iter().map(|h| h.to_string()).collect())
            .unwrap_or_default(),
    }
}

fn ca_check(pem: Option<&str>, hosts: &[String], config: &Config) -> Check {
    let file = ca::cert_file(&config.state_dir);
    let Some(pem) = pem else {
        return Check::fail(
            "ca",
            format!("no CA certificate at {}", file.display()),
            "start the agent once (it makes the CA), or `outpost install`",
        );
    };
    let facts = match CaCert::from_pem(pem)
        .map_err(|e| e.to_string())
        .and_then(|c| CaFacts::parse(&c.der))
    {
        Ok(facts) => facts,
        Err(e) => {
            return Check::fail(
                "ca",
                format!("{}: {e}", file.display()),
                "outpost ca rotate",
            )
        }
    };
    let days = (facts.not_after.as_second() - jiff::Timestamp::now().as_second()) / 86_400;
    let patterns: Vec<_> = hosts
        .iter()
        .filter_map(|h| crate::policy::intercept::HostPattern::parse(h).ok())
        .collect();
    let uncovered: Vec<String> = facts
        .uncovered(&patterns)
        .iter()
        .map(|h| h.to_string())
        .collect();
    let expiry = facts.not_after.strftime("%Y-%m-%d");
    if days < 0 {
        Check::fail("ca", format!("expired on {expiry}"), "outpost ca rotate")
    } else if !uncovered.is_empty() {
        Check::warn(
            "ca",
            format!(
                "its name constraints do not cover {} (tunnelled, not inspected)",
                uncovered.join(", ")
            ),
            "outpost ca rotate",
        )
    } else if days < CA_WARN_DAYS {
        Check::warn(
            "ca",
            format!("expires in {days} days ({expiry})"),
            "outpost ca rotate",
        )
    } else {
        Check::ok(
            "ca",
            format!(
                "valid until {expiry}; constraints cover all {} intercepted hosts",
                hosts.len()
            ),
        )
    }
}

/// Records the chain the server presents; accepts it (the chain is
/// verified afterwards, against each store).
#[derive(Debug)]
struct Capture {
    chain: Mutex<Vec<CertificateDer<'static>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = self.chain.lock().unwrap_or_else(|p| p.into_inner());
        chain.push(end_entity.clone().into_owned());
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// CONNECT to `host:443` through the proxy at `proxy`, and the chain its
/// TLS presents.
async fn leaf_via(proxy: SocketAddr, host: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let work = async {
        let mut tcp = tokio::net::TcpStream::connect(proxy)
            .await
            .map_err(|e| format!("cannot connect to the proxy at {proxy}: {e}"))?;
        tcp.write_all(
            format!("CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n").as_bytes(),
        )
        .await
        .map_err(|e| e.to_string())?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
            let n = tcp.read(&mut byte).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err(format!("the proxy at {proxy} closed the CONNECT"));
            }
            head.push(byte[0]);
        }
        let line = String::from_utf8_lossy(&head)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        if !line.contains(" 200") {
            return Err(format!(
                "the proxy at {proxy} answered CONNECT {host}: {line}"
            ));
        }
        let provider = crate::tls::provider();
        let capture = Arc::new(Capture {
            chain: Mutex::new(Vec::new()),
            provider: provider.clone(),
        });
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(capture.clone())
            .with_no_client_auth();
        let name = ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
        tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS through the proxy to {host}: {e}"))?;
        let chain = capture
            .chain
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Ok(chain)
    };
    tokio::time::timeout(PROBE_TIMEOUT, work)
        .await
        .map_err(|_| {
            format!(
                "the proxy at {proxy} did not complete a TLS handshake within {} s",
                PROBE_TIMEOUT.as_secs()
            )
        })?
}

/// Does `chain` verify for `host` against the certificates of `roots`?
fn verifies(
    chain: &[CertificateDer<'static>],
    host: &str,
    roots: &[CertificateDer<'static>],
) -> Result<(), String> {
    let mut store = rustls::RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(roots.iter().cloned());
    if added == 0 {
        return Err("no certificates in it".into());
    }
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(store),
        crate::tls::provider(),
    )
    .build()
    .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
    let (leaf, rest) = chain
        .split_first()
        .ok_or("the proxy presented no certificate")?;
    verifier
        .verify_server_cert(leaf, rest, &name, &[], UnixTime::now())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn pem_file_certs(path: &Path) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_file_iter(path)
        .map(|it| it.flatten().collect())
        .unwrap_or_default()
}

fn trust_checks(
    options: &Options,
    manifest: Option<&Manifest>,
    ca_pem: Option<&str>,
    leaf: Option<&Result<Vec<CertificateDer<'static>>, String>>,
    host: Option<&str>,
) -> Vec<Check> {
    let (Some(leaf), Some(host)) = (leaf, host) else {
        return vec![Check::fail(
            "trust",
            "cannot check: no leaf to verify (the agent is not answering, or no CA)",
            "fix the service check above first",
        )];
    };
    let chain = match leaf {
        Ok(chain) => chain,
        Err(e) => {
            return vec![Check::fail(
                "trust",
                e.clone(),
                "check the agent's log for TLS errors",
            )]
        }
    };
    let mut checks = Vec::new();
    // The system store.
    let stores = manifest.map(|m| m.trust.clone()).unwrap_or_default();
    let system: Vec<CertificateDer<'static>> =
        if options.staged() || Platform::current() == Platform::Linux {
            trust::system_bundle(options, &stores)
                .map(|p| pem_file_certs(&p))
                .unwrap_or_default()
        } else {
            rustls_native_certs::load_native_certs().certs
        };
    let reinstall = "sudo outpost install (puts the CA back into every store)";
    checks.push(match verifies(chain, host, &system) {
        Ok(()) => Check::ok(
            "trust",
            format!("a fresh leaf for {host} verifies against the system store"),
        ),
        Err(e) => Check::fail(
            "trust",
            format!("the system store does not trust the agent's leaf for {host}: {e}"),
            reinstall,
        ),
    });
    // The client bundle (SSL_CERT_FILE, …).
    if let Some(layout) = manifest.and_then(|m| m.layout().ok()) {
        let bundle = options.path(&layout.bundle);
        checks.push(match verifies(chain, host, &pem_file_certs(&bundle)) {
            Ok(()) => Check::ok(
                "trust",
                format!(
                    "… and against the client bundle {}",
                    layout.bundle.display()
                ),
            ),
            Err(e) => Check::fail(
                "trust",
                format!("{}: {e}", layout.bundle.display()),
                reinstall,
            ),
        });
    }
    // NSS and Java: the CA under its name.
    let Some(ca) = ca_pem.and_then(|p| CaCert::from_pem(p).ok()) else {
        return checks;
    };
    for store in &stores {
        let Some(held) = trust::holds(store, &ca) else {
            continue;
        };
        checks.push(if held {
            Check::ok("trust", format!("{} holds the CA", store.describe()))
        } else {
            Check::fail(
                "trust",
                format!("{} does not hold the current CA", store.describe()),
                reinstall,
            )
        });
    }
    checks
}

/// This user's proxy environment, and whether `HTTPS_PROXY` reaches this
/// agent (its CONNECT answers with a leaf of this CA).
async fn proxy_env(manifest: Option<&Manifest>, ca_pem: Option<&str>, host: Option<&str>) -> Check {
    let env_file = manifest
        .and_then(|m| m.layout().ok())
        .map(|l| l.env_sh.display().to_string())
        .unwrap_or_else(|| "/etc/profile.d/outpost.sh".into());
    let fix = format!("log in again, or `. {env_file}` in this shell");
    let Some(proxy) = std::env::var("HTTPS_PROXY")
        .ok()
        .or_else(|| std::env::var("https_proxy").ok())
    else {
        return Check::fail("proxy env", "HTTPS_PROXY is not set for this user", fix);
    };
    let missing: Vec<&str> = ["SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS"]
        .into_iter()
        .filter(|v| std::env::var_os(v).is_none_or(|p| !Path::new(&p).is_file()))
        .collect();
    let authority = proxy.trim_start_matches("http://").trim_end_matches('/');
    let addr = match tokio::net::lookup_host(authority)
        .await
        .ok()
        .and_then(|mut a| a.next())
    {
        Some(addr) => addr,
        None => {
            return Check::fail(
                "proxy env",
                format!("HTTPS_PROXY={proxy} is not a host:port"),
                fix,
            )
        }
    };
    let (Some(host), Some(ca)) = (host, ca_pem.and_then(|p| CaCert::from_pem(p).ok())) else {
        return Check::fail(
            "proxy env",
            format!("HTTPS_PROXY={proxy}, not checked: no CA"),
            fix,
        );
    };
    let ours = match leaf_via(addr, host).await {
        Ok(chain) => verifies(&chain, host, &[CertificateDer::from(ca.der.clone())]),
        Err(e) => Err(e),
    };
    match ours {
        Err(e) => Check::fail(
            "proxy env",
            format!("HTTPS_PROXY={proxy} does not reach this agent: {e}"),
            "point HTTPS_PROXY at the agent's `listen` address",
        ),
        Ok(()) if !missing.is_empty() => Check::warn(
            "proxy env",
            format!(
                "HTTPS_PROXY={proxy} reaches the agent, but {} is unset or missing",
                missing.join(" and ")
            ),
            fix,
        ),
        Ok(()) => Check::ok(
            "proxy env",
            format!("HTTPS_PROXY={proxy} reaches the agent; CA variables set"),
        ),
    }
}

fn policy(config: &Config, status: Option<&Value>) -> Check {
    match crate::app::load_policy(config) {
        Err(errors) => Check::fail(
            "policy",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
            "fix the file and line named; `outpost policy check` re-checks",
        ),
        Ok(policy) => {
            let layers: Vec<String> = policy
                .sources
                .iter()
                .zip(&policy.source_layers)
                .map(|(path, layer)| format!("{layer} {}", path.display()))
                .collect();
            let in_force = status
                .and_then(|s| s["policy"]["version"].as_str())
                .unwrap_or("");
            if !in_force.is_empty() && in_force != policy.version {
                return Check::warn(
                    "policy",
                    format!(
                        "the agent runs version {in_force}, the files say {}",
                        policy.version
                    ),
                    "the agent reloads on change; see `outpost status` for its last reload error",
                );
            }
            Check::ok(
                "policy",
                format!("valid, version {}: {}", policy.version, layers.join(", ")),
            )
        }
    }
}

/// `sync`: `(url, interval)` of `[sync]`, if configured.
fn sync(sync: Option<(String, Duration)>, status: Option<&Value>, now: jiff::Timestamp) -> Check {
    let Some((url, interval)) = sync else {
        return Check::ok("sync", "not configured (baseline and local policy only)");
    };
    let Some(managed) = status.map(|s| &s["managed"]) else {
        return Check::fail(
            "sync",
            "unknown: the agent is not answering",
            "fix the service check above first",
        );
    };
    let fix = format!("check that {url} is reachable and serves a signed bundle");
    if let Some(error) = managed["last_error"].as_str() {
        return Check::fail("sync", format!("the last poll failed: {error}"), fix);
    }
    let Some(last) = managed["last_attempt"]
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
    else {
        return Check::warn("sync", "no poll has run yet", fix);
    };
    let age = now.as_second() - last.as_second();
    let limit = 3 * interval.as_secs() as i64;
    if age > limit {
        return Check::fail(
            "sync",
            format!(
                "stale: the last poll was {age} s ago (interval {} s)",
                interval.as_secs()
            ),
            fix,
        );
    }
    Check::ok(
        "sync",
        format!(
            "fresh: managed version {}, polled {age} s ago",
            managed["version"]
                .as_u64()
                .map_or("none yet".to_string(), |v| v.to_string())
        ),
    )
}

/// Every exactly named intercepted host (or the gateway), reachable with
/// verified TLS from here.
async fn upstream(config: &Config, hosts: &[String]) -> Check {
    let connector = match crate::upstream::Connector::from_config(&config.upstream) {
        Ok(c) => c,
        Err(e) => return Check::fail("upstream", e.to_string(), "fix [upstream] in the config"),
    };
    let targets: Vec<(String, u16)> = match &config.gateway {
        Some(gateway) => vec![(
            gateway.url.host().unwrap_or_default().to_string(),
            gateway.url.port_u16().unwrap_or(443),
        )],
        None => hosts
            .iter()
            .filter(|h| !h.starts_with("*."))
            .map(|h| (h.clone(), 443))
            .collect(),
    };
    let probes = targets.iter().map(|(host, port)| {
        let connector = connector.clone();
        async move {
            let result =
                tokio::time::timeout(PROBE_TIMEOUT, connector.connect_tls(host, *port)).await;
            match result {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(format!("{host}: {e}")),
                Err(_) => Some(format!(
                    "{host}: no answer within {} s",
                    PROBE_TIMEOUT.as_secs()
                )),
            }
        }
    });
    let failures: Vec<String> = futures_util::future::join_all(probes)
        .await
        .into_iter()
        .flatten()
        .collect();
    let what = if config.gateway.is_some() {
        "the gateway"
    } else {
        "intercepted hosts"
    };
    if failures.is_empty() {
        Check::ok(
            "upstream",
            format!("{} {what} reachable with verified TLS", targets.len()),
        )
    } else {
        Check::fail(
            "upstream",
            format!(
                "{} of {} {what} unreachable: {}",
                failures.len(),
                targets.len(),
                failures.join("; ")
            ),
            "check the network, firewall and DNS for these hosts (or [upstream.resolve])",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: &str) -> jiff::Timestamp {
        t.parse().unwrap()
    }

    #[test]
    fn sync_is_fresh_within_three_intervals_and_fails_when_stale_or_failing() {
        let configured = || {
            Some((
                "https://policy.example/b.json".to_string(),
                Duration::from_secs(60),
            ))
        };
        let status = |last_attempt: &str, error: Value| serde_json::json!({"managed": {"version": 7, "last_attempt": last_attempt, "last_error": error}});
        let now = at("2026-12-01T12:00:00Z");
        let fresh = sync(
            configured(),
            Some(&status("2026-12-01T11:58:00Z", Value::Null)),
            now,
        );
        assert_eq!(fresh.level, Level::Ok, "{}", fresh.detail);
        assert!(fresh.detail.contains("version 7"));
        let stale = sync(
            configured(),
            Some(&status("2026-12-01T11:50:00Z", Value::Null)),
            now,
        );
        assert_eq!(stale.level, Level::Fail);
        assert!(stale.fix.unwrap().contains("https://policy.example/b.json"));
        let failing = sync(
            configured(),
            Some(&status("2026-12-01T11:59:00Z", Value::from("HTTP 404"))),
            now,
        );
        assert_eq!(failing.level, Level::Fail);
        assert!(failing.detail.contains("HTTP 404"));
        assert_eq!(sync(configured(), None, now).level, Level::Fail);
        assert_eq!(sync(None, None, now).level, Level::Ok);
    }
}
