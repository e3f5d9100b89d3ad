//! The audit record: one JSON line per intercepted request (and a few
//! bookkeeping kinds), and its canonical encoding.
//!
//! Words:
//! - an [`AuditEvent`] is what the request path knows when a request ends;
//! - an [`AuditRecord`] is an event placed in the chain by the writer: it
//!   gains `seq`, `prev` and `hash`;
//! - the *canonical encoding* of a record is its compact JSON with the
//!   fields in declaration order and without `hash`. `hash = SHA-256(prev ||
//!   canonical)`, hex. Field order is fixed by this struct, so the encoding
//!   is stable across versions as long as fields are only appended.
//!
//! Never in a record: matched text, Authorization or api-key headers,
//! cookies, query-string keys. Prompt and completion text appear only as the
//! policy's `[audit] content` allows (see [`Content`]).
//!
//! Pure: serde and sha2 only.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What happened to a request, from the caller's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Forwarded unchanged.
    Allow,
    /// Refused by policy.
    Block,
    /// Forwarded with redactions.
    Redact,
    /// Forwarded; a `warn` rule matched.
    Warn,
    /// Failed: upstream error, client disconnect, unreadable body.
    Error,
}

/// Record kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// One intercepted request.
    Request,
    /// A keyed checkpoint over the chain so far (see `audit::key`).
    Checkpoint,
    /// Something the writer must put on record about the log itself: a
    /// torn last line moved aside at start, records that could not be
    /// written, a replaced HMAC key. `error` says what.
    Repair,
    /// A managed-policy sync: a bundle put in force (`decision` allow,
    /// `policy_version` its version) or refused or not fetched (`decision`
    /// error, `error` says why); `host` and `path` name the server.
    Sync,
}

/// One rule that matched, with how often; never the matched text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleCount {
    /// Rule id (guardrail id, `models.deny`, a budget id, …).
    pub id: String,
    /// The rule's action (`block`, `redact`, `warn`, `log`).
    pub action: String,
    /// Matches.
    pub count: usize,
}

/// Prompt and completion content, per `[audit] content`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Content {
    /// SHA-256 (hex) of the prompt texts joined with `\n` (mode `hash`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub prompt_sha256: Option<String>,
    /// SHA-256 (hex) of the completion text (mode `hash`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub completion_sha256: Option<String>,
    /// Prompt text after redaction, truncated (mode `redacted`), or as sent
    /// (mode `full`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub prompt: Option<String>,
    /// Completion text, likewise.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub completion: Option<String>,
}

/// What the request path hands to the audit writer when a request ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Record kind.
    pub kind: Kind,
    /// When the request started, RFC 3339 UTC with microseconds.
    pub ts: String,
    /// Device id.
    pub device: String,
    /// User.
    pub user: String,
    /// Provider name (`openai`, `groq`, …).
    pub provider: Option<String>,
    /// Host the client asked for.
    pub host: Option<String>,
    /// HTTP method.
    pub method: Option<String>,
    /// Path, with any query parameter that carries a key removed.
    pub path: Option<String>,
    /// API (`chat_completions`, …).
    pub api: Option<String>,
    /// Model.
    pub model: Option<String>,
    /// Streamed response.
    pub stream: bool,
    /// Outcome.
    pub decision: Decision,
    /// Rules that matched.
    pub rules: Vec<RuleCount>,
    /// HTTP status the client got (0 if none was sent).
    pub status: u16,
    /// Input tokens, from usage (or estimated).
    pub input_tokens: Option<u64>,
    /// Output tokens.
    pub output_tokens: Option<u64>,
    /// Cost in USD (once budgets land).
    pub cost_usd: Option<f64>,
    /// Token counts or cost are estimates.
    pub estimated: bool,
    /// Request start to end of response, ms.
    pub latency_ms: u64,
    /// Upstream request to response headers, ms.
    pub upstream_ms: Option<u64>,
    /// Request body bytes received from the client.
    pub bytes_in: u64,
    /// Response body bytes sent to the client.
    pub bytes_out: u64,
    /// SHA-256 (hex) of the request body as received.
    pub request_sha256: Option<String>,
    /// What went wrong, if anything (never content).
    pub error: Option<String>,
    /// Policy version in force for the request.
    pub policy_version: Option<String>,
    /// Content per `[audit] content`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub content: Option<Content>,
    /// Forwarded without inspection, and why (`on_unparseable` or
    /// `unknown_endpoints` = `"forward"`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub uninspected: Option<String>,
    /// Requests carried by a batch call.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub batch: Option<usize>,
    /// `websocket` for a call made over a WebSocket (one record per
    /// response); absent for HTTP.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub transport: Option<String>,
    /// Where an intercepted call was sent: `direct`, or `gateway` (the
    /// company's AI gateway, `[gateway]`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub route: Option<String>,
}

impl AuditEvent {
    /// An event of `kind` at `ts` for `identity` (user, device) with every
    /// request field empty; callers fill in what they know.
    pub fn new(kind: Kind, ts: String, user: &str, device: &str, decision: Decision) -> AuditEvent {
        AuditEvent {
            kind,
            ts,
            device: device.to_string(),
            user: user.to_string(),
            provider: None,
            host: None,
            method: None,
            path: None,
            api: None,
            model: None,
            stream: false,
            decision,
            rules: Vec::new(),
            status: 0,
            input_tokens: None,
            output_tokens: None,
            cost_usd: None,
            estimated: false,
            latency_ms: 0,
            upstream_ms: None,
            bytes_in: 0,
            bytes_out: 0,
            request_sha256: None,
            error: None,
            policy_version: None,
            content: None,
            uninspected: None,
            batch: None,
            transport: None,
            route: None,
        }
    }
}

/// A record in the chain: the event plus its place and hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the chain, from 1, continuing across day files.
    pub seq: u64,
    /// The event.
    #[serde(flatten)]
    pub event: AuditEvent,
    /// HMAC-SHA-256 (hex) over the chain head, for `checkpoint` records.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mac: Option<String>,
    /// Hash of the previous record (64 zeros for the first).
    pub prev: String,
    /// `SHA-256(prev || canonical)`, hex.
    pub hash: String,
}

/// `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The fields that are hashed: everything but `hash`, in order.
#[derive(Serialize)]
struct Canonical<'a> {
    seq: u64,
    #[serde(flatten)]
    event: &'a AuditEvent,
    #[serde(skip_serializing_if = "Option::is_none")]
    mac: &'a Option<String>,
    prev: &'a str,
}

impl AuditRecord {
    /// Chain `event` after a record whose hash is `prev`.
    pub fn chain(seq: u64, event: AuditEvent, mac: Option<String>, prev: &str) -> AuditRecord {
        let mut record = AuditRecord {
            seq,
            event,
            mac,
            prev: prev.to_string(),
            hash: String::new(),
        };
        record.hash = record.compute_hash();
        record
    }

    /// The canonical encoding (compact JSON without `hash`).
    pub fn canonical(&self) -> Vec<u8> {
        // Serializing plain data to JSON cannot fail.
        serde_json::to_vec(&Canonical {
            seq: self.seq,
            event: &self.event,
            mac: &self.mac,
            prev: &self.prev,
        })
        .unwrap_or_default()
    }

    /// `SHA-256(prev || canonical)` as hex.
    pub fn compute_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.prev.as_bytes());
        h.update(self.canonical());
        hex(&h.finalize())
    }

    /// The JSON line written to the file (no newline).
    pub fn to_line(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    // A table, not `write!("{b:02x}")`: formatting showed in the proxy's
    // profile (several hashes per call).
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// SHA-256 of `bytes` as hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

#[cfg(test)]
pub(crate) fn sample_event() -> AuditEvent {
    AuditEvent {
        kind: Kind::Request,
        ts: "2026-11-24T10:00:00.000001Z".into(),
        device: "dev-1".into(),
        user: "alice".into(),
        provider: Some("openai".into()),
        host: Some("api.openai.com".into()),
        method: Some("POST".into()),
        path: Some("/v1/chat/completions".into()),
        api: Some("chat_completions".into()),
        model: Some("gpt-4o".into()),
        stream: false,
        decision: Decision::Redact,
        rules: vec![RuleCount {
            id: "cards".into(),
            action: "redact".into(),
            count: 1,
        }],
        status: 200,
        input_tokens: Some(10),
        output_tokens: Some(5),
        cost_usd: None,
        estimated: false,
        latency_ms: 12,
        upstream_ms: Some(10),
        bytes_in: 100,
        bytes_out: 200,
        request_sha256: Some(sha256_hex(b"{}")),
        error: None,
        policy_version: Some("abc123".into()),
        content: Some(Content {
            prompt_sha256: Some(sha256_hex(b"hi")),
            ..Content::default()
        }),
        uninspected: None,
        batch: None,
        transport: None,
        route: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_hex_is_lowercase_hex_of_the_digest() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hex(&[0x00, 0x0f, 0xf0, 0xff]), "000ff0ff");
    }

    #[test]
    fn hash_covers_every_field_and_round_trips() {
        let record = AuditRecord::chain(1, sample_event(), None, GENESIS);
        assert_eq!(record.hash, record.compute_hash());
        let line = record.to_line();
        let back: AuditRecord = serde_json::from_slice(&line).unwrap();
        assert_eq!(back, record);
        assert_eq!(back.compute_hash(), record.hash);
        let mut tampered = back.clone();
        tampered.event.status = 201;
        assert_ne!(tampered.compute_hash(), record.hash);
        let mut moved = back;
        moved.prev = "1".repeat(64);
        assert_ne!(moved.compute_hash(), record.hash);
    }

    #[test]
    fn canonical_encoding_is_stable_and_excludes_hash() {
        let record = AuditRecord::chain(7, sample_event(), None, GENESIS);
        let canonical = String::from_utf8(record.canonical()).unwrap();
        assert!(
            canonical.starts_with("{\"seq\":7,\"kind\":\"request\",\"ts\":"),
            "{canonical}"
        );
        assert!(
            canonical.ends_with(&format!("\"prev\":\"{GENESIS}\"}}")),
            "{canonical}"
        );
        assert!(!canonical.contains("\"hash\""));
        let line = String::from_utf8(record.to_line()).unwrap();
        assert!(
            line.ends_with(&format!("\"hash\":\"{}\"}}", record.hash)),
            "{line}"
        );
    }
}
