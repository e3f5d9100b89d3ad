//! Guardrails on a server-sent-event stream, applied as it flows.
//!
//! Words: the *window* is the concatenated text of the events not yet sent
//! to the client; *decided* is how much of the window has been scanned with
//! every match in it settled; the *hold-back* is the tail of the window that
//! could still be part of a match that is growing
//! ([`crate::guard::Scanner::stream_hold`]: for ordinary text, about the last
//! word); the *context* is the last [`CONTEXT`] bytes already released,
//! scanned again with the window so a match that began there is still
//! recognised.
//!
//! Each event is parsed, its text deltas appended to the window, and the
//! window scanned. A match that starts before the hold-back cannot grow any
//! more, so it is settled now: redacted in the events that carry it (even
//! when it is split across events), counted, or — for `block` — the stream
//! is ended with the provider's own error event. Events whose text is all
//! decided are released to the client. So at most the hold-back (plus the
//! event that crosses it) is ever held, never the whole stream. Events that
//! carry no text keep their place in order, and events nobody touched are
//! released byte-identical.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;

use super::decide::{redaction_label, Refusal, RuleHit};
use super::rules::{Action, Policy};
use crate::guard::Finding;
use crate::provider::sse::{SseEvent, SseParser};
use crate::provider::{self, ApiCall, ErrorKind, JsonPath, StreamState, TextSpan};

/// Released text kept as scanning context.
const CONTEXT: usize = 256;

struct PendingEvent {
    event: SseEvent,
    /// Text deltas: scanned as part of the window.
    texts: Vec<(JsonPath, String)>,
    /// Whole-text repeats of earlier deltas (Responses `…done` events):
    /// scanned on their own when the event is released.
    snapshots: Vec<TextSpan>,
    modified: bool,
}

/// Incremental guardrail inspection of one response stream.
pub struct StreamInspector {
    policy: Arc<Policy>,
    call: ApiCall,
    parser: SseParser,
    state: StreamState,
    pending: VecDeque<PendingEvent>,
    decided: usize,
    context: String,
    counts: BTreeMap<usize, (usize, Vec<String>)>,
    blocked: Option<Refusal>,
    ended: bool,
    drop_usage_chunks: bool,
    /// All text the client was sent (after redaction), for audit.
    delivered_text: String,
    /// One JSON message per socket message, rather than SSE bytes.
    socket: bool,
}

impl StreamInspector {
    /// Inspect a stream answering `call` under `policy`.
    pub fn new(policy: Arc<Policy>, call: ApiCall) -> StreamInspector {
        let state = StreamState::new(&call);
        StreamInspector {
            policy,
            call,
            parser: SseParser::new(),
            state,
            pending: VecDeque::new(),
            decided: 0,
            context: String::new(),
            counts: BTreeMap::new(),
            blocked: None,
            ended: false,
            drop_usage_chunks: false,
            delivered_text: String::new(),
            socket: false,
        }
    }

    /// Inspect the messages of one response on a WebSocket answering `call`
    /// ([`push_message`](Self::push_message)): what comes out is one
    /// message per item, and a block ends the response with the API's
    /// socket error event.
    pub fn for_socket(policy: Arc<Policy>, call: ApiCall) -> StreamInspector {
        StreamInspector {
            socket: true,
            ..StreamInspector::new(policy, call)
        }
    }

    /// Feed one socket message (a JSON document); returns the messages to
    /// send to the client now, in order.
    pub fn push_message(&mut self, text: &str) -> Vec<Bytes> {
        if self.ended {
            return Vec::new();
        }
        let event = SseEvent {
            event: None,
            data: Some(text.to_owned()),
            id: None,
            retry: None,
            raw: Bytes::copy_from_slice(text.as_bytes()),
        };
        if !self.rewrites() {
            self.observe(&event);
            return vec![event.raw];
        }
        let mut out = Vec::new();
        self.accept(event, &mut out);
        out
    }

    /// Whether the response is over: its terminal event arrived, or a block
    /// rule ended it.
    pub fn is_over(&self) -> bool {
        self.ended || self.state.is_finished()
    }

    /// Whether response guardrails apply (otherwise bytes pass unchanged).
    pub fn rewrites(&self) -> bool {
        self.policy.response_scan.is_some() || self.drop_usage_chunks
    }

    /// Outpost asked for `stream_options.include_usage` on the client's
    /// behalf: take the usage-only chunk out of what the client sees (its
    /// usage is still read for budgets and audit).
    pub fn drop_usage_chunks(&mut self) {
        self.drop_usage_chunks = true;
    }

    /// Feed bytes from upstream; returns what to send to the client now.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Bytes> {
        if self.ended {
            return Vec::new();
        }
        let events = self.parser.push(chunk);
        if !self.rewrites() {
            for event in &events {
                self.observe(event);
            }
            return vec![Bytes::copy_from_slice(chunk)];
        }
        let mut out = Vec::new();
        for event in events {
            self.accept(event, &mut out);
            if self.ended {
                return out;
            }
        }
        if let Some(err) = self.parser.error() {
            // Past this point nothing could be inspected: end the stream
            // rather than pass unscanned output.
            self.pending.clear();
            out.push(provider::stream_error_event(
                self.call.provider,
                self.call.api,
                ErrorKind::UpstreamUnavailable,
                &format!("Outpost ended this stream: it cannot be inspected ({err})."),
            ));
            self.ended = true;
        }
        out
    }

    /// Upstream ended: settle and release everything still held.
    pub fn finish(&mut self) -> Vec<Bytes> {
        if self.ended {
            return Vec::new();
        }
        let mut out = Vec::new();
        if let Some(event) = self.parser.finish() {
            if self.rewrites() {
                self.accept(event, &mut out);
            } else {
                self.observe(&event);
            }
        }
        if self.rewrites() && !self.ended {
            self.settle(true, &mut out);
        }
        self.ended = true;
        out
    }

    /// Rules that matched so far.
    pub fn hits(&self) -> Vec<RuleHit> {
        self.counts
            .iter()
            .map(|(&g, (count, kinds))| RuleHit {
                rule: self.policy.guardrails[g].id.clone(),
                action: self.policy.guardrails[g].action,
                count: *count,
                kinds: kinds.clone(),
            })
            .collect()
    }

    /// The refusal, if a `block` rule ended the stream.
    pub fn blocked(&self) -> Option<&Refusal> {
        self.blocked.as_ref()
    }

    /// Usage and text state of the stream.
    pub fn state(&self) -> &StreamState {
        &self.state
    }

    /// Text sent to the client so far (when guardrails rewrite), else the
    /// text observed.
    pub fn delivered_text(&self) -> &str {
        &self.delivered_text
    }

    fn observe(&mut self, event: &SseEvent) {
        let item = self.state.on_event(event);
        for delta in item.deltas {
            self.delivered_text.push_str(&delta.text);
        }
    }

    fn accept(&mut self, event: SseEvent, out: &mut Vec<Bytes>) {
        let item = self.state.on_event(&event);
        let terminal = item.terminal;
        if self.drop_usage_chunks && provider::is_usage_only_chunk(&event) {
            return;
        }
        self.pending.push_back(PendingEvent {
            event,
            texts: item.deltas.into_iter().map(Into::into).collect(),
            snapshots: item.snapshots,
            modified: false,
        });
        self.settle(terminal, out);
    }

    fn window(&self) -> String {
        self.pending
            .iter()
            .flat_map(|p| p.texts.iter().map(|(_, t)| t.as_str()))
            .collect()
    }

    /// Scan the undecided window, settle complete matches, release events.
    fn settle(&mut self, flush: bool, out: &mut Vec<Bytes>) {
        let Some(scan) = self.policy.response_scan.as_ref() else {
            // Nothing to scan for: every event goes out as it came.
            self.decided = self.window().len();
            self.release(out);
            return;
        };
        let window = self.window();
        let ctx = self.context.len();
        let text = format!("{}{window}", self.context);
        // Measured on what is scanned: a match still growing from the
        // released context holds the whole window.
        let mut limit = if flush {
            window.len()
        } else {
            window.len().saturating_sub(scan.scanner.stream_hold(&text))
        };
        while !window.is_char_boundary(limit) {
            limit -= 1;
        }
        let from = self.decided.min(window.len());
        // Window coordinates; a match that began in released context is
        // settled from where the window starts.
        let mut complete: Vec<Finding> = scan
            .scanner
            .scan(&text)
            .into_iter()
            .filter(|f| f.end > ctx + from)
            .map(|mut f| {
                f.start = f.start.saturating_sub(ctx).max(from);
                f.end -= ctx;
                f
            })
            .filter(|f| f.start < limit)
            .collect();
        complete.sort_by_key(|f| (f.start, f.end));

        let mut decided = limit.max(from);
        let mut redactions: Vec<(usize, usize, usize)> = Vec::new();
        for finding in &complete {
            let Some(&g) = scan.guardrail_of.get(finding.rule) else {
                continue;
            };
            let entry = self.counts.entry(g).or_default();
            entry.0 += 1;
            if !entry.1.iter().any(|k| k == finding.kind.as_ref()) {
                entry.1.push(finding.kind.to_string());
            }
            decided = decided.max(finding.end);
            match self.policy.guardrails[g].action {
                Action::Block if self.blocked.is_none() => {
                    self.blocked = Some(self.refusal(g, finding));
                }
                Action::Redact => redactions.push((finding.start, finding.end, g)),
                _ => {}
            }
        }
        if let Some(refusal) = &self.blocked {
            // Nothing held is sent: it may carry part of what was found.
            self.pending.clear();
            let error = if self.socket {
                provider::socket_error_event
            } else {
                provider::stream_error_event
            };
            out.push(error(
                self.call.provider,
                self.call.api,
                ErrorKind::PolicyBlocked,
                &refusal.message,
            ));
            self.ended = true;
            return;
        }
        // Every settled match ends before `decided`, so each redaction moves
        // `decided` by the difference between its label and the match.
        let (removed, added) = self.apply_redactions(&merge(redactions));
        self.decided = (decided + added).saturating_sub(removed);
        self.release(out);
    }

    fn refusal(&self, g: usize, finding: &Finding) -> Refusal {
        let rule = &self.policy.guardrails[g];
        let mut message = format!(
            "Response blocked by Outpost policy rule `{}` (found: {}).",
            rule.id, finding.kind
        );
        if let Some(admin) = &rule.message {
            message.push(' ');
            message.push_str(admin);
        }
        Refusal::policy(&rule.id, message)
    }

    /// Replace each `(start, end, guardrail)` range of the window (sorted,
    /// disjoint) with its label, across event boundaries. Returns the bytes
    /// removed from and added to the window.
    fn apply_redactions(&mut self, ranges: &[(usize, usize, usize)]) -> (usize, usize) {
        let mut removed = 0usize;
        let mut added = 0usize;
        // Walk from the last range back so earlier offsets stay valid.
        for &(start, end, g) in ranges.iter().rev() {
            let label = redaction_label(&self.policy.guardrails[g].id);
            let mut offset = 0usize;
            let mut labelled = false;
            for pending in self.pending.iter_mut() {
                for (_, text) in pending.texts.iter_mut() {
                    let (t0, t1) = (offset, offset + text.len());
                    offset = t1;
                    if t1 <= start || t0 >= end {
                        continue;
                    }
                    let a = start.max(t0) - t0;
                    let b = end.min(t1) - t0;
                    let replacement = if labelled { "" } else { label.as_str() };
                    labelled = true;
                    text.replace_range(a..b, replacement);
                    pending.modified = true;
                }
            }
            removed += end - start;
            added += label.len();
        }
        (removed, added)
    }

    fn release(&mut self, out: &mut Vec<Bytes>) {
        let mut released = 0usize;
        while let Some(front) = self.pending.front() {
            let len: usize = front.texts.iter().map(|(_, t)| t.len()).sum();
            if released + len > self.decided {
                break;
            }
            let Some(mut pending) = self.pending.pop_front() else {
                break;
            };
            released += len;
            for (_, text) in &pending.texts {
                self.delivered_text.push_str(text);
                self.context.push_str(text);
            }
            let mut edits = pending.texts.clone();
            for snapshot in std::mem::take(&mut pending.snapshots) {
                if let Some(redacted) = self.redact_whole(&snapshot.text) {
                    edits.push((snapshot.path, redacted));
                    pending.modified = true;
                }
            }
            let bytes = if pending.modified {
                // The event was parsed as JSON to find its texts, so
                // rewriting it cannot fail on shape; if it ever did, the
                // safe answer is to drop the event, not pass it unredacted.
                let rewritten = match (&pending.event.data, self.socket) {
                    (Some(data), true) => provider::rewrite_message(data, &edits),
                    _ => provider::rewrite_event(&pending.event, &edits),
                };
                match rewritten {
                    Ok(bytes) => bytes,
                    Err(err) => {
                        tracing::warn!(
                            "dropping a stream event that could not be rewritten: {err}"
                        );
                        continue;
                    }
                }
            } else {
                pending.event.raw.clone()
            };
            out.push(bytes);
        }
        self.decided -= released;
        if self.context.len() > CONTEXT {
            let mut cut = self.context.len() - CONTEXT;
            while !self.context.is_char_boundary(cut) {
                cut += 1;
            }
            self.context.drain(..cut);
        }
    }
}

impl StreamInspector {
    /// `text` with every redact-rule match replaced, if any matched. Used
    /// for whole-text repeats whose deltas were already counted.
    fn redact_whole(&self, text: &str) -> Option<String> {
        let scan = self.policy.response_scan.as_ref()?;
        let findings: Vec<Finding> = scan
            .scanner
            .scan(text)
            .into_iter()
            .filter(|f| {
                scan.guardrail_of
                    .get(f.rule)
                    .is_some_and(|&g| self.policy.guardrails[g].action == Action::Redact)
            })
            .collect();
        if findings.is_empty() {
            return None;
        }
        Some(crate::guard::redact(text, &findings, |f| {
            let g = scan.guardrail_of.get(f.rule).copied().unwrap_or(0);
            redaction_label(&self.policy.guardrails[g].id)
        }))
    }
}

/// Merge overlapping ranges; the first range's rule labels the merged one.
fn merge(mut ranges: Vec<(usize, usize, usize)>) -> Vec<(usize, usize, usize)> {
    ranges.sort();
    let mut merged: Vec<(usize, usize, usize)> = Vec::new();
    for (s, e, g) in ranges {
        match merged.last_mut() {
            Some(last) if s < last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e, g)),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::load::{load_layers, Layer};
    use crate::provider::Provider;

    fn policy(toml: &str) -> Arc<Policy> {
        Arc::new(load_layers(&[Layer::local("p.toml", toml)]).unwrap())
    }

    fn chat_call() -> ApiCall {
        let body =
            br#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
        provider::parse_request(Provider::OpenAi, "POST", "/v1/chat/completions", body).unwrap()
    }

    fn chunk(text: &str) -> String {
        let data = serde_json::json!({
            "id": "c1", "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]
        });
        format!("data: {data}\n\n")
    }

    fn delivered(out: &[Bytes]) -> String {
        let mut parser = SseParser::new();
        let mut state = StreamState::new(&chat_call());
        let mut text = String::new();
        for bytes in out {
            for ev in parser.push(bytes) {
                for d in state.on_event(&ev).deltas {
                    text.push_str(&d.text);
                }
            }
        }
        text
    }

    const REDACT_CARDS: &str = "[[guardrails]]\nid = \"cards\"\ndetect = \"credit_card\"\naction = \"redact\"\non = [\"response\"]\n";

    #[test]
    fn a_card_split_across_events_is_redacted() {
        let mut inspector = StreamInspector::new(policy(REDACT_CARDS), chat_call());
        let mut out = Vec::new();
        for piece in ["Your card is 4111 11", "11 1111 1111 and", " that is all."] {
            out.extend(inspector.push(chunk(piece).as_bytes()));
        }
        out.extend(inspector.push(b"data: [DONE]\n\n"));
        out.extend(inspector.finish());
        let text = delivered(&out);
        assert_eq!(text, "Your card is [REDACTED:cards] and that is all.");
        assert!(!text.contains("4111"));
        assert_eq!(inspector.hits()[0].count, 1);
        assert!(String::from_utf8_lossy(out.last().unwrap()).contains("[DONE]"));
    }

    #[test]
    fn text_is_released_before_the_stream_ends() {
        let mut inspector = StreamInspector::new(policy(REDACT_CARDS), chat_call());
        let hold = 64;
        let mut out = Vec::new();
        let mut sent = 0;
        // Once more than a hold-back of text follows the first event, the
        // first event cannot be part of a match and must be out.
        while sent <= hold + 20 {
            out.extend(inspector.push(chunk("plain words ").as_bytes()));
            sent += "plain words ".len();
        }
        assert!(
            !out.is_empty(),
            "held {sent} bytes of text with a hold-back of {hold}"
        );
        assert!(
            delivered(&out).starts_with("plain words "),
            "{:?}",
            delivered(&out)
        );
    }

    #[test]
    fn held_text_stays_bounded() {
        let mut inspector = StreamInspector::new(policy(REDACT_CARDS), chat_call());
        for _ in 0..2000 {
            inspector.push(chunk("abc def ghi ").as_bytes());
        }
        let held: usize = inspector
            .pending
            .iter()
            .flat_map(|p| p.texts.iter().map(|(_, t)| t.len()))
            .sum();
        assert!(held <= 64, "held {held} bytes");
    }

    #[test]
    fn block_ends_the_stream_with_the_providers_error_event() {
        let p = policy("[[guardrails]]\nid = \"no-codename\"\nkeywords = [\"bluebird\"]\naction = \"block\"\non = [\"response\"]\nmessage = \"Codenames stay inside.\"\n");
        let mut inspector = StreamInspector::new(p, chat_call());
        let mut out = inspector.push(chunk("The project is blue").as_bytes());
        out.extend(inspector.push(chunk("bird, launching soon").as_bytes()));
        out.extend(inspector.push(chunk("more").as_bytes()));
        let all: String = out
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        assert!(!all.contains("blue"), "{all}");
        assert!(all.contains("\"error\""), "{all}");
        assert!(
            all.contains("no-codename") && all.contains("Codenames stay inside."),
            "{all}"
        );
        assert_eq!(
            inspector.blocked().unwrap().rule.as_deref(),
            Some("no-codename")
        );
        assert!(inspector.finish().is_empty());
    }

    #[test]
    fn without_response_rules_bytes_pass_unchanged() {
        let p = policy("[[guardrails]]\nid = \"x\"\ndetect = \"email\"\naction = \"redact\"\non = [\"request\"]\n");
        let mut inspector = StreamInspector::new(p, chat_call());
        let raw = chunk("mail me at a@example.com");
        let out = inspector.push(&raw.as_bytes()[..10]);
        assert_eq!(out, vec![Bytes::copy_from_slice(&raw.as_bytes()[..10])]);
        inspector.push(&raw.as_bytes()[10..]);
        assert_eq!(inspector.delivered_text(), "mail me at a@example.com");
    }
}
