//! WebSocket upgrades (e.g. OpenAI Realtime) on intercepted hosts.
//!
//! The upgrade request goes upstream on its own HTTP/1.1 connection (ALPN
//! `http/1.1` only: WebSockets over h2 are not what providers offer). If the
//! provider answers `101 Switching Protocols`, the client gets the same 101
//! and the two upgraded connections are bridged byte for byte until either
//! side closes. Frames are not inspected yet. Any other answer is passed back
//! as an ordinary response.

use http::header::{CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::forward::{strip_hop_by_hop, Route};
use super::{render, ProxyBody, ProxyState};
use crate::provider::{Api, ErrorKind, Provider};
use crate::refusal::Refusal;
use crate::upstream::{Alpn, BoxError};

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

/// Bridge one upgrade request to the route's upstream.
pub async fn bridge(
    state: &ProxyState,
    route: &Route,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
    let host = route.target.host.clone();
    let fail = |kind, cause: String| {
        tracing::info!(host = %host, "websocket upstream failed: {cause}");
        render::refusal(
            &Refusal::upstream(kind, format!("Outpost could not reach {host}: {cause}")),
            Provider::for_host(&host),
            Api::Unknown,
        )
    };
    let client_upgrade = hyper::upgrade::on(&mut req);
    let uri = match route.uri(req.uri().path_and_query()) {
        Ok(uri) => uri,
        Err(err) => return fail(ErrorKind::BadRequest, err.to_string()),
    };
    let io = match state
        .upstream
        .connector()
        .connect_uri(&uri, Alpn::Http1Only)
        .await
    {
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

    let mut response = match sender.send_request(upstream_req).await {
        Ok(response) => response,
        Err(err) => return fail(ErrorKind::UpstreamUnavailable, err.to_string()),
    };
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        return Response::from_parts(parts, body.map_err(BoxError::from).boxed());
    }

    let upstream_upgrade = hyper::upgrade::on(&mut response);
    let target = route.target.host.clone();
    state.tasks.spawn(async move {
        match tokio::try_join!(client_upgrade, upstream_upgrade) {
            Ok((client, upstream)) => {
                let mut client = TokioIo::new(client);
                let mut upstream = TokioIo::new(upstream);
                match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                    Ok((up, down)) => tracing::debug!(host = %target, up, down, "websocket closed"),
                    Err(err) => tracing::debug!(host = %target, "websocket ended: {err}"),
                }
            }
            Err(err) => tracing::debug!(host = %target, "websocket upgrade failed: {err}"),
        }
    });
    let (parts, _) = response.into_parts();
    Response::from_parts(parts, super::full_body(""))
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
