//! An intercepted CONNECT: TLS with a minted leaf, then HTTP/1.1 or HTTP/2.
//!
//! The leaf is for the CONNECT host, not the SNI: the CONNECT authority is
//! where bytes will go, so it is the only name the client may be promised.
//! ALPN offers `h2` and `http/1.1`; hyper-util's auto server serves whichever
//! the client speaks, with upgrades (WebSockets) enabled.

use std::convert::Infallible;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio_rustls::TlsAcceptor;

use super::conns::{busy_body, Conn};
use super::forward::{self, Route};
use super::{ProxyState, Target};

/// Serve one intercepted connection, with the host's leaf `config`, until
/// it closes or shutdown completes.
pub async fn serve(
    state: Arc<ProxyState>,
    upgraded: Upgraded,
    target: Target,
    config: Arc<rustls::ServerConfig>,
    client: Option<Arc<Conn>>,
) {
    let accept = TlsAcceptor::from(config).accept(TokioIo::new(upgraded));
    let tls = match tokio::time::timeout(state.limits.handshake_timeout, accept).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(err)) => {
            // Usually the client does not trust Outpost's CA yet.
            tracing::info!(host = %target.host, "client TLS handshake failed: {err}");
            return;
        }
        Err(_) => {
            tracing::info!(host = %target.host, "client TLS handshake timed out");
            return;
        }
    };
    if let Some(client) = &client {
        client.serving();
    }
    if let Some(sni) = tls.get_ref().1.server_name() {
        if !sni.eq_ignore_ascii_case(&target.host) {
            tracing::debug!(host = %target.host, sni, "SNI differs from the CONNECT host");
        }
    }

    let route = Arc::new(Route {
        scheme: http::uri::Scheme::HTTPS,
        target,
        intercepted: true,
    });
    let svc_state = state.clone();
    let svc_client = client.clone();
    let service = service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
        let state = svc_state.clone();
        let route = route.clone();
        // Busy from the request until its response's last byte (and a
        // WebSocket takes its own hold for the session).
        let busy = svc_client.as_ref().map(|c| c.busy());
        if let Some(client) = &svc_client {
            req.extensions_mut().insert(client.clone());
        }
        async move {
            let response = forward::forward(&state, &route, req).await;
            Ok::<_, Infallible>(match busy {
                Some(busy) => response.map(|body| busy_body(body, busy)),
                None => response,
            })
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    // A silent HTTP/2 client is pinged, and the connection (with whatever
    // streams it holds upstream) closed if the ping goes unanswered: a
    // laptop that went to sleep mid-stream does not hold a provider stream.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(state.limits.h2_keepalive))
        .keep_alive_timeout(state.limits.h2_keepalive);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = super::conns::closed(client) => {
            tracing::debug!("idle intercepted connection closed");
            return;
        }
        () = state.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = result {
        tracing::debug!("intercepted connection ended: {err}");
    }
}
