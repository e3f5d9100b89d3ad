//! The loopback-only admin endpoint.
//!
//! Endpoints:
//! - `GET /healthz` → `200 ok` once the proxy is accepting;
//! - `GET /status`  → JSON: version, proxy address, intercepted hosts, CA
//!   fingerprint, expiry, hosts the CA cannot cover, policy version and
//!   reload errors, audit counters (written, queued, refused or unaudited
//!   because the backlog was full, failed);
//! - `GET /ca.pem`  → the CA certificate, for clients to trust;
//! - `GET /budgets` → JSON: every budget's spent, reserved, limit and reset
//!   time (`outpost budget show`);
//! - `POST /budgets/reset`, body the budget id → zero that budget
//!   (`outpost budget reset`).
//!   It changes enforcement, so it needs the bearer token of the agent
//!   file: only who can read `state_dir` may reset a budget, not every
//!   local process that can reach loopback.
//!
//! It never serves secrets: no key material, no request content. It answers
//! only requests whose `Host` is its own address or `localhost` (421
//! otherwise: a DNS-rebinding web page reaches the port under its own name),
//! serves at most 128 connections at once, gives a request head 5 s and a
//! connection 30 s.
//!
//! The *agent file*, `state_dir/agent.json` (0600), tells the CLI where the
//! running agent's admin endpoint is (it may be on port 0) and holds that
//! token; the agent writes it at start and removes it when it stops.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

use crate::proxy::spend::find_budget;
use crate::proxy::{full_body, text_response, ProxyBody, ProxyState};

/// Name of the agent file in `state_dir`.
pub const AGENT_FILE: &str = "agent.json";

/// What the agent file says.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AgentFile {
    /// The agent's process id.
    pub pid: u32,
    /// Where its admin endpoint listens.
    pub admin: SocketAddr,
    /// Bearer token for the admin endpoint's changing requests.
    pub token: String,
}

impl AgentFile {
    /// A fresh file for this process and `admin` (random 256-bit token).
    pub fn new(admin: SocketAddr) -> Result<AgentFile, std::io::Error> {
        let mut bytes = [0u8; 32];
        crate::tls::provider()
            .secure_random
            .fill(&mut bytes)
            .map_err(|_| std::io::Error::other("no secure random source"))?;
        Ok(AgentFile {
            pid: std::process::id(),
            admin,
            token: crate::audit::record::hex(&bytes),
        })
    }

    /// Write it to `state_dir` (owner-only).
    pub fn write(&self, state_dir: &Path) -> Result<(), crate::tls::store::StoreError> {
        let text = serde_json::to_string_pretty(self).expect("serializable");
        crate::tls::store::write_atomic(&state_dir.join(AGENT_FILE), text.as_bytes(), 0o600)
    }

    /// The file of `state_dir`: `Ok(None)` when there is none (no agent
    /// running, or it was never started here).
    pub fn read(state_dir: &Path) -> Result<Option<AgentFile>, String> {
        let path = state_dir.join(AGENT_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Remove it, if it is still this process's.
    pub fn remove(state_dir: &Path) {
        if let Ok(Some(file)) = AgentFile::read(state_dir) {
            if file.pid == std::process::id() {
                let _ = std::fs::remove_file(state_dir.join(AGENT_FILE));
            }
        }
    }
}

/// One request to an admin endpoint at `addr` (the CLI's client): the
/// status and body, or why it could not be made (`connect` errors mean no
/// agent is listening).
pub async fn call(
    addr: SocketAddr,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
) -> Result<(StatusCode, String), AdminCallError> {
    use http_body_util::BodyExt;
    let stream = TcpStream::connect(addr)
        .await
        .map_err(AdminCallError::Connect)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(AdminCallError::Http)?;
    tokio::spawn(conn);
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, addr.to_string());
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.unwrap_or_default(),
        )))
        .map_err(|e| AdminCallError::Request(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(AdminCallError::Http)?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(AdminCallError::Http)?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminCallError {
    /// Nothing accepted the connection.
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    /// The exchange failed.
    #[error("{0}")]
    Http(hyper::Error),
    /// The request could not be built.
    #[error("bad request: {0}")]
    Request(String),
}

/// Admin connections served at once; more are closed on accept.
const MAX_ADMIN_CONNECTIONS: usize = 128;

/// Bound on a client's request head, and on a whole admin connection (its
/// requests are small and quick: nothing legitimate stays longer).
const ADMIN_HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
const ADMIN_CONNECTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// What the admin endpoint reports.
pub struct AdminState {
    /// The proxy's bound address.
    pub proxy_addr: SocketAddr,
    /// The admin endpoint's own bound address (the only `Host` it answers,
    /// with `localhost`).
    pub admin_addr: SocketAddr,
    /// Shared proxy state (CA, intercept list, shutdown).
    pub proxy: Arc<ProxyState>,
    /// The token `POST` requests must carry.
    pub token: String,
    /// The managed-policy sync, when `[sync]` is configured.
    pub sync: Option<crate::sync::SyncStatusHandle>,
}

/// Serve admin requests until shutdown: at most [`MAX_ADMIN_CONNECTIONS`]
/// at once, each bounded in time.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_ADMIN_CONNECTIONS));
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    tracing::warn!("admin accept failed: {err}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = state.proxy.shutdown.cancelled() => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(
                "admin endpoint: {MAX_ADMIN_CONNECTIONS} connections open; closing a new one"
            );
            drop(stream);
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(respond(&state, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(ADMIN_HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(ADMIN_CONNECTION_TIMEOUT, conn).await {
                Ok(Err(err)) => tracing::debug!("admin connection: {err}"),
                Err(_) => tracing::debug!("admin connection closed: open too long"),
                Ok(Ok(())) => {}
            }
        });
    }
}

async fn respond(state: &AdminState, req: Request<Incoming>) -> Response<ProxyBody> {
    if !addressed_to_self(&req, state.admin_addr) {
        // A web page that rebinds its own name to 127.0.0.1 reaches this
        // port with its name in `Host`: it gets nothing.
        return text_response(
            StatusCode::MISDIRECTED_REQUEST,
            &format!(
                "Outpost's admin endpoint answers only requests addressed to it (Host {} or \
                 localhost:{})",
                state.admin_addr,
                state.admin_addr.port()
            ),
        );
    }
    if req.method() == Method::POST && req.uri().path() == "/budgets/reset" {
        return reset_budget(state, req).await;
    }
    if req.method() != Method::GET {
        return text_response(StatusCode::METHOD_NOT_ALLOWED, "GET only");
    }
    match req.uri().path() {
        "/budgets" => {
            // SQLite reads (and, the first time, opening the ledger) block.
            let proxy = state.proxy.clone();
            let shown = tokio::task::spawn_blocking(move || {
                let policy = proxy.policy.current();
                proxy
                    .budgets
                    .show(&policy, &proxy.identity, proxy.clock.now())
            })
            .await;
            match shown {
                Ok(Ok(rows)) => json_response(StatusCode::OK, &json!({ "budgets": rows })),
                Ok(Err(e)) => ledger_failure(e),
                Err(e) => ledger_failure(e),
            }
        }
        "/healthz" => text_response(StatusCode::OK, "ok"),
        "/proxy.pac" => {
            let policy = state.proxy.policy.current();
            let mut response = Response::new(full_body(policy.intercept.pac(state.proxy_addr)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-ns-proxy-autoconfig"),
            );
            response
        }
        "/ca.pem" => {
            let mut response =
                Response::new(full_body(state.proxy.leaves.ca().cert_pem().to_string()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-pem-file"),
            );
            response
        }
        "/status" => {
            let ca = state.proxy.leaves.ca();
            let policy = state.proxy.policy.current();
            let policy_status = state.proxy.policy.status();
            let hosts = policy.intercept.hosts();
            let audit = state.proxy.audit.as_ref().map(|a| a.stats());
            let body = json!({
                "version": env!("CARGO_PKG_VERSION"),
                "proxy": state.proxy_addr.to_string(),
                "intercept": hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
                "ca": {
                    "fingerprint_sha256": ca.fingerprint(),
                    "not_after": ca.not_after().as_second(),
                    "permitted": ca.permitted(),
                    "uncovered": ca.uncovered(hosts).iter().map(|h| h.to_string()).collect::<Vec<_>>(),
                },
                "leaves_minted": state.proxy.leaves.mint_count(),
                "audit": audit.map(|audit| json!({
                    "written": audit.written,
                    "queued": audit.queued,
                    "refused_backlog_full": audit.refused,
                    "unaudited_backlog_full": audit.dropped,
                    "failed": audit.failed,
                    "last_error": audit.last_error,
                })),
                "policy": {
                    "version": policy_status.version,
                    "sources": policy_status.sources.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
                    "errors": policy_status.errors,
                    "notes": policy_status.notes,
                    "baseline": policy_status.baseline,
                },
                "managed": match &state.sync {
                    Some(sync) => serde_json::to_value(crate::sync::status_now(sync, state.proxy.clock.now()))
                        .unwrap_or_default(),
                    None => json!({"version": null, "last_result": "no [sync] configured: baseline and local files only"}),
                },
            });
            json_response(StatusCode::OK, &body)
        }
        _ => text_response(
            StatusCode::NOT_FOUND,
            "not found: try /healthz, /status, /ca.pem, /proxy.pac, /budgets",
        ),
    }
}

/// Whether `req`'s `Host` names this endpoint: its own address, or
/// `localhost`, with its port or none.
fn addressed_to_self<B>(req: &Request<B>, own: SocketAddr) -> bool {
    let Some(host) = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
    else {
        return false;
    };
    let Ok(authority) = host.parse::<http::uri::Authority>() else {
        return false;
    };
    if authority.port_u16().is_some_and(|p| p != own.port()) {
        return false;
    }
    let name = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip == own.ip() || (own.ip().is_unspecified() && ip.is_loopback()))
}

/// Longest budget id accepted.
const MAX_ID_BYTES: usize = 1024;

async fn reset_budget(state: &AdminState, req: Request<Incoming>) -> Response<ProxyBody> {
    use http_body_util::BodyExt;
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !presented.is_some_and(|t| constant_time_eq(t.as_bytes(), state.token.as_bytes())) {
        return text_response(
            StatusCode::UNAUTHORIZED,
            "resetting a budget needs the token in state_dir/agent.json",
        );
    }
    let body = http_body_util::Limited::new(req.into_body(), MAX_ID_BYTES)
        .collect()
        .await
        .map(|b| b.to_bytes());
    let id = match body.as_deref().map(std::str::from_utf8) {
        Ok(Ok(id)) if !id.trim().is_empty() => id.trim().to_string(),
        _ => {
            return text_response(
                StatusCode::BAD_REQUEST,
                "usage: POST /budgets/reset with the budget id as the body",
            )
        }
    };
    if let Err(message) = find_budget(&state.proxy.policy.current().spend.budgets, &id) {
        return text_response(StatusCode::NOT_FOUND, &message);
    }
    let proxy = state.proxy.clone();
    let budget = id.clone();
    let reset =
        tokio::task::spawn_blocking(move || proxy.budgets.reset(&budget, proxy.clock.now())).await;
    match reset {
        Ok(Ok(())) => {
            tracing::warn!(budget = %id, "budget reset by an administrator");
            json_response(StatusCode::OK, &json!({ "reset": id }))
        }
        Ok(Err(e)) => ledger_failure(e),
        Err(e) => ledger_failure(e),
    }
}

fn ledger_failure(e: impl std::fmt::Display) -> Response<ProxyBody> {
    text_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        &format!("budget ledger: {e}"),
    )
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<ProxyBody> {
    let mut response = Response::new(full_body(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Equal bytes, in time that does not depend on where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_requests_addressed_to_the_endpoint_itself_are_answered() {
        let own: SocketAddr = "127.0.0.1:8878".parse().unwrap();
        let with_host = |host: &str| {
            Request::builder()
                .header(header::HOST, host)
                .body(())
                .unwrap()
        };
        for ok in ["127.0.0.1:8878", "localhost:8878", "LOCALHOST", "127.0.0.1"] {
            assert!(addressed_to_self(&with_host(ok), own), "{ok}");
        }
        for bad in [
            "evil.example:8878",
            "127.0.0.1:9999",
            "rebind.attacker.test",
            "10.0.0.1:8878",
        ] {
            assert!(!addressed_to_self(&with_host(bad), own), "{bad}");
        }
        assert!(!addressed_to_self(&Request::new(()), own), "no Host at all");
    }
}
