//! The audit record of one intercepted call, written once from what its
//! stages returned.
//!
//! An [`Outcome`] is begun when the request arrives, holding an audit
//! queue slot (the writer's permit). The pipeline stores each stage's
//! result in it as the stage returns (what was received, the call, the
//! admission, the request scan, the upstream's answer, the response scan,
//! or the refusal); nothing else writes to it. [`Outcome::event`] is the
//! one place those results become an [`AuditEvent`], and the call's
//! budget charges are settled there. It ends in one of two ways:
//! - a response body that runs to its end (Outpost's own refusals too):
//!   [`AuditedBody`] submits the record and holds back the body's last
//!   bytes until the record is in the file (write(2), not fsync: the
//!   request path never waits on the disk), so a client that saw a complete
//!   answer always has a record, even across `kill -9`;
//! - the client goes away (the request future or the body is dropped): the
//!   outcome's `Drop` submits an `error` record saying so.
//!
//! *Content* follows the policy's `[audit] content`: `none`; `hash`
//! (SHA-256 of the prompt and of the completion); `redacted` (every
//! guardrail match replaced, whatever the rule's action, then truncated);
//! `full` (truncated). Headers, query keys and cookies are never recorded.
//!
//! A call charged to a budget has its record written only once its charge
//! is committed to the ledger (WAL write, not fsync; the audit writer waits
//! for it), so every `cost_usd` in the audit log is in the ledger, across
//! `kill -9` too.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use sha2::{Digest, Sha256};

use super::spend::{Charged, Metered};
use super::ProxyBody;
use crate::audit::record::{hex, sha256_hex, AuditEvent, Content, Decision, Kind, RuleCount};
use crate::audit::writer::{AuditPermit, Written};
use crate::policy::decide::{redaction_label, RuleHit};
use crate::policy::rules::{Action, AuditContent, Scan};
use crate::policy::Policy;
use crate::provider::{Api, ApiCall, TextSpan, Usage};
use crate::refusal::Refusal;
use crate::upstream::BoxError;

/// Query parameters that can carry credentials; dropped from audited paths.
const SECRET_QUERY_KEYS: [&str; 8] = [
    "key",
    "api_key",
    "apikey",
    "api-key",
    "access_token",
    "token",
    "sig",
    "signature",
];

/// `path?query` with credential-bearing query parameters removed. Names are
/// compared after percent-decoding (`%6Bey` is `key` to the server) and a
/// `+` reads as a space, as form decoding does.
pub fn audited_path(path: &str, query: Option<&str>) -> String {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return path.to_string();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let raw = pair.split('=').next().unwrap_or("").replace('+', " ");
            let name = percent_encoding::percent_decode_str(&raw).decode_utf8_lossy();
            let name = name.trim();
            !SECRET_QUERY_KEYS
                .iter()
                .any(|k| name.eq_ignore_ascii_case(k))
        })
        .collect();
    if kept.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}

/// What the response showed: rules that matched, the text delivered, usage.
#[derive(Debug, Default, Clone)]
pub struct ResponseSeen {
    /// Rules that matched in the response.
    pub hits: Vec<RuleHit>,
    /// Text delivered to the client (none: no text was read).
    pub completion: Option<String>,
    /// Usage reported by the provider.
    pub usage: Option<Usage>,
    /// A stream was ended by a `block` rule.
    pub blocked: bool,
}

/// Where a streaming response publishes what it showed, once it ends.
#[derive(Debug, Default, Clone)]
pub struct SharedFacts(Arc<Mutex<ResponseSeen>>);

impl SharedFacts {
    /// Replace what is known (the stream publishes its latest state).
    pub fn publish(&self, seen: ResponseSeen) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = seen;
    }

    fn take(&self) -> ResponseSeen {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// What the response stage learnt.
#[derive(Debug, Default)]
pub enum ResponseFacts {
    /// Nothing read: passed through, or never reached.
    #[default]
    Unread,
    /// A whole body, read and inspected.
    Whole(ResponseSeen),
    /// A stream, published as it flows.
    Streaming(SharedFacts),
}

/// The request body as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Bytes (declared or read, for a body over the limit).
    pub bytes: u64,
    /// SHA-256 (hex) of a body read whole.
    pub sha256: Option<String>,
}

/// What the call said, as far as the record keeps it.
#[derive(Debug, Clone)]
pub struct CallSeen {
    api: Api,
    model: Option<String>,
    stream: bool,
    batch: Option<usize>,
    /// Bytes of prompt text (budget estimates).
    prompt_bytes: usize,
    /// What `[audit] content` keeps of the prompt: its digest (`hash`) or
    /// its text (`redacted`, `full`); nothing is copied for `none`.
    prompt: Option<String>,
    /// Forwarded uninspected, and why.
    uninspected: Option<String>,
}

impl CallSeen {
    /// `call`, whose prompt is `prompt_bytes` long, kept as `policy`'s
    /// `[audit] content` asks; `uninspected` says why its body was not read.
    pub fn of(
        call: &ApiCall,
        prompt_bytes: usize,
        policy: &Policy,
        uninspected: Option<String>,
    ) -> CallSeen {
        CallSeen {
            api: call.api,
            model: call.model.clone(),
            stream: call.stream,
            batch: call.batch.as_ref().map(|b| b.count),
            prompt_bytes,
            prompt: prompt_content(&call.texts, policy.audit.content),
            uninspected,
        }
    }
}

fn prompt_content(texts: &[TextSpan], mode: AuditContent) -> Option<String> {
    let pieces = || texts.iter().map(|t| t.text.as_str());
    match mode {
        AuditContent::None => None,
        AuditContent::Hash => {
            let mut digest = Sha256::new();
            for (i, text) in pieces().enumerate() {
                if i > 0 {
                    digest.update(b"\n");
                }
                digest.update(text.as_bytes());
            }
            Some(hex(&digest.finalize()))
        }
        AuditContent::Redacted | AuditContent::Full => {
            Some(pieces().collect::<Vec<_>>().join("\n"))
        }
    }
}

/// The request guardrails' result.
#[derive(Debug, Clone, Default)]
pub struct RequestScan {
    /// Rules that matched.
    pub hits: Vec<RuleHit>,
    /// Something was redacted.
    pub redacted: bool,
}

/// The upstream's answer.
#[derive(Debug, Clone, Copy)]
pub struct Answered {
    /// Request to response headers.
    pub after: Duration,
    /// Its status.
    pub status: u16,
}

/// Everything one call's stages returned, until its record is written.
pub struct Outcome {
    permit: Option<AuditPermit>,
    policy: Arc<Policy>,
    started: Instant,
    ts: String,
    user: String,
    device: String,
    host: String,
    method: String,
    path: String,
    /// The provider table name of the host.
    pub provider: String,
    /// Stage read.
    pub received: Option<Received>,
    /// Stage parse.
    pub call: Option<CallSeen>,
    /// Stage admit: what the call holds on budgets and rate limits.
    pub metered: Option<Metered>,
    /// Stage inspect request.
    pub request: RequestScan,
    /// Stage forward.
    pub answered: Option<Answered>,
    /// Stage inspect response.
    pub response: ResponseFacts,
    /// The stage that refused the call, if one did.
    pub refusal: Option<Refusal>,
    /// The response stream failed after its headers.
    pub failure: Option<String>,
    /// `direct` or `gateway`: where the call was sent.
    pub route: Option<&'static str>,
    /// The status the client got.
    pub status: u16,
    /// Response bytes sent to the client.
    pub bytes_out: u64,
    /// Dropped before its response ended: the client went away.
    disconnected: bool,
    /// Made over a WebSocket (recorded as `transport = "websocket"`).
    pub socket: bool,
}

impl Outcome {
    /// Begin the record of a request (`permit` is `None` when the audit
    /// queue was full and policy said to serve the request anyway).
    /// `started` is when the request arrived (for latency, and by the
    /// agent's clock for the record's `ts`); `at` the provider name and host.
    pub fn begin(
        permit: Option<AuditPermit>,
        policy: Arc<Policy>,
        started: (Instant, jiff::Timestamp),
        identity: (&str, &str),
        at: (&str, &str),
        method: &str,
        path: String,
    ) -> Outcome {
        let (provider, host) = at;
        Outcome {
            permit,
            policy,
            started: started.0,
            ts: crate::clock::rfc3339_micros(started.1),
            user: identity.0.to_string(),
            device: identity.1.to_string(),
            host: host.to_string(),
            method: method.to_string(),
            path,
            provider: provider.to_string(),
            received: None,
            call: None,
            metered: None,
            request: RequestScan::default(),
            answered: None,
            response: ResponseFacts::Unread,
            refusal: None,
            failure: None,
            route: None,
            status: 0,
            bytes_out: 0,
            disconnected: false,
            socket: false,
        }
    }

    /// The call ended (a socket call: its response's last event, or the
    /// refusal sent in its place): settle it and submit its record. The
    /// returned [`Written`] resolves once the record is in the file.
    pub fn finish(mut self) -> Option<Written> {
        self.submit()
    }

    /// The socket closed before the call's response ended: recorded as an
    /// error saying so, and charged an estimate as a cut stream is.
    pub fn cut(mut self, why: String) {
        self.failure = Some(why);
        let _ = self.submit();
    }

    /// The API the call was read as, once the parse stage ran.
    pub fn api(&self) -> Option<Api> {
        self.call.as_ref().map(|c| c.api)
    }

    /// True when a budget holds a reservation for this call.
    pub fn has_budget(&self) -> bool {
        self.metered.as_ref().is_some_and(Metered::has_budget)
    }

    /// Settle the call's charges and submit its record. Without an audit
    /// permit (audit off, or a full backlog policy lets pass) the charges
    /// are still settled; there is just no record.
    fn submit(&mut self) -> Option<Written> {
        if self.permit.is_none() && self.metered.is_none() {
            return None;
        }
        let (event, charged) = self.event();
        let permit = self.permit.take()?;
        Some(match charged {
            None => permit.submit(event),
            Some(committed) => permit.submit_after(event, async move {
                if let Err(err) = committed.await {
                    tracing::error!("budget charge not committed before its audit record: {err}");
                }
            }),
        })
    }

    /// The one place the stages' results become the call's audit record;
    /// the budget charge is settled here too (its commit is returned, for
    /// the writer to wait on).
    fn event(&mut self) -> (AuditEvent, Option<crate::budget::Committed>) {
        // The record is made once: what the response showed is taken, not copied.
        let seen = match std::mem::take(&mut self.response) {
            ResponseFacts::Unread => ResponseSeen::default(),
            ResponseFacts::Whole(seen) => seen,
            ResponseFacts::Streaming(facts) => facts.take(),
        };
        let warnings: Vec<RuleHit> = self
            .metered
            .as_ref()
            .map(|m| {
                m.warnings
                    .iter()
                    .map(|w| RuleHit {
                        rule: w.rule.clone(),
                        action: Action::Warn,
                        count: 1,
                        kinds: Vec::new(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let hits: Vec<&RuleHit> = warnings
            .iter()
            .chain(&self.request.hits)
            .chain(&seen.hits)
            .collect();
        let call = self.call.as_ref();
        let mut event = AuditEvent {
            provider: Some(self.provider.clone()),
            host: Some(self.host.clone()),
            method: Some(self.method.clone()),
            path: Some(self.path.clone()),
            api: call.map(|c| c.api.name().to_string()),
            model: call.and_then(|c| c.model.clone()),
            stream: call.is_some_and(|c| c.stream),
            rules: rule_counts(&hits, self.refusal.as_ref()),
            status: self.status,
            latency_ms: self.started.elapsed().as_millis() as u64,
            upstream_ms: self.answered.map(|a| a.after.as_millis() as u64),
            bytes_in: self.received.as_ref().map_or(0, |r| r.bytes),
            bytes_out: self.bytes_out,
            request_sha256: self.received.as_ref().and_then(|r| r.sha256.clone()),
            error: self.error(&seen),
            policy_version: Some(self.policy.version.clone()),
            uninspected: call.and_then(|c| c.uninspected.clone()),
            batch: call.and_then(|c| c.batch),
            transport: self.socket.then(|| "websocket".to_string()),
            route: self.route.map(str::to_string),
            ..AuditEvent::new(
                Kind::Request,
                self.ts.clone(),
                &self.user,
                &self.device,
                self.decision(&hits, &seen),
            )
        };
        let (usage, committed) = self.settle(seen.usage, seen.completion.as_deref(), &mut event);
        if let Some(u) = usage {
            event.input_tokens = Some(u.input_tokens);
            event.output_tokens = Some(u.output_tokens);
        }
        event.content = self.content(seen.completion.as_deref());
        (event, committed)
    }

    fn decision(&self, hits: &[&RuleHit], seen: &ResponseSeen) -> Decision {
        if let Some(refusal) = &self.refusal {
            return if refusal.is_block() {
                Decision::Block
            } else {
                Decision::Error
            };
        }
        if self.failure.is_some() || self.disconnected {
            return Decision::Error;
        }
        if seen.blocked {
            return Decision::Block;
        }
        let redacted = self.request.redacted || hits.iter().any(|h| h.action == Action::Redact);
        if redacted {
            Decision::Redact
        } else if hits.iter().any(|h| h.action == Action::Warn) {
            Decision::Warn
        } else {
            Decision::Allow
        }
    }

    fn error(&self, seen: &ResponseSeen) -> Option<String> {
        if let Some(refusal) = &self.refusal {
            return Some(refusal.message.clone());
        }
        if let Some(failure) = &self.failure {
            return Some(failure.clone());
        }
        if self.disconnected {
            return Some(format!(
                "client disconnected after {} response bytes",
                self.bytes_out
            ));
        }
        seen.blocked
            .then(|| "the response stream was ended by a block rule".to_string())
    }

    /// Charge the budgets: the real usage; or, when the provider answered
    /// but usage never came (a stream cut short), an estimate from the text
    /// that passed, or the worst case for a call whose usage cannot be
    /// known (uninspected, a batch); or release the reservation when
    /// nothing was generated. Returns the usage recorded.
    fn settle(
        &mut self,
        usage: Option<Usage>,
        completion: Option<&str>,
        event: &mut AuditEvent,
    ) -> (Option<Usage>, Option<crate::budget::Committed>) {
        let Some(metered) = self.metered.take() else {
            return (usage, None);
        };
        // The provider took the call and started answering: it may have
        // charged for it. A call Outpost refused itself, or one the provider
        // failed, cost nothing without a usage to say otherwise.
        let answered = self
            .answered
            .is_some_and(|a| (200..300).contains(&a.status));
        let call = self.call.as_ref();
        let unknowable =
            call.is_some_and(|c| c.uninspected.is_some() || c.api.usage_unobservable());
        let estimate = (usage.is_none() && answered)
            .then(|| {
                if unknowable {
                    return metered.worst_case();
                }
                Some(Usage {
                    input_tokens: crate::budget::reserve::estimate_prompt_tokens(
                        call.map_or(0, |c| c.prompt_bytes),
                    ),
                    output_tokens: (completion.map_or(0, str::len) as u64).div_ceil(3),
                    ..Usage::default()
                })
            })
            .flatten();
        let id = format!(
            "{}:{}",
            self.ts,
            event.request_sha256.as_deref().unwrap_or("-")
        );
        let Some(Charged {
            usd,
            estimated,
            committed,
        }) = metered.settle(usage, estimate, id)
        else {
            return (usage, None);
        };
        event.cost_usd = Some(usd);
        event.estimated = estimated;
        (if estimated { estimate } else { usage }, Some(committed))
    }

    fn content(&self, completion: Option<&str>) -> Option<Content> {
        let settings = &self.policy.audit;
        let prompt = self.call.as_ref().and_then(|c| c.prompt.as_deref());
        let truncate = |s: String| -> String {
            match s.char_indices().nth(settings.max_content_chars) {
                Some((at, _)) => format!("{}…", &s[..at]),
                None => s,
            }
        };
        let redacted = |scan, text: &str| truncate(redact_all(scan, &self.policy, text));
        match settings.content {
            AuditContent::None => None,
            AuditContent::Hash => Some(Content {
                prompt_sha256: prompt.map(str::to_string),
                completion_sha256: completion.map(|c| sha256_hex(c.as_bytes())),
                ..Content::default()
            }),
            AuditContent::Redacted => Some(Content {
                prompt: Some(redacted(
                    self.policy.request_scan.as_ref(),
                    prompt.unwrap_or(""),
                )),
                completion: completion.map(|c| redacted(self.policy.response_scan.as_ref(), c)),
                ..Content::default()
            }),
            AuditContent::Full => Some(Content {
                prompt: Some(truncate(prompt.unwrap_or("").to_string())),
                completion: completion.map(|c| truncate(c.to_string())),
                ..Content::default()
            }),
        }
    }
}

/// Each rule that matched, with its count; the refusing rule as `block`.
fn rule_counts(hits: &[&RuleHit], refusal: Option<&Refusal>) -> Vec<RuleCount> {
    let mut rules: Vec<RuleCount> = Vec::new();
    if let Some(rule) = refusal.and_then(|r| r.rule.as_deref()) {
        if !hits.iter().any(|h| h.rule == rule) {
            rules.push(RuleCount {
                id: rule.to_string(),
                action: "block".into(),
                count: 1,
            });
        }
    }
    for hit in hits {
        match rules.iter_mut().find(|r| r.id == hit.rule) {
            Some(r) => r.count += hit.count,
            None => rules.push(RuleCount {
                id: hit.rule.clone(),
                action: hit.action.name().to_string(),
                count: hit.count,
            }),
        }
    }
    rules
}

impl Drop for Outcome {
    fn drop(&mut self) {
        if self.permit.is_some() || self.metered.is_some() {
            // Dropped before the response finished: the client went away.
            self.disconnected = true;
            // Queued: written whether or not anyone waits for it.
            let _ = self.submit();
        }
    }
}

/// Every match of every rule in `scan` replaced (for `redacted` audit
/// content: a blocked secret must not reach the audit log either).
fn redact_all(scan: Option<&Scan>, policy: &Policy, text: &str) -> String {
    let Some(scan) = scan else {
        return text.to_string();
    };
    let findings = scan.scanner.scan(text);
    if findings.is_empty() {
        return text.to_string();
    }
    crate::guard::redact(text, &findings, |f| {
        let id = scan
            .guardrail_of
            .get(f.rule)
            .map_or("policy", |&g| policy.guardrails[g].id.as_str());
        redaction_label(id)
    })
}

/// A response body that writes the call's audit record when it ends, and
/// releases its last bytes only once the record is written.
pub struct AuditedBody {
    inner: ProxyBody,
    outcome: Option<Outcome>,
    exact: Option<u64>,
    sent: u64,
    held: Option<Frame<Bytes>>,
    ack: Option<Written>,
    done: bool,
}

impl AuditedBody {
    /// Wrap `inner`; `status` is the response status the client gets.
    pub fn new(inner: ProxyBody, mut outcome: Outcome, status: u16) -> AuditedBody {
        outcome.status = status;
        let exact = inner.size_hint().exact();
        let mut body = AuditedBody {
            inner,
            outcome: Some(outcome),
            exact,
            sent: 0,
            held: None,
            ack: None,
            done: false,
        };
        if exact == Some(0) {
            // An empty body (204, HEAD, refusals without one) may never be
            // polled: record now rather than as a disconnect on drop.
            body.finish();
        }
        body
    }

    fn finish(&mut self) {
        if let Some(mut outcome) = self.outcome.take() {
            outcome.bytes_out = self.sent;
            self.ack = outcome.submit();
            // The permit is gone; dropping the outcome now does nothing.
        }
    }
}

impl Body for AuditedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if let Some(ack) = this.ack.as_mut() {
                if let Err(err) = ready!(Pin::new(ack).poll(cx)) {
                    tracing::error!("audit record not written: {err}");
                }
                this.ack = None;
                this.done = true;
            }
            if this.done {
                return Poll::Ready(this.held.take().map(Ok));
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        this.sent += data.len() as u64;
                        if this.exact.is_some_and(|n| this.sent >= n) {
                            // The client knows this is the end: hold it
                            // until the record is written.
                            this.held = Some(frame);
                            this.finish();
                            if this.ack.is_none() {
                                this.done = true;
                            }
                            continue;
                        }
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Some(Err(err)) => {
                    if let Some(outcome) = this.outcome.as_mut() {
                        outcome.failure = Some(format!("response stream failed: {err}"));
                    }
                    this.finish();
                    this.ack = None;
                    this.done = true;
                    return Poll::Ready(Some(Err(err)));
                }
                None => {
                    this.finish();
                    if this.ack.is_none() {
                        this.done = true;
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.held.is_none() && self.ack.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for AuditedBody {
    fn drop(&mut self) {
        if let Some(outcome) = self.outcome.as_mut() {
            outcome.bytes_out = self.sent;
            // Outcome's Drop records the disconnect.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_query_parameters_are_dropped() {
        assert_eq!(
            audited_path(
                "/v1beta/models/x:generateContent",
                Some("key=AIza123&alt=sse")
            ),
            "/v1beta/models/x:generateContent?alt=sse"
        );
        assert_eq!(audited_path("/v1/x", Some("API_KEY=1")), "/v1/x");
        assert_eq!(
            audited_path("/v1/x", Some("api-version=2024-10-21")),
            "/v1/x?api-version=2024-10-21"
        );
        assert_eq!(audited_path("/v1/x", None), "/v1/x");
        // Encoded names are the same names to the server.
        assert_eq!(audited_path("/v1/x", Some("%6Bey=AIza1&a=1")), "/v1/x?a=1");
        assert_eq!(audited_path("/v1/x", Some("api%5Fkey=s")), "/v1/x");
        assert_eq!(audited_path("/v1/x", Some("%4B%45%59=s&b")), "/v1/x?b");
        assert_eq!(audited_path("/v1/x", Some("+key=s")), "/v1/x");
    }

    fn spans(texts: &[&str]) -> Vec<TextSpan> {
        texts
            .iter()
            .map(|t| TextSpan {
                path: crate::provider::JsonPath::root(),
                role: crate::provider::TextRole::User,
                text: t.to_string(),
            })
            .collect()
    }

    const SECRET: &str = "ghp_R7d9Kq2LmX4vB8nT1wZ6yH3cF5jP0sAeUiOg";

    fn outcome(content: &str) -> Outcome {
        let text = crate::policy::DEFAULT_POLICY
            .replace("content = \"hash\"", &format!("content = \"{content}\""))
            .replace("max_content_chars = 4096", "max_content_chars = 200");
        let policy = Arc::new(
            crate::policy::load::load_layers(&[crate::policy::load::Layer::local("p.toml", text)])
                .unwrap(),
        );
        let mut outcome = Outcome::begin(
            None,
            policy.clone(),
            (Instant::now(), jiff::Timestamp::now()),
            ("alice", "dev-1"),
            ("openai", "api.openai.com"),
            "POST",
            "/v1/chat/completions".into(),
        );
        outcome.call = Some(prompt(
            &policy,
            &[&format!("my token is {SECRET}"), "card 4111 1111 1111 1111"],
        ));
        outcome
    }

    fn prompt(policy: &Policy, texts: &[&str]) -> CallSeen {
        let mut call = ApiCall::bare(
            crate::provider::Provider::OpenAi,
            Api::ChatCompletions,
            Some("gpt-4o".into()),
        );
        call.texts = spans(texts);
        CallSeen::of(&call, 0, policy, None)
    }

    #[test]
    fn content_modes_keep_secrets_out_of_the_record() {
        let completion = format!("echo {SECRET}");
        let completion = Some(completion.as_str());
        let hash = outcome("hash").content(completion).unwrap();
        let line = serde_json::to_string(&hash).unwrap();
        assert!(!line.contains(SECRET) && !line.contains("4111"), "{line}");
        let joined = format!("my token is {SECRET}\ncard 4111 1111 1111 1111");
        assert_eq!(hash.prompt_sha256, Some(sha256_hex(joined.as_bytes())));
        assert!(hash.prompt.is_none() && hash.completion.is_none());

        let redacted = outcome("redacted").content(completion).unwrap();
        let line = serde_json::to_string(&redacted).unwrap();
        assert!(!line.contains(SECRET) && !line.contains("4111"), "{line}");
        assert!(line.contains("[REDACTED:no-secrets]"), "{line}");
        assert!(line.contains("[REDACTED:card-numbers]"), "{line}");
        assert!(line.contains("[REDACTED:secrets-in-output]"), "{line}");

        assert!(outcome("none").content(completion).is_none());

        let full = outcome("full").content(completion).unwrap();
        assert!(full.prompt.unwrap().contains(SECRET));
    }

    #[test]
    fn long_content_is_truncated() {
        let mut o = outcome("full");
        o.call = Some(prompt(&o.policy.clone(), &[&"x".repeat(1000)]));
        let prompt = o.content(None).unwrap().prompt.unwrap();
        assert_eq!(prompt.chars().count(), 201, "200 chars and an ellipsis");
    }
}
