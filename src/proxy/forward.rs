//! One request to its upstream, with bodies streaming both ways.
//!
//! The request keeps its method, path, query, headers and body; hop-by-hop
//! headers are dropped in both directions (RFC 9110 §7.6.1) and the URI is
//! rebuilt from the *route* (the CONNECT target or absolute URI), never from
//! a `Host` header. On intercepted routes upstream compression is refused
//! (`Accept-Encoding: identity`) so later stages see plain text. Response
//! bodies are passed frame by frame: nothing here buffers, so server-sent
//! events reach the client as the provider sends them.
//!
//! Failures before the response headers are an [`UpstreamError`] (502, or
//! 504 on timeout), naming the host and the cause; the caller renders it in
//! the provider's JSON error shape. Nothing here reads the response to
//! decide what happened: the upstream's headers are the upstream's.

use std::error::Error as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;

use http::header::{HeaderName, ACCEPT_ENCODING, CONNECTION, HOST};
use http::uri::{PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Request, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::{render, websocket, ProxyBody, ProxyState, Target};
use crate::provider::{Api, ErrorKind, Provider};
use crate::refusal::Refusal;
use crate::upstream::{BoxError, ConnectError, Upstream, UpstreamBody};

/// Where one request goes.
#[derive(Debug, Clone)]
pub struct Route {
    /// `https` for intercepted CONNECTs, `http` for plain forward proxying.
    pub scheme: Scheme,
    /// The host and port the client asked for.
    pub target: Target,
    /// Whether this host is on the intercept list (inspection applies).
    pub intercepted: bool,
}

impl Route {
    /// The upstream URI for `path_and_query` on this route.
    pub fn uri(&self, path_and_query: Option<&PathAndQuery>) -> Result<Uri, http::Error> {
        let default_port = if self.scheme == Scheme::HTTPS {
            443
        } else {
            80
        };
        let authority = if self.target.port == default_port {
            if self.target.host.contains(':') {
                format!("[{}]", self.target.host)
            } else {
                self.target.host.clone()
            }
        } else {
            self.target.authority()
        };
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(authority)
            .path_and_query(path_and_query.map_or("/", |p| p.as_str()))
            .build()
    }
}

/// Headers that describe one hop, never forwarded.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Drop hop-by-hop headers, including any that `Connection` names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Forward `req` along `route`: WebSocket upgrades are bridged, intercepted
/// API calls go through policy, everything else is passed on as is.
pub async fn forward(
    state: &Arc<ProxyState>,
    route: &Route,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    if websocket::is_upgrade(&req) {
        return websocket::bridge(state, route, req).await;
    }
    if route.intercepted {
        return super::pipeline::handle(state, route, req).await;
    }
    match send(state, route, req.map(|b| b.map_err(BoxError::from).boxed())).await {
        Ok(response) => client_response(response, state.upstream.body_idle_timeout()),
        Err(err) => render::refusal(
            &err.into(),
            Provider::for_host(&route.target.host),
            Api::Unknown,
        ),
    }
}

/// Why an upstream request got no response headers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct UpstreamError {
    /// Unavailable (502) or timed out (504).
    pub kind: ErrorKind,
    /// For the caller: names the host and the cause.
    pub message: String,
}

impl From<UpstreamError> for Refusal {
    fn from(err: UpstreamError) -> Refusal {
        Refusal::upstream(err.kind, err.message)
    }
}

/// Send `req` to the route's upstream; the response body streams back.
/// Failures before the response headers are an [`UpstreamError`].
pub async fn send(
    state: &ProxyState,
    route: &Route,
    req: Request<ProxyBody>,
) -> Result<Response<Incoming>, UpstreamError> {
    let host = &route.target.host;
    let upstream_req = upstream_request(route, req).map_err(|err| UpstreamError {
        kind: ErrorKind::UpstreamUnavailable,
        message: format!("Outpost could not build the request to {host}: {err}"),
    })?;
    send_prepared(&state.upstream, host, upstream_req).await
}

/// Send a request whose URI and headers are final through `upstream`;
/// `host` names the destination in errors.
pub async fn send_prepared(
    upstream: &Upstream,
    host: &str,
    upstream_req: Request<UpstreamBody>,
) -> Result<Response<Incoming>, UpstreamError> {
    let started = Instant::now();
    let method = upstream_req.method().clone();
    // Never log the query: Gemini puts the API key in `?key=`.
    let path = upstream_req.uri().path().to_string();
    let limit = upstream.response_timeout();
    let outcome = tokio::time::timeout(limit, upstream.send(upstream_req)).await;
    let response = match outcome {
        Ok(Ok(response)) => response,
        Ok(Err(err)) => {
            let (kind, cause) = describe(&err);
            tracing::info!(%host, %method, path, "upstream failed: {cause}");
            return Err(UpstreamError {
                kind,
                message: format!("Outpost could not reach {host}: {cause}"),
            });
        }
        Err(_) => {
            tracing::info!(%host, %method, path, "upstream timed out");
            return Err(UpstreamError {
                kind: ErrorKind::UpstreamTimeout,
                message: format!(
                    "Outpost gave up waiting for {host} after {}s (upstream.response_timeout_secs)",
                    limit.as_secs()
                ),
            });
        }
    };
    tracing::debug!(
        %host,
        %method,
        path,
        status = response.status().as_u16(),
        headers_ms = started.elapsed().as_millis() as u64,
        "forwarded"
    );
    Ok(response)
}

/// `req` as it goes to the route's upstream: its URI, HTTP/1.1, no
/// hop-by-hop headers, and no compression on intercepted hosts.
pub fn upstream_request(
    route: &Route,
    req: Request<ProxyBody>,
) -> Result<Request<UpstreamBody>, http::Error> {
    let (mut parts, body) = req.into_parts();
    parts.uri = route.uri(parts.uri.path_and_query())?;
    // Providers are spoken to over HTTP/1.1 (see `upstream`), whatever the
    // client spoke; the pooled client refuses an h2 request on h1.
    parts.version = Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(HOST);
    if route.intercepted {
        parts
            .headers
            .insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    }
    Ok(Request::from_parts(parts, body))
}

/// The upstream's response as the client gets it: hop-by-hop headers
/// dropped, and its body ended with an error after `idle` without a byte.
pub fn client_response(response: Response<Incoming>, idle: Duration) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    parts.version = Version::HTTP_11;
    Response::from_parts(parts, IdleBody::new(body, idle).boxed())
}

/// An upstream body that fails after `idle` of silence, rather than hold
/// the call (and its client) forever.
struct IdleBody {
    inner: Incoming,
    idle: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl IdleBody {
    fn new(inner: Incoming, idle: Duration) -> IdleBody {
        IdleBody {
            inner,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

impl hyper::body::Body for IdleBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let deadline = tokio::time::Instant::now() + this.idle;
                this.timer.as_mut().reset(deadline);
                Poll::Ready(frame.map(|f| f.map_err(BoxError::from)))
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(BoxError::from(format!(
                    "the provider sent nothing for {} s (upstream.body_idle_timeout_secs)",
                    this.idle.as_secs()
                ))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The error kind and a one-line cause for a failed upstream request.
fn describe(err: &hyper_util::client::legacy::Error) -> (ErrorKind, String) {
    let mut source: Option<&(dyn std::error::Error + 'static)> = err.source();
    let mut chain = Vec::new();
    while let Some(e) = source {
        if let Some(connect) = e.downcast_ref::<ConnectError>() {
            let kind = if connect.is_timeout() {
                ErrorKind::UpstreamTimeout
            } else if connect.is_forbidden() {
                // Refused by the agent's destination rule: the caller's request.
                ErrorKind::BadRequest
            } else {
                ErrorKind::UpstreamUnavailable
            };
            return (kind, connect.kind.to_string());
        }
        if let Some(hyper_err) = e.downcast_ref::<hyper::Error>() {
            if hyper_err.is_incomplete_message() {
                return (
                    ErrorKind::UpstreamUnavailable,
                    "the connection closed before a response arrived".into(),
                );
            }
        }
        chain.push(e.to_string());
        source = e.source();
    }
    if chain.is_empty() {
        chain.push(err.to_string());
    }
    chain.dedup();
    (ErrorKind::UpstreamUnavailable, chain.join(": "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(scheme: Scheme, host: &str, port: u16) -> Route {
        Route {
            scheme,
            target: Target {
                host: host.into(),
                port,
            },
            intercepted: true,
        }
    }

    #[test]
    fn uri_omits_default_port_and_keeps_query() {
        let pq = PathAndQuery::from_static("/v1beta/models/x:generateContent?key=k");
        let uri = route(Scheme::HTTPS, "api.openai.com", 443)
            .uri(Some(&pq))
            .unwrap();
        assert_eq!(
            uri.to_string(),
            "https://api.openai.com/v1beta/models/x:generateContent?key=k"
        );
        let uri = route(Scheme::HTTP, "plain.test", 8080).uri(None).unwrap();
        assert_eq!(uri.to_string(), "http://plain.test:8080/");
        let uri = route(Scheme::HTTPS, "::1", 443).uri(None).unwrap();
        assert_eq!(uri.to_string(), "https://[::1]/");
    }

    #[test]
    fn hop_by_hop_headers_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("keep-alive, x-hop"));
        h.insert("x-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        h.insert("authorization", HeaderValue::from_static("Bearer sk"));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        strip_hop_by_hop(&mut h);
        let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(names, ["authorization", "content-type"]);
    }
}
