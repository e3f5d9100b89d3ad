//! `CONNECT host:port`: tunnel it, or intercept it.
//!
//! Tunnel: dial the host *before* answering, so a dead host is a 502 the
//! client can report rather than a reset after a 200; then copy bytes both
//! ways, untouched and unread. A host that resolves only to this machine
//! (loopback, link-local, the metadata service: the agent's own ports
//! among them) is refused with 403 unless `[upstream]
//! danger_allow_destinations` lists it.
//!
//! Intercept: mint (or take from the cache) the host's leaf *before*
//! answering, so a leaf that cannot be made is a 502 naming the host; then
//! answer 200 and hand the upgraded connection to [`super::intercept`], which
//! speaks TLS to the client with that leaf.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::conns::Conn;
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
        start_intercept(state, req, target).await
    } else {
        start_tunnel(state, req, target).await
    }
}

async fn start_intercept(
    state: Arc<ProxyState>,
    req: Request<Incoming>,
    target: Target,
) -> Response<ProxyBody> {
    let leaf = match state.leaves.get_or_mint(&target.host).await {
        Ok(leaf) => leaf,
        Err(err) => {
            tracing::error!(host = %target.host, "cannot mint a leaf: {err}");
            return text_response(
                StatusCode::BAD_GATEWAY,
                &format!(
                    "Outpost could not make a certificate for {}: {err}. This is a fault in \
                     the agent on this device, not in the request.",
                    target.host
                ),
            );
        }
    };
    let tasks = state.tasks.clone();
    let client = req.extensions().get::<Arc<Conn>>().cloned();
    tasks.spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => intercept::serve(state, upgraded, target, leaf, client).await,
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
    let client = req.extensions().get::<Arc<Conn>>().cloned();
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
            } else if err.is_forbidden() {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::BAD_GATEWAY
            };
            return text_response(status, &format!("Outpost could not reach {err}"));
        }
    };
    tracing::debug!(host = %target.host, port = target.port, "tunnel");
    state.tasks.spawn(async move {
        let closed = super::conns::closed(client);
        tokio::select! {
            () = async {
                match hyper::upgrade::on(req).await {
                    Ok(upgraded) => copy_both_ways(upgraded, upstream, &target).await,
                    Err(err) => tracing::debug!(host = %target.host, "CONNECT upgrade failed: {err}"),
                }
            } => {}
            () = closed => tracing::debug!(host = %target.host, "idle tunnel closed"),
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
