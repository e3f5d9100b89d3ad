//! The loopback-only admin endpoint.
//!
//! Endpoints:
//! - `GET /healthz` → `200 ok` once the proxy is accepting;
//! - `GET /status`  → JSON: version, proxy address, intercepted hosts, CA
//!   fingerprint, expiry, hosts the CA cannot cover, policy version and
//!   reload errors, audit counters (written, queued, refused or unaudited
//!   because the backlog was full, failed);
//! - `GET /ca.pem`  → the CA certificate, for clients to trust.
//!
//! It never serves secrets: no key material, no request content.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;

use crate::proxy::{full_body, text_response, ProxyBody, ProxyState};

/// What the admin endpoint reports.
pub struct AdminState {
    /// The proxy's bound address.
    pub proxy_addr: SocketAddr,
    /// Shared proxy state (CA, intercept list, shutdown).
    pub proxy: Arc<ProxyState>,
}

/// Serve admin requests until shutdown.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>) {
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
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(respond(&state, &req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(err) = conn.await {
                tracing::debug!("admin connection: {err}");
            }
        });
    }
}

fn respond(state: &AdminState, req: &Request<Incoming>) -> Response<ProxyBody> {
    if req.method() != Method::GET {
        return text_response(StatusCode::METHOD_NOT_ALLOWED, "GET only");
    }
    match req.uri().path() {
        "/healthz" => text_response(StatusCode::OK, "ok"),
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
                    "not_after": ca.not_after().unix_timestamp(),
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
                },
            });
            let mut response = Response::new(full_body(body.to_string()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        _ => text_response(
            StatusCode::NOT_FOUND,
            "not found: try /healthz, /status, /ca.pem",
        ),
    }
}
