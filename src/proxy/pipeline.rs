//! An intercepted API call, through policy, to the provider and back.
//!
//! Stages, one function each:
//! 1. [`read_body`]: the request body, up to the policy's `max_body_bytes`;
//! 2. `parse_request` (provider adapter): API, model, stream flag, texts;
//! 3. model rules, then rate limits and budgets (`spend`), then
//!    [`inspect_request`]: request guardrails → refuse, or forward with
//!    redactions written into the JSON;
//! 4. forward (streaming), then [`inspect_response`]: SSE streams go through
//!    a [`StreamInspector`] event by event; JSON bodies are scanned whole.
//!
//! Refusals come back in the provider's own error shape, with the rule id
//! and the admin's message, and `x-should-retry: false` so SDKs do not retry
//! what will fail again. The policy is taken once, at the start: a reload
//! mid-request does not change the rules this request runs under.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use super::forward::{self, Route};
use super::spend::LimitRefusal;
use super::trail::{audited_path, AuditedBody, CallTrail, SharedFacts};
use super::{full_body, ProxyBody, ProxyState};
use crate::policy::decide::{self, Inspection, Refusal, RefusalReason};
use crate::policy::rules::{OnAuditBacklog, OnUnparseable};
use crate::policy::stream::StreamInspector;
use crate::policy::Policy;
use crate::provider::{self, ApiCall, ErrorKind, Provider, ProviderEntry};
use crate::upstream::BoxError;

/// Response header naming `warn` rules that matched.
pub const WARNING_HEADER: &str = "x-outpost-warning";

/// The provider a host belongs to: its table entry, or the native provider
/// for the host (never asked to add `stream_options`).
pub fn provider_of(state: &ProxyState, host: &str) -> ProviderEntry {
    state.providers.lookup(host).cloned().unwrap_or_else(|| {
        let kind = Provider::for_host(host);
        ProviderEntry {
            name: kind.name().to_string(),
            kind,
            stream_options: false,
        }
    })
}

/// Handle one request on an intercepted host: one audit record, always.
pub async fn handle(
    state: &ProxyState,
    route: &Route,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let policy = state.policy.current();
    let permit = match &state.audit {
        None => None,
        Some(audit) => match audit.try_reserve() {
            Some(permit) => Some(permit),
            None if policy.on_audit_backlog == OnAuditBacklog::Block => {
                audit.note_refused();
                tracing::warn!(host = %route.target.host, "audit queue full: refusing the request");
                return backlog_response(&route.target.host);
            }
            None => {
                audit.note_dropped();
                None
            }
        },
    };
    let path = audited_path(req.uri().path(), req.uri().query());
    let mut trail = CallTrail::start(
        permit,
        policy.clone(),
        (&state.identity.user, &state.identity.device),
        &route.target.host,
        req.method().as_str(),
        path,
    );
    let response = run(state, route, req, &policy, &mut trail).await;
    let status = response.status().as_u16();
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, AuditedBody::new(body, trail, status).boxed())
}

async fn run(
    state: &ProxyState,
    route: &Route,
    req: Request<Incoming>,
    policy: &Arc<Policy>,
    trail: &mut CallTrail,
) -> Response<ProxyBody> {
    let entry = provider_of(state, &route.target.host);
    let (provider_name, provider) = (entry.name.clone(), entry.kind);
    trail.event.provider = Some(provider_name.clone());
    let (parts, body) = req.into_parts();
    let method = parts.method.as_str().to_string();
    let path = parts.uri.path().to_string();
    let fallback_call = ApiCall {
        provider,
        api: provider::Api::Unknown,
        model: None,
        stream: false,
        max_tokens: None,
        texts: Vec::new(),
    };
    let refuse = |trail: &mut CallTrail, call: &ApiCall, refusal: Refusal| {
        tracing::info!(host = %route.target.host, path, rule = %refusal.rule, "request refused");
        trail.refused(&refusal.rule, &refusal.message);
        refusal_response(call, &refusal)
    };

    let body = match read_body(body, &parts.headers, policy.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(BodyRead::Client(err)) => {
            trail.failed(format!("request body unreadable: {err}"));
            return refusal_response(
                &fallback_call,
                &uninspectable(format!("Outpost could not read the request body: {err}")),
            );
        }
        Err(BodyRead::TooLarge(rest)) => {
            let message = format!(
                "The request body is larger than the {} bytes Outpost inspects (max_body_bytes).",
                policy.max_body_bytes
            );
            return match policy.on_unparseable {
                OnUnparseable::Forward => {
                    tracing::info!(host = %route.target.host, path, "forwarding an over-size body uninspected");
                    trail.event.error =
                        Some("forwarded uninspected: body over max_body_bytes".into());
                    let request = Request::from_parts(parts, rest.boxed());
                    send(state, route, request, trail).await
                }
                OnUnparseable::Block => refuse(trail, &fallback_call, uninspectable(message)),
            };
        }
    };
    trail.request_body(&body);

    let call = match provider::parse_request(provider, &method, &path, &body) {
        Ok(call) => call,
        Err(err) => {
            let message = format!("Outpost could not inspect this {method} {path}: {err}");
            return match policy.on_unparseable {
                OnUnparseable::Forward => {
                    tracing::info!(host = %route.target.host, path, "forwarding an unparseable body uninspected: {err}");
                    trail.event.error = Some(format!("forwarded uninspected: {err}"));
                    let request = Request::from_parts(parts, full_body(body));
                    send(state, route, request, trail).await
                }
                OnUnparseable::Block => refuse(trail, &fallback_call, uninspectable(message)),
            };
        }
    };
    trail.event.api = Some(call.api.name().to_string());
    trail.event.model = call.model.clone();
    trail.event.stream = call.stream;
    trail.prompt(&call.texts);

    // Cheap checks first: the model, then rate limits and budgets, and
    // only then the guardrail scan.
    if let Some(model) = &call.model {
        if let Err(refusal) = decide::check_model(policy, &provider_name, model) {
            return refuse(trail, &call, refusal);
        }
    }
    let metered = match state.budgets.admit(
        policy,
        &state.identity,
        &provider_name,
        &call,
        jiff::Timestamp::now(),
        Instant::now(),
    ) {
        Ok(metered) => metered,
        Err(refusal) => {
            tracing::info!(host = %route.target.host, rule = %refusal.rule, "{}", refusal.message);
            trail.refused(&refusal.rule, &refusal.message);
            return limit_refusal(&call, &refusal);
        }
    };
    let metering_warnings: Vec<String> =
        metered.warnings.iter().map(|w| w.message.clone()).collect();
    trail.metered(metered);
    let (decided, inspection) = inspect_request(policy, &call, body);
    trail.request_hits(inspection.hits.clone(), !inspection.edits.is_empty());
    let body = match decided {
        Ok(body) => body,
        Err(refusal) => return refuse(trail, &call, refusal),
    };

    // Streams are charged from their usage: ask for it where the host
    // accepts the option, and hide the extra chunk from a client that did
    // not ask for it.
    let mut body = body;
    let mut hide_usage_chunk = false;
    if call.stream && entry.stream_options {
        if let Ok(Some(with_usage)) = provider::ensure_stream_usage(&call, &body) {
            body = Bytes::from(with_usage);
            hide_usage_chunk = true;
        }
    }
    let mut parts = parts;
    if parts.headers.contains_key(CONTENT_LENGTH) || !body.is_empty() {
        parts
            .headers
            .insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    let request = Request::from_parts(parts, full_body(body));
    let response = send(state, route, request, trail).await;
    let mut response = inspect_response(policy, call, response, trail, hide_usage_chunk).await;
    add_warnings(
        response.headers_mut(),
        inspection
            .warnings()
            .chain(metering_warnings.iter().map(String::as_str)),
    );
    response
}

/// Forward, timing the upstream and noting failures in the trail.
async fn send(
    state: &ProxyState,
    route: &Route,
    request: Request<ProxyBody>,
    trail: &mut CallTrail,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let response = forward::send(state, route, request).await;
    trail.upstream_ms(started.elapsed().as_millis() as u64);
    if let Some(code) = response
        .headers()
        .get("x-outpost-error")
        .and_then(|v| v.to_str().ok())
    {
        trail.failed(format!("{code}: {}", route.target.host));
    }
    response
}

/// A budget, rate-limit or unpriced-model refusal in the caller's API
/// shape, with `Retry-After` when waiting helps.
fn limit_refusal(call: &ApiCall, refusal: &LimitRefusal) -> Response<ProxyBody> {
    let kind = refusal.kind;
    let body = provider::error_body_for(call, kind, &refusal.message);
    let mut response = Response::new(full_body(body));
    *response.status_mut() =
        StatusCode::from_u16(kind.status()).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let retry = if refusal.retry { "true" } else { "false" };
    headers.insert("x-should-retry", HeaderValue::from_static(retry));
    headers.insert("x-outpost-error", HeaderValue::from_static(kind.code()));
    if let Some(secs) = refusal.retry_after_secs {
        headers.insert("retry-after", HeaderValue::from(secs));
    }
    if let Ok(rule) = HeaderValue::from_str(&refusal.rule) {
        headers.insert("x-outpost-rule", rule);
    }
    response
}

fn backlog_response(host: &str) -> Response<ProxyBody> {
    let mut response = super::provider_error(
        host,
        ErrorKind::UpstreamUnavailable,
        "Outpost's audit log is behind and policy requires every call to be audited; try again in a moment.",
    );
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response
}

/// Request guardrails. Returns the body to forward (rewritten if anything
/// was redacted) or the refusal, and what matched.
pub fn inspect_request(
    policy: &Policy,
    call: &ApiCall,
    body: Bytes,
) -> (Result<Bytes, Refusal>, Inspection) {
    let Some(scan) = &policy.request_scan else {
        return (Ok(body), Inspection::default());
    };
    let inspection = decide::inspect_texts(policy, scan, &call.texts);
    if let Some(block) = &inspection.block {
        return (Err(block.clone()), inspection);
    }
    if inspection.edits.is_empty() {
        return (Ok(body), inspection);
    }
    let rewritten = match provider::rewrite_texts(&body, &inspection.edits) {
        Ok(rewritten) => Ok(Bytes::from(rewritten)),
        // The body parsed a moment ago; failing to rewrite it must not let
        // the unredacted text through.
        Err(err) => Err(uninspectable(format!(
            "Outpost could not apply redactions to this request: {err}"
        ))),
    };
    (rewritten, inspection)
}

fn uninspectable(message: String) -> Refusal {
    Refusal {
        rule: "on_unparseable".into(),
        reason: RefusalReason::Uninspectable,
        message,
    }
}

/// A refusal in the shape of the API the caller used.
pub fn refusal_response(call: &ApiCall, refusal: &Refusal) -> Response<ProxyBody> {
    let kind = match refusal.reason {
        RefusalReason::ModelDenied | RefusalReason::Guardrail => ErrorKind::PolicyBlocked,
        RefusalReason::Uninspectable => ErrorKind::BadRequest,
    };
    let body = provider::error_body_for(call, kind, &refusal.message);
    let mut response = Response::new(full_body(body));
    *response.status_mut() = StatusCode::from_u16(kind.status()).unwrap_or(StatusCode::FORBIDDEN);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert("x-should-retry", HeaderValue::from_static("false"));
    headers.insert("x-outpost-error", HeaderValue::from_static(kind.code()));
    if let Ok(rule) = HeaderValue::from_str(&refusal.rule) {
        headers.insert("x-outpost-rule", rule);
    }
    response
}

fn add_warnings<'a>(headers: &mut HeaderMap, rules: impl Iterator<Item = &'a str>) {
    let rules: Vec<&str> = rules.collect();
    if rules.is_empty() {
        return;
    }
    if let Ok(value) = HeaderValue::from_str(&rules.join(", ")) {
        headers.append(WARNING_HEADER, value);
    }
}

/// Why a body was not read whole.
pub enum BodyRead {
    /// The client's body failed (reset, malformed chunking).
    Client(hyper::Error),
    /// Over the limit; the body, replayable from its start.
    TooLarge(PrefixedBody),
}

/// Read `body` whole unless it exceeds `limit` bytes.
pub async fn read_body(
    mut body: Incoming,
    headers: &HeaderMap,
    limit: u64,
) -> Result<Bytes, BodyRead> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(BodyRead::TooLarge(PrefixedBody::new(Bytes::new(), body)));
    }
    let capacity = declared.unwrap_or(0).min(limit) as usize;
    match read_limited(&mut body, limit, capacity).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(prefix)) => Err(BodyRead::TooLarge(PrefixedBody::new(prefix, body))),
        Err(err) => Err(BodyRead::Client(err)),
    }
}

/// Read frames of `body` until it ends (`Ok(Ok(all))`) or passes `limit`
/// bytes (`Ok(Err(what was read))`; the rest stays in `body`).
async fn read_limited<B>(
    body: &mut B,
    limit: u64,
    capacity: usize,
) -> Result<Result<Bytes, Bytes>, B::Error>
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut buf = BytesMut::with_capacity(capacity);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            buf.extend_from_slice(&data);
            if buf.len() as u64 > limit {
                return Ok(Err(buf.freeze()));
            }
        }
    }
    Ok(Ok(buf.freeze()))
}

/// A body whose first bytes were already read: those, then the rest.
pub struct PrefixedBody {
    prefix: Option<Bytes>,
    rest: Incoming,
}

impl PrefixedBody {
    fn new(prefix: Bytes, rest: Incoming) -> PrefixedBody {
        PrefixedBody {
            prefix: (!prefix.is_empty()).then_some(prefix),
            rest,
        }
    }

    fn boxed(self) -> ProxyBody {
        BodyExt::boxed(self)
    }
}

impl Body for PrefixedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        Pin::new(&mut self.rest)
            .poll_frame(cx)
            .map_err(BoxError::from)
    }
}

fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"))
}

fn is_encoded(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.eq_ignore_ascii_case("identity"))
}

/// Apply response guardrails to a successful provider response, and learn
/// its usage and text for the audit trail.
async fn inspect_response(
    policy: &Arc<Policy>,
    call: ApiCall,
    response: Response<ProxyBody>,
    trail: &mut CallTrail,
    hide_usage_chunk: bool,
) -> Response<ProxyBody> {
    if !response.status().is_success() || !call.api.metered() {
        return response;
    }
    let headers = response.headers();
    if !call.api.generates() {
        // Embeddings: nothing to scan, but a budget needs the usage.
        if !trail.has_budget() || !is_json(headers) || is_encoded(headers) {
            return response;
        }
        let (parts, body) = response.into_parts();
        return match collect_limited(body, policy.max_body_bytes).await {
            Ok(bytes) => {
                trail.usage(provider::response_usage(&call, &bytes));
                Response::from_parts(parts, full_body(bytes))
            }
            Err(message) => {
                trail.failed(message.clone());
                refusal_response(&call, &uninspectable(message))
            }
        };
    }
    if is_encoded(headers) {
        // Outpost asked for identity; a provider that compresses anyway
        // cannot be scanned.
        if policy.response_scan.is_some() && policy.on_unparseable == OnUnparseable::Block {
            let refusal = uninspectable(
                "The provider sent a compressed response Outpost cannot inspect.".into(),
            );
            trail.refused(&refusal.rule, &refusal.message);
            return refusal_response(&call, &refusal);
        }
        return response;
    }
    if is_event_stream(headers) {
        let (mut parts, body) = response.into_parts();
        parts.headers.remove(CONTENT_LENGTH);
        let mut inspector = StreamInspector::new(policy.clone(), call);
        if hide_usage_chunk {
            inspector.drop_usage_chunks();
        }
        let facts = trail.stream_facts();
        return Response::from_parts(parts, InspectedStream::new(body, inspector, facts).boxed());
    }
    if !is_json(headers) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match collect_limited(body, policy.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(message) => {
            trail.failed(message.clone());
            return refusal_response(&call, &uninspectable(message));
        }
    };
    trail.usage(provider::response_usage(&call, &bytes));
    let texts = match provider::response_texts(&call, &bytes) {
        Ok(texts) => texts,
        Err(err)
            if policy.on_unparseable == OnUnparseable::Forward
                || policy.response_scan.is_none() =>
        {
            tracing::info!("response not inspected: {err}");
            return Response::from_parts(parts, full_body(bytes));
        }
        Err(err) => {
            let refusal = uninspectable(format!(
                "Outpost could not inspect the provider's response: {err}"
            ));
            trail.refused(&refusal.rule, &refusal.message);
            return refusal_response(&call, &refusal);
        }
    };
    let Some(scan) = &policy.response_scan else {
        trail.completion(
            texts
                .iter()
                .map(|t| t.text.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        );
        return Response::from_parts(parts, full_body(bytes));
    };
    let inspection = decide::inspect_texts(policy, scan, &texts);
    trail.response_hits(inspection.hits.clone());
    if let Some(block) = &inspection.block {
        let refusal = Refusal {
            message: format!(
                "Response {}",
                block.message.replacen("Blocked", "blocked", 1)
            ),
            ..block.clone()
        };
        trail.refused(&refusal.rule, &refusal.message);
        return refusal_response(&call, &refusal);
    }
    let (bytes, delivered) = if inspection.edits.is_empty() {
        let delivered: Vec<&str> = texts.iter().map(|t| t.text.as_str()).collect();
        let delivered = delivered.join("\n");
        (bytes, delivered)
    } else {
        match provider::rewrite_texts(&bytes, &inspection.edits) {
            Ok(rewritten) => {
                let rewritten = Bytes::from(rewritten);
                let delivered = provider::response_texts(&call, &rewritten)
                    .map(|t| t.into_iter().map(|t| t.text).collect::<Vec<_>>().join("\n"))
                    .unwrap_or_default();
                (rewritten, delivered)
            }
            Err(err) => {
                let refusal = uninspectable(format!(
                    "Outpost could not redact the provider's response: {err}"
                ));
                trail.refused(&refusal.rule, &refusal.message);
                return refusal_response(&call, &refusal);
            }
        }
    };
    trail.completion(delivered);
    parts
        .headers
        .insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    add_warnings(&mut parts.headers, inspection.warnings());
    Response::from_parts(parts, full_body(bytes))
}

async fn collect_limited(mut body: ProxyBody, limit: u64) -> Result<Bytes, String> {
    match read_limited(&mut body, limit, 0).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(format!(
            "The provider's response is larger than the {limit} bytes Outpost inspects (max_body_bytes)."
        )),
        Err(err) => Err(format!("the provider's response failed: {err}")),
    }
}

/// A response stream passed through a [`StreamInspector`], frame by frame.
pub struct InspectedStream {
    inner: ProxyBody,
    inspector: StreamInspector,
    queue: VecDeque<Bytes>,
    done: bool,
    error: Option<BoxError>,
    facts: SharedFacts,
}

impl InspectedStream {
    fn new(inner: ProxyBody, inspector: StreamInspector, facts: SharedFacts) -> InspectedStream {
        InspectedStream {
            inner,
            inspector,
            queue: VecDeque::new(),
            done: false,
            error: None,
            facts,
        }
    }

    /// Publish what the stream showed, for the audit record.
    fn publish(&self) {
        let mut facts = self.facts.lock().unwrap_or_else(|p| p.into_inner());
        facts.hits = self.inspector.hits();
        facts.completion = self.inspector.delivered_text().to_string();
        facts.usage = self.inspector.state().usage();
        facts.blocked = self.inspector.blocked().is_some();
    }
}

impl Drop for InspectedStream {
    fn drop(&mut self) {
        self.publish();
    }
}

impl Body for InspectedStream {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if let Some(bytes) = this.queue.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            if this.done {
                return Poll::Ready(this.error.take().map(Err));
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        let out = this.inspector.push(&data);
                        this.queue.extend(out);
                        if this.inspector.blocked().is_some() {
                            this.done = true;
                            this.publish();
                        }
                    }
                    Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                },
                Poll::Ready(Some(Err(err))) => {
                    this.queue.extend(this.inspector.finish());
                    this.error = Some(err);
                    this.done = true;
                    this.publish();
                }
                Poll::Ready(None) => {
                    this.queue.extend(this.inspector.finish());
                    this.done = true;
                    this.publish();
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.queue.is_empty() && self.error.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
