//! Redaction: a copy of the text with each finding replaced.
//!
//! Findings that overlap or touch are merged first, so one secret found by
//! two rules, or a phone number right after an email, becomes one
//! replacement instead of a replacement with debris of the text between.
//! A merged span is replaced by the replacement of its first finding
//! (earliest start; the longest of those). The caller picks the text, e.g.
//! `[REDACTED:<rule-id>]`.
//!
//! Findings come from the scanner and are valid for the text, but `redact`
//! takes any slice: spans are clamped to the text and widened to char
//! boundaries (redacting a little more, never splitting a character), and
//! empty spans are ignored. Findings need not be sorted.

use super::boundary::{ceil_char_boundary, floor_char_boundary};
use super::Finding;

/// `text` with every finding's span replaced by `replacement(finding)`;
/// overlapping and adjacent findings are merged into one replacement.
pub fn redact(
    text: &str,
    findings: &[Finding],
    replacement: impl Fn(&Finding) -> String,
) -> String {
    let mut spans: Vec<(usize, usize, &Finding)> = findings
        .iter()
        .map(|f| {
            let start = floor_char_boundary(text, f.start);
            let end = ceil_char_boundary(text, f.end);
            (start, end, f)
        })
        .filter(|&(start, end, _)| start < end)
        .collect();
    // Earliest start first; of equal starts, the longest first.
    spans.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));

    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut spans = spans.into_iter().peekable();
    while let Some((start, mut end, first)) = spans.next() {
        while let Some(&(next_start, next_end, _)) = spans.peek() {
            if next_start > end {
                break;
            }
            end = end.max(next_end);
            spans.next();
        }
        out.push_str(&text[copied..start]);
        out.push_str(&replacement(first));
        copied = end;
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(start: usize, end: usize, kind: &'static str) -> Finding {
        Finding {
            rule: 0,
            start,
            end,
            kind: kind.into(),
        }
    }

    fn tag(f: &Finding) -> String {
        format!("[REDACTED:{}]", f.kind)
    }

    #[test]
    fn replaces_each_finding() {
        let text = "mail a@b.io or call 415-555-0132 now";
        let findings = [finding(5, 11, "email"), finding(20, 32, "phone")];
        assert_eq!(
            redact(text, &findings, tag),
            "mail [REDACTED:email] or call [REDACTED:phone] now"
        );
        assert_eq!(redact(text, &[], tag), text);
    }

    #[test]
    fn merges_overlapping_and_adjacent_findings_into_one_replacement() {
        let text = "0123456789abcdef";
        // Overlapping (2..6, 4..8), adjacent (8..10), contained (3..5), unsorted.
        let findings = [
            finding(8, 10, "c"),
            finding(4, 8, "b"),
            finding(2, 6, "a"),
            finding(3, 5, "d"),
            finding(12, 14, "e"),
        ];
        assert_eq!(
            redact(text, &findings, tag),
            "01[REDACTED:a]ab[REDACTED:e]ef"
        );
    }

    #[test]
    fn equal_starts_take_the_longest_finding_for_the_replacement() {
        let text = "xx secret yy";
        let findings = [finding(3, 5, "short"), finding(3, 9, "long")];
        assert_eq!(redact(text, &findings, tag), "xx [REDACTED:long] yy");
    }

    #[test]
    fn keeps_multibyte_text_around_matches_intact() {
        let text = "日本語 alice@example.com ✓ ok";
        let start = text.find("alice").expect("present");
        let end = start + "alice@example.com".len();
        assert_eq!(
            redact(text, &[finding(start, end, "email")], tag),
            "日本語 [REDACTED:email] ✓ ok"
        );
    }

    #[test]
    fn widens_spans_that_split_a_character_and_clamps_out_of_range_ones() {
        let text = "aé b";
        // 2 is inside `é` (bytes 1..3): widened to the whole character.
        assert_eq!(redact(text, &[finding(2, 3, "x")], tag), "a[REDACTED:x] b");
        assert_eq!(redact(text, &[finding(4, 99, "x")], tag), "aé [REDACTED:x]");
        assert_eq!(
            redact(text, &[finding(3, 3, "x"), finding(9, 12, "y")], tag),
            text
        );
    }
}
