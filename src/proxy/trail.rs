//! The audit trail of one intercepted call: what is learnt about it along
//! the request path, turned into exactly one audit record when it ends.
//!
//! A [`CallTrail`] is created when the request arrives, holding an audit
//! queue slot (the writer's permit), and ends in one of three ways:
//! - a response body that runs to its end (Outpost's own refusals too):
//!   [`AuditedBody`] submits the record and holds back the body's last
//!   bytes until the record is in the file (write(2), not fsync: the
//!   request path never waits on the disk), so a client that saw a complete
//!   answer always has a record, even across `kill -9`;
//! - the client goes away (the request future or the body is dropped): the
//!   trail's `Drop` submits an `error` record saying so.
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
use std::time::Instant;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use super::spend::{Charged, Metered};
use super::ProxyBody;
use sha2::{Digest, Sha256};

use crate::audit::record::{hex, sha256_hex, AuditEvent, Content, Decision, Kind, RuleCount};
use crate::audit::writer::{AuditPermit, Written};
use crate::policy::decide::{redaction_label, RuleHit};
use crate::policy::rules::{Action, AuditContent, Scan};
use crate::policy::Policy;
use crate::provider::{TextSpan, Usage};
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

/// `path?query` with credential-bearing query parameters removed.
pub fn audited_path(path: &str, query: Option<&str>) -> String {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return path.to_string();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let name = pair.split('=').next().unwrap_or("");
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

/// Now, RFC 3339 UTC with microseconds.
pub fn timestamp_now() -> String {
    crate::clock::rfc3339_micros(crate::clock::Clock::system().now())
}

/// Facts a response body learns as it streams (filled by the stream
/// inspector, read when the record is written).
#[derive(Debug, Default, Clone)]
pub struct StreamFacts {
    /// Rules that matched in the response.
    pub hits: Vec<RuleHit>,
    /// Text delivered to the client.
    pub completion: String,
    /// Usage reported by the stream.
    pub usage: Option<Usage>,
    /// The stream was ended by a `block` rule.
    pub blocked: bool,
}

/// Shared slot for [`StreamFacts`].
pub type SharedFacts = Arc<Mutex<StreamFacts>>;

/// Everything known about one call so far.
pub struct CallTrail {
    permit: Option<AuditPermit>,
    started: Instant,
    /// The event being built.
    pub event: AuditEvent,
    policy: Arc<Policy>,
    /// Bytes of prompt text (budget estimates).
    prompt_bytes: usize,
    /// What `[audit] content` keeps of the prompt: its digest (`hash`) or
    /// its text (`redacted`, `full`); nothing is copied for `none`.
    prompt: Option<String>,
    completion: Option<String>,
    response_hits: Vec<RuleHit>,
    request_hits: Vec<RuleHit>,
    redacted: bool,
    stream_facts: Option<SharedFacts>,
    usage: Option<Usage>,
    metered: Option<Metered>,
}

impl CallTrail {
    /// Start the trail of a request (`permit` is `None` when the audit
    /// queue was full and policy said to serve the request anyway).
    pub fn start(
        permit: Option<AuditPermit>,
        policy: Arc<Policy>,
        identity: (&str, &str),
        host: &str,
        method: &str,
        path: String,
    ) -> CallTrail {
        CallTrail {
            permit,
            started: Instant::now(),
            event: AuditEvent {
                host: Some(host.to_string()),
                method: Some(method.to_string()),
                path: Some(path),
                policy_version: Some(policy.version.clone()),
                ..AuditEvent::new(
                    Kind::Request,
                    timestamp_now(),
                    identity.0,
                    identity.1,
                    Decision::Allow,
                )
            },
            policy,
            prompt_bytes: 0,
            prompt: None,
            completion: None,
            response_hits: Vec::new(),
            request_hits: Vec::new(),
            redacted: false,
            stream_facts: None,
            usage: None,
            metered: None,
        }
    }

    /// The request body as received.
    pub fn request_body(&mut self, body: &[u8]) {
        self.event.bytes_in = body.len() as u64;
        self.event.request_sha256 = Some(sha256_hex(body));
    }

    /// The prompt texts (as the client sent them), kept only as far as
    /// `[audit] content` needs them.
    pub fn prompt(&mut self, texts: &[TextSpan]) {
        self.prompt_bytes = texts.iter().map(|t| t.text.len()).sum();
        let pieces = || texts.iter().map(|t| t.text.as_str());
        self.prompt = match self.policy.audit.content {
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
        };
    }

    /// Request guardrail hits, and whether anything was redacted.
    pub fn request_hits(&mut self, hits: Vec<RuleHit>, redacted: bool) {
        self.request_hits.extend(hits);
        self.redacted |= redacted;
    }

    /// Response guardrail hits (non-stream), and whether anything was redacted.
    pub fn response_hits(&mut self, hits: Vec<RuleHit>) {
        self.redacted |= hits.iter().any(|h| h.action == Action::Redact);
        self.response_hits = hits;
    }

    /// The completion text delivered (non-stream).
    pub fn completion(&mut self, text: String) {
        self.completion = Some(text);
    }

    /// Token usage.
    pub fn usage(&mut self, usage: Option<Usage>) {
        if usage.is_some() {
            self.usage = usage;
        }
        if let Some(u) = usage {
            self.event.input_tokens = Some(u.input_tokens);
            self.event.output_tokens = Some(u.output_tokens);
        }
    }

    /// What the call holds on budgets and rate limits, settled when the
    /// record is written. Its warnings go on record as `warn` hits.
    pub fn metered(&mut self, metered: Metered) {
        for warning in &metered.warnings {
            self.request_hits.push(RuleHit {
                rule: warning.rule.clone(),
                action: Action::Warn,
                count: 1,
                kinds: Vec::new(),
            });
        }
        self.metered = Some(metered);
    }

    /// True when a budget holds a reservation for this call.
    pub fn has_budget(&self) -> bool {
        self.metered.as_ref().is_some_and(Metered::has_budget)
    }

    /// Facts a streaming body will fill in.
    pub fn stream_facts(&mut self) -> SharedFacts {
        self.stream_facts
            .get_or_insert_with(|| Arc::new(Mutex::new(StreamFacts::default())))
            .clone()
    }

    /// Time from request to response headers.
    pub fn upstream_ms(&mut self, ms: u64) {
        self.event.upstream_ms = Some(ms);
    }

    /// Refused by policy.
    pub fn refused(&mut self, rule: &str, reason: &str) {
        self.event.decision = Decision::Block;
        if !self.request_hits.iter().any(|h| h.rule == rule) {
            self.event.rules.push(RuleCount {
                id: rule.to_string(),
                action: "block".into(),
                count: 1,
            });
        }
        self.event.error = Some(reason.to_string());
    }

    /// Failed (upstream, client, Outpost).
    pub fn failed(&mut self, reason: String) {
        self.event.decision = Decision::Error;
        self.event.error = Some(reason);
    }

    /// Settle the call's charges and submit its record. Without an audit
    /// permit (audit off, or a full backlog policy lets pass) the charges
    /// are still settled; there is just no record.
    fn submit(&mut self) -> Option<Written> {
        if self.permit.is_none() && self.metered.is_none() {
            return None;
        }
        self.event.latency_ms = self.started.elapsed().as_millis() as u64;
        if let Some(facts) = &self.stream_facts {
            let facts = facts.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if facts.usage.is_some() {
                self.usage(facts.usage);
            }
            self.redacted |= facts.hits.iter().any(|h| h.action == Action::Redact);
            self.response_hits.extend(facts.hits);
            self.completion = Some(facts.completion);
            if facts.blocked && self.event.decision != Decision::Error {
                self.event.decision = Decision::Block;
            }
        }
        let charged = self.settle_spend();
        let permit = self.permit.take()?;
        self.settle_decision();
        self.event.content = self.content();
        let event = self.event.clone();
        Some(match charged {
            None => permit.submit(event),
            Some(committed) => permit.submit_after(event, async move {
                if let Err(err) = committed.await {
                    tracing::error!("budget charge not committed before its audit record: {err}");
                }
            }),
        })
    }

    /// Charge the budgets: the real usage, or an estimate from the text that
    /// passed when the provider answered but usage never came (a stream cut
    /// short), or release the reservation when nothing was generated.
    fn settle_spend(&mut self) -> Option<crate::budget::Committed> {
        let metered = self.metered.take()?;
        // The provider took the call and started answering: it may have
        // charged for it. A call Outpost refused itself, or one the provider
        // failed, cost nothing without a usage to say otherwise.
        let answered = self.event.upstream_ms.is_some() && (200..300).contains(&self.event.status);
        let estimate = (self.usage.is_none() && answered).then(|| {
            let prompt = self.prompt_bytes;
            let completion = self.completion.as_ref().map_or(0, String::len);
            Usage {
                input_tokens: crate::budget::reserve::estimate_prompt_tokens(prompt),
                output_tokens: (completion as u64).div_ceil(3),
                ..Usage::default()
            }
        });
        let id = format!(
            "{}:{}",
            self.event.ts,
            self.event.request_sha256.as_deref().unwrap_or("-")
        );
        let Charged {
            usd,
            estimated,
            committed,
        } = metered.settle(self.usage, estimate, id)?;
        self.event.cost_usd = Some(usd);
        self.event.estimated = estimated;
        if estimated {
            self.event.input_tokens = estimate.map(|e| e.input_tokens);
            self.event.output_tokens = estimate.map(|e| e.output_tokens);
        }
        Some(committed)
    }

    fn settle_decision(&mut self) {
        let mut rules: Vec<RuleCount> = std::mem::take(&mut self.event.rules);
        for hit in self.request_hits.iter().chain(&self.response_hits) {
            match rules.iter_mut().find(|r| r.id == hit.rule) {
                Some(r) => r.count += hit.count,
                None => rules.push(RuleCount {
                    id: hit.rule.clone(),
                    action: hit.action.name().to_string(),
                    count: hit.count,
                }),
            }
        }
        self.event.rules = rules;
        if self.event.decision == Decision::Allow {
            let warned = self
                .request_hits
                .iter()
                .chain(&self.response_hits)
                .any(|h| h.action == Action::Warn);
            self.event.decision = if self.redacted {
                Decision::Redact
            } else if warned {
                Decision::Warn
            } else {
                Decision::Allow
            };
        }
    }

    fn content(&self) -> Option<Content> {
        let settings = &self.policy.audit;
        let prompt = self.prompt.as_deref().unwrap_or("");
        let completion = self.completion.as_deref();
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
                prompt_sha256: self.prompt.clone(),
                completion_sha256: completion.map(|c| sha256_hex(c.as_bytes())),
                ..Content::default()
            }),
            AuditContent::Redacted => Some(Content {
                prompt: Some(redacted(self.policy.request_scan.as_ref(), prompt)),
                completion: completion.map(|c| redacted(self.policy.response_scan.as_ref(), c)),
                ..Content::default()
            }),
            AuditContent::Full => Some(Content {
                prompt: Some(truncate(prompt.to_string())),
                completion: completion.map(|c| truncate(c.to_string())),
                ..Content::default()
            }),
        }
    }
}

impl Drop for CallTrail {
    fn drop(&mut self) {
        if self.permit.is_some() || self.metered.is_some() {
            // Dropped before the response finished: the client went away.
            if self.event.decision != Decision::Block {
                self.event.decision = Decision::Error;
            }
            if self.event.error.is_none() {
                self.event.error = Some(format!(
                    "client disconnected after {} response bytes",
                    self.event.bytes_out
                ));
            }
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
    trail: Option<CallTrail>,
    exact: Option<u64>,
    sent: u64,
    held: Option<Frame<Bytes>>,
    ack: Option<Written>,
    done: bool,
}

impl AuditedBody {
    /// Wrap `inner`; `status` is the response status the client gets.
    pub fn new(inner: ProxyBody, mut trail: CallTrail, status: u16) -> AuditedBody {
        trail.event.status = status;
        let exact = inner.size_hint().exact();
        let mut body = AuditedBody {
            inner,
            trail: Some(trail),
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
        if let Some(mut trail) = self.trail.take() {
            trail.event.bytes_out = self.sent;
            self.ack = trail.submit();
            // The permit is gone; dropping the trail now does nothing.
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
                    if let Some(trail) = this.trail.as_mut() {
                        trail.failed(format!("response stream failed: {err}"));
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
        if let Some(trail) = self.trail.as_mut() {
            trail.event.bytes_out = self.sent;
            // CallTrail's Drop records the disconnect.
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

    fn trail(content: &str) -> CallTrail {
        let text = crate::policy::DEFAULT_POLICY
            .replace("content = \"hash\"", &format!("content = \"{content}\""))
            .replace("max_content_chars = 4096", "max_content_chars = 200");
        let policy = crate::policy::load::load_layers(&[crate::policy::load::Layer {
            path: "p.toml".into(),
            text,
        }])
        .unwrap();
        let mut trail = CallTrail::start(
            None,
            Arc::new(policy),
            ("alice", "dev-1"),
            "api.openai.com",
            "POST",
            "/v1/chat/completions".into(),
        );
        trail.prompt(&spans(&[
            &format!("my token is {SECRET}"),
            "card 4111 1111 1111 1111",
        ]));
        trail.completion(format!("echo {SECRET}"));
        trail
    }

    #[test]
    fn content_modes_keep_secrets_out_of_the_record() {
        let hash = trail("hash").content().unwrap();
        let line = serde_json::to_string(&hash).unwrap();
        assert!(!line.contains(SECRET) && !line.contains("4111"), "{line}");
        let joined = format!("my token is {SECRET}\ncard 4111 1111 1111 1111");
        assert_eq!(hash.prompt_sha256, Some(sha256_hex(joined.as_bytes())));
        assert!(hash.prompt.is_none() && hash.completion.is_none());

        let redacted = trail("redacted").content().unwrap();
        let line = serde_json::to_string(&redacted).unwrap();
        assert!(!line.contains(SECRET) && !line.contains("4111"), "{line}");
        assert!(line.contains("[REDACTED:no-secrets]"), "{line}");
        assert!(line.contains("[REDACTED:card-numbers]"), "{line}");
        assert!(line.contains("[REDACTED:secrets-in-output]"), "{line}");

        assert!(trail("none").content().is_none());

        let full = trail("full").content().unwrap();
        assert!(full.prompt.unwrap().contains(SECRET));
    }

    #[test]
    fn long_content_is_truncated() {
        let mut t = trail("full");
        t.prompt(&spans(&[&"x".repeat(1000)]));
        let prompt = t.content().unwrap().prompt.unwrap();
        assert_eq!(prompt.chars().count(), 201, "200 chars and an ellipsis");
    }

    #[test]
    fn timestamps_are_rfc3339_with_microseconds() {
        let ts = timestamp_now();
        assert_eq!(ts.len(), 27, "{ts}");
        assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
    }
}
