//! `FakeWs`: a stand-in for the providers' WebSocket APIs, so a test can check what reaches
//! "the provider" over a WebSocket (and over the HTTPS fallback on the same host).
//!
//! One TLS listener on loopback (certificate from a [`TestCa`] for [`DEFAULT_WS_NAMES`])
//! serves plain HTTP requests and WebSocket upgrades on the same port, because one provider
//! host resolves to one address. Routes:
//! - `GET /v1/responses` + upgrade: OpenAI Responses API WebSocket mode. Every client
//!   `response.create` is answered with the Responses streaming events (`response.created`
//!   … `response.completed` with usage); other client events (`response.processed`, …)
//!   are recorded and ignored.
//! - `POST /v1/responses`: the same response over HTTPS, as SSE (`event:`/`data:`) when the
//!   body has `"stream": true`, else one JSON response object.
//! - `GET /v1/realtime?model=…` + upgrade: OpenAI Realtime (GA event names):
//!   `session.created` on connect; `session.update` → `session.updated`;
//!   `conversation.item.create` → `conversation.item.added` + `conversation.item.done`;
//!   `response.create` → `response.created` … `response.done` with usage; everything else
//!   (e.g. `input_audio_buffer.append`) is recorded only.
//! - `GET /ws/google.ai.generativelanguage.{v1beta,v1alpha}.GenerativeService.BidiGenerateContent`
//!   (and `…BidiGenerateContentConstrained`) + upgrade: Gemini Live. `setup` →
//!   `setupComplete`; a `clientContent` with `turnComplete: true` or a `realtimeInput` with
//!   `text` → `modelTurn` messages, `generationComplete`, then `turnComplete` with
//!   `usageMetadata`. Like the real server, it sends its JSON as *binary* frames unless
//!   told otherwise ([`FakeWsBuilder::gemini_frames`]); it reads text and binary alike.
//!
//! Words: a **reply** is the assistant text every response carries, cut into **deltas**
//! (one `output_text.delta` event or one Gemini `modelTurn` message each); a **cut** ends
//! the socket (or SSE body) after a given number of deltas, to test responses that never
//! complete.
//!
//! The fake never negotiates permessage-deflate: the 101 carries no
//! `Sec-WebSocket-Extensions`, whatever the client offered. It *records* each upgrade
//! request (path, query, headers, SNI) and every data and close frame the socket received,
//! in order ([`RecordedSocket`]), and every plain HTTP request ([`RecordedRequest`], shared
//! with [`super::fake::FakeProvider`]). A refused or unroutable upgrade is an HTTP request,
//! not a socket.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::agent::AgentBuilder;
use super::ca::TestCa;
use super::fake::{RecordedRequest, FAKE_MARKER_HEADER};
use super::{wait_until, WAIT_LIMIT};

/// Names on the certificate unless replaced with [`FakeWsBuilder::names`].
pub const DEFAULT_WS_NAMES: &[&str] = &["api.openai.com", "generativelanguage.googleapis.com"];

/// Assistant text of every reply unless set with [`FakeWsBuilder::reply`].
pub const WS_REPLY_TEXT: &str = "Hello from the fake WebSocket provider.";

/// Deltas the default reply is cut into.
pub const WS_REPLY_DELTAS: usize = 4;

/// Close code of a [`FakeWsBuilder::cut_after`] cut (1011, "internal error").
pub const CUT_CLOSE_CODE: u16 = 1011;

/// Model named in replies when the client named none.
const DEFAULT_OPENAI_MODEL: &str = "gpt-4o-mini";
const DEFAULT_REALTIME_MODEL: &str = "gpt-realtime";

/// How long a server-initiated close waits for the client's close frame before dropping.
const CLOSE_HANDSHAKE_LIMIT: Duration = Duration::from_secs(5);

/// Token counts the fake reports at the end of every reply, in each provider's shape.
///
/// `cached_tokens` and `input_audio_tokens` are parts of `input_tokens`;
/// `reasoning_tokens` and `output_audio_tokens` are parts of `output_tokens`; the total is
/// always `input_tokens + output_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FakeUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Responses `input_tokens_details.cached_tokens`, Realtime
    /// `input_token_details.cached_tokens`, Gemini `cachedContentTokenCount` (when > 0).
    pub cached_tokens: u64,
    /// Responses `output_tokens_details.reasoning_tokens`, Gemini `thoughtsTokenCount`
    /// (when > 0; Gemini's `responseTokenCount` is then the rest).
    pub reasoning_tokens: u64,
    /// Realtime `input_token_details.audio_tokens` (the rest are `text_tokens`).
    pub input_audio_tokens: u64,
    /// Realtime `output_token_details.audio_tokens` (the rest are `text_tokens`).
    pub output_audio_tokens: u64,
}

impl Default for FakeUsage {
    fn default() -> Self {
        FakeUsage {
            input_tokens: 11,
            output_tokens: 7,
            cached_tokens: 0,
            reasoning_tokens: 0,
            input_audio_tokens: 0,
            output_audio_tokens: 0,
        }
    }
}

impl FakeUsage {
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
}

/// WebSocket frame type for the fake's Gemini messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    Text,
    Binary,
}

/// How a cut ends the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CutStyle {
    /// A close frame with [`CUT_CLOSE_CODE`], then the closing handshake.
    CloseFrame,
    /// The connection is dropped with no close frame.
    Abort,
}

#[derive(Debug, Clone, Copy)]
struct Cut {
    after_deltas: usize,
    style: CutStyle,
}

/// One frame as a socket of the fake received it (pings and pongs are not recorded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsMessage {
    Text(String),
    Binary(Vec<u8>),
    /// A close frame; one without a payload is recorded as code 1005 ("no status
    /// received", RFC 6455 §7.1.5) and an empty reason.
    Close {
        code: u16,
        reason: String,
    },
}

impl WsMessage {
    /// The payload parsed as JSON, for text and binary frames; `None` for close frames or
    /// payloads that are not JSON.
    pub fn json(&self) -> Option<Value> {
        match self {
            WsMessage::Text(text) => serde_json::from_str(text).ok(),
            WsMessage::Binary(bytes) => serde_json::from_slice(bytes).ok(),
            WsMessage::Close { .. } => None,
        }
    }

    fn from_frame(message: &Message) -> Option<WsMessage> {
        match message {
            Message::Text(text) => Some(WsMessage::Text(text.as_str().to_string())),
            Message::Binary(bytes) => Some(WsMessage::Binary(bytes.to_vec())),
            Message::Close(frame) => Some(match frame {
                Some(frame) => WsMessage::Close {
                    code: frame.code.into(),
                    reason: frame.reason.as_str().to_string(),
                },
                None => WsMessage::Close {
                    code: 1005,
                    reason: String::new(),
                },
            }),
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => None,
        }
    }
}

/// One accepted WebSocket: its upgrade request and what it received.
#[derive(Debug, Clone)]
pub struct RecordedSocket {
    /// Position in arrival order among sockets, starting at 0.
    pub index: usize,
    /// Path of the upgrade request, e.g. `/v1/realtime`.
    pub path: String,
    /// Query without the `?` (empty if none), e.g. `model=gpt-realtime`.
    pub query: String,
    /// Headers of the upgrade request as they reached the fake.
    pub headers: HeaderMap,
    /// TLS server name the client sent.
    pub sni: Option<String>,
    /// Text, binary and close frames received, in order.
    pub messages: Vec<WsMessage>,
    /// The socket is finished (closing handshake done, or the connection dropped).
    pub ended: bool,
}

impl RecordedSocket {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The first value of query parameter `name`, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then(|| {
                percent_encoding::percent_decode_str(value)
                    .decode_utf8_lossy()
                    .into_owned()
            })
        })
    }

    /// Every text and binary frame parsed as JSON, in order; panics on one that is not JSON.
    pub fn json_messages(&self) -> Vec<Value> {
        self.messages
            .iter()
            .filter(|m| !matches!(m, WsMessage::Close { .. }))
            .map(|m| {
                m.json()
                    .unwrap_or_else(|| panic!("socket {} received non-JSON {m:?}", self.index))
            })
            .collect()
    }

    /// The `type` of every JSON message received (OpenAI protocols), in order.
    pub fn message_types(&self) -> Vec<String> {
        self.json_messages()
            .iter()
            .map(|m| m["type"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// The close frame the client sent, if any.
    pub fn close(&self) -> Option<(u16, &str)> {
        self.messages.iter().find_map(|m| match m {
            WsMessage::Close { code, reason } => Some((*code, reason.as_str())),
            _ => None,
        })
    }
}

/// What the fake says: the same for every socket and request.
#[derive(Debug, Clone)]
struct Script {
    pieces: Vec<String>,
    usage: FakeUsage,
    delta_delay: Duration,
    cut: Option<Cut>,
    gemini_frames: FrameKind,
}

impl Script {
    fn text(&self) -> String {
        self.pieces.concat()
    }
}

/// Builder for [`FakeWs`]; start with [`FakeWs::tls`].
pub struct FakeWsBuilder<'a> {
    ca: &'a TestCa,
    names: Vec<String>,
    script: Script,
    refuse_upgrades: Option<u16>,
    hang_upgrades: bool,
}

impl FakeWsBuilder<'_> {
    /// Replaces the names on the certificate (and [`FakeWs::names`]), e.g. to stand in for
    /// only `generativelanguage.googleapis.com` next to a [`super::FakeProvider`].
    pub fn names(mut self, names: &[&str]) -> Self {
        self.names = names.iter().map(|n| n.to_string()).collect();
        self
    }

    /// Replies carry `text`, cut into `deltas` non-empty pieces of about equal length.
    pub fn reply(mut self, text: &str, deltas: usize) -> Self {
        self.script.pieces = split_into(text, deltas);
        self
    }

    /// Token counts reported at the end of every reply.
    pub fn usage(mut self, usage: FakeUsage) -> Self {
        self.script.usage = usage;
        self
    }

    /// Pause before each delta after the first (default none).
    pub fn delta_delay(mut self, delay: Duration) -> Self {
        self.script.delta_delay = delay;
        self
    }

    /// After `k` deltas of a reply, send a close frame ([`CUT_CLOSE_CODE`]) and end the
    /// socket; an SSE reply ends its body with an error instead (the connection drops).
    pub fn cut_after(mut self, k: usize) -> Self {
        self.script.cut = Some(Cut {
            after_deltas: k,
            style: CutStyle::CloseFrame,
        });
        self
    }

    /// After `k` deltas of a reply, drop the connection with no close frame (SSE: as
    /// [`FakeWsBuilder::cut_after`]).
    pub fn abort_after(mut self, k: usize) -> Self {
        self.script.cut = Some(Cut {
            after_deltas: k,
            style: CutStyle::Abort,
        });
        self
    }

    /// Frame type of Gemini server messages (default [`FrameKind::Binary`], as the real
    /// server sends).
    pub fn gemini_frames(mut self, kind: FrameKind) -> Self {
        self.script.gemini_frames = kind;
        self
    }

    /// Answers every WebSocket upgrade with HTTP `status` and a JSON error (recorded as an
    /// HTTP request), so a test can check that a client falls back to HTTPS.
    pub fn refuse_upgrades(mut self, status: u16) -> Self {
        assert!(
            (400..=599).contains(&status),
            "a refusal is a 4xx or 5xx status"
        );
        self.refuse_upgrades = Some(status);
        self
    }

    /// Never answers a WebSocket upgrade (the request is read, the answer
    /// never comes), so a test can check that a proxy stops waiting.
    pub fn hang_upgrades(mut self) -> Self {
        self.hang_upgrades = true;
        self
    }

    pub fn start(self) -> FakeWs {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fake-ws")
            .enable_all()
            .build()
            .expect("fake ws runtime");
        let names: Vec<&str> = self.names.iter().map(String::as_str).collect();
        let tls = tokio_rustls::TlsAcceptor::from(self.ca.server_config(&names));
        let wanted = SocketAddr::from(([127, 0, 0, 1], 0));
        let listener = runtime
            .block_on(TcpListener::bind(wanted))
            .unwrap_or_else(|e| panic!("fake ws cannot bind {wanted}: {e}"));
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            script: self.script,
            refuse_upgrades: self.refuse_upgrades,
            hang_upgrades: self.hang_upgrades,
            sockets: Mutex::new(Vec::new()),
            http_requests: Mutex::new(Vec::new()),
            handshake_errors: Mutex::new(Vec::new()),
            responses: AtomicUsize::new(0),
        });
        runtime.spawn(accept_loop(listener, tls, shared.clone()));
        FakeWs {
            addr,
            names: self.names,
            ca_pem_path: self.ca.pem_path(),
            shared,
            runtime: Some(runtime),
        }
    }
}

/// A running WebSocket fake; stops when dropped.
pub struct FakeWs {
    addr: SocketAddr,
    names: Vec<String>,
    ca_pem_path: PathBuf,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

struct Shared {
    script: Script,
    refuse_upgrades: Option<u16>,
    hang_upgrades: bool,
    sockets: Mutex<Vec<RecordedSocket>>,
    http_requests: Mutex<Vec<RecordedRequest>>,
    handshake_errors: Mutex<Vec<String>>,
    /// Responses created so far (all sockets and requests), for unique ids.
    responses: AtomicUsize,
}

impl Shared {
    fn next_response(&self) -> usize {
        self.responses.fetch_add(1, Ordering::SeqCst)
    }

    fn with_socket(&self, index: usize, change: impl FnOnce(&mut RecordedSocket)) {
        let mut sockets = self.sockets.lock().expect("sockets lock");
        if let Some(socket) = sockets.get_mut(index) {
            change(socket);
        }
    }
}

impl FakeWs {
    /// A fake whose certificate comes from `ca` and covers [`DEFAULT_WS_NAMES`].
    pub fn tls(ca: &TestCa) -> FakeWsBuilder<'_> {
        FakeWsBuilder {
            ca,
            names: DEFAULT_WS_NAMES.iter().map(|n| n.to_string()).collect(),
            script: Script {
                pieces: split_into(WS_REPLY_TEXT, WS_REPLY_DELTAS),
                usage: FakeUsage::default(),
                delta_delay: Duration::ZERO,
                cut: None,
                gemini_frames: FrameKind::Binary,
            },
            refuse_upgrades: None,
            hang_upgrades: false,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Host names this fake stands in for.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The PEM file of the CA that signed the fake's certificate.
    pub fn ca_pem_path(&self) -> &PathBuf {
        &self.ca_pem_path
    }

    /// Adds `[upstream.resolve]` entries sending all of this fake's names to it; the agent
    /// must also trust the CA (`AgentBuilder::trust`).
    pub fn resolve_in(&self, mut agent: AgentBuilder) -> AgentBuilder {
        for name in &self.names {
            agent = agent.resolve(name, self.addr);
        }
        agent
    }

    /// The deltas every reply carries, in order.
    pub fn reply_pieces(&self) -> Vec<String> {
        self.shared.script.pieces.clone()
    }

    /// The full text of every reply.
    pub fn reply_text(&self) -> String {
        self.shared.script.text()
    }

    pub fn usage(&self) -> FakeUsage {
        self.shared.script.usage
    }

    /// Every socket accepted so far, in arrival order.
    pub fn sockets(&self) -> Vec<RecordedSocket> {
        self.shared.sockets.lock().expect("sockets lock").clone()
    }

    /// Socket `index` as recorded so far; panics if there is no such socket.
    pub fn socket(&self, index: usize) -> RecordedSocket {
        let sockets = self.sockets();
        let count = sockets.len();
        sockets
            .into_iter()
            .nth(index)
            .unwrap_or_else(|| panic!("fake ws has {count} socket(s), no socket {index}"))
    }

    /// Waits until at least `n` sockets have been accepted.
    pub fn wait_for_sockets(&self, n: usize) -> Vec<RecordedSocket> {
        wait_until(&format!("{n} socket(s) at the fake"), WAIT_LIMIT, || {
            self.sockets().len() >= n
        });
        self.sockets()
    }

    /// Waits until socket `index` has received at least `n` frames (text, binary, close).
    pub fn wait_for_messages(&self, index: usize, n: usize) -> RecordedSocket {
        wait_until(
            &format!("{n} message(s) on fake socket {index}"),
            WAIT_LIMIT,
            || {
                self.sockets()
                    .get(index)
                    .is_some_and(|s| s.messages.len() >= n)
            },
        );
        self.socket(index)
    }

    /// Waits until socket `index` has ended.
    pub fn wait_for_end(&self, index: usize) -> RecordedSocket {
        wait_until(&format!("fake socket {index} to end"), WAIT_LIMIT, || {
            self.sockets().get(index).is_some_and(|s| s.ended)
        });
        self.socket(index)
    }

    /// Every plain HTTP request so far (including refused upgrades), in arrival order.
    pub fn http_requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .http_requests
            .lock()
            .expect("requests lock")
            .clone()
    }

    /// Waits until at least `n` plain HTTP requests have arrived.
    pub fn wait_for_http_requests(&self, n: usize) -> Vec<RecordedRequest> {
        wait_until(
            &format!("{n} HTTP request(s) at the fake"),
            WAIT_LIMIT,
            || self.http_requests().len() >= n,
        );
        self.http_requests()
    }

    /// TLS handshakes that failed at the fake.
    pub fn handshake_errors(&self) -> Vec<String> {
        self.shared
            .handshake_errors
            .lock()
            .expect("errors lock")
            .clone()
    }
}

impl Drop for FakeWs {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Non-blocking, so the fake may also be dropped inside an async test.
            runtime.shutdown_background();
        }
    }
}

/// Cuts `text` into `n` non-empty pieces of about equal length (in characters).
fn split_into(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    assert!(
        n >= 1 && n <= chars.len(),
        "cannot cut {} characters into {n} non-empty deltas",
        chars.len()
    );
    (0..n)
        .map(|i| {
            chars[i * chars.len() / n..(i + 1) * chars.len() / n]
                .iter()
                .collect()
        })
        .collect()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// Connections and HTTP

async fn accept_loop(listener: TcpListener, tls: tokio_rustls::TlsAcceptor, shared: Arc<Shared>) {
    loop {
        let Ok((tcp, _peer)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let tls = tls.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            match tls.accept(tcp).await {
                Ok(stream) => {
                    let sni = stream.get_ref().1.server_name().map(str::to_string);
                    serve_connection(TokioIo::new(stream), sni, shared).await
                }
                Err(e) => shared
                    .handshake_errors
                    .lock()
                    .expect("errors lock")
                    .push(e.to_string()),
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

/// Response body: whole, or fed event by event; an `Err` item drops the connection.
type WsFakeBody = BoxBody<Bytes, std::io::Error>;

async fn answer(
    req: Request<Incoming>,
    sni: Option<String>,
    shared: Arc<Shared>,
) -> Response<WsFakeBody> {
    if is_websocket_upgrade(&req) {
        return answer_upgrade(req, sni, shared).await;
    }
    let recorded = match record_http(req, sni, &shared).await {
        Ok(recorded) => recorded,
        Err(e) => return json_response(400, &error_body(&format!("fake ws: body error: {e}"))),
    };
    match (recorded.method.as_str(), recorded.path()) {
        ("POST", "/v1/responses") => responses_over_http(&recorded, &shared),
        (method, path) => json_response(
            404,
            &error_body(&format!("fake ws: no route for {method} {path}")),
        ),
    }
}

fn is_websocket_upgrade(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

async fn record_http(
    req: Request<Incoming>,
    sni: Option<String>,
    shared: &Shared,
) -> Result<RecordedRequest, hyper::Error> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let mut requests = shared.http_requests.lock().expect("requests lock");
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
        headers: parts.headers,
        body,
        version: parts.version,
        sni,
        index: requests.len(),
        received_at: Instant::now(),
    };
    requests.push(recorded.clone());
    Ok(recorded)
}

fn error_body(message: &str) -> Value {
    json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}})
}

fn json_response(status: u16, body: &Value) -> Response<WsFakeBody> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header(FAKE_MARKER_HEADER, "1")
        .body(full_body(body.to_string()))
        .expect("valid response")
}

fn full_body(data: impl Into<Bytes>) -> WsFakeBody {
    Full::new(data.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// `POST /v1/responses`: the JSON response object, or its events as SSE.
fn responses_over_http(req: &RecordedRequest, shared: &Arc<Shared>) -> Response<WsFakeBody> {
    let Ok(request) = serde_json::from_slice::<Value>(&req.body) else {
        return json_response(400, &error_body("fake ws: request body is not JSON"));
    };
    let ids = ResponseIds::new(shared.next_response());
    let script = &shared.script;
    if request.get("stream").and_then(Value::as_bool) != Some(true) {
        let completed = response_object(&request, &ids, "completed", script);
        return json_response(200, &completed);
    }
    let events = responses_events(&request, &ids, script);
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(16);
    let script = script.clone();
    tokio::spawn(async move {
        let mut deltas = 0;
        for event in events {
            if event.is_delta {
                if script.cut.is_some_and(|cut| cut.after_deltas == deltas) {
                    let cut = std::io::Error::other("fake ws: cut mid-response");
                    let _ = tx.send(Err(cut)).await;
                    return;
                }
                if deltas > 0 && !script.delta_delay.is_zero() {
                    tokio::time::sleep(script.delta_delay).await;
                }
                deltas += 1;
            }
            let kind = event.value["type"].as_str().unwrap_or("").to_string();
            let sse = format!("event: {kind}\ndata: {}\n\n", event.value);
            if tx.send(Ok(Frame::data(Bytes::from(sse)))).await.is_err() {
                return; // the client went away
            }
        }
    });
    let body = StreamBody::new(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|frame| (frame, rx))
    }));
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .header(FAKE_MARKER_HEADER, "1")
        .body(BodyExt::boxed(body))
        .expect("valid response")
}

// ---------------------------------------------------------------------------------------
// WebSocket upgrades

/// The WebSocket APIs the fake speaks, told apart by the upgrade path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    OpenAiResponses,
    OpenAiRealtime,
    GeminiLive,
}

impl Api {
    fn for_path(path: &str) -> Option<Api> {
        const GEMINI_PREFIXES: &[&str] = &[
            "/ws/google.ai.generativelanguage.v1beta.GenerativeService.",
            "/ws/google.ai.generativelanguage.v1alpha.GenerativeService.",
        ];
        match path {
            "/v1/responses" => Some(Api::OpenAiResponses),
            "/v1/realtime" => Some(Api::OpenAiRealtime),
            _ => GEMINI_PREFIXES
                .iter()
                .filter_map(|prefix| path.strip_prefix(prefix))
                .any(|method| {
                    method == "BidiGenerateContent" || method == "BidiGenerateContentConstrained"
                })
                .then_some(Api::GeminiLive),
        }
    }
}

async fn answer_upgrade(
    mut req: Request<Incoming>,
    sni: Option<String>,
    shared: Arc<Shared>,
) -> Response<WsFakeBody> {
    if shared.hang_upgrades {
        std::future::pending::<()>().await;
    }
    let (api, key) = match admit_upgrade(&req, shared.refuse_upgrades) {
        Ok(admitted) => admitted,
        Err((status, message)) => {
            let _ = record_http(req, sni, &shared).await;
            return json_response(status, &error_body(&message));
        }
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    // Echo the first subprotocol offered (browsers send `realtime, openai-insecure-…`);
    // a client that offered one fails the handshake without it.
    let subprotocol = req
        .headers()
        .get(http::header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|p| p.trim().to_string());
    let index = {
        let mut sockets = shared.sockets.lock().expect("sockets lock");
        let index = sockets.len();
        sockets.push(RecordedSocket {
            index,
            path: req.uri().path().to_string(),
            query: req.uri().query().unwrap_or("").to_string(),
            headers: req.headers().clone(),
            sni,
            messages: Vec::new(),
            ended: false,
        });
        index
    };
    let session = Session::new(api, index, &req, shared.clone());
    tokio::spawn(async move {
        // An Err means the client went away before the upgrade completed.
        if let Ok(upgraded) = on_upgrade.await {
            let ws =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            run_socket(ws, session, &shared, index).await;
        }
        shared.with_socket(index, |socket| socket.ended = true);
    });
    // Deliberately no Sec-WebSocket-Extensions: permessage-deflate is never negotiated.
    let mut response = Response::builder()
        .status(101)
        .header(http::header::CONNECTION, "Upgrade")
        .header(http::header::UPGRADE, "websocket")
        .header(
            http::header::SEC_WEBSOCKET_ACCEPT,
            derive_accept_key(key.as_bytes()),
        )
        .header(FAKE_MARKER_HEADER, "1");
    if let Some(protocol) = subprotocol.filter(|p| !p.is_empty()) {
        response = response.header(http::header::SEC_WEBSOCKET_PROTOCOL, protocol);
    }
    response
        .body(full_body(Bytes::new()))
        .expect("valid response")
}

/// The API and `Sec-WebSocket-Key` of an upgrade the fake accepts, or the status and
/// message it refuses it with.
fn admit_upgrade(
    req: &Request<Incoming>,
    refuse_upgrades: Option<u16>,
) -> Result<(Api, String), (u16, String)> {
    let path = req.uri().path();
    let api =
        Api::for_path(path).ok_or_else(|| (404, format!("fake ws: no WebSocket at {path}")))?;
    if let Some(status) = refuse_upgrades {
        return Err((status, "fake ws: WebSocket upgrades refused".to_string()));
    }
    let headers = req.headers();
    let key = headers
        .get(http::header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| (400, "fake ws: missing Sec-WebSocket-Key".to_string()))?;
    if headers
        .get(http::header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        return Err((426, "fake ws: Sec-WebSocket-Version must be 13".to_string()));
    }
    Ok((api, key.to_string()))
}

type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// How the speaking side of a socket finished.
enum Ending {
    /// Nothing more to say (client closed, or a cut close frame was sent): let the
    /// reading side finish the closing handshake.
    Quiet,
    /// Drop the connection now, with no close frame.
    Abort,
}

/// Records what arrives while the session answers it; the two run side by side so a
/// client's frames are recorded when they arrive, even in the middle of a reply.
async fn run_socket(ws: Socket, session: Session, shared: &Shared, index: usize) {
    let (sink, stream) = ws.split();
    let (inbox_tx, inbox) = mpsc::unbounded_channel();
    let reader = record_incoming(stream, inbox_tx, shared, index);
    let speaker = converse(session, sink, inbox, shared.script.clone());
    tokio::pin!(reader, speaker);
    tokio::select! {
        () = &mut reader => {}
        ending = &mut speaker => match ending {
            Ending::Abort => {}
            Ending::Quiet => {
                let _ = tokio::time::timeout(CLOSE_HANDSHAKE_LIMIT, reader).await;
            }
        },
    }
}

/// Reads until the socket ends, recording every data and close frame and passing JSON
/// payloads to the session. Reading on after a close frame lets tungstenite send its
/// close reply.
async fn record_incoming(
    mut stream: SplitStream<Socket>,
    inbox: mpsc::UnboundedSender<Value>,
    shared: &Shared,
    index: usize,
) {
    while let Some(Ok(message)) = stream.next().await {
        let Some(recorded) = WsMessage::from_frame(&message) else {
            continue;
        };
        let payload = recorded.json();
        shared.with_socket(index, |socket| socket.messages.push(recorded));
        if let Some(payload) = payload {
            let _ = inbox.send(payload);
        }
    }
}

async fn converse(
    mut session: Session,
    mut sink: SplitSink<Socket, Message>,
    mut inbox: mpsc::UnboundedReceiver<Value>,
    script: Script,
) -> Ending {
    let greeting = session.greet();
    if let Err(ending) = say(&mut sink, greeting, &script, session.frames()).await {
        return ending;
    }
    while let Some(message) = inbox.recv().await {
        let reply = session.answer(&message);
        if let Err(ending) = say(&mut sink, reply, &script, session.frames()).await {
            return ending;
        }
    }
    Ending::Quiet
}

/// Sends `events`, spacing deltas by the script's delay and cutting where it says.
async fn say(
    sink: &mut SplitSink<Socket, Message>,
    events: Vec<Outgoing>,
    script: &Script,
    frames: FrameKind,
) -> Result<(), Ending> {
    let mut deltas = 0;
    for event in events {
        if event.is_delta {
            if let Some(cut) = script.cut.filter(|cut| cut.after_deltas == deltas) {
                return Err(cut_socket(sink, cut.style).await);
            }
            if deltas > 0 && !script.delta_delay.is_zero() {
                tokio::time::sleep(script.delta_delay).await;
            }
            deltas += 1;
        }
        let payload = event.value.to_string();
        let frame = match frames {
            FrameKind::Text => Message::text(payload),
            FrameKind::Binary => Message::binary(payload),
        };
        if sink.send(frame).await.is_err() {
            return Err(Ending::Quiet); // the client went away
        }
    }
    Ok(())
}

async fn cut_socket(sink: &mut SplitSink<Socket, Message>, style: CutStyle) -> Ending {
    match style {
        CutStyle::Abort => Ending::Abort,
        CutStyle::CloseFrame => {
            let close = CloseFrame {
                code: CloseCode::from(CUT_CLOSE_CODE),
                reason: "fake ws: cut mid-response".into(),
            };
            let _ = sink.send(Message::Close(Some(close))).await;
            Ending::Quiet
        }
    }
}

/// One server message; deltas are the ones a cut counts and the delay spaces.
struct Outgoing {
    value: Value,
    is_delta: bool,
}

impl Outgoing {
    fn event(value: Value) -> Outgoing {
        Outgoing {
            value,
            is_delta: false,
        }
    }

    fn delta(value: Value) -> Outgoing {
        Outgoing {
            value,
            is_delta: true,
        }
    }
}

/// Per-socket conversation state: which API, and what that API remembers.
struct Session {
    api: Api,
    socket: usize,
    shared: Arc<Shared>,
    /// Realtime: the session object `session.update` edits; model from `?model=`.
    realtime_session: Map<String, Value>,
    /// Realtime: event and item ids handed out so far.
    counter: usize,
    /// Realtime: id of the last conversation item, for `previous_item_id`.
    last_item: Option<String>,
}

impl Session {
    fn new(api: Api, socket: usize, req: &Request<Incoming>, shared: Arc<Shared>) -> Session {
        let model = req
            .uri()
            .query()
            .unwrap_or("")
            .split('&')
            .find_map(|pair| pair.strip_prefix("model="))
            .map(|m| {
                percent_encoding::percent_decode_str(m)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .unwrap_or_else(|| DEFAULT_REALTIME_MODEL.to_string());
        let realtime_session = json!({
            "type": "realtime",
            "object": "realtime.session",
            "id": format!("sess_fake{socket}"),
            "model": model,
            "output_modalities": ["audio"],
            "instructions": "",
            "tools": [],
            "tool_choice": "auto",
            "max_output_tokens": "inf",
        });
        Session {
            api,
            socket,
            shared,
            realtime_session: realtime_session
                .as_object()
                .cloned()
                .expect("built as an object"),
            counter: 0,
            last_item: None,
        }
    }

    fn frames(&self) -> FrameKind {
        match self.api {
            Api::GeminiLive => self.shared.script.gemini_frames,
            Api::OpenAiResponses | Api::OpenAiRealtime => FrameKind::Text,
        }
    }

    fn next_id(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}_fake{}_{}", self.socket, self.counter)
    }

    /// What the server says before the client says anything.
    fn greet(&mut self) -> Vec<Outgoing> {
        match self.api {
            Api::OpenAiRealtime => vec![Outgoing::event(json!({
                "type": "session.created",
                "event_id": self.next_id("event"),
                "session": self.realtime_session,
            }))],
            Api::OpenAiResponses | Api::GeminiLive => Vec::new(),
        }
    }

    fn answer(&mut self, message: &Value) -> Vec<Outgoing> {
        match self.api {
            Api::OpenAiResponses => self.answer_responses(message),
            Api::OpenAiRealtime => self.answer_realtime(message),
            Api::GeminiLive => self.answer_gemini(message),
        }
    }

    fn answer_responses(&mut self, message: &Value) -> Vec<Outgoing> {
        if message["type"] != "response.create" {
            return Vec::new(); // response.processed and the like: recorded only
        }
        let ids = ResponseIds::new(self.shared.next_response());
        responses_events(message, &ids, &self.shared.script)
    }

    fn answer_realtime(&mut self, message: &Value) -> Vec<Outgoing> {
        match message["type"].as_str().unwrap_or("") {
            "session.update" => {
                if let Some(changes) = message["session"].as_object() {
                    for (key, value) in changes {
                        self.realtime_session.insert(key.clone(), value.clone());
                    }
                }
                vec![Outgoing::event(json!({
                    "type": "session.updated",
                    "event_id": self.next_id("event"),
                    "session": self.realtime_session,
                }))]
            }
            "conversation.item.create" => {
                let mut item = message["item"].clone();
                if item.get("id").and_then(Value::as_str).is_none() {
                    item["id"] = json!(self.next_id("item"));
                }
                item["object"] = json!("realtime.item");
                item["status"] = json!("completed");
                let previous = message
                    .get("previous_item_id")
                    .cloned()
                    .unwrap_or_else(|| json!(self.last_item));
                self.last_item = item["id"].as_str().map(str::to_string);
                ["conversation.item.added", "conversation.item.done"]
                    .into_iter()
                    .map(|kind| {
                        Outgoing::event(json!({
                            "type": kind,
                            "event_id": self.next_id("event"),
                            "previous_item_id": previous,
                            "item": item,
                        }))
                    })
                    .collect()
            }
            "response.create" => self.realtime_response(),
            _ => Vec::new(), // input_audio_buffer.append and the like: recorded only
        }
    }

    fn realtime_response(&mut self) -> Vec<Outgoing> {
        let script = self.shared.script.clone();
        let response_id = format!("resp_fake{}", self.shared.next_response());
        let item_id = self.next_id("item");
        let text = script.text();
        let model = self.realtime_session["model"].clone();
        let conversation_id = format!("conv_fake{}", self.socket);
        let response = |status: &str, output: Value, usage: Value| {
            json!({
                "object": "realtime.response",
                "id": response_id,
                "status": status,
                "status_details": null,
                "output": output,
                "conversation_id": conversation_id,
                "output_modalities": ["text"],
                "max_output_tokens": "inf",
                "audio": {"output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy"}},
                "model": model,
                "usage": usage,
                "metadata": null,
            })
        };
        let item = |status: &str, content: Value| {
            json!({
                "id": item_id, "object": "realtime.item", "type": "message",
                "status": status, "role": "assistant", "content": content,
            })
        };
        let done_item = item("completed", json!([{"type": "output_text", "text": text}]));
        let at = json!({"response_id": response_id, "item_id": item_id, "output_index": 0, "content_index": 0});
        let mut events = vec![
            self.realtime_event(
                "response.created",
                json!({"response": response("in_progress", json!([]), Value::Null)}),
            ),
            self.realtime_event(
                "response.output_item.added",
                json!({"response_id": response_id, "output_index": 0, "item": item("in_progress", json!([]))}),
            ),
            self.realtime_event(
                "response.content_part.added",
                with_fields(&at, json!({"part": {"type": "text", "text": ""}})),
            ),
        ];
        for piece in &script.pieces {
            let delta = self.realtime_event(
                "response.output_text.delta",
                with_fields(&at, json!({"delta": piece})),
            );
            events.push(Outgoing::delta(delta.value));
        }
        events.extend([
            self.realtime_event(
                "response.output_text.done",
                with_fields(&at, json!({"text": text})),
            ),
            self.realtime_event(
                "response.content_part.done",
                with_fields(&at, json!({"part": {"type": "text", "text": text}})),
            ),
            self.realtime_event(
                "response.output_item.done",
                json!({"response_id": response_id, "output_index": 0, "item": done_item}),
            ),
            self.realtime_event(
                "response.done",
                json!({"response": response("completed", json!([done_item]), realtime_usage(&script.usage))}),
            ),
        ]);
        events
    }

    fn realtime_event(&mut self, kind: &str, fields: Value) -> Outgoing {
        let head = json!({"type": kind, "event_id": self.next_id("event")});
        Outgoing::event(with_fields(&head, fields))
    }

    fn answer_gemini(&mut self, message: &Value) -> Vec<Outgoing> {
        if message.get("setup").is_some() {
            return vec![Outgoing::event(json!({"setupComplete": {}}))];
        }
        let turn_complete = message["clientContent"]["turnComplete"] == true;
        let realtime_text = message["realtimeInput"]["text"].is_string();
        if !turn_complete && !realtime_text {
            return Vec::new(); // partial turns, audio, tool responses: recorded only
        }
        let script = &self.shared.script;
        let mut events: Vec<Outgoing> = script
            .pieces
            .iter()
            .map(|piece| {
                Outgoing::delta(
                    json!({"serverContent": {"modelTurn": {"parts": [{"text": piece}]}}}),
                )
            })
            .collect();
        events.push(Outgoing::event(
            json!({"serverContent": {"generationComplete": true}}),
        ));
        events.push(Outgoing::event(json!({
            "serverContent": {"turnComplete": true},
            "usageMetadata": gemini_usage(&script.usage),
        })));
        events
    }
}

/// `base` with the fields of `extra` added (both objects).
fn with_fields(base: &Value, extra: Value) -> Value {
    let mut merged = base.clone();
    if let (Some(merged), Value::Object(extra)) = (merged.as_object_mut(), extra) {
        merged.extend(extra);
    }
    merged
}

// ---------------------------------------------------------------------------------------
// OpenAI Responses events (shared by WebSocket mode and SSE)

struct ResponseIds {
    response: String,
    item: String,
}

impl ResponseIds {
    fn new(n: usize) -> ResponseIds {
        ResponseIds {
            response: format!("resp_fake{n}"),
            item: format!("msg_fake{n}"),
        }
    }
}

/// The Responses streaming events for one `response.create` (or streamed POST), each with
/// its `sequence_number`.
/// A `"generate": false` request (Codex's warm-up) gets a response with no output, charged
/// its input only.
fn responses_events(request: &Value, ids: &ResponseIds, script: &Script) -> Vec<Outgoing> {
    if request["generate"] == json!(false) {
        let mut done = response_object(request, ids, "completed", script);
        done["output"] = json!([]);
        done["usage"] = responses_usage(&FakeUsage {
            input_tokens: script.usage.input_tokens,
            ..FakeUsage::default()
        });
        let in_progress = response_object(request, ids, "in_progress", script);
        let mut events = vec![
            Outgoing::event(json!({"type": "response.created", "response": in_progress})),
            Outgoing::event(json!({"type": "response.completed", "response": done})),
        ];
        for (n, event) in events.iter_mut().enumerate() {
            event.value["sequence_number"] = json!(n);
        }
        return events;
    }
    let text = script.text();
    let at = json!({"item_id": ids.item, "output_index": 0, "content_index": 0});
    let empty_part = json!({"type": "output_text", "text": "", "annotations": [], "logprobs": []});
    let full_part = json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []});
    let in_progress = response_object(request, ids, "in_progress", script);
    let mut events = vec![
        Outgoing::event(json!({"type": "response.created", "response": in_progress})),
        Outgoing::event(json!({"type": "response.in_progress", "response": in_progress})),
        Outgoing::event(json!({
            "type": "response.output_item.added",
            "output_index": 0,
            "item": message_item(ids, "in_progress", json!([])),
        })),
        Outgoing::event(with_fields(
            &at,
            json!({"type": "response.content_part.added", "part": empty_part}),
        )),
    ];
    for piece in &script.pieces {
        events.push(Outgoing::delta(with_fields(
            &at,
            json!({"type": "response.output_text.delta", "delta": piece, "logprobs": []}),
        )));
    }
    events.extend([
        Outgoing::event(with_fields(
            &at,
            json!({"type": "response.output_text.done", "text": text, "logprobs": []}),
        )),
        Outgoing::event(with_fields(
            &at,
            json!({"type": "response.content_part.done", "part": full_part}),
        )),
        Outgoing::event(json!({
            "type": "response.output_item.done",
            "output_index": 0,
            "item": message_item(ids, "completed", json!([full_part])),
        })),
        Outgoing::event(json!({
            "type": "response.completed",
            "response": response_object(request, ids, "completed", script),
        })),
    ]);
    for (n, event) in events.iter_mut().enumerate() {
        event.value["sequence_number"] = json!(n);
    }
    events
}

fn message_item(ids: &ResponseIds, status: &str, content: Value) -> Value {
    json!({"id": ids.item, "type": "message", "status": status, "role": "assistant", "content": content})
}

/// A Responses `response` object; `completed` ones carry the output message and usage.
fn response_object(request: &Value, ids: &ResponseIds, status: &str, script: &Script) -> Value {
    let echo = |field: &str, default: Value| request.get(field).cloned().unwrap_or(default);
    let (output, usage) = if status == "completed" {
        let part = json!({"type": "output_text", "text": script.text(), "annotations": [], "logprobs": []});
        (
            json!([message_item(ids, "completed", json!([part]))]),
            responses_usage(&script.usage),
        )
    } else {
        (json!([]), Value::Null)
    };
    json!({
        "id": ids.response,
        "object": "response",
        "created_at": unix_now(),
        "status": status,
        "background": false,
        "error": null,
        "incomplete_details": null,
        "instructions": echo("instructions", Value::Null),
        "max_output_tokens": echo("max_output_tokens", Value::Null),
        "model": echo("model", json!(DEFAULT_OPENAI_MODEL)),
        "output": output,
        "parallel_tool_calls": true,
        "previous_response_id": echo("previous_response_id", Value::Null),
        "reasoning": {"effort": null, "summary": null},
        "store": echo("store", json!(true)),
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": echo("tools", json!([])),
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": null,
        "metadata": echo("metadata", json!({})),
    })
}

// ---------------------------------------------------------------------------------------
// Usage in each provider's shape

fn responses_usage(usage: &FakeUsage) -> Value {
    json!({
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens(),
    })
}

fn realtime_usage(usage: &FakeUsage) -> Value {
    json!({
        "total_tokens": usage.total_tokens(),
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "input_token_details": {
            "text_tokens": usage.input_tokens.saturating_sub(usage.input_audio_tokens),
            "audio_tokens": usage.input_audio_tokens,
            "image_tokens": 0,
            "cached_tokens": usage.cached_tokens,
            "cached_tokens_details": {"text_tokens": usage.cached_tokens, "audio_tokens": 0, "image_tokens": 0},
        },
        "output_token_details": {
            "text_tokens": usage.output_tokens.saturating_sub(usage.output_audio_tokens),
            "audio_tokens": usage.output_audio_tokens,
        },
    })
}

fn gemini_usage(usage: &FakeUsage) -> Value {
    let response_tokens = usage.output_tokens.saturating_sub(usage.reasoning_tokens);
    let mut metadata = json!({
        "promptTokenCount": usage.input_tokens,
        "responseTokenCount": response_tokens,
        "totalTokenCount": usage.total_tokens(),
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": usage.input_tokens}],
        "responseTokensDetails": [{"modality": "TEXT", "tokenCount": response_tokens}],
    });
    if usage.cached_tokens > 0 {
        metadata["cachedContentTokenCount"] = json!(usage.cached_tokens);
    }
    if usage.reasoning_tokens > 0 {
        metadata["thoughtsTokenCount"] = json!(usage.reasoning_tokens);
    }
    metadata
}
