//! `CONNECT host:port`: tunnel it, or intercept it.
//!
//! Tunnel: dial the host *before* answering, so a dead host is a 502 the
//! client can report rather than a reset after a 200; then copy bytes both
//! ways, untouched and unread.
//!
//! Intercept: answer 200 at once and hand the upgraded connection to
//! [`super::intercept`], which speaks TLS to the client with a leaf from
//! Outpost's CA.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::{full_body, intercept, text_response, ProxyBody, ProxyState, Target};

/// Answer one CONNECT request.
pub async fn handle(state: Arc<ProxyState>, req: Request<Incoming>) -> Response<ProxyBody> {
    let Some(target) = req.uri().authority().and_then(|a| Target::parse(a, None)) else {
        return text_response(
            StatusCode::BAD_REQUEST,
            "Outpost: CONNECT needs an authority of the form host:port",
        );
    };
    if state.should_intercept(&target.host) {
        start_intercept(state, req, target)
    } else {
        start_tunnel(state, req, target).await
    }
}

fn start_intercept(
    state: Arc<ProxyState>,
    req: Request<Incoming>,
    target: Target,
) -> Response<ProxyBody> {
    let tasks = state.tasks.clone();
    tasks.spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => intercept::serve(state, upgraded, target).await,
            Err(err) => tracing::debug!(host = %target.host, "CONNECT upgrade failed: {err}"),
        }
    });
    established()
}

async fn start_tunnel(
    state: Arc<ProxyState>,
    req: Request<Incoming>,
    target: Target,
) -> Response<ProxyBody> {
    let upstream = match state
        .upstream
        .connector()
        .connect_tcp(&target.host, target.port)
        .await
    {
        Ok(stream) => stream,
        Err(err) => {
            tracing::info!(host = %target.host, "tunnel failed: {err}");
            let status = if err.is_timeout() {
                StatusCode::GATEWAY_TIMEOUT
            } else {
                StatusCode::BAD_GATEWAY
            };
            return text_response(status, &format!("Outpost could not reach {err}"));
        }
    };
    tracing::debug!(host = %target.host, port = target.port, "tunnel");
    state.tasks.spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => copy_both_ways(upgraded, upstream, &target).await,
            Err(err) => tracing::debug!(host = %target.host, "CONNECT upgrade failed: {err}"),
        }
    });
    established()
}

async fn copy_both_ways(client: Upgraded, mut upstream: TcpStream, target: &Target) {
    let mut client = TokioIo::new(client);
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((up, down)) => tracing::trace!(host = %target.host, up, down, "tunnel closed"),
        Err(err) => tracing::debug!(host = %target.host, "tunnel ended: {err}"),
    }
}

fn established() -> Response<ProxyBody> {
    let mut response = Response::new(full_body(""));
    *response.status_mut() = StatusCode::OK;
    response
}
