//! Records for people and spreadsheets: one human-readable line
//! (`audit tail`), and CSV rows with a fixed column set (`audit export
//! --format csv`).
//!
//! CSV follows RFC 4180: every field that holds a comma, quote, CR or LF is
//! quoted, quotes doubled; rows end with CRLF. Text that a client chose (a
//! model name, a path) could start with `=`, `+`, `-` or `@` and run as a
//! formula when a compliance analyst opens the file in a spreadsheet, so
//! such text fields get a leading `'` (OWASP's advice for CSV injection).
//! Numbers and hashes are never altered.

use std::fmt::Write;

use super::record::{AuditRecord, Decision, Kind};

/// `audit tail`'s line: time, seq, user, provider/model, decision, status,
/// rules, tokens, latency; or what a checkpoint or repair record says.
pub fn human_line(record: &AuditRecord) -> String {
    let e = &record.event;
    let mut line = format!("{}  #{}  {}", e.ts, record.seq, e.user);
    match e.kind {
        Kind::Checkpoint => {
            line.push_str("  checkpoint");
            return line;
        }
        Kind::Repair => {
            let _ = write!(line, "  REPAIR  {}", e.error.as_deref().unwrap_or(""));
            return line;
        }
        Kind::Sync => {
            let _ = write!(
                line,
                "  sync {}  {}",
                e.policy_version.as_deref().unwrap_or("-"),
                e.error.as_deref().unwrap_or("in force")
            );
            return line;
        }
        Kind::Request => {}
    }
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_string());
    let _ = write!(
        line,
        "  {}/{}  {}  {}",
        dash(&e.provider),
        dash(&e.model),
        decision_name(e.decision),
        e.status
    );
    if e.stream {
        line.push_str(" stream");
    }
    if !e.rules.is_empty() {
        let rules: Vec<String> = e
            .rules
            .iter()
            .map(|r| format!("{}({})x{}", r.id, r.action, r.count))
            .collect();
        let _ = write!(line, "  rules {}", rules.join(","));
    }
    let tokens = |t: Option<u64>| t.map_or_else(|| "?".to_string(), |t| t.to_string());
    if e.input_tokens.is_some() || e.output_tokens.is_some() {
        let _ = write!(
            line,
            "  tokens {}/{}{}",
            tokens(e.input_tokens),
            tokens(e.output_tokens),
            if e.estimated { "~" } else { "" }
        );
    }
    let _ = write!(line, "  {} ms", e.latency_ms);
    if let Some(error) = &e.error {
        let _ = write!(line, "  error: {error}");
    }
    line
}

fn decision_name(decision: Decision) -> &'static str {
    match decision {
        Decision::Allow => "allow",
        Decision::Block => "block",
        Decision::Redact => "redact",
        Decision::Warn => "warn",
        Decision::Error => "error",
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Request => "request",
        Kind::Checkpoint => "checkpoint",
        Kind::Repair => "repair",
        Kind::Sync => "sync",
    }
}

/// The CSV columns, in order.
pub const CSV_COLUMNS: [&str; 28] = [
    "seq",
    "ts",
    "kind",
    "device",
    "user",
    "provider",
    "host",
    "method",
    "path",
    "api",
    "model",
    "stream",
    "decision",
    "rules",
    "status",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "estimated",
    "latency_ms",
    "upstream_ms",
    "bytes_in",
    "bytes_out",
    "request_sha256",
    "error",
    "policy_version",
    "prev",
    "hash",
];

/// The header row, with its CRLF.
pub fn csv_header() -> String {
    let mut row = CSV_COLUMNS.join(",");
    row.push_str("\r\n");
    row
}

/// One record as a CSV row (with its CRLF). `rules` is
/// `id:action:count` joined with `;`.
pub fn csv_row(record: &AuditRecord) -> String {
    let e = &record.event;
    let text = |v: &Option<String>| v.as_deref().map(text_field).unwrap_or_default();
    let num = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_default();
    let rules: Vec<String> = e
        .rules
        .iter()
        .map(|r| format!("{}:{}:{}", r.id, r.action, r.count))
        .collect();
    let fields = [
        record.seq.to_string(),
        quote(&e.ts),
        kind_name(e.kind).to_string(),
        text_field(&e.device),
        text_field(&e.user),
        text(&e.provider),
        text(&e.host),
        text(&e.method),
        text(&e.path),
        text(&e.api),
        text(&e.model),
        e.stream.to_string(),
        decision_name(e.decision).to_string(),
        text_field(&rules.join(";")),
        e.status.to_string(),
        num(e.input_tokens),
        num(e.output_tokens),
        e.cost_usd.map(|c| c.to_string()).unwrap_or_default(),
        e.estimated.to_string(),
        e.latency_ms.to_string(),
        num(e.upstream_ms),
        e.bytes_in.to_string(),
        e.bytes_out.to_string(),
        text(&e.request_sha256),
        text(&e.error),
        text(&e.policy_version),
        quote(&record.prev),
        quote(&record.hash),
    ];
    let mut row = fields.join(",");
    row.push_str("\r\n");
    row
}

/// A text field: defused against formula injection, then quoted as needed.
fn text_field(value: &str) -> String {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        quote(&format!("'{value}"))
    } else {
        quote(value)
    }
}

/// RFC 4180 quoting, only when needed.
fn quote(value: &str) -> String {
    if value.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::{sample_event, GENESIS};

    #[test]
    fn human_line_has_the_essentials() {
        let record = AuditRecord::chain(7, sample_event(), None, GENESIS);
        let line = human_line(&record);
        for part in [
            "2026-11-24T10:00:00.000001Z",
            "#7",
            "alice",
            "openai/gpt-4o",
            "redact",
            "200",
            "cards(redact)x1",
            "tokens 10/5",
            "12 ms",
        ] {
            assert!(line.contains(part), "{part} missing from {line}");
        }
    }

    #[test]
    fn csv_rows_are_quoted_and_defused() {
        let mut event = sample_event();
        event.error = Some("upstream said \"no\", twice\nthen hung up".into());
        event.model = Some("=HYPERLINK(\"http://x\")".into());
        let record = AuditRecord::chain(3, event, None, GENESIS);
        let row = csv_row(&record);
        assert!(row.ends_with("\r\n"));
        assert!(
            row.starts_with("3,2026-11-24T10:00:00.000001Z,request,dev-1,alice,openai,"),
            "{row}"
        );
        assert!(
            row.contains(",\"upstream said \"\"no\"\", twice\nthen hung up\","),
            "{row}"
        );
        assert!(row.contains(",\"'=HYPERLINK(\"\"http://x\"\")\","), "{row}");
        assert!(row.contains(",cards:redact:1,"), "{row}");
        assert_eq!(csv_header().matches(',').count(), CSV_COLUMNS.len() - 1);
    }
}
