//! US Social Security numbers.
//!
//! - `ddd-dd-dddd` is reported wherever it appears.
//! - `ddd dd dddd`, `ddd.dd.dddd` and bare `ddddddddd` are reported only
//!   when a context word (`ssn`, `social security`, `soc sec`, `ss#`; any
//!   case, whole words, see `context.rs`) appears in the 48 bytes before
//!   the number. Without context, nine digits are more often a ZIP+4, an
//!   order id or part of a phone number than an SSN, and a guardrail that
//!   cries wolf gets turned off.
//!
//! Validity, from the SSA's rules (still true after the 2011
//! randomisation): area not `000`, `666` or `900`–`999`; group not `00`;
//! serial not `0000`. Like every number detector it must not continue a
//! word or a longer number (`123-45-6789X`, `555-123-45-6789`).

use std::ops::Range;

use super::boundary::{digit_run_end, number_ends_at, number_starts_at};
use super::context;
use super::hold::{first_from, trailing_run_start};

/// Longest SSN match in bytes: `ddd-dd-dddd`.
pub(crate) const MAX_LEN: usize = 11;

/// Lowercase; compared ASCII-case-insensitively.
const CONTEXT_WORDS: &[&[u8]] = &[b"ssn", b"social security", b"soc sec", b"soc. sec", b"ss#"];
/// Bytes that, next to a digit, continue a number into this one.
const CONTINUING: &[u8] = b"-.";

/// The SSN starting at the digit run `run`, if any.
pub(crate) fn find_at(bytes: &[u8], run: Range<usize>) -> Option<Range<usize>> {
    let end = match run.len() {
        3 => {
            let sep = *bytes.get(run.end)?;
            if !matches!(sep, b'-' | b' ' | b'.') {
                return None;
            }
            let group = run.end + 1;
            let group_end = digit_run_end(bytes, group);
            if group_end - group != 2 || bytes.get(group_end) != Some(&sep) {
                return None;
            }
            let serial = group_end + 1;
            let serial_end = digit_run_end(bytes, serial);
            if serial_end - serial != 4 || (sep != b'-' && !has_context(bytes, run.start)) {
                return None;
            }
            serial_end
        }
        9 if has_context(bytes, run.start) => run.end,
        _ => return None,
    };
    if !number_starts_at(bytes, run.start, CONTINUING) || !number_ends_at(bytes, end, CONTINUING) {
        return None;
    }
    let mut digits = [0u16; 9];
    let found = bytes[run.start..end].iter().filter(|b| b.is_ascii_digit());
    for (slot, &b) in digits.iter_mut().zip(found) {
        *slot = u16::from(b - b'0');
    }
    let area = digits[0] * 100 + digits[1] * 10 + digits[2];
    let group = digits[3] * 10 + digits[4];
    let serial = digits[5..].iter().fold(0, |acc, &d| acc * 10 + d);
    let valid = area != 0 && area != 666 && area < 900 && group != 0 && serial != 0;
    valid.then_some(run.start..end)
}

/// Where an SSN that more text could still change may start in `bytes`
/// (the length if nowhere): the first digit of the trailing run of digits,
/// spaces, dashes and dots, at most `MAX_LEN + 1` back (`123-45-6789.`
/// stops being one if a digit follows). The context word lies before the
/// number, so it never needs holding.
pub(crate) fn hold_from(bytes: &[u8]) -> usize {
    let run = trailing_run_start(bytes, MAX_LEN + 1, |b| {
        b.is_ascii_digit() || matches!(b, b' ' | b'-' | b'.')
    });
    first_from(bytes, run, |b| b.is_ascii_digit())
}

/// Does a context word appear in the bytes just before `start`?
fn has_context(bytes: &[u8], start: usize) -> bool {
    context::appears_before(bytes, start, CONTEXT_WORDS)
}

#[cfg(test)]
mod tests {
    use super::super::digits::found_by_runs;
    use super::*;

    fn ssns(text: &str) -> Vec<&str> {
        found_by_runs(find_at, text)
    }

    #[test]
    fn finds_dashed_ssns_anywhere() {
        assert_eq!(ssns("employee 123-45-6789 on file"), vec!["123-45-6789"]);
        assert_eq!(ssns("(078-05-1121)"), vec!["078-05-1121"]);
    }

    #[test]
    fn finds_spaced_and_bare_ssns_only_with_context() {
        assert_eq!(ssns("SSN: 123456789"), vec!["123456789"]);
        assert_eq!(ssns("Social Security no. 123 45 6789"), vec!["123 45 6789"]);
        assert_eq!(ssns("SSN 078 05 1123"), vec!["078 05 1123"]);
        assert_eq!(ssns("my ssn: 078.05.1123."), vec!["078.05.1123"]);
        assert!(ssns("order 123456789 shipped").is_empty());
        assert!(ssns("room 123 45 6789").is_empty());
        assert!(ssns("078 05 1123").is_empty(), "spaced needs context");
        assert!(
            ssns("v078.05.1123 and 078.05.1123").is_empty(),
            "dotted needs context"
        );
        assert!(
            ssns("classname 123456789").is_empty(),
            "`ssn` inside a word"
        );
        let far = format!("ssn {} 123456789", "x".repeat(context::WINDOW));
        assert!(ssns(&far).is_empty(), "context word too far away");
    }

    #[test]
    fn rejects_invalid_areas_groups_and_serials() {
        for text in [
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "999-12-3456",
            "123-00-4567",
            "123-45-0000",
        ] {
            assert!(ssns(text).is_empty(), "{text}");
        }
    }

    #[test]
    fn rejects_ssn_shapes_inside_longer_tokens() {
        for text in [
            "123-45-6789X",
            "X123-45-6789",
            "555-123-45-6789",
            "123-45-67890",
            "123-45-6789-1",
            "1234-45-6789",
            "123-456-7890",
            "2024-01-15",
            "ssn 693-09.4444",
            "ssn 078.05.1123.4",
            "ssn 1.078.05.1123",
        ] {
            assert!(ssns(text).is_empty(), "{text}");
        }
    }
}
