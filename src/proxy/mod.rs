//! The local forward proxy.
//!
//! - [`listener`]: accepts client connections and routes each request:
//!   `CONNECT` to [`connect`], absolute-form `http://` to [`forward`];
//! - [`connect`]: tunnel (untouched bytes) or intercept, per host;
//! - [`intercept`]: TLS with a minted leaf, then an h1/h2 server whose
//!   requests go to [`forward`];
//! - [`forward`]: one request to its upstream, bodies streaming both ways;
//! - [`pipeline`]: an intercepted call's stages, through policy; with
//!   [`respond`] (response guardrails), [`record`] (its audit record),
//!   [`render`] (refusals in the provider's shape), [`body`], [`spend`];
//! - [`websocket`]: HTTP/1.1 upgrades bridged byte for byte.
//!
//! A *target* is the `host:port` a client asked for (the CONNECT authority or
//! the absolute URI's); it, not a `Host` header, decides where bytes go.

pub mod body;
pub mod connect;
pub mod conns;
pub mod forward;
pub mod intercept;
pub mod listener;
pub mod pipeline;
pub mod record;
pub mod render;
pub mod respond;
pub mod socket;
pub mod spend;
pub mod websocket;
pub mod workers;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::audit::writer::AuditLog;
use crate::clock::Clock;
use crate::config::{normalize_host, Identity};
use crate::policy::watch::PolicyHandle;
use crate::tls::cache::LeafCache;
use crate::upstream::{BoxError, Upstream};

/// Body type of every response the proxy produces.
pub type ProxyBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// Where a request is going.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Lower-case host name or IP literal (no brackets).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl Target {
    /// `host:port` as written in a URI authority.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Parse an authority (`host:port`, `[v6]:port`); `default_port` when absent.
    pub fn parse(authority: &http::uri::Authority, default_port: Option<u16>) -> Option<Target> {
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return None;
        }
        let port = authority.port_u16().or(default_port)?;
        Some(Target {
            host: normalize_host(host),
            port,
        })
    }
}

/// Everything the request path shares. Built once by `app`.
pub struct ProxyState {
    /// The policy in force (hot-reloaded).
    pub policy: Arc<PolicyHandle>,
    /// The audit log (`None` when `[audit] enabled = false`).
    pub audit: Option<AuditLog>,
    /// Who and which device the agent acts for.
    pub identity: Identity,
    /// WebSocket upgrades on intercepted hosts: governed or refused.
    pub websocket: crate::config::WebSocketMode,
    /// Bounds on what a client may hold.
    pub limits: crate::config::Limits,
    /// Every client connection open.
    pub conns: conns::Conns,
    /// Room for request bodies held for inspection, in MiB
    /// (`limits.max_buffered_bytes`).
    pub buffers: Arc<tokio::sync::Semaphore>,
    /// Budget ledger and prices.
    pub budgets: spend::Budgets,
    /// Leaf certificates.
    pub leaves: LeafCache,
    /// Wall time for everything the proxy and admin API date (the same
    /// clock the leaf cache and the audit writer read).
    pub clock: Clock,
    /// Pooled upstream client and connector.
    pub upstream: Upstream,
    /// The company's AI gateway (`[gateway]`), for providers policy routes
    /// there.
    pub gateway: Option<crate::gateway::Gateway>,
    /// Cancelled when the agent begins shutting down.
    pub shutdown: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    pub tasks: TaskTracker,
    /// The threads client connections run on.
    pub workers: Arc<workers::Workers>,
    /// Hosts already warned about (policy intercepts, CA cannot cover).
    pub warned_uncovered: Mutex<HashSet<String>>,
}

impl ProxyState {
    /// Intercept `host`? Only when the policy lists it *and* the CA may sign
    /// for it; otherwise it is tunnelled (and the gap is logged once).
    pub fn should_intercept(&self, host: &str) -> bool {
        if !self.policy.current().intercept.intercepts(host) {
            return false;
        }
        if self.leaves.ca().permits(host) {
            return true;
        }
        let mut warned = self
            .warned_uncovered
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if warned.insert(host.to_string()) {
            tracing::warn!(
                host,
                "policy intercepts this host but the CA's name constraints do not permit it; \
                 tunnelling it uninspected. Run `outpost ca rotate` and reinstall the CA"
            );
        }
        false
    }
}

/// A complete body.
pub fn full_body(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A plain-text response (for clients talking to the proxy itself).
pub fn text_response(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let mut response = Response::new(full_body(format!("{text}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(s: &str, default: Option<u16>) -> Option<Target> {
        Target::parse(&s.parse().unwrap(), default)
    }

    #[test]
    fn targets_parse_and_normalize() {
        assert_eq!(
            target("API.OpenAI.com:443", None),
            Some(Target {
                host: "api.openai.com".into(),
                port: 443
            })
        );
        assert_eq!(target("example.com", None), None);
        assert_eq!(target("example.com", Some(80)).unwrap().port, 80);
        let v6 = target("[::1]:8443", None).unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.authority(), "[::1]:8443");
    }
}
