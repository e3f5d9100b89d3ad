//! An intercepted API call, through policy, to the provider and back.
//!
//! One call runs through stages, each a small function that returns what
//! the next stage needs or the [`Refusal`] that ends the call:
//! 1. [`read`]: the request body, up to the policy's `max_body_bytes`
//!    (before an audit queue slot is taken); plain `http://` to an
//!    intercepted host is refused before anything is sent;
//! 2. [`parse`]: the provider adapter reads API, model, stream flag, output
//!    cap and texts, and every other string of the body; an endpoint no
//!    adapter knows follows `[intercept] unknown_endpoints`, a body that
//!    cannot be read follows `on_unparseable`;
//! 3. [`admit`]: model rules, then rate limits and budgets (a worst-case
//!    reservation), for every call that is forwarded, uninspected ones too;
//! 4. [`inspect_request`]: request guardrails over every string → refuse,
//!    or the bytes to send: the scanned document serialised again, so no
//!    byte the scanner did not see reaches the provider;
//! 5. [`forward::send`], streaming;
//! 6. [`respond::inspect`]: response guardrails and usage;
//! 7. settle and record: [`Outcome`] turns what the stages returned into
//!    the call's one audit record when its response ends.
//!
//! Only [`run`] stores stage results in the outcome, one store per stage;
//! [`handle`] renders a refusal in the provider's shape ([`render`]). The
//! policy is taken once, at the start: a reload mid-request does not change
//! the rules this request runs under.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::uri::Scheme;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use jiff::Timestamp;
use serde_json::Value;

use super::body::{self, RequestBody};
use super::forward::{self, Route};
use super::record::{audited_path, Answered, CallSeen, Outcome, Received, RequestScan};
use super::respond::{self, add_warnings, Expect};
use super::spend::{Budgets, Metered};
use super::{full_body, render, ProxyBody, ProxyState};
use crate::audit::record::sha256_hex;
use crate::audit::writer::AuditPermit;
use crate::config::Identity;
use crate::policy::decide::{self, RuleHit};
use crate::policy::rules::{OnAuditBacklog, OnUnparseable, UnknownEndpoints};
use crate::policy::Policy;
use crate::provider::{
    self, Api, ApiCall, ErrorKind, ParseError, Provider, ProviderEntry, TextSpan,
};
use crate::refusal::Refusal;

pub use super::respond::WARNING_HEADER;

/// The provider a host belongs to in `policy`'s table (the call's policy,
/// so one call sees one table): its entry, or the native provider for the
/// host (never asked to add `stream_options`).
pub fn provider_of(policy: &Policy, host: &str) -> ProviderEntry {
    policy.providers.lookup(host).cloned().unwrap_or_else(|| {
        let kind = Provider::for_host(host);
        ProviderEntry {
            name: kind.name().to_string(),
            kind,
            stream_options: false,
        }
    })
}

/// What every stage of one call reads.
struct Ctx<'a> {
    state: &'a ProxyState,
    route: &'a Route,
    policy: Arc<Policy>,
    provider: ProviderEntry,
}

/// Handle one request on an intercepted host: one audit record, always
/// (unless the audit queue is full, which refuses the call or, where
/// policy allows, serves it unaudited).
pub async fn handle(
    state: &ProxyState,
    route: &Route,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let policy = state.policy.current();
    let ctx = Ctx {
        state,
        route,
        provider: provider_of(&policy, &route.target.host),
        policy,
    };
    let started = (Instant::now(), state.clock.now());
    // Routed once: it also decides the shape errors are written in, before
    // the body says more.
    let routed = provider::route::route(req.method().as_str(), req.uri().path());
    let api = routed.api;
    let path = audited_path(req.uri().path(), req.uri().query());
    let (parts, body) = req.into_parts();
    // The body is read before an audit slot is taken, so a refusal for a
    // full queue answers a request whose body was consumed (HTTP/2 resets
    // a stream whose body is left unread, and the client may lose the
    // answer with it).
    let limit = state.limits.body_timeout;
    // Room for the body first: large bodies take turns rather than all be
    // held at once. Kept until the call's response headers arrive.
    let (_room, body) =
        match body_room(state, &parts.headers, ctx.policy.max_body_bytes, limit).await {
            Ok(room) => (
                room,
                read_within(limit, body, &parts.headers, ctx.policy.max_body_bytes).await,
            ),
            // Drained first, so that the refusal reaches an HTTP/2 client;
            // then refused and recorded like any other.
            Err(refusal) => {
                let mut body = body;
                let _ = tokio::time::timeout(limit, body::discard(&mut body, DRAIN_LIMIT)).await;
                (None, Err(refusal))
            }
        };
    let permit = match audit_permit(state, &ctx.policy, &route.target.host) {
        Ok(permit) => permit,
        Err(refusal) => return render::refusal(&refusal, ctx.provider.kind, api),
    };
    let mut outcome = Outcome::begin(
        permit,
        ctx.policy.clone(),
        started,
        (&state.identity.user, &state.identity.device),
        (&ctx.provider.name, &route.target.host),
        parts.method.as_str(),
        path,
    );
    let result = match body {
        Ok(body) => run(&ctx, parts, routed, body, &mut outcome).await,
        Err(refusal) => Err(refusal),
    };
    let response = match result {
        Ok(response) => response,
        Err(refusal) => {
            tracing::info!(
                host = %route.target.host,
                source = %refusal.source,
                rule = refusal.rule.as_deref().unwrap_or("-"),
                "request refused: {}",
                refusal.message
            );
            let api = outcome.api().unwrap_or(api);
            let response = render::refusal(&refusal, ctx.provider.kind, api);
            outcome.refusal = Some(refusal);
            response
        }
    };
    let status = response.status().as_u16();
    let (parts, body) = response.into_parts();
    Response::from_parts(
        parts,
        http_body_util::BodyExt::boxed(super::record::AuditedBody::new(body, outcome, status)),
    )
}

/// Bodies at most this long need no room: cheap, and bounded by the
/// connection cap.
const SMALL_BODY: u64 = 1024 * 1024;

/// What one byte of an inspected body costs in memory while the call is
/// inspected: the bytes received, the parsed document with its texts, the
/// document serialised again. `limits.max_buffered_bytes` bounds the memory.
const BODY_COPIES: u64 = 3;

/// Room in `state.buffers` for a body of the declared length (or, with none
/// declared, the most that is read), counted [`BODY_COPIES`] times, waiting
/// up to `wait`; `None` for a small body.
async fn body_room(
    state: &ProxyState,
    headers: &http::HeaderMap,
    max_body: u64,
    wait: std::time::Duration,
) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, Refusal> {
    let held = body::declared_len(headers)
        .unwrap_or(max_body)
        .min(max_body);
    if held <= SMALL_BODY {
        return Ok(None);
    }
    // Never more than the whole room: a body that big takes it all, alone.
    let whole = (state.limits.max_buffered_bytes / (1024 * 1024)).max(1);
    let cost = held.saturating_mul(BODY_COPIES).div_ceil(1024 * 1024);
    let permits = u32::try_from(cost.min(whole)).unwrap_or(u32::MAX);
    match tokio::time::timeout(wait, state.buffers.clone().acquire_many_owned(permits)).await {
        Ok(Ok(permit)) => Ok(Some(permit)),
        _ => Err(Refusal::agent(
            format!(
                "Outpost on this device is holding as many large request bodies as it may \
                 (limits.max_buffered_bytes) and this one waited {} s for room; try again.",
                wait.as_secs()
            ),
            Some(1),
        )),
    }
}

/// A slot in the audit queue for a call to `host`, or the refusal a full
/// queue means under `policy`.
pub fn audit_permit(
    state: &ProxyState,
    policy: &Policy,
    host: &str,
) -> Result<Option<AuditPermit>, Refusal> {
    let Some(audit) = &state.audit else {
        return Ok(None);
    };
    if let Some(permit) = audit.try_reserve() {
        return Ok(Some(permit));
    }
    if policy.on_audit_backlog == OnAuditBacklog::Allow {
        audit.note_dropped();
        return Ok(None);
    }
    audit.note_refused();
    tracing::warn!(host = %host, "audit queue full: refusing the request");
    Err(Refusal::agent(
        "Outpost's audit log is behind on this device and policy requires every call to be \
         audited (on_audit_backlog = \"block\"); try again in a moment."
            .into(),
        Some(1),
    ))
}

/// The stages after the read, in order; each result is stored in `out` as
/// it returns.
async fn run(
    ctx: &Ctx<'_>,
    parts: http::request::Parts,
    routed: provider::route::Route,
    body: RequestBody,
    out: &mut Outcome,
) -> Result<Response<ProxyBody>, Refusal> {
    out.received = Some(received(&body));
    refuse_plain_http(ctx.route)?;
    let body = drain_if_refused(&ctx.policy, ctx.state.limits.body_timeout, body).await?;
    let kind = ctx.provider.kind;
    let parsed = parse(
        &ctx.policy,
        kind,
        parts.method.as_str(),
        &parts.uri,
        routed,
        body,
    )?;
    out.call = Some(parsed.seen(&ctx.policy));
    let meter = Meter {
        budgets: &ctx.state.budgets,
        identity: &ctx.state.identity,
        now: ctx.state.clock.now(),
    };
    out.metered = Some(admit(&ctx.policy, &ctx.provider.name, &meter, &parsed)?);
    let inspected = inspect_request(&ctx.policy, &ctx.provider, parsed);
    out.request = inspected.scan;
    let outgoing = inspected.result?;

    let warnings: Vec<String> = warned(&out.request.hits, out.metered.as_ref());
    let expect = Expect {
        call: outgoing.call,
        hide_usage_chunk: outgoing.usage_added,
        wants_usage: out.has_budget(),
        body_idle: ctx.state.upstream.body_idle_timeout(),
    };
    let mut parts = parts;
    if parts.headers.contains_key(CONTENT_LENGTH) || outgoing.length.is_some_and(|n| n > 0) {
        match outgoing.length {
            Some(n) => parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(n)),
            None => parts.headers.remove(CONTENT_LENGTH),
        };
    }
    let started = Instant::now();
    let request = Request::from_parts(parts, outgoing.body);
    let via_gateway = ctx.policy.routes_via_gateway(&ctx.provider.name);
    out.route = Some(if via_gateway { "gateway" } else { "direct" });
    let response = if via_gateway {
        let sent = crate::gateway::send(
            ctx.state,
            ctx.route,
            &ctx.provider.name,
            request,
            outgoing.replay,
        )
        .await?;
        if sent.fell_back {
            out.route = Some("direct (gateway unreachable)");
        }
        sent.response
    } else {
        forward::send(ctx.state, ctx.route, request).await?
    };
    out.answered = Some(Answered {
        after: started.elapsed(),
        status: response.status().as_u16(),
    });

    // Uninspected requests too: the output guardrails do not depend on
    // having read the request.
    let (mut response, facts) = respond::inspect(&ctx.policy, expect, response).await?;
    out.response = facts;
    add_warnings(response.headers_mut(), warnings.iter().map(String::as_str));
    Ok(response)
}

/// Stage 0: an intercepted host is never spoken to in clear. The request
/// (with its `Authorization` header) would cross the network unencrypted.
fn refuse_plain_http(route: &Route) -> Result<(), Refusal> {
    if route.scheme == Scheme::HTTPS {
        return Ok(());
    }
    Err(Refusal::client(
        Some("plain_http"),
        format!(
            "Outpost refuses plain http:// to {}: it is an AI provider host and the request \
             would cross the network in clear. Use https://{}/ instead.",
            route.target.host, route.target.host
        ),
    ))
}

/// Most bytes of an over-size body read and discarded so that its refusal
/// reaches the client: over HTTP/2 a response sent while the body is still
/// coming is reset with the stream, and the client never sees the error.
const DRAIN_LIMIT: u64 = 256 * 1024 * 1024;

/// An over-size body that `on_unparseable = "block"` refuses: read to its
/// end (up to [`DRAIN_LIMIT`] bytes, within `limit`) and discarded, then
/// refused. Any other body is passed on.
async fn drain_if_refused(
    policy: &Policy,
    limit: std::time::Duration,
    body: RequestBody,
) -> Result<RequestBody, Refusal> {
    if policy.on_unparseable == OnUnparseable::Forward {
        return Ok(body);
    }
    let RequestBody::Oversize { body: mut rest, .. } = body else {
        return Ok(body);
    };
    let drained = tokio::time::timeout(limit, body::discard(&mut rest, DRAIN_LIMIT)).await;
    if !matches!(drained, Ok(Ok(true))) {
        tracing::debug!("an over-size body was refused before its end");
    }
    Err(Refusal::client(
        Some("on_unparseable"),
        format!(
            "Outpost could not inspect this request: the body is larger than the {} bytes \
             Outpost inspects (max_body_bytes), and policy refuses what it cannot inspect \
             (on_unparseable = \"block\").",
            policy.max_body_bytes
        ),
    ))
}

/// Stage 1 within `wait` (`limits.body_timeout_secs`): a body that comes
/// too slowly is a 408.
async fn read_within(
    wait: std::time::Duration,
    body: Incoming,
    headers: &http::HeaderMap,
    limit: u64,
) -> Result<RequestBody, Refusal> {
    match tokio::time::timeout(wait, read(body, headers, limit)).await {
        Ok(body) => body,
        Err(_) => Err(Refusal {
            kind: ErrorKind::RequestTimeout,
            ..Refusal::client(
                None,
                format!(
                    "Outpost stopped waiting for the request body after {} s \
                     (limits.body_timeout_secs): the client sent it too slowly or not at all.",
                    wait.as_secs()
                ),
            )
        }),
    }
}

/// Stage 1: the request body, whole or over `limit` (`max_body_bytes`).
async fn read<B>(body: B, headers: &http::HeaderMap, limit: u64) -> Result<RequestBody, Refusal>
where
    B: hyper::body::Body<Data = Bytes> + Send + Sync + Unpin + 'static,
    B::Error: Into<crate::upstream::BoxError> + std::fmt::Display,
{
    body::read(body, headers, limit).await.map_err(|err| {
        Refusal::client(
            None,
            format!("Outpost could not read the request body: {err}"),
        )
    })
}

fn received(body: &RequestBody) -> Received {
    Received {
        bytes: body.known_len(),
        sha256: match body {
            RequestBody::Whole(bytes) => Some(sha256_hex(bytes)),
            RequestBody::Oversize { .. } => None,
        },
    }
}

/// What the parse stage hands on.
pub struct Parsed {
    /// What the call says (as far as it could be read).
    pub call: ApiCall,
    /// The path and query the provider receives, percent-decoded and
    /// without credential parameters (Gemini's `?key=`): scanned too.
    pub url: String,
    /// Its body.
    pub body: Outgoing,
}

/// A body on its way out.
pub enum Outgoing {
    /// Read: inspected, then serialised again from the document.
    Document {
        /// The parsed body (`None`: it was empty).
        json: Option<Value>,
        /// Every string outside the prompt texts.
        unclaimed: Vec<TextSpan>,
        /// Bytes it was read from: what serialising it again reserves.
        size: usize,
    },
    /// Forwarded as received, uninspected, because policy allows it.
    Uninspected {
        /// The body.
        body: RequestBody,
        /// Why it was not inspected (for the record).
        why: String,
    },
}

impl Parsed {
    /// Bytes of prompt a budget estimates from: the texts, or the whole
    /// body when it could not be read.
    pub fn prompt_bytes(&self) -> usize {
        match &self.body {
            Outgoing::Document { .. } => self.call.texts.iter().map(|t| t.text.len()).sum(),
            Outgoing::Uninspected { body, .. } => body.known_len() as usize,
        }
    }

    fn seen(&self, policy: &Policy) -> CallSeen {
        let why = match &self.body {
            Outgoing::Uninspected { why, .. } => Some(why.clone()),
            Outgoing::Document { .. } => None,
        };
        CallSeen::of(&self.call, self.prompt_bytes(), policy, why)
    }
}

/// Stage 2: read the call from the body, or decide, per policy, that it is
/// forwarded uninspected or refused.
fn parse(
    policy: &Policy,
    provider: Provider,
    method: &str,
    uri: &http::Uri,
    routed: provider::route::Route,
    body: RequestBody,
) -> Result<Parsed, Refusal> {
    let path = uri.path();
    let url = percent_encoding::percent_decode_str(&audited_path(path, uri.query()))
        .decode_utf8_lossy()
        .into_owned();
    let has_body = !matches!(&body, RequestBody::Whole(bytes) if bytes.is_empty());
    let route = routed.with_body(has_body);
    let uninspected = |body, why: String| {
        let call = ApiCall::bare(provider, route.api, route.model.clone());
        let body = Outgoing::Uninspected { body, why };
        Parsed {
            call,
            url: url.clone(),
            body,
        }
    };
    let bytes = match body {
        RequestBody::Whole(bytes) => bytes,
        oversize @ RequestBody::Oversize { .. } => {
            let why = format!(
                "the body is larger than the {} bytes Outpost inspects (max_body_bytes)",
                policy.max_body_bytes
            );
            return unparseable(policy, method, path, why).map(|why| uninspected(oversize, why));
        }
    };
    if route.api == Api::Unknown && has_body {
        match policy.unknown_endpoints {
            UnknownEndpoints::Scan => {}
            UnknownEndpoints::Block => {
                return Err(Refusal::policy(
                    "unknown_endpoints",
                    format!(
                        "Outpost policy does not allow {method} {path}: Outpost does not know \
                         this endpoint (unknown_endpoints = \"block\")."
                    ),
                ))
            }
            UnknownEndpoints::Forward => {
                let why = "an endpoint Outpost does not know (unknown_endpoints = \"forward\")";
                return Ok(uninspected(RequestBody::Whole(bytes), why.into()));
            }
        }
    }
    match provider::read_routed(provider, route.clone(), &bytes) {
        Ok(parsed) => Ok(Parsed {
            call: parsed.call,
            url,
            body: Outgoing::Document {
                json: parsed.json,
                unclaimed: parsed.unclaimed,
                size: bytes.len(),
            },
        }),
        // Ambiguous, not unreadable: never forwarded, whatever on_unparseable says.
        Err(ParseError::DuplicateKey(err)) => Err(Refusal::client(
            Some("duplicate_keys"),
            format!(
                "Outpost refuses this {method} {path}: {err}. JSON readers disagree on which \
                 one counts; send each member once."
            ),
        )),
        Err(err) => unparseable(policy, method, path, err.to_string())
            .map(|why| uninspected(RequestBody::Whole(bytes), why)),
    }
}

/// A body Outpost cannot read: refused, or (the reason to record) forwarded
/// uninspected, per `on_unparseable`.
fn unparseable(policy: &Policy, method: &str, path: &str, why: String) -> Result<String, Refusal> {
    match policy.on_unparseable {
        OnUnparseable::Block => Err(Refusal::client(
            Some("on_unparseable"),
            format!("Outpost could not inspect this {method} {path}: {why}."),
        )),
        OnUnparseable::Forward => Ok(format!("{why} (on_unparseable = \"forward\")")),
    }
}

/// What admission counts against, and when the call is.
struct Meter<'a> {
    budgets: &'a Budgets,
    identity: &'a Identity,
    /// Places the call in budget windows.
    now: Timestamp,
}

/// Stage 3: model rules for every model the call names, then rate limits
/// and budgets. An uninspected call is admitted too: its model where the
/// path names one, and a worst-case reservation.
fn admit(
    policy: &Policy,
    provider: &str,
    meter: &Meter<'_>,
    parsed: &Parsed,
) -> Result<Metered, Refusal> {
    for model in parsed.call.models() {
        decide::check_model(policy, provider, model)?;
    }
    meter.budgets.ready(policy);
    meter.budgets.admit(
        policy,
        meter.identity,
        provider,
        &parsed.call,
        parsed.prompt_bytes(),
        meter.now,
        Instant::now(),
    )
}

/// The request guardrails' result: what matched, and what to send or why not.
pub struct Inspected {
    /// Rules that matched, and whether anything was redacted.
    pub scan: RequestScan,
    /// The request to send, or the refusal.
    pub result: Result<Sendable, Refusal>,
}

/// A request body ready to forward.
pub struct Sendable {
    /// The call, for the response stage.
    pub call: ApiCall,
    /// The bytes.
    pub body: ProxyBody,
    /// Their length, when known.
    pub length: Option<usize>,
    /// The same bytes again, when they are in memory: a call the gateway
    /// could not take can then go direct (`[gateway] fallback = "direct"`).
    pub replay: Option<Bytes>,
    /// Outpost asked for stream usage on the client's behalf.
    pub usage_added: bool,
}

/// Stage 4: every string the provider will receive through the request
/// guardrails (the URL, prompt texts, unclaimed strings, member names), then
/// the document with redactions applied, serialised again. The URL is
/// scanned even for an uninspected body.
pub fn inspect_request(policy: &Policy, provider: &ProviderEntry, parsed: Parsed) -> Inspected {
    let Parsed { call, url, body } = parsed;
    let (json, unclaimed, size) = match body {
        Outgoing::Uninspected { body, .. } => (None, Err(body), 0),
        Outgoing::Document {
            json,
            unclaimed,
            size,
        } => (json, Ok(unclaimed), size),
    };
    let Some(scan) = &policy.request_scan else {
        return Inspected {
            scan: RequestScan::default(),
            result: sendable(call, (json, size), unclaimed.err(), (&[], &[]), provider),
        };
    };
    let in_url = decide::inspect_texts(policy, scan, [&url_span(url)]);
    let texts = unclaimed.as_ref().map_or(&[][..], |u| &u[..]);
    let in_body = decide::inspect_texts(policy, scan, call.texts.iter().chain(texts));
    let refused = in_url
        .block
        .or_else(|| unredactable_url(&in_url.hits, !in_url.edits.is_empty()))
        .or(in_body.block);
    let scan = RequestScan {
        redacted: !in_body.edits.is_empty() || !in_body.renames.is_empty(),
        hits: in_url.hits.into_iter().chain(in_body.hits).collect(),
    };
    let result = match refused {
        Some(refusal) => Err(refusal),
        None => {
            let redactions = (&in_body.edits[..], &in_body.renames[..]);
            sendable(call, (json, size), unclaimed.err(), redactions, provider)
        }
    };
    Inspected { scan, result }
}

/// The URL as one text for the scanner (its path is not a JSON place).
fn url_span(url: String) -> TextSpan {
    TextSpan {
        path: provider::JsonPath::root(),
        role: provider::TextRole::Other,
        text: url,
    }
}

/// A redaction in the URL cannot be applied (it would change where the
/// call goes): the call is refused, naming the rule.
fn unredactable_url(hits: &[RuleHit], redacts: bool) -> Option<Refusal> {
    if !redacts {
        return None;
    }
    let rule = hits
        .iter()
        .find(|h| h.action == crate::policy::rules::Action::Redact)
        .map_or("request URL", |h| h.rule.as_str());
    Some(Refusal::policy(
        rule,
        format!(
            "Blocked by Outpost policy rule `{rule}`: it matched in the request URL, which \
             Outpost cannot redact. Move the value into the request body or remove it."
        ),
    ))
}

/// What to send: an uninspected body as received, or the document (and the
/// size it was read from) with `redactions` (strings, member names) applied.
/// The call keeps no copy of its texts: the response stage does not read
/// them, and a large prompt is not held twice while the call is forwarded.
fn sendable(
    mut call: ApiCall,
    (mut json, size): (Option<Value>, usize),
    uninspected: Option<RequestBody>,
    redactions: Redactions<'_>,
    provider: &ProviderEntry,
) -> Result<Sendable, Refusal> {
    if let Some(body) = uninspected {
        return Ok(Sendable {
            length: body.known_len_exact(),
            call,
            body: body.into_proxy_body(),
            usage_added: false,
            replay: None,
        });
    }
    let (bytes, usage_added) = serialise(&mut json, size, redactions, &call, provider)?;
    drop(json);
    call.texts = Vec::new();
    Ok(Sendable {
        call,
        length: Some(bytes.len()),
        body: full_body(bytes.clone()),
        usage_added,
        replay: Some(bytes),
    })
}

/// Redactions in strings and in member names, by JSON path.
type Redactions<'a> = (
    &'a [(provider::JsonPath, String)],
    &'a [(provider::JsonPath, String)],
);

/// The bytes to send: the document with redactions (and, for a streaming
/// call on a host that accepts it, the usage option) applied.
fn serialise(
    json: &mut Option<Value>,
    size: usize,
    (edits, renames): Redactions<'_>,
    call: &ApiCall,
    provider: &ProviderEntry,
) -> Result<(Bytes, bool), Refusal> {
    let Some(root) = json.as_mut() else {
        return Ok((Bytes::new(), false));
    };
    // The body parsed a moment ago; failing to rewrite it must not let the
    // unredacted text through.
    let failed = |err: ParseError| {
        Refusal::agent(
            format!("Outpost could not apply redactions to this request: {err}"),
            None,
        )
    };
    provider::rewrite::redact_document(root, edits, renames).map_err(failed)?;
    // Streams are charged from their usage: ask for it where the host
    // accepts the option, and hide the extra chunk from a client that did
    // not ask for it.
    let usage_added = call.stream
        && provider.stream_options
        && provider::ensure_stream_usage(call, root).unwrap_or(false);
    let bytes = provider::rewrite::to_json_sized(root, size + 256);
    Ok((Bytes::from(bytes), usage_added))
}

/// The `warn` rules and budget warnings to show the caller.
fn warned(hits: &[RuleHit], metered: Option<&Metered>) -> Vec<String> {
    let rules = hits
        .iter()
        .filter(|h| h.action == crate::policy::rules::Action::Warn)
        .map(|h| h.rule.clone());
    let budgets = metered
        .into_iter()
        .flat_map(|m| m.warnings.iter().map(|w| w.message.clone()));
    rules.chain(budgets).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::load::{load_layers, Layer};

    /// The shipped default policy, with `extra` as a second file.
    fn policy(extra: &str) -> Policy {
        load_layers(&[
            Layer::local("default.toml", crate::policy::DEFAULT_POLICY),
            Layer::local("extra.toml", extra),
        ])
        .unwrap()
    }

    /// A policy of `text` alone (layers only tighten: the default's
    /// `on_unparseable = "block"` cannot be loosened by a second file).
    fn alone(text: &str) -> Policy {
        load_layers(&[Layer::local("only.toml", text)]).unwrap()
    }

    fn openai() -> ProviderEntry {
        ProviderEntry {
            name: "openai".into(),
            kind: Provider::OpenAi,
            stream_options: true,
        }
    }

    const KEY: &str = "AKIAQWERTYUIOPASDFGH";

    fn inspect(policy: &Policy, method: &str, path: &str, body: &str) -> Inspected {
        let parsed = provider::read_request(Provider::OpenAi, method, path, body.as_bytes())
            .expect("parses");
        let parsed = Parsed {
            call: parsed.call,
            url: path.to_string(),
            body: Outgoing::Document {
                json: parsed.json,
                unclaimed: parsed.unclaimed,
                size: body.len(),
            },
        };
        inspect_request(policy, &openai(), parsed)
    }

    async fn sent(inspected: Inspected) -> Value {
        let sendable = inspected.result.expect("forwarded");
        let bytes = http_body_util::BodyExt::collect(sendable.body)
            .await
            .unwrap()
            .to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn a_key_in_metadata_user_or_a_member_name_is_blocked() {
        let p = policy("");
        for body in [
            format!(
                r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"hi"}}],"metadata":{{"note":"{KEY}"}}}}"#
            ),
            format!(
                r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"hi"}}],"user":"{KEY}"}}"#
            ),
            format!(
                r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"hi"}}],"metadata":{{"{KEY}":"x"}}}}"#
            ),
        ] {
            let inspected = inspect(&p, "POST", "/v1/chat/completions", &body);
            let refusal = inspected.result.err().expect("blocked");
            assert_eq!(refusal.rule.as_deref(), Some("no-secrets"), "{body}");
        }
    }

    #[tokio::test]
    async fn what_is_sent_is_the_scanned_document_with_redactions() {
        let p = policy("");
        let body = r#"{"model":"gpt-4o", "messages":[{"role":"user","content":"card 4111 1111 1111 1111"}],
            "metadata":{"card":"4111 1111 1111 1111"}, "extra": "\u00e9"}"#;
        let inspected = inspect(&p, "POST", "/v1/chat/completions", body);
        assert!(inspected.scan.redacted);
        let sent = sent(inspected).await;
        assert_eq!(
            sent["messages"][0]["content"],
            "card [REDACTED:card-numbers]"
        );
        assert_eq!(sent["metadata"]["card"], "[REDACTED:card-numbers]");
        assert_eq!(sent["extra"], "é");
    }

    #[tokio::test]
    async fn an_unknown_endpoint_has_every_string_scanned() {
        let p = policy("");
        let body = format!(r#"{{"role":"user","content":"here: {KEY}"}}"#);
        let blocked = inspect(&p, "POST", "/v1/threads/t_1/messages", &body);
        assert!(blocked.result.is_err());
        let clean = inspect(
            &p,
            "POST",
            "/v1/threads/t_1/messages",
            r#"{"content":"card 4111 1111 1111 1111"}"#,
        );
        assert_eq!(sent(clean).await["content"], "card [REDACTED:card-numbers]");
    }

    #[tokio::test]
    async fn stream_usage_is_requested_in_the_sent_document() {
        let p = policy("");
        let inspected = inspect(
            &p,
            "POST",
            "/v1/chat/completions",
            r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
        );
        assert!(inspected.result.as_ref().is_ok_and(|s| s.usage_added));
        assert_eq!(
            sent(inspected).await["stream_options"]["include_usage"],
            true
        );
    }

    fn with_url(url: &str, body: Outgoing) -> Parsed {
        Parsed {
            call: ApiCall::bare(Provider::OpenAi, Api::ChatCompletions, None),
            url: url.into(),
            body,
        }
    }

    #[test]
    fn the_url_is_scanned_and_cannot_be_redacted() {
        let p = policy("");
        let empty = || Outgoing::Document {
            json: None,
            unclaimed: Vec::new(),
            size: 0,
        };
        let uninspected = || Outgoing::Uninspected {
            body: RequestBody::Whole(Bytes::from_static(b"not json")),
            why: "x".into(),
        };
        let blocked = inspect_request(&p, &openai(), with_url(&format!("/v1/x/{KEY}"), empty()));
        assert_eq!(
            blocked.result.err().and_then(|r| r.rule),
            Some("no-secrets".into())
        );
        // Even when the body itself goes uninspected.
        let url = format!("/v1/chat/completions?note={KEY}");
        let blocked = inspect_request(&p, &openai(), with_url(&url, uninspected()));
        assert!(blocked.result.is_err());
        // A redact rule cannot rewrite a URL: refused, naming the rule.
        let card = "/v1/x?c=4111 1111 1111 1111";
        let refused = inspect_request(&p, &openai(), with_url(card, empty()));
        let refusal = refused.result.err().expect("refused");
        assert_eq!(refusal.rule.as_deref(), Some("card-numbers"));
        assert!(refusal.message.contains("URL"), "{}", refusal.message);
        // The URL the pipeline scans has credential parameters removed.
        let gemini = audited_path(
            "/v1beta/models/g:generateContent",
            Some("key=AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW"),
        );
        let clean = inspect_request(&p, &openai(), with_url(&gemini, empty()));
        assert!(clean.result.is_ok());
    }

    #[test]
    fn plain_http_is_refused_before_anything_is_read() {
        let route = Route {
            scheme: Scheme::HTTP,
            target: super::super::Target {
                host: "api.openai.com".into(),
                port: 80,
            },
            intercepted: true,
        };
        let refusal = refuse_plain_http(&route).unwrap_err();
        assert_eq!(refusal.rule.as_deref(), Some("plain_http"));
        assert_eq!(refusal.status(), 400);
        assert!(
            refusal.message.contains("https://api.openai.com/"),
            "{}",
            refusal.message
        );
    }

    #[test]
    fn uninspected_bodies_estimate_from_their_size() {
        let parsed = Parsed {
            call: ApiCall::bare(Provider::OpenAi, Api::ChatCompletions, None),
            url: "/v1/chat/completions".into(),
            body: Outgoing::Uninspected {
                body: RequestBody::Whole(Bytes::from_static(b"{not json at all")),
                why: "x".into(),
            },
        };
        assert_eq!(parsed.prompt_bytes(), 16);
    }

    // Stage tests: read, parse and admit on plain values, no sockets.

    /// A body sent in `chunks`, ending with `error` if one is given.
    fn streamed(chunks: &[&'static [u8]], error: Option<&'static str>) -> ProxyBody {
        let mut frames: Vec<Result<hyper::body::Frame<Bytes>, crate::upstream::BoxError>> = chunks
            .iter()
            .map(|c| Ok(hyper::body::Frame::data(Bytes::from_static(c))))
            .collect();
        frames.extend(error.map(|e| Err(e.into())));
        http_body_util::BodyExt::boxed(http_body_util::StreamBody::new(futures_util::stream::iter(
            frames,
        )))
    }

    async fn replay(body: RequestBody) -> Bytes {
        http_body_util::BodyExt::collect(body.into_proxy_body())
            .await
            .unwrap()
            .to_bytes()
    }

    #[tokio::test]
    async fn read_keeps_a_body_within_the_limit_whole() {
        let body = streamed(&[b"{\"a\":", b"1}"], None);
        let whole = read(body, &http::HeaderMap::new(), 16).await.unwrap();
        assert!(matches!(&whole, RequestBody::Whole(b) if &b[..] == b"{\"a\":1}"));
    }

    #[tokio::test]
    async fn read_passes_an_oversize_body_on_exactly_as_sent() {
        // Over the limit while streaming: what was read, then the rest.
        let chunks: &[&'static [u8]] = &[b"0123456789", b"abcdefghij", b"KLM"];
        let streaming = read(streamed(chunks, None), &http::HeaderMap::new(), 12)
            .await
            .unwrap();
        assert!(matches!(
            streaming,
            RequestBody::Oversize { declared: None, .. }
        ));
        assert_eq!(&replay(streaming).await[..], b"0123456789abcdefghijKLM");
        // Declared over the limit: nothing is read before deciding.
        let mut headers = http::HeaderMap::new();
        headers.insert(CONTENT_LENGTH, HeaderValue::from(23));
        let declared = read(streamed(chunks, None), &headers, 12).await.unwrap();
        assert_eq!(declared.known_len_exact(), Some(23));
        assert_eq!(replay(declared).await.len(), 23);
    }

    #[tokio::test]
    async fn a_body_that_fails_while_read_is_the_clients_fault() {
        let body = streamed(&[b"{\"model\":"], Some("connection reset"));
        let refusal = read(body, &http::HeaderMap::new(), 1 << 20)
            .await
            .err()
            .expect("refused");
        assert_eq!(refusal.source, crate::refusal::Source::Client);
        assert_eq!(refusal.status(), 400);
        assert!(
            refusal.message.contains("connection reset"),
            "{}",
            refusal.message
        );
    }

    fn parse_with(
        policy: &Policy,
        method: &str,
        uri: &str,
        body: &[u8],
    ) -> Result<Parsed, Refusal> {
        let uri: http::Uri = uri.parse().unwrap();
        let routed = provider::route::route(method, uri.path());
        let body = RequestBody::Whole(Bytes::copy_from_slice(body));
        parse(policy, Provider::OpenAi, method, &uri, routed, body)
    }

    const CHAT: &str = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;

    #[test]
    fn parse_routes_a_disguised_path_to_its_endpoint() {
        let p = policy("");
        for path in [
            "/v1/chat/completions;x",
            "/v1//chat/completions/",
            "/v1/%63hat/completions",
            "/v1/models/../chat/completions",
        ] {
            let parsed = parse_with(&p, "POST", path, CHAT.as_bytes()).expect(path);
            assert_eq!(parsed.call.api, Api::ChatCompletions, "{path}");
            assert_eq!(parsed.call.model.as_deref(), Some("gpt-4o"), "{path}");
            assert!(matches!(parsed.body, Outgoing::Document { .. }), "{path}");
        }
    }

    #[test]
    fn parse_refuses_duplicate_members_whatever_on_unparseable_says() {
        let body = format!(
            r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"{KEY}"}}],"messages":[]}}"#
        );
        for p in [policy(""), alone("on_unparseable = \"forward\"\n")] {
            let refusal = parse_with(&p, "POST", "/v1/chat/completions", body.as_bytes())
                .err()
                .expect("refused");
            assert_eq!(refusal.rule.as_deref(), Some("duplicate_keys"));
            assert!(refusal.message.contains("messages"), "{}", refusal.message);
        }
    }

    #[test]
    fn parse_follows_on_unparseable_for_a_body_it_cannot_read() {
        let garbled = b"{\"model\":\"gpt-4o\",";
        let refusal = parse_with(&policy(""), "POST", "/v1/chat/completions", garbled)
            .err()
            .expect("blocked by default");
        assert_eq!(refusal.rule.as_deref(), Some("on_unparseable"));
        let forward = alone("on_unparseable = \"forward\"\n");
        let parsed = parse_with(&forward, "POST", "/v1/chat/completions", garbled).unwrap();
        assert_eq!(parsed.call.api, Api::ChatCompletions);
        let Outgoing::Uninspected { why, .. } = &parsed.body else {
            panic!("uninspected");
        };
        assert!(why.contains("on_unparseable = \"forward\""), "{why}");
        assert_eq!(parsed.prompt_bytes(), garbled.len());
    }

    #[test]
    fn parse_follows_unknown_endpoints_for_a_path_no_adapter_knows() {
        let body = br#"{"content":"hello"}"#;
        let path = "/v1/threads/t_1/messages";
        let scanned = parse_with(&policy(""), "POST", path, body).unwrap();
        assert_eq!(scanned.call.api, Api::Unknown);
        let Outgoing::Document { unclaimed, .. } = &scanned.body else {
            panic!("scanned");
        };
        assert!(unclaimed.iter().any(|t| t.text == "hello"));

        let block = policy("[intercept]\nunknown_endpoints = \"block\"\n");
        let refusal = parse_with(&block, "POST", path, body)
            .err()
            .expect("blocked");
        assert_eq!(refusal.rule.as_deref(), Some("unknown_endpoints"));

        let forward = policy("[intercept]\nunknown_endpoints = \"forward\"\n");
        let parsed = parse_with(&forward, "POST", path, body).unwrap();
        assert!(matches!(parsed.body, Outgoing::Uninspected { .. }));
        // A GET with a body is not the listing it names.
        let parsed = parse_with(&policy(""), "GET", "/v1/models", body).unwrap();
        assert_eq!(parsed.call.api, Api::Unknown);
    }

    #[test]
    fn parse_decodes_the_url_it_hands_to_the_scanner() {
        let parsed = parse_with(
            &policy(""),
            "POST",
            "/v1/chat/completions?n=%41KIA",
            CHAT.as_bytes(),
        )
        .unwrap();
        assert_eq!(parsed.url, "/v1/chat/completions?n=AKIA");
    }

    fn admit_with(policy: &Policy, budgets: &Budgets, parsed: &Parsed) -> Result<Metered, Refusal> {
        let identity = Identity {
            user: "alice".into(),
            device: "laptop".into(),
        };
        let meter = Meter {
            budgets,
            identity: &identity,
            now: "2026-03-10T12:00:00Z".parse().unwrap(),
        };
        admit(policy, "openai", &meter, parsed)
    }

    #[test]
    fn admit_checks_every_model_of_the_call_before_metering() {
        let dir = tempfile::tempdir().unwrap();
        let budgets = Budgets::new(dir.path().to_path_buf());
        let p = policy("[models]\ndeny = [\"*-preview\"]\n");
        let denied = parse_with(
            &p,
            "POST",
            "/v1/chat/completions",
            br#"{"model":"gpt-5-preview","messages":[]}"#,
        )
        .unwrap();
        let refusal = admit_with(&p, &budgets, &denied).err().expect("denied");
        assert_eq!(refusal.source, crate::refusal::Source::Policy);
        assert!(admit_with(
            &p,
            &budgets,
            &parse_with(&p, "POST", "/v1/chat/completions", CHAT.as_bytes()).unwrap()
        )
        .is_ok());
    }

    #[test]
    fn admit_meters_uninspected_and_unknown_calls_too() {
        let dir = tempfile::tempdir().unwrap();
        let budgets = Budgets::new(dir.path().to_path_buf());
        let p = alone(
            "on_unparseable = \"forward\"\n[[rate_limits]]\nid = \"rpm\"\nper = \"user\"\n\
             requests = 2\nwindow = \"minute\"\n[[budgets]]\nid = \"day\"\nper = \"user\"\n\
             limit_usd = 100.0\nwindow = \"day\"\n",
        );
        let garbled = parse_with(&p, "POST", "/v1/chat/completions", b"{not json").unwrap();
        let metered = admit_with(&p, &budgets, &garbled).expect("first call");
        // Uninspected: the worst case is what it will be charged.
        assert!(metered.has_budget());
        assert!(metered.worst_case().is_some());
        let unknown = parse_with(&p, "POST", "/v1/threads/t/runs", b"{}").unwrap();
        let counted = admit_with(&p, &budgets, &unknown).expect("second call");
        assert!(!counted.has_budget(), "unknown endpoints bill no tokens");
        let refusal = admit_with(&p, &budgets, &garbled)
            .err()
            .expect("third call");
        assert_eq!(refusal.rule.as_deref(), Some("rpm"));
        assert_eq!(refusal.status(), 429);
        drop((metered, counted));
    }
}
