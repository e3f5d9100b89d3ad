//! `FakeProvider`: a stand-in for the LLM provider APIs that the agent forwards to.
//!
//! It listens on loopback (port 0 unless told otherwise), speaks TLS with a certificate from
//! a [`TestCa`] (or plain HTTP for forward-proxy tests), serves HTTP/1.1 and HTTP/2 with
//! upgrades through hyper-util's auto builder, and *records* every request it receives
//! (method, path and query, headers, body, HTTP version, TLS SNI) so a test can assert on
//! what actually reached "the provider".
//!
//! Built-in routes (custom routes added with [`FakeProviderBuilder::route`] win over them):
//! - `POST /v1/chat/completions`: an OpenAI `chat.completion`, or with `"stream": true`
//!   an SSE stream of `chat.completion.chunk` events ending in `data: [DONE]`;
//! - `POST /v1/messages`: an Anthropic Messages response, or with `"stream": true` the
//!   real Messages event sequence;
//! - `GET /v1/realtime…` with `Upgrade: websocket`: sends a `session.created` text message,
//!   then echoes every text/binary message back;
//! - anything else: 404 with an OpenAI-shaped JSON error.
//!
//! Streams put every SSE event in its own body frame, spaced by `stream_delay`, so a test
//! can tell a streaming proxy from a buffering one. The fake runs on its own tokio runtime,
//! which lets tests be plain `#[test]` functions that call blocking clients.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::ca::TestCa;

/// Names on the fake's TLS certificate unless more are added with `extra_name`.
pub const DEFAULT_FAKE_NAMES: &[&str] = &[
    "api.openai.com",
    "api.anthropic.com",
    "mtls.api.openai.com",
    "tunnel.test",
];

/// Header the fake puts on every response, so tests can tell its answers from the agent's.
pub const FAKE_MARKER_HEADER: &str = "x-fake-provider";

/// Assistant text of non-streaming replies.
pub const FAKE_REPLY_TEXT: &str = "Hello from the fake provider.";

/// First message the realtime WebSocket sends after the upgrade (server → client direction).
pub const REALTIME_GREETING: &str = r#"{"type":"session.created","session":{"id":"sess_fake"}}"#;

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: Method,
    /// Path and query, e.g. `/v1/chat/completions?x=1` (origin form even for HTTP/2).
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub version: Version,
    /// `Host` header (HTTP/1) or `:authority` (HTTP/2).
    pub authority: Option<String>,
    /// TLS server name the client sent; `None` for plain HTTP or no SNI.
    pub sni: Option<String>,
    /// Position in arrival order, starting at 0.
    pub index: usize,
    /// When the whole request (including body) had arrived.
    pub received_at: Instant,
}

impl RecordedRequest {
    pub fn path(&self) -> &str {
        self.path_and_query.split('?').next().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn body_json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "recorded body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn wants_stream(&self) -> bool {
        serde_json::from_slice::<Value>(&self.body)
            .ok()
            .and_then(|v| v.get("stream").and_then(Value::as_bool))
            .unwrap_or(false)
    }
}

/// What a route answers: status, headers, an optional wait before the head, then body
/// chunks each sent as its own frame after its own delay.
#[derive(Debug, Clone)]
pub struct FakeResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Wait this long before sending the response head (for timeout tests).
    pub head_delay: Duration,
    pub chunks: Vec<(Duration, Bytes)>,
}

impl FakeResponse {
    pub fn new(status: u16) -> FakeResponse {
        FakeResponse {
            status,
            headers: Vec::new(),
            head_delay: Duration::ZERO,
            chunks: Vec::new(),
        }
    }

    pub fn json(status: u16, body: &Value) -> FakeResponse {
        FakeResponse::new(status)
            .header("content-type", "application/json")
            .chunk(Duration::ZERO, body.to_string())
    }

    /// An SSE response; each `(delay, event)` is one frame sent `delay` after the previous.
    pub fn sse(events: Vec<(Duration, String)>) -> FakeResponse {
        let mut response = FakeResponse::new(200)
            .header("content-type", "text/event-stream")
            .header("cache-control", "no-cache");
        for (delay, event) in events {
            response = response.chunk(delay, event);
        }
        response
    }

    pub fn header(mut self, name: &str, value: &str) -> FakeResponse {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn chunk(mut self, delay: Duration, data: impl Into<Bytes>) -> FakeResponse {
        self.chunks.push((delay, data.into()));
        self
    }

    /// Delays the response head by `delay`.
    pub fn after(mut self, delay: Duration) -> FakeResponse {
        self.head_delay = delay;
        self
    }
}

type RouteFn = Arc<dyn Fn(&RecordedRequest) -> FakeResponse + Send + Sync>;

struct Route {
    method: Method,
    path: String,
    respond: RouteFn,
}

/// Builder for [`FakeProvider`]. Start with [`FakeProvider::tls`] or [`FakeProvider::plain_http`].
pub struct FakeProviderBuilder<'a> {
    /// `None` = plain HTTP.
    ca: Option<&'a TestCa>,
    names: Vec<String>,
    port: u16,
    stream_events: usize,
    stream_delay: Duration,
    routes: Vec<Route>,
    record: bool,
}

impl FakeProviderBuilder<'_> {
    /// Keep (default) or forget received requests; benchmarks forget them so
    /// memory stays flat over 100k requests.
    pub fn record(mut self, on: bool) -> Self {
        self.record = on;
        self
    }

    /// Adds a DNS name to the TLS certificate (and to [`FakeProvider::names`]).
    pub fn extra_name(mut self, name: &str) -> Self {
        self.names.push(name.to_string());
        self
    }

    /// Listens on this loopback port instead of port 0.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Number of content deltas in a streamed reply (default 5).
    pub fn stream_events(mut self, n: usize) -> Self {
        assert!(n >= 1, "a stream needs at least one content event");
        self.stream_events = n;
        self
    }

    /// Pause between consecutive content deltas of a streamed reply (default 150 ms).
    pub fn stream_delay(mut self, delay: Duration) -> Self {
        self.stream_delay = delay;
        self
    }

    /// Answers `method path` (query ignored) with `respond`, ahead of the built-in routes.
    pub fn route(
        mut self,
        method: &str,
        path: &str,
        respond: impl Fn(&RecordedRequest) -> FakeResponse + Send + Sync + 'static,
    ) -> Self {
        self.routes.push(Route {
            method: method.parse().expect("HTTP method"),
            path: path.to_string(),
            respond: Arc::new(respond),
        });
        self
    }

    pub fn start(self) -> FakeProvider {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fake-provider")
            .enable_all()
            .build()
            .expect("fake provider runtime");
        let tls = self.ca.map(|ca| {
            let names: Vec<&str> = self.names.iter().map(String::as_str).collect();
            tokio_rustls::TlsAcceptor::from(ca.server_config(&names))
        });
        let wanted = SocketAddr::from(([127, 0, 0, 1], self.port));
        let listener = runtime
            .block_on(TcpListener::bind(wanted))
            .unwrap_or_else(|e| panic!("fake provider cannot bind {wanted}: {e}"));
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            handshake_errors: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
            stream_events: self.stream_events,
            stream_delay: self.stream_delay,
            routes: self.routes,
            record: self.record,
        });
        runtime.spawn(accept_loop(listener, tls, shared.clone()));
        FakeProvider {
            addr,
            names: self.names,
            ca_pem_path: self.ca.map(TestCa::pem_path),
            shared,
            runtime: Some(runtime),
        }
    }
}

/// A running fake provider; stops when dropped.
pub struct FakeProvider {
    addr: SocketAddr,
    names: Vec<String>,
    /// PEM of the CA that signed the fake's certificate; `None` in plain-HTTP mode.
    ca_pem_path: Option<PathBuf>,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

struct Shared {
    requests: Mutex<Vec<RecordedRequest>>,
    handshake_errors: Mutex<Vec<String>>,
    connections: AtomicUsize,
    stream_events: usize,
    stream_delay: Duration,
    routes: Vec<Route>,
    record: bool,
}

impl FakeProvider {
    /// A TLS fake whose certificate comes from `ca` and covers [`DEFAULT_FAKE_NAMES`].
    pub fn tls(ca: &TestCa) -> FakeProviderBuilder<'_> {
        FakeProviderBuilder {
            ca: Some(ca),
            names: DEFAULT_FAKE_NAMES.iter().map(|s| s.to_string()).collect(),
            port: 0,
            stream_events: 5,
            stream_delay: Duration::from_millis(150),
            routes: Vec::new(),
            record: true,
        }
    }

    /// A plain-HTTP fake (no TLS) for forward-proxy tests; `names` lists the hosts a test
    /// will resolve to it (used by `AgentBuilder::resolve_to`).
    pub fn plain_http(names: &[&str]) -> FakeProviderBuilder<'static> {
        FakeProviderBuilder {
            ca: None,
            names: names.iter().map(|s| s.to_string()).collect(),
            port: 0,
            stream_events: 5,
            stream_delay: Duration::from_millis(150),
            routes: Vec::new(),
            record: true,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Host names this fake stands in for.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn is_tls(&self) -> bool {
        self.ca_pem_path.is_some()
    }

    /// The PEM file of the CA that signed the fake's certificate (TLS mode only).
    pub fn ca_pem_path(&self) -> Option<&PathBuf> {
        self.ca_pem_path.as_ref()
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.lock().expect("requests lock").clone()
    }

    /// Requests received so far whose path (without query) is `path`.
    pub fn requests_to(&self, path: &str) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path() == path)
            .collect()
    }

    /// The only request received so far; panics if there were none or several.
    pub fn single_request(&self) -> RecordedRequest {
        let requests = self.requests();
        assert_eq!(
            requests.len(),
            1,
            "expected exactly one request at the fake, got: {:#?}",
            requests
                .iter()
                .map(|r| format!("{} {}", r.method, r.path_and_query))
                .collect::<Vec<_>>()
        );
        requests.into_iter().next().expect("one request")
    }

    /// Waits until at least `n` requests have arrived (panics after `timeout`).
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<RecordedRequest> {
        let deadline = Instant::now() + timeout;
        loop {
            let requests = self.requests();
            if requests.len() >= n {
                return requests;
            }
            assert!(
                Instant::now() < deadline,
                "fake provider got {} request(s), expected {n} within {timeout:?}",
                requests.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// TLS handshakes that failed at the fake (e.g. the agent rejected its certificate).
    pub fn handshake_errors(&self) -> Vec<String> {
        self.shared.handshake_errors.lock().expect("lock").clone()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Number of content deltas a streamed reply carries.
    pub fn stream_events(&self) -> usize {
        self.shared.stream_events
    }

    /// Configured time between the first and the last content delta of a streamed reply;
    /// a client that receives a stream unbuffered sees (about) this much spread.
    pub fn stream_content_spread(&self) -> Duration {
        self.shared.stream_delay * (self.shared.stream_events as u32 - 1)
    }

    /// The content deltas a streamed reply carries, in order.
    pub fn stream_pieces(&self) -> Vec<String> {
        stream_pieces(self.shared.stream_events)
    }

    /// The full text of a streamed reply.
    pub fn stream_text(&self) -> String {
        self.stream_pieces().concat()
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Non-blocking, so a fake may also be dropped inside an async test.
            runtime.shutdown_background();
        }
    }
}

fn stream_pieces(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("piece{i} ")).collect()
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
) {
    loop {
        let Ok((tcp, _peer)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        shared.connections.fetch_add(1, Ordering::SeqCst);
        let tls = tls.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(TokioIo::new(tcp), None, shared).await,
                Some(acceptor) => match acceptor.accept(tcp).await {
                    Ok(stream) => {
                        let sni = stream.get_ref().1.server_name().map(str::to_string);
                        serve_connection(TokioIo::new(stream), sni, shared).await
                    }
                    Err(e) => shared
                        .handshake_errors
                        .lock()
                        .expect("lock")
                        .push(e.to_string()),
                },
            }
        });
    }
}

async fn serve_connection<I>(io: TokioIo<I>, sni: Option<String>, shared: Arc<Shared>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        let sni = sni.clone();
        async move { Ok::<_, Infallible>(answer(req, sni, shared).await) }
    });
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(io, service)
        .await;
}

type FakeBody = BoxBody<Bytes, Infallible>;

async fn answer(
    mut req: Request<Incoming>,
    sni: Option<String>,
    shared: Arc<Shared>,
) -> Response<FakeBody> {
    let is_websocket = req
        .headers()
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let on_upgrade = is_websocket.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return full_response(
                400,
                &json!({"error": {"message": format!("fake: body error: {e}")}}),
            )
        }
    };
    let recorded = {
        let mut requests = shared.requests.lock().expect("requests lock");
        let recorded = RecordedRequest {
            method: parts.method.clone(),
            path_and_query: parts
                .uri
                .path_and_query()
                .map(|pq| pq.to_string())
                .unwrap_or_else(|| "/".to_string()),
            authority: parts.uri.authority().map(|a| a.to_string()).or_else(|| {
                parts
                    .headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_string)
            }),
            headers: parts.headers.clone(),
            body,
            version: parts.version,
            sni,
            index: requests.len(),
            received_at: Instant::now(),
        };
        if shared.record {
            requests.push(recorded.clone());
        }
        recorded
    };

    if let Some(route) = shared
        .routes
        .iter()
        .find(|r| r.method == recorded.method && r.path == recorded.path())
    {
        return send((route.respond)(&recorded)).await;
    }
    match (recorded.method.as_str(), recorded.path()) {
        ("POST", "/v1/chat/completions") => send(openai_chat(&recorded, &shared)).await,
        ("POST", "/v1/messages") => send(anthropic_messages(&recorded, &shared)).await,
        ("GET", path) if path.starts_with("/v1/realtime") && on_upgrade.is_some() => {
            realtime_websocket(&recorded, on_upgrade.expect("checked is_some"))
        }
        (method, path) => full_response(
            404,
            &json!({"error": {
                "message": format!("fake provider: no route for {method} {path}"),
                "type": "invalid_request_error",
                "param": null,
                "code": "unknown_url",
            }}),
        ),
    }
}

fn full_response(status: u16, body: &Value) -> Response<FakeBody> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header(FAKE_MARKER_HEADER, "1")
        .body(Full::new(Bytes::from(body.to_string())).boxed())
        .expect("valid response")
}

/// Turns a [`FakeResponse`] into a hyper response; multi-chunk bodies are fed by a task
/// that sleeps between frames.
async fn send(response: FakeResponse) -> Response<FakeBody> {
    if !response.head_delay.is_zero() {
        tokio::time::sleep(response.head_delay).await;
    }
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(response.status).expect("status code"))
        .header(FAKE_MARKER_HEADER, "1");
    for (name, value) in &response.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let streamed = response.chunks.len() > 1 || response.chunks.iter().any(|(d, _)| !d.is_zero());
    let body = if streamed {
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        let chunks = response.chunks;
        tokio::spawn(async move {
            for (delay, data) in chunks {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                if tx.send(data).await.is_err() {
                    return; // the client went away
                }
            }
        });
        ChannelBody { rx }.boxed()
    } else {
        let data = response
            .chunks
            .into_iter()
            .next()
            .map(|(_, d)| d)
            .unwrap_or_default();
        Full::new(data).boxed()
    };
    builder.body(body).expect("valid response")
}

/// A response body fed frame by frame from a channel; ends when the sender is dropped.
struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|data| Ok(Frame::data(data))))
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn requested_model(req: &RecordedRequest, default: &str) -> String {
    serde_json::from_slice::<Value>(&req.body)
        .ok()
        .and_then(|v| v.get("model").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| default.to_string())
}

fn openai_chat(req: &RecordedRequest, shared: &Shared) -> FakeResponse {
    let model = requested_model(req, "gpt-4o-mini");
    let id = format!("chatcmpl-fake{}", req.index);
    let created = unix_now();
    if !req.wants_stream() {
        return FakeResponse::json(
            200,
            &json!({
                "id": id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": FAKE_REPLY_TEXT, "refusal": null},
                    "logprobs": null,
                    "finish_reason": "stop",
                }],
                "usage": {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15},
                "system_fingerprint": "fp_fake",
            }),
        )
        .header("x-request-id", &format!("req_fake{}", req.index));
    }
    let include_usage = serde_json::from_slice::<Value>(&req.body)
        .ok()
        .and_then(|v| {
            v.pointer("/stream_options/include_usage")
                .and_then(Value::as_bool)
        })
        .unwrap_or(false);
    let chunk = |delta: Value, finish: Value| {
        let event = json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        format!("data: {event}\n\n")
    };
    let mut events = vec![(
        Duration::ZERO,
        chunk(json!({"role": "assistant", "content": ""}), Value::Null),
    )];
    for (i, piece) in stream_pieces(shared.stream_events).into_iter().enumerate() {
        let delay = if i == 0 {
            Duration::ZERO
        } else {
            shared.stream_delay
        };
        events.push((delay, chunk(json!({"content": piece}), Value::Null)));
    }
    events.push((Duration::ZERO, chunk(json!({}), json!("stop"))));
    if include_usage {
        let usage = json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [],
            "usage": {"prompt_tokens": 9, "completion_tokens": shared.stream_events, "total_tokens": 9 + shared.stream_events},
        });
        events.push((Duration::ZERO, format!("data: {usage}\n\n")));
    }
    events.push((Duration::ZERO, "data: [DONE]\n\n".to_string()));
    FakeResponse::sse(events)
}

fn anthropic_messages(req: &RecordedRequest, shared: &Shared) -> FakeResponse {
    let model = requested_model(req, "claude-sonnet-4-5");
    let id = format!("msg_fake{}", req.index);
    if !req.wants_stream() {
        return FakeResponse::json(
            200,
            &json!({
                "id": id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": FAKE_REPLY_TEXT}],
                "stop_reason": "end_turn",
                "stop_sequence": null,
                "usage": {"input_tokens": 12, "output_tokens": 6},
            }),
        )
        .header("request-id", &format!("req_fake{}", req.index));
    }
    let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut events = vec![
        (
            Duration::ZERO,
            event(
                "message_start",
                json!({"type": "message_start", "message": {
                    "id": id, "type": "message", "role": "assistant", "model": model,
                    "content": [], "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": 12, "output_tokens": 1},
                }}),
            ),
        ),
        (
            Duration::ZERO,
            event(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
        ),
        (Duration::ZERO, event("ping", json!({"type": "ping"}))),
    ];
    for (i, piece) in stream_pieces(shared.stream_events).into_iter().enumerate() {
        let delay = if i == 0 {
            Duration::ZERO
        } else {
            shared.stream_delay
        };
        events.push((
            delay,
            event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
            ),
        ));
    }
    events.push((
        Duration::ZERO,
        event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
    ));
    events.push((
        Duration::ZERO,
        event(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                   "usage": {"output_tokens": shared.stream_events}}),
        ),
    ));
    events.push((
        Duration::ZERO,
        event("message_stop", json!({"type": "message_stop"})),
    ));
    FakeResponse::sse(events)
}

/// Answers the upgrade with 101 and runs a greeting-then-echo WebSocket server on the
/// upgraded connection.
fn realtime_websocket(
    req: &RecordedRequest,
    on_upgrade: hyper::upgrade::OnUpgrade,
) -> Response<FakeBody> {
    let Some(key) = req.header("sec-websocket-key") else {
        return full_response(
            400,
            &json!({"error": {"message": "fake: missing Sec-WebSocket-Key"}}),
        );
    };
    let accept = derive_accept_key(key.as_bytes());
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        let (mut tx, mut rx) = ws.split();
        if tx.send(Message::text(REALTIME_GREETING)).await.is_err() {
            return;
        }
        while let Some(Ok(message)) = rx.next().await {
            match message {
                Message::Text(_) | Message::Binary(_) => {
                    if tx.send(message).await.is_err() {
                        return;
                    }
                }
                Message::Close(frame) => {
                    let _ = tx.send(Message::Close(frame)).await;
                    return;
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    });
    Response::builder()
        .status(101)
        .header(http::header::CONNECTION, "Upgrade")
        .header(http::header::UPGRADE, "websocket")
        .header(http::header::SEC_WEBSOCKET_ACCEPT, accept)
        .header(FAKE_MARKER_HEADER, "1")
        .body(Full::new(Bytes::new()).boxed())
        .expect("valid response")
}
