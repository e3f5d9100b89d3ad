//! Accepts proxy clients and routes their requests.
//!
//! Each accepted socket gets `TCP_NODELAY` and an HTTP/1.1 server with
//! upgrades (CONNECT needs them). A request is one of:
//! - `CONNECT host:port` → [`super::connect`];
//! - absolute-form `http://host/...` → [`super::forward`] (plain forward proxy);
//! - anything else (a browser pointed at the proxy port) → 400 with a hint.
//!
//! Each connection is admitted to the registry ([`super::conns`]) first: at
//! `limits.max_connections` the longest-idle one is closed to make room, and
//! one idle past `limits.idle_timeout` is closed.
//!
//! On shutdown the loop stops accepting and each connection is told to
//! finish its in-flight request and close.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};

use super::conns::{Conn, Tracked};
use super::{connect, forward, text_response, ProxyBody, ProxyState, Target};

/// How long a client may take to send request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest wait for an evicted connection's socket to close.
const EVICTION_WAIT: Duration = Duration::from_millis(100);

/// Accept until shutdown.
pub async fn serve(listener: TcpListener, state: Arc<ProxyState>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = state.shutdown.cancelled() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let Some((conn, evicted)) = state.conns.admit() else {
                    tracing::warn!(%peer, "every client connection is busy (limits.max_connections): refusing a new one");
                    continue;
                };
                if let Some(evicted) = evicted {
                    // Let the closed connection's worker drop its socket
                    // before this loop takes another descriptor (bounded:
                    // a connection not yet on its worker has no socket
                    // to wait for).
                    let _ = tokio::time::timeout(EVICTION_WAIT, evicted.released.cancelled()).await;
                }
                let _ = stream.set_nodelay(true);
                tracing::trace!(%peer, "accepted");
                // Moved to a worker's own runtime (deregistered here).
                let stream = match stream.into_std() {
                    Ok(stream) => stream,
                    Err(err) => {
                        tracing::warn!(%peer, "cannot hand the connection to a worker: {err}");
                        continue;
                    }
                };
                let served = state.clone();
                let tracker = state.tasks.clone();
                state.workers.spawn(move || {
                    tracker.track_future(async move {
                        match TcpStream::from_std(stream) {
                            Ok(stream) => serve_client(stream, conn, served).await,
                            Err(err) => tracing::warn!(%peer, "cannot serve the connection: {err}"),
                        }
                    })
                });
            }
            Err(err) => {
                // Out of file descriptors and similar: back off, keep serving.
                tracing::warn!("accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    tracing::debug!("proxy listener closed");
}

async fn serve_client(stream: TcpStream, client: Arc<Conn>, state: Arc<ProxyState>) {
    let svc_state = state.clone();
    let svc_client = client.clone();
    let service = service_fn(move |mut req: Request<Incoming>| {
        let state = svc_state.clone();
        // Later stages (CONNECT's tunnel or interception) close with it.
        req.extensions_mut().insert(svc_client.clone());
        async move { Ok::<_, Infallible>(route(state, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(Tracked::new(stream, client.clone())), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = client.closed.cancelled() => return,
        () = state.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = result {
        tracing::debug!("client connection ended: {err}");
    }
}

async fn route(state: Arc<ProxyState>, req: Request<Incoming>) -> Response<ProxyBody> {
    if req.method() == Method::CONNECT {
        return connect::handle(state, req).await;
    }
    let uri = req.uri();
    if uri.scheme_str() == Some("http") {
        if let Some(target) = uri.authority().and_then(|a| Target::parse(a, Some(80))) {
            let intercepted = state.policy.current().intercept.intercepts(&target.host);
            let route = forward::Route {
                scheme: http::uri::Scheme::HTTP,
                target,
                intercepted,
            };
            return forward::forward(&state, &route, req).await;
        }
    }
    if uri.scheme_str() == Some("https") {
        return text_response(
            StatusCode::BAD_REQUEST,
            "Outpost: send https:// requests through CONNECT (set HTTPS_PROXY=http://127.0.0.1:8877)",
        );
    }
    text_response(
        StatusCode::BAD_REQUEST,
        "Outpost is a forward proxy, not a web server: set HTTPS_PROXY=http://127.0.0.1:8877 \
         (status and the CA are on the admin port)",
    )
}
