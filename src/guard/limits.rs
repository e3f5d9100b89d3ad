//! How long a reported match can be: the bound behind
//! [`Scanner::max_match_len`](super::Scanner::max_match_len).
//!
//! The bound sets how far around a keyword a secret rule looks, and how
//! far back a stream may have to hold text
//! ([`Scanner::stream_hold`](super::Scanner::stream_hold)). That only works
//! if the bound is true, so every detector has one:
//! - the hand-written detectors have fixed maxima (an IBAN is at most 34
//!   characters plus spaces, …);
//! - a regex (admin pattern or secret rule) gets its maximum from
//!   `regex-syntax`'s analysis of the pattern;
//! - a regex that can match without bound (`\w+`, `.*`) is capped at
//!   [`MATCH_LEN_CAP`].
//!
//! Trade-off for capped regexes: a longer match is reported as its first
//! `MATCH_LEN_CAP` bytes (less at a char boundary). A block rule still
//! fires and a redaction still removes the start, but the tail stays in the
//! text; the alternative, dropping long matches, would let a long secret
//! through untouched. 4096 fits a PEM-encoded RSA-4096 private key.

use std::ops::Range;

use super::boundary::floor_char_boundary;

/// The longest match, in bytes, the scanner reports for a regex that can
/// match without bound. See the module docs for what happens to longer
/// matches.
pub const MATCH_LEN_CAP: usize = 4096;

/// The longest match of `pattern` in bytes, as the `regex` crate would
/// compile it with default flags, or `None` if it is unbounded. `None` too
/// if the pattern does not parse, which callers rule out by compiling it
/// with `regex` first.
pub(crate) fn regex_max_len(pattern: &str) -> Option<usize> {
    let hir = regex_syntax::Parser::new().parse(pattern).ok()?;
    hir.properties().maximum_len()
}

/// The longest match the scanner reports for `pattern`: its own maximum,
/// or [`MATCH_LEN_CAP`] if that is larger or unbounded.
pub(crate) fn capped_regex_max_len(pattern: &str) -> usize {
    regex_max_len(pattern).map_or(MATCH_LEN_CAP, |len| len.min(MATCH_LEN_CAP))
}

/// `span` cut to at most [`MATCH_LEN_CAP`] bytes, ending on a char
/// boundary of `text`.
pub(crate) fn clip_to_cap(text: &str, span: Range<usize>) -> Range<usize> {
    if span.end - span.start <= MATCH_LEN_CAP {
        return span;
    }
    span.start..floor_char_boundary(text, span.start + MATCH_LEN_CAP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_patterns_report_their_maximum_in_bytes() {
        assert_eq!(regex_max_len("abc"), Some(3));
        assert_eq!(regex_max_len("a{2,5}b?"), Some(6));
        // `.` is any char: up to four bytes of UTF-8.
        assert_eq!(regex_max_len(".{3}"), Some(12));
    }

    #[test]
    fn unbounded_patterns_are_capped() {
        assert_eq!(regex_max_len(r"\w+"), None);
        assert_eq!(capped_regex_max_len(r"\w+"), MATCH_LEN_CAP);
        assert_eq!(capped_regex_max_len("a{1,10}"), 10);
    }

    #[test]
    fn clipping_lands_on_a_char_boundary() {
        let text = "é".repeat(MATCH_LEN_CAP);
        let clipped = clip_to_cap(&text, 1..text.len());
        assert!(clipped.end - clipped.start <= MATCH_LEN_CAP);
        assert!(text.is_char_boundary(clipped.end));
        assert_eq!(clip_to_cap(&text, 0..10), 0..10);
    }
}
