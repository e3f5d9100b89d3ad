//! A governed WebSocket session: every message read both ways, every call
//! over the socket through policy as over HTTPS.
//!
//! Client → provider, per message ([`crate::provider::socket`] says what it
//! is):
//! 1. parse (strict JSON; Gemini's binary frames hold JSON too): a message
//!    that cannot be read follows `on_unparseable`;
//! 2. the model rule for any model it names; media follows
//!    `unscanned_audio`;
//! 3. the request guardrails over every string but media payloads: a
//!    block refuses the message (the provider never receives it), a
//!    redaction rewrites it;
//! 4. a *call* (`response.create`, a completed Gemini turn) is admitted
//!    against rate limits and budgets and opens the call's record;
//! 5. sent on.
//!
//! A refused message gets the API's error event on the socket (Responses:
//! with the HTTP `status` its clients map; Realtime: `error`), and the
//! socket stays open; Gemini Live, which has no error event, is closed with
//! 1008 and the reason. Each refusal has its own audit record.
//!
//! Provider → client: the messages of the call in progress go through the
//! same response guardrails and bounded hold-back as an SSE stream
//! ([`StreamInspector::for_socket`]); its terminal event (`response.completed`,
//! `response.done`, `turnComplete`) settles the budget from its usage and
//! writes the record before the event is passed on. A response the provider
//! starts on its own (Realtime voice activity, Gemini live input) is admitted
//! when it starts. A socket that closes mid-response is charged an estimate,
//! as a cut stream is.
//!
//! Ping and pong are answered on each leg by the framing layer; close codes
//! are passed on. Nothing compressed is ever read: the handshake
//! ([`super::websocket`]) never lets `permessage-deflate` be negotiated, and
//! a compressed frame is a protocol error here.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use super::pipeline::audit_permit;
use super::record::{CallSeen, Outcome, Received, RequestScan, ResponseFacts, ResponseSeen};
use super::ProxyState;
use crate::audit::record::sha256_hex;
use crate::policy::decide::{self, RuleHit};
use crate::policy::rules::{OnUnparseable, UnscannedAudio};
use crate::policy::stream::StreamInspector;
use crate::policy::Policy;
use crate::provider::socket::{read_client_message, starts_response, ClientKind, ClientMessage};
use crate::provider::{self, Api, ApiCall, ParseError, ProviderEntry, StreamState, TextSpan};
use crate::refusal::Refusal;

type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// What the handshake established about the session.
pub struct SessionStart {
    /// The API the path names (Responses, Realtime or Gemini Live).
    pub api: Api,
    /// The host's provider.
    pub provider: ProviderEntry,
    /// The host, for records.
    pub host: String,
    /// The path as audited (credential parameters removed).
    pub path: String,
    /// A model the handshake named (Realtime `?model=`).
    pub model: Option<String>,
    /// The largest message either side may send (`max_body_bytes`).
    pub max_message_bytes: usize,
}

/// Govern the session between the upgraded `client` and `upstream`
/// connections until either side closes or the agent shuts down.
pub async fn run(
    state: Arc<ProxyState>,
    start: SessionStart,
    client: Upgraded,
    upstream: Upgraded,
) {
    let config = WebSocketConfig::default()
        .max_message_size(Some(start.max_message_bytes))
        .max_frame_size(Some(start.max_message_bytes));
    let client = Socket::from_raw_socket(TokioIo::new(client), Role::Server, Some(config)).await;
    let upstream =
        Socket::from_raw_socket(TokioIo::new(upstream), Role::Client, Some(config)).await;
    let mut session = Session {
        state,
        start,
        client,
        upstream,
        calls: VecDeque::new(),
        idle: None,
        pending: Pending::default(),
        binary_out: false,
        discard: None,
    };
    session.relay().await;
}

/// One call over the socket: its record, and the inspector of its response.
struct Call {
    outcome: Outcome,
    inspector: StreamInspector,
    /// Set once the provider began answering.
    answered_at: Option<Instant>,
    sent_at: Instant,
}

/// What input messages added since the last call: part of the next call.
#[derive(Default)]
struct Pending {
    /// Their texts, up to the session's message limit (for the record).
    texts: Vec<TextSpan>,
    /// Bytes of all their texts, kept or not (for the budget estimate).
    bytes: usize,
    hits: Vec<RuleHit>,
    redacted: bool,
    /// Why part of the input went unscanned (audio; unreadable messages).
    unscanned: Option<String>,
    /// Some input reached the provider since the last call.
    sent: bool,
}

impl Pending {
    /// Input `message`, scanned as `scan`, sent on; texts are kept up to
    /// `cap` bytes, so that a long session without calls stays bounded.
    fn add(&mut self, message: &ClientMessage, scan: RequestScan, cap: usize) {
        for text in message
            .texts
            .iter()
            .filter(|t| t.role != provider::TextRole::Key)
        {
            self.bytes += text.text.len();
            if self.bytes <= cap {
                self.texts.push(text.clone());
            }
        }
        self.hits.extend(scan.hits);
        self.redacted |= scan.redacted;
        self.sent = true;
    }
}

struct Session {
    state: Arc<ProxyState>,
    start: SessionStart,
    client: Socket,
    upstream: Socket,
    /// Calls sent and not yet answered in full, oldest first.
    calls: VecDeque<Call>,
    /// Inspects provider messages outside any call (echoes, session events).
    idle: Option<StreamInspector>,
    pending: Pending,
    /// The provider sends its JSON in binary frames (Gemini): answer alike.
    binary_out: bool,
    /// The rest of a response a block rule ended: read for its end, never
    /// passed on.
    discard: Option<StreamState>,
}

/// How a side ended the session.
enum End {
    /// Keep going.
    Open,
    /// Stop relaying.
    Closed,
}

impl Session {
    async fn relay(&mut self) {
        loop {
            let end = tokio::select! {
                message = self.client.next() => match message {
                    Some(Ok(message)) => self.on_client(message).await,
                    Some(Err(err)) => {
                        self.fail_both(&format!("the client broke the WebSocket protocol: {err}"), CloseCode::Protocol).await;
                        End::Closed
                    }
                    None => {
                        let _ = bounded(self.state.limits.idle_timeout, self.upstream.close(None)).await;
                        End::Closed
                    }
                },
                message = self.upstream.next() => match message {
                    Some(Ok(message)) => self.on_upstream(message).await,
                    Some(Err(err)) => {
                        self.fail_both(&format!("the provider broke the WebSocket protocol: {err}"), CloseCode::Error).await;
                        End::Closed
                    }
                    None => {
                        let _ = bounded(self.state.limits.idle_timeout, self.client.close(None)).await;
                        End::Closed
                    }
                },
                // Any message either way starts the wait again.
                () = tokio::time::sleep(self.state.limits.socket_idle_timeout) => {
                    let why = format!(
                        "no message either way for {} s (limits.socket_idle_timeout_secs)",
                        self.state.limits.socket_idle_timeout.as_secs()
                    );
                    tracing::info!("WebSocket session closed: {why}");
                    let going = CloseFrame { code: CloseCode::Away, reason: why.into() };
                    let _ = bounded(self.state.limits.idle_timeout, self.client.close(Some(going.clone()))).await;
                    let _ = bounded(self.state.limits.idle_timeout, self.upstream.close(Some(going))).await;
                    End::Closed
                }
                () = self.state.shutdown.cancelled() => {
                    let going = CloseFrame { code: CloseCode::Away, reason: "Outpost is shutting down".into() };
                    let _ = bounded(self.state.limits.idle_timeout, self.client.close(Some(going.clone()))).await;
                    let _ = bounded(self.state.limits.idle_timeout, self.upstream.close(Some(going))).await;
                    End::Closed
                }
            };
            if let End::Closed = end {
                break;
            }
        }
        for call in self.calls.drain(..) {
            with_response(call).cut("the WebSocket closed before the response ended".into());
        }
        if self.pending.sent {
            self.record_unanswered_input().await;
        }
    }

    /// Input that reached the provider but no call followed before the
    /// socket closed: recorded on its own, so nothing sent goes unaudited.
    async fn record_unanswered_input(&mut self) {
        let policy = self.state.policy.current();
        let Ok(mut outcome) = self.outcome(&policy) else {
            return;
        };
        let pending = std::mem::take(&mut self.pending);
        let call = ApiCall {
            texts: pending.texts,
            ..ApiCall::bare(
                self.start.provider.kind,
                self.start.api,
                self.start.model.clone(),
            )
        };
        outcome.call = Some(CallSeen::of(
            &call,
            pending.bytes,
            &policy,
            pending.unscanned,
        ));
        outcome.request = RequestScan {
            hits: pending.hits,
            redacted: pending.redacted,
        };
        outcome.status = 200;
        if let Some(written) = outcome.finish() {
            if let Err(err) = written.await {
                tracing::error!("audit record not written: {err}");
            }
        }
    }

    /// A protocol error on one side: close both, saying why.
    async fn fail_both(&mut self, why: &str, code: CloseCode) {
        tracing::info!(host = %self.start.host, "websocket ended: {why}");
        let frame = CloseFrame {
            code,
            reason: close_reason(why).into(),
        };
        let _ = bounded(
            self.state.limits.idle_timeout,
            self.client.close(Some(frame.clone())),
        )
        .await;
        let _ = bounded(
            self.state.limits.idle_timeout,
            self.upstream.close(Some(frame)),
        )
        .await;
    }

    async fn on_client(&mut self, message: Message) -> End {
        match message {
            Message::Text(text) => self.govern(text.as_bytes(), false).await,
            Message::Binary(bytes) => self.govern(&bytes, true).await,
            Message::Close(frame) => {
                let _ = bounded(
                    self.state.limits.idle_timeout,
                    self.upstream.send(Message::Close(frame)),
                )
                .await;
                End::Open
            }
            // Answered on this leg by the framing layer.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => End::Open,
        }
    }

    /// One client message through policy: sent on, rewritten, or refused.
    async fn govern(&mut self, bytes: &[u8], binary: bool) -> End {
        let policy = self.state.policy.current();
        let api = self.start.api;
        let message = match read_client_message(api, bytes) {
            Ok(message) => message,
            Err(err) => return self.unreadable(&policy, bytes, binary, err).await,
        };
        let received = Received {
            bytes: bytes.len() as u64,
            sha256: Some(sha256_hex(bytes)),
        };
        let (sent, scan) = match self.inspect(&policy, &message) {
            Ok(inspected) => inspected,
            Err((refusal, scan)) => {
                return self
                    .refuse(&policy, Some(&message), received, scan, refusal)
                    .await
            }
        };
        if message.kind == ClientKind::Call {
            if let Err(refusal) = self.open_call(&policy, &message, received.clone(), &scan) {
                return self
                    .refuse(&policy, Some(&message), received, scan, refusal)
                    .await;
            }
        } else {
            let cap = self.start.max_message_bytes;
            self.pending.add(&message, scan, cap);
        }
        // Serialised JSON is UTF-8: a text frame is always possible.
        let out = match binary {
            false => match Utf8Bytes::try_from(sent.clone()) {
                Ok(text) => Message::Text(text),
                Err(_) => Message::Binary(sent),
            },
            true => Message::Binary(sent),
        };
        if let Err(err) = bounded(self.state.limits.idle_timeout, self.upstream.send(out)).await {
            self.fail_both(
                &format!("the provider's side of the WebSocket failed: {err}"),
                CloseCode::Error,
            )
            .await;
            return End::Closed;
        }
        End::Open
    }

    /// The model rule, media, and the request guardrails: the bytes to send
    /// (always the scanned document serialised again, redactions applied, so
    /// no byte the scanner did not read reaches the provider), or the refusal.
    #[allow(clippy::type_complexity)]
    fn inspect(
        &mut self,
        policy: &Policy,
        message: &ClientMessage,
    ) -> Result<(Bytes, RequestScan), (Refusal, RequestScan)> {
        let as_read = || Bytes::from(provider::rewrite::to_json(&message.json));
        let none = RequestScan::default;
        if let Some(model) = &message.model {
            decide::check_model(policy, &self.start.provider.name, model)
                .map_err(|r| (r, none()))?;
            self.start.model = Some(model.clone());
        }
        if message.media {
            if policy.unscanned_audio == UnscannedAudio::Block {
                return Err((
                    Refusal::policy(
                        "unscanned_audio",
                        "Outpost policy does not allow audio or video over this connection: no \
                         guardrail can read it (unscanned_audio = \"block\"). Send text."
                            .into(),
                    ),
                    none(),
                ));
            }
            self.pending.unscanned =
                Some("audio or video was sent unscanned (unscanned_audio = \"allow\")".into());
        }
        let Some(scan) = &policy.request_scan else {
            return Ok((as_read(), none()));
        };
        let found = decide::inspect_texts(policy, scan, &message.texts);
        let scanned = RequestScan {
            redacted: !found.edits.is_empty() || !found.renames.is_empty(),
            hits: found.hits,
        };
        if let Some(refusal) = found.block {
            return Err((refusal, scanned));
        }
        if !scanned.redacted {
            return Ok((as_read(), scanned));
        }
        let mut json = message.json.clone();
        match provider::rewrite::redact_document(&mut json, &found.edits, &found.renames) {
            Ok(()) => Ok((Bytes::from(provider::rewrite::to_json(&json)), scanned)),
            Err(err) => Err((
                Refusal::agent(
                    format!("Outpost could not apply redactions to this message: {err}"),
                    None,
                ),
                scanned,
            )),
        }
    }

    /// A message that is not JSON Outpost can read.
    async fn unreadable(
        &mut self,
        policy: &Arc<Policy>,
        bytes: &[u8],
        binary: bool,
        err: ParseError,
    ) -> End {
        let received = Received {
            bytes: bytes.len() as u64,
            sha256: Some(sha256_hex(bytes)),
        };
        let refusal = match err {
            ParseError::DuplicateKey(err) => Refusal::client(
                Some("duplicate_keys"),
                format!(
                    "Outpost refuses this message: {err}. JSON readers disagree on which one \
                     counts; send each member once."
                ),
            ),
            err if policy.on_unparseable == OnUnparseable::Block => Refusal::client(
                Some("on_unparseable"),
                format!(
                    "Outpost could not inspect this {} WebSocket message ({err}), and policy \
                     refuses what it cannot inspect (on_unparseable = \"block\").",
                    if binary { "binary" } else { "text" }
                ),
            ),
            err => {
                // Sent: it is recorded with the next call, or on its own.
                self.pending.sent = true;
                self.pending.unscanned = Some(format!(
                    "a message Outpost could not read was sent unscanned ({err}; \
                     on_unparseable = \"forward\")"
                ));
                let out = match binary {
                    true => Message::Binary(Bytes::copy_from_slice(bytes)),
                    false => Message::Text(String::from_utf8_lossy(bytes).into_owned().into()),
                };
                let _ = bounded(self.state.limits.idle_timeout, self.upstream.send(out)).await;
                return End::Open;
            }
        };
        self.refuse(policy, None, received, RequestScan::default(), refusal)
            .await
    }

    /// Admit a call and open its record.
    fn open_call(
        &mut self,
        policy: &Arc<Policy>,
        message: &ClientMessage,
        received: Received,
        scan: &RequestScan,
    ) -> Result<(), Refusal> {
        let texts: Vec<TextSpan> = self
            .pending
            .texts
            .iter()
            .chain(
                message
                    .texts
                    .iter()
                    .filter(|t| t.role != provider::TextRole::Key),
            )
            .cloned()
            .collect();
        let call = ApiCall {
            max_tokens: message.max_tokens,
            stream: true,
            texts,
            ..ApiCall::bare(
                self.start.provider.kind,
                self.start.api,
                self.start.model.clone(),
            )
        };
        let prompt_bytes = self.pending.bytes + message.text_bytes();
        // Admitted before the record is opened: a refusal here is recorded
        // once, by `refuse`, and what admission took is given back.
        self.state.budgets.ready(policy);
        let metered = self.state.budgets.admit(
            policy,
            &self.state.identity,
            &self.start.provider.name,
            &call,
            prompt_bytes,
            self.state.clock.now(),
            Instant::now(),
        )?;
        let mut outcome = self.outcome(policy)?;
        let pending = std::mem::take(&mut self.pending);
        outcome.call = Some(CallSeen::of(&call, prompt_bytes, policy, pending.unscanned));
        outcome.received = Some(received);
        outcome.request = RequestScan {
            hits: pending.hits.into_iter().chain(scan.hits.clone()).collect(),
            redacted: pending.redacted || scan.redacted,
        };
        outcome.metered = Some(metered);
        self.calls.push_back(Call {
            inspector: StreamInspector::for_socket(policy.clone(), call),
            outcome,
            answered_at: None,
            sent_at: Instant::now(),
        });
        Ok(())
    }

    /// A new record for a call on this socket.
    fn outcome(&self, policy: &Arc<Policy>) -> Result<Outcome, Refusal> {
        let permit = audit_permit(&self.state, policy, &self.start.host)?;
        let mut outcome = Outcome::begin(
            permit,
            policy.clone(),
            (Instant::now(), self.state.clock.now()),
            (&self.state.identity.user, &self.state.identity.device),
            (&self.start.provider.name, &self.start.host),
            "GET",
            self.start.path.clone(),
        );
        outcome.socket = true;
        Ok(outcome)
    }

    /// Refuse one client message: the provider never sees it, the client
    /// gets the API's error, and the refusal is recorded.
    async fn refuse(
        &mut self,
        policy: &Arc<Policy>,
        message: Option<&ClientMessage>,
        received: Received,
        scan: RequestScan,
        refusal: Refusal,
    ) -> End {
        tracing::info!(
            host = %self.start.host,
            source = %refusal.source,
            rule = refusal.rule.as_deref().unwrap_or("-"),
            "websocket message refused: {}",
            refusal.message
        );
        // A full audit queue refuses the call, and cannot record it either.
        if let Ok(mut outcome) = self.outcome(policy) {
            let call = ApiCall {
                texts: message.map(|m| m.texts.clone()).unwrap_or_default(),
                ..ApiCall::bare(
                    self.start.provider.kind,
                    self.start.api,
                    self.start.model.clone(),
                )
            };
            outcome.call = Some(CallSeen::of(&call, 0, policy, None));
            outcome.received = Some(received);
            outcome.request = scan;
            outcome.status = refusal.status();
            outcome.refusal = Some(refusal.clone());
            if let Some(written) = outcome.finish() {
                if let Err(err) = written.await {
                    tracing::error!("audit record not written: {err}");
                }
            }
        }
        self.send_error(&refusal).await
    }

    /// The refusal as the API's error event; Gemini Live is closed instead.
    async fn send_error(&mut self, refusal: &Refusal) -> End {
        if self.start.api == Api::GeminiLive {
            let frame = CloseFrame {
                code: CloseCode::Policy,
                reason: close_reason(&refusal.message).into(),
            };
            let _ = bounded(
                self.state.limits.idle_timeout,
                self.client.close(Some(frame)),
            )
            .await;
            let _ = bounded(self.state.limits.idle_timeout, self.upstream.close(None)).await;
            return End::Closed;
        }
        let event = provider::socket_error_event(
            self.start.provider.kind,
            self.start.api,
            refusal.kind,
            &refusal.message,
        );
        let text = String::from_utf8_lossy(&event).into_owned();
        match bounded(
            self.state.limits.idle_timeout,
            self.client.send(Message::Text(text.into())),
        )
        .await
        {
            Ok(()) => End::Open,
            Err(_) => End::Closed,
        }
    }

    async fn on_upstream(&mut self, message: Message) -> End {
        let (text, binary) = match message {
            Message::Text(text) => (text.as_str().to_owned(), false),
            Message::Binary(bytes) => match String::from_utf8(bytes.to_vec()) {
                Ok(text) if self.start.api == Api::GeminiLive => (text, true),
                _ => {
                    self.fail_both(
                        "the provider sent a binary message Outpost cannot inspect",
                        CloseCode::Unsupported,
                    )
                    .await;
                    return End::Closed;
                }
            },
            Message::Close(frame) => {
                let _ = bounded(
                    self.state.limits.idle_timeout,
                    self.client.send(Message::Close(frame)),
                )
                .await;
                return End::Open;
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return End::Open,
        };
        self.binary_out = binary;
        if let Some(rest) = &mut self.discard {
            let event = provider::SseEvent {
                event: None,
                data: Some(text),
                id: None,
                retry: None,
                raw: Bytes::new(),
            };
            rest.on_event(&event);
            if rest.is_finished() {
                self.discard = None;
            }
            return End::Open;
        }
        if self.calls.is_empty() {
            let started = serde_json::from_str::<Value>(&text)
                .is_ok_and(|json| starts_response(self.start.api, &json));
            if started {
                if let Err(refusal) = self.provider_started_call() {
                    // Admission refused a response the client did not ask
                    // for in a message: end the session rather than pass it.
                    let _ = self.send_error(&refusal).await;
                    self.fail_both(&refusal.message, CloseCode::Policy).await;
                    return End::Closed;
                }
            }
        }
        let out = match self.calls.front_mut() {
            Some(call) => {
                call.answered_at.get_or_insert_with(Instant::now);
                call.inspector.push_message(&text)
            }
            None => {
                let idle = self.idle.get_or_insert_with(|| {
                    let policy = self.state.policy.current();
                    let call = ApiCall::bare(
                        self.start.provider.kind,
                        self.start.api,
                        self.start.model.clone(),
                    );
                    StreamInspector::for_socket(policy, call)
                });
                let out = idle.push_message(&text);
                if idle.is_over() || idle.blocked().is_some() {
                    self.idle = None;
                }
                out
            }
        };
        let ended = self.calls.front().map(|call| {
            let blocked = call.inspector.blocked().cloned();
            (call.inspector.state().is_finished(), blocked)
        });
        let mut close_for = None;
        if let Some((finished, blocked)) = ended {
            if finished || blocked.is_some() {
                if let Some(call) = self.calls.pop_front() {
                    if !finished {
                        // Blocked mid-response: the provider is still
                        // answering. Nothing more of it reaches the client.
                        self.discard = Some(call.inspector.state().clone());
                    }
                    record_response(call).await;
                }
            }
            close_for = blocked.filter(|_| self.start.api == Api::GeminiLive);
            if self.start.api == Api::Realtime && self.discard.is_some() {
                let cancel = r#"{"type":"response.cancel"}"#;
                let _ = bounded(
                    self.state.limits.idle_timeout,
                    self.upstream.send(Message::Text(cancel.into())),
                )
                .await;
            }
        }
        if let Some(refusal) = close_for {
            // Gemini Live has no error event: the block closes the session.
            self.fail_both(&refusal.message, CloseCode::Policy).await;
            return End::Closed;
        }
        for message in out {
            if let Err(err) = self.send_to_client(message).await {
                tracing::debug!(host = %self.start.host, "websocket client gone: {err}");
                let _ = bounded(self.state.limits.idle_timeout, self.upstream.close(None)).await;
                return End::Closed;
            }
        }
        End::Open
    }

    /// A response the provider began without a call message (voice
    /// activity): admitted now, with what input is pending.
    fn provider_started_call(&mut self) -> Result<(), Refusal> {
        let policy = self.state.policy.current();
        let message = ClientMessage {
            kind: ClientKind::Call,
            name: "provider-started response".into(),
            model: None,
            max_tokens: None,
            json: Value::Null,
            texts: Vec::new(),
            media: false,
        };
        let received = Received {
            bytes: 0,
            sha256: None,
        };
        self.open_call(&policy, &message, received, &RequestScan::default())
    }

    async fn send_to_client(&mut self, message: Bytes) -> Result<(), WsError> {
        let message = if self.binary_out {
            Message::Binary(message)
        } else {
            Message::Text(String::from_utf8_lossy(&message).into_owned().into())
        };
        bounded(self.state.limits.idle_timeout, self.client.send(message)).await
    }
}

/// Fill in what the response showed and write the call's record; resolves
/// once it is in the file (the terminal event waits for it, as the last
/// bytes of an HTTP response do).
async fn record_response(call: Call) {
    if let Some(written) = with_response(call).finish() {
        if let Err(err) = written.await {
            tracing::error!("audit record not written: {err}");
        }
    }
}

/// The call's record with what its response showed so far.
fn with_response(call: Call) -> Outcome {
    let Call {
        mut outcome,
        inspector,
        answered_at,
        sent_at,
    } = call;
    let blocked = inspector.blocked().cloned();
    outcome.answered = answered_at.map(|at| super::record::Answered {
        after: at.saturating_duration_since(sent_at),
        status: 200,
    });
    outcome.status = blocked.as_ref().map_or(200, Refusal::status);
    outcome.response = ResponseFacts::Whole(ResponseSeen {
        hits: inspector.hits(),
        completion: Some(inspector.delivered_text().to_owned()),
        usage: inspector.state().usage(),
        blocked: blocked.is_some(),
    });
    outcome
}

/// `send` (a message or a close on one leg), given up after `limit`: a peer
/// that stops reading must not hold the session, and its connection, forever.
async fn bounded<F>(limit: Duration, send: F) -> Result<(), WsError>
where
    F: std::future::Future<Output = Result<(), WsError>>,
{
    match tokio::time::timeout(limit, send).await {
        Ok(sent) => sent,
        Err(_) => Err(WsError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "the peer read nothing for {} s (limits.idle_timeout_secs)",
                limit.as_secs()
            ),
        ))),
    }
}

/// A close frame's reason: at most 123 bytes (RFC 6455 §5.5), cut on a
/// character boundary.
fn close_reason(why: &str) -> String {
    let mut end = why.len().min(123);
    while !why.is_char_boundary(end) {
        end -= 1;
    }
    why[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_fit_a_control_frame() {
        let long = "é".repeat(100);
        let reason = close_reason(&long);
        assert!(reason.len() <= 123);
        assert!(long.starts_with(&reason));
        assert_eq!(close_reason("short"), "short");
    }
}
