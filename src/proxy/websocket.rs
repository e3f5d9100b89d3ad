//! WebSocket upgrades (e.g. OpenAI Realtime) on intercepted hosts.
//!
//! On an intercepted host an upgrade is, in order:
//! - refused when it is plain `ws://`, when `[websocket] mode = "refuse"`
//!   (clients that can fall back to HTTPS then do), when the path names no
//!   socket API Outpost knows and `on_unparseable = "block"`, or when the
//!   handshake names a model policy denies (Realtime `?model=`); each
//!   refusal is answered in the provider's shape and recorded;
//! - governed ([`socket`]): the `permessage-deflate` offer is removed, so
//!   nothing compressed is ever exchanged, and every message is read;
//! - or, for an unknown path under `on_unparseable = "forward"`, bridged
//!   byte for byte with one record saying it was not inspected.
//!
//! The upgrade request goes upstream on its own HTTP/1.1 connection (ALPN
//! `http/1.1` only: WebSockets over h2 are not what providers offer). If the
//! provider answers `101 Switching Protocols`, the client gets the same 101;
//! any other answer is passed back as an ordinary response. Upgrades to
//! hosts that are not intercepted are bridged byte for byte.

use std::sync::Arc;

use http::header::{
    CONNECTION, CONTENT_LENGTH, HOST, SEC_WEBSOCKET_EXTENSIONS, TRANSFER_ENCODING, UPGRADE,
};
use http::uri::Scheme;
use http::{HeaderValue, Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;

use super::forward::{self, strip_hop_by_hop, Route};
use super::pipeline;
use super::record::{audited_path, CallSeen, Outcome, Received};
use super::socket::{self, SessionStart};
use super::{render, ProxyBody, ProxyState};
use crate::audit::writer::AuditPermit;
use crate::config::WebSocketMode;
use crate::policy::decide;
use crate::policy::rules::{OnUnparseable, UnknownEndpoints};
use crate::policy::Policy;
use crate::provider::socket::socket_api;
use crate::provider::{Api, ApiCall, ErrorKind, Provider, ProviderEntry};
use crate::refusal::Refusal;

/// Is this an HTTP/1.1 WebSocket upgrade request? A handshake is a `GET`
/// without a body (RFC 6455 §4.1). Anything else carrying the upgrade
/// headers is an ordinary request, and goes through policy: a `POST` with
/// `Upgrade: websocket` must not reach the bridge, which forwards its body
/// unread to a provider that may well serve it.
pub fn is_upgrade<B>(req: &Request<B>) -> bool {
    let has_token = |name, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    let bodyless = !req.headers().contains_key(TRANSFER_ENCODING)
        && req
            .headers()
            .get(CONTENT_LENGTH)
            .is_none_or(|v| v.as_bytes() == b"0");
    req.version() == Version::HTTP_11
        && req.method() == Method::GET
        && bodyless
        && has_token(CONNECTION, "upgrade")
        && has_token(UPGRADE, "websocket")
}

/// What to do with one upgrade on an intercepted host.
enum Plan {
    /// Frames parsed both ways, every call through policy.
    Govern(SessionStart),
    /// Bridged byte for byte, with one record saying so: why, and the
    /// audit slot taken before anything is bridged.
    Uninspected(String, Option<AuditPermit>),
}

/// Handle one upgrade request: governed on intercepted hosts (or refused,
/// per `[websocket] mode` and policy), bridged as is elsewhere.
pub async fn bridge(
    state: &Arc<ProxyState>,
    route: &Route,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    if !route.intercepted {
        return upgrade(state, route, req, None).await;
    }
    let policy = state.policy.current();
    let provider = pipeline::provider_of(&policy, &route.target.host);
    let path = audited_path(req.uri().path(), req.uri().query());
    let api = socket_api(req.uri().path());
    match plan(state, route, &policy, &provider, &req, api, path.clone()) {
        Ok(plan) => upgrade(state, route, req, Some((plan, policy, provider, path))).await,
        Err(refusal) => {
            tracing::info!(
                host = %route.target.host,
                rule = refusal.rule.as_deref().unwrap_or("-"),
                "websocket upgrade refused: {}",
                refusal.message
            );
            let response = render::refusal(&refusal, provider.kind, api);
            record_refusal(state, &policy, &provider, route, path, api, refusal);
            response
        }
    }
}

/// Decide what an upgrade on an intercepted host gets.
fn plan(
    state: &ProxyState,
    route: &Route,
    policy: &Policy,
    provider: &ProviderEntry,
    req: &Request<Incoming>,
    api: Api,
    path: String,
) -> Result<Plan, Refusal> {
    let host = &route.target.host;
    if route.scheme != Scheme::HTTPS {
        return Err(Refusal::client(
            Some("plain_http"),
            format!(
                "Outpost refuses plain ws:// to {host}: it is an AI provider host and the \
                 socket would cross the network in clear. Use wss://{host}/ instead."
            ),
        ));
    }
    if state.websocket == WebSocketMode::Refuse {
        return Err(Refusal {
            kind: ErrorKind::WebSocketRefused,
            ..Refusal::client(
                Some("websocket_refused"),
                format!(
                    "Outpost on this device does not carry WebSockets to {host} \
                     ([websocket] mode = \"refuse\"); use HTTPS for this API."
                ),
            )
        });
    }
    if api == Api::Unknown {
        // An endpoint Outpost does not know, as over HTTPS
        // (`unknown_endpoints`); its messages cannot be scanned, so `scan`
        // leaves it to `on_unparseable`.
        let forward = match (policy.unknown_endpoints, policy.on_unparseable) {
            (UnknownEndpoints::Block, _) => {
                return Err(Refusal::policy(
                    "unknown_endpoints",
                    format!(
                        "Outpost policy does not allow a WebSocket to {}: Outpost does not \
                         know this endpoint (unknown_endpoints = \"block\").",
                        req.uri().path()
                    ),
                ))
            }
            (UnknownEndpoints::Forward, _) => "unknown_endpoints = \"forward\"",
            (UnknownEndpoints::Scan, OnUnparseable::Forward) => "on_unparseable = \"forward\"",
            (UnknownEndpoints::Scan, OnUnparseable::Block) => {
                return Err(Refusal::client(
                    Some("on_unparseable"),
                    format!(
                        "Outpost cannot inspect a WebSocket to {}: it does not know this \
                         endpoint (on_unparseable = \"block\").",
                        req.uri().path()
                    ),
                ))
            }
        };
        // The slot first: a full audit queue refuses (or, by policy, serves
        // unaudited) this socket as it does any call.
        return Ok(Plan::Uninspected(
            format!("a WebSocket endpoint Outpost does not know ({forward})"),
            pipeline::audit_permit(state, policy, host)?,
        ));
    }
    // Realtime names its model in the handshake.
    let model = req
        .uri()
        .query()
        .and_then(|q| url_query_value(q, "model").filter(|m| !m.is_empty()));
    if let Some(model) = &model {
        decide::check_model(policy, &provider.name, model)?;
    }
    Ok(Plan::Govern(SessionStart {
        api,
        provider: provider.clone(),
        host: host.clone(),
        path,
        model,
        max_message_bytes: usize::try_from(policy.max_body_bytes).unwrap_or(usize::MAX),
    }))
}

/// The value of query parameter `name`, percent-decoded.
fn url_query_value(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        (decode(key) == name).then(|| decode(value))
    })
}

/// One record for a refused upgrade.
fn record_refusal(
    state: &ProxyState,
    policy: &Arc<Policy>,
    provider: &ProviderEntry,
    route: &Route,
    path: String,
    api: Api,
    refusal: Refusal,
) {
    let Ok(permit) = super::pipeline::audit_permit(state, policy, &route.target.host) else {
        return;
    };
    let mut outcome = opened(state, policy, provider, route, path, permit);
    let call = ApiCall::bare(provider.kind, api, None);
    outcome.call = Some(CallSeen::of(&call, 0, policy, None));
    outcome.status = refusal.status();
    outcome.refusal = Some(refusal);
    let _ = outcome.finish();
}

fn opened(
    state: &ProxyState,
    policy: &Arc<Policy>,
    provider: &ProviderEntry,
    route: &Route,
    path: String,
    permit: Option<AuditPermit>,
) -> Outcome {
    let mut outcome = Outcome::begin(
        permit,
        policy.clone(),
        (std::time::Instant::now(), state.clock.now()),
        (&state.identity.user, &state.identity.device),
        (&provider.name, &route.target.host),
        "GET",
        path,
    );
    outcome.socket = true;
    outcome
}

/// The upgrade itself: upstream handshake, then the session (`plan`), or a
/// byte-for-byte bridge for hosts that are not intercepted.
async fn upgrade(
    state: &Arc<ProxyState>,
    route: &Route,
    mut req: Request<Incoming>,
    plan: Option<(Plan, Arc<Policy>, ProviderEntry, String)>,
) -> Response<ProxyBody> {
    let host = route.target.host.clone();
    let shape = plan
        .as_ref()
        .map_or(Provider::for_host(&host), |(_, _, p, _)| p.kind);
    let fail = |kind, cause: String| {
        tracing::info!(host = %host, "websocket upstream failed: {cause}");
        render::refusal(
            &Refusal::upstream(kind, format!("Outpost could not reach {host}: {cause}")),
            shape,
            Api::Unknown,
        )
    };
    let client_upgrade = hyper::upgrade::on(&mut req);
    // A session is busy while it lasts: an idle socket is not an idle connection.
    let busy = req
        .extensions()
        .get::<Arc<super::conns::Conn>>()
        .map(|c| c.busy());
    let uri = match route.uri(req.uri().path_and_query()) {
        Ok(uri) => uri,
        Err(err) => return fail(ErrorKind::BadRequest, err.to_string()),
    };
    let io = match state.upstream.connector().connect_uri(&uri).await {
        Ok(io) => io,
        Err(err) if err.is_timeout() => {
            return fail(ErrorKind::UpstreamTimeout, err.kind.to_string())
        }
        Err(err) => return fail(ErrorKind::UpstreamUnavailable, err.kind.to_string()),
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(io).await {
        Ok(pair) => pair,
        Err(err) => return fail(ErrorKind::UpstreamUnavailable, err.to_string()),
    };
    tokio::spawn(async move {
        if let Err(err) = conn.with_upgrades().await {
            tracing::debug!("websocket upstream connection: {err}");
        }
    });

    let (mut parts, body) = req.into_parts();
    let upgrade = parts.headers.get(UPGRADE).cloned();
    strip_hop_by_hop(&mut parts.headers);
    if matches!(plan, Some((Plan::Govern(_), ..))) {
        // Compressed frames cannot be scanned: never let compression be
        // negotiated (the offer goes nowhere, so neither side may use it).
        parts.headers.remove(SEC_WEBSOCKET_EXTENSIONS);
    }
    parts
        .headers
        .insert(CONNECTION, HeaderValue::from_static("upgrade"));
    if let Some(upgrade) = upgrade {
        parts.headers.insert(UPGRADE, upgrade);
    }
    if let Some(authority) = uri.authority() {
        if let Ok(value) = HeaderValue::from_str(authority.as_str()) {
            parts.headers.insert(HOST, value);
        }
    }
    parts.uri = match uri.path_and_query() {
        Some(pq) => pq.as_str().parse().unwrap_or_default(),
        None => http::Uri::from_static("/"),
    };
    let upstream_req = Request::from_parts(parts, body);

    let wait = state.upstream.response_timeout();
    let mut response = match tokio::time::timeout(wait, sender.send_request(upstream_req)).await {
        Ok(Ok(response)) => response,
        Ok(Err(err)) => return fail(ErrorKind::UpstreamUnavailable, err.to_string()),
        Err(_) => {
            return fail(
                ErrorKind::UpstreamTimeout,
                format!(
                    "no answer to the upgrade within {} s ([upstream] response_timeout_secs)",
                    wait.as_secs()
                ),
            )
        }
    };
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return forward::client_response(response, state.upstream.body_idle_timeout());
    }
    let governed = matches!(plan, Some((Plan::Govern(_), ..)));
    if governed && response.headers().contains_key(SEC_WEBSOCKET_EXTENSIONS) {
        return fail(
            ErrorKind::UpstreamUnavailable,
            "the provider accepted the WebSocket with an extension Outpost did not offer \
             (compressed frames cannot be inspected)"
                .into(),
        );
    }

    let upstream_upgrade = hyper::upgrade::on(&mut response);
    let state_for_task = state.clone();
    let route = route.clone();
    state.tasks.spawn(async move {
        let _busy = busy;
        let (client, upstream) = match tokio::try_join!(client_upgrade, upstream_upgrade) {
            Ok(pair) => pair,
            Err(err) => {
                tracing::debug!(host = %route.target.host, "websocket upgrade failed: {err}");
                return;
            }
        };
        match plan {
            Some((Plan::Govern(start), ..)) => {
                socket::run(state_for_task, start, client, upstream).await;
            }
            Some((Plan::Uninspected(why, permit), policy, provider, path)) => {
                let mut outcome = opened(&state_for_task, &policy, &provider, &route, path, permit);
                let call = ApiCall::bare(provider.kind, Api::Unknown, None);
                outcome.call = Some(CallSeen::of(&call, 0, &policy, Some(why)));
                let (up, down) = copy(&route.target.host, client, upstream).await;
                outcome.received = Some(Received {
                    bytes: up,
                    sha256: None,
                });
                outcome.bytes_out = down;
                outcome.status = 101;
                let _ = outcome.finish();
            }
            None => {
                copy(&route.target.host, client, upstream).await;
            }
        }
    });
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(SEC_WEBSOCKET_EXTENSIONS);
    Response::from_parts(parts, super::full_body(""))
}

/// Bytes both ways until either side closes: (client → upstream, back).
async fn copy(host: &str, client: Upgraded, upstream: Upgraded) -> (u64, u64) {
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((up, down)) => {
            tracing::debug!(host = %host, up, down, "websocket closed");
            (up, down)
        }
        Err(err) => {
            tracing::debug!(host = %host, "websocket ended: {err}");
            (0, 0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_websocket_upgrades_only() {
        let req = |conn: &str, up: &str, v: Version| {
            Request::builder()
                .version(v)
                .header(CONNECTION, conn)
                .header(UPGRADE, up)
                .body(())
                .unwrap()
        };
        assert!(is_upgrade(&req(
            "keep-alive, Upgrade",
            "websocket",
            Version::HTTP_11
        )));
        assert!(!is_upgrade(&req(
            "keep-alive",
            "websocket",
            Version::HTTP_11
        )));
        assert!(!is_upgrade(&req("upgrade", "h2c", Version::HTTP_11)));
        assert!(!is_upgrade(&req("upgrade", "websocket", Version::HTTP_2)));
        // Only a bodyless GET is a handshake; anything else goes through policy.
        let with = |method: &str, header: (&str, &str)| {
            Request::builder()
                .method(method)
                .header(CONNECTION, "upgrade")
                .header(UPGRADE, "websocket")
                .header(header.0, header.1)
                .body(())
                .unwrap()
        };
        assert!(is_upgrade(&with("GET", ("content-length", "0"))));
        assert!(!is_upgrade(&with("POST", ("x-a", "b"))));
        assert!(!is_upgrade(&with("GET", ("content-length", "12"))));
        assert!(!is_upgrade(&with("GET", ("transfer-encoding", "chunked"))));
    }
}
