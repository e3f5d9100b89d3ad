//! UK NHS numbers and National Insurance numbers.
//!
//! - `uk_nhs`: ten digits, bare or `ddd ddd dddd` / `ddd-ddd-dddd`, with
//!   the NHS mod-11 check digit (weights 10 to 2; a remainder giving 10 is
//!   never issued). Only after a context word (`nhs`, `national health`,
//!   `health service`): `ddd ddd dddd` is also how US phone numbers are
//!   printed, and one in eleven of them passes the check.
//! - `uk_nino`: a National Insurance number, two prefix letters, six digits
//!   and a suffix `A`–`D`, compact (`AB123456C`) or with single spaces
//!   between the parts (`AB 12 34 56 C`, `PR 123612C`). The prefix follows
//!   HMRC's rules: neither letter is D, F, I, Q, U or V, the second is not
//!   O, and BG, GB, KN, NK, NT, TN and ZZ are never allocated. In capitals
//!   it is reported anywhere: the shape, letters and all, is rare outside
//!   NINOs. In lower case (`tw987654a`, which reads like an identifier)
//!   only after a context word (`nino`, `national insurance`,
//!   `insurance number`, `ni number`).

use std::ops::Range;

use super::boundary::{byte_before, is_word_byte};
use super::context;
use super::grouped::{self, Layout};
use super::hold::trailing_run_start;

/// Longest NHS number match in bytes: `ddd-ddd-dddd`.
pub(crate) const NHS_MAX_LEN: usize = 12;
/// Longest NINO match in bytes: `AB 12 34 56 C`.
pub(crate) const NINO_MAX_LEN: usize = 13;

const NHS_LAYOUTS: &[Layout] = &[Layout {
    groups: &[3, 3, 4],
    separators: b" -",
}];
const NHS_CONTEXT: &[&[u8]] = &[b"nhs", b"national health", b"health service"];

const NINO_CONTEXT: &[&[u8]] = &[
    b"nino",
    b"national insurance",
    b"insurance number",
    b"ni number",
    b"ni no",
];
/// Prefixes HMRC never allocates.
const NINO_UNUSED_PREFIXES: &[&[u8; 2]] = &[b"BG", b"GB", b"KN", b"NK", b"NT", b"TN", b"ZZ"];

/// The NHS number starting at the digit run `run`, if any.
pub(crate) fn find_nhs_at(bytes: &[u8], run: Range<usize>) -> Option<Range<usize>> {
    let nhs = grouped::read(bytes, run, 10, NHS_LAYOUTS)?;
    let d = nhs.digits();
    let weighted: u32 = d[..9]
        .iter()
        .zip((2..=10u32).rev())
        .map(|(&digit, w)| u32::from(digit) * w)
        .sum();
    let check = match 11 - weighted % 11 {
        11 => 0,
        10 => return None,
        c => c,
    };
    (check == u32::from(d[9]) && context::appears_before(bytes, nhs.span.start, NHS_CONTEXT))
        .then_some(nhs.span)
}

/// Where an NHS number that more text could still change may start.
pub(crate) fn nhs_hold_from(bytes: &[u8]) -> usize {
    grouped::hold_from(bytes, NHS_MAX_LEN)
}

/// The National Insurance number whose first digits are the digit run
/// `run`, if any.
pub(crate) fn find_nino_at(bytes: &[u8], run: Range<usize>) -> Option<Range<usize>> {
    if !matches!(run.len(), 2 | 4 | 6) {
        return None;
    }
    // The prefix, right before the digits or one space before them.
    let letters_end = match byte_before(bytes, run.start)? {
        b' ' => run.start - 1,
        _ => run.start,
    };
    let start = letters_end.checked_sub(2)?;
    let prefix = [bytes[start], bytes[start + 1]];
    if byte_before(bytes, start).is_some_and(is_word_byte) {
        return None;
    }
    // Six digits, a single space allowed after the second and fourth.
    let mut pos = run.start;
    let mut digits = 0;
    while digits < 6 {
        match bytes.get(pos) {
            Some(b) if b.is_ascii_digit() => {
                digits += 1;
                pos += 1;
            }
            Some(b' ') if digits % 2 == 0 && digits > 0 => pos += 1,
            _ => return None,
        }
    }
    if bytes.get(pos) == Some(&b' ') {
        pos += 1;
    }
    let suffix = *bytes.get(pos)?;
    let end = pos + 1;
    if bytes.get(end).is_some_and(|&b| is_word_byte(b)) {
        return None;
    }
    let upper = prefix.iter().all(u8::is_ascii_uppercase) && suffix.is_ascii_uppercase();
    let lower = prefix.iter().all(u8::is_ascii_lowercase) && suffix.is_ascii_lowercase();
    let prefix = prefix.map(|b| b.to_ascii_uppercase());
    let valid = nino_prefix_ok(prefix) && matches!(suffix.to_ascii_uppercase(), b'A'..=b'D');
    let context_ok = upper || (lower && context::appears_before(bytes, start, NINO_CONTEXT));
    (valid && context_ok).then_some(start..end)
}

/// HMRC's rules for the two prefix letters (capitals).
fn nino_prefix_ok(prefix: [u8; 2]) -> bool {
    let [first, second] = prefix;
    first.is_ascii_uppercase()
        && second.is_ascii_uppercase()
        && !b"DFIQUV".contains(&first)
        && !b"DFIOQUV".contains(&second)
        && !NINO_UNUSED_PREFIXES.contains(&&prefix)
}

/// Where a National Insurance number that more text could still change
/// may start in `bytes` (the length if nowhere): a valid prefix starting a
/// word, then a digit, or a space and a digit (as far as the text goes), in
/// the trailing run of letters, digits and spaces, at most
/// `NINO_MAX_LEN + 1` back. A candidate reads only such bytes from its
/// prefix and then the one byte after its suffix.
pub(crate) fn nino_hold_from(bytes: &[u8]) -> usize {
    let n = bytes.len();
    let run = trailing_run_start(bytes, NINO_MAX_LEN + 1, |b| {
        b.is_ascii_alphanumeric() || b == b' '
    });
    let digit_or_end = |i: usize| bytes.get(i).is_none_or(u8::is_ascii_digit);
    let starts_here = |p: usize| {
        if byte_before(bytes, p).is_some_and(is_word_byte) {
            return false;
        }
        let first = bytes[p].to_ascii_uppercase();
        let prefix_ok = match bytes.get(p + 1) {
            None => first.is_ascii_uppercase() && !b"DFIQUV".contains(&first),
            Some(second) => nino_prefix_ok([first, second.to_ascii_uppercase()]),
        };
        let digits_follow = match bytes.get(p + 2) {
            Some(b' ') => digit_or_end(p + 3),
            _ => digit_or_end(p + 2),
        };
        prefix_ok && digits_follow
    };
    (run..n).find(|&p| starts_here(p)).unwrap_or(n)
}

#[cfg(test)]
mod tests {
    use super::super::digits::found_by_runs_resuming as found;
    use super::*;

    #[test]
    fn finds_nhs_numbers_with_context() {
        fn nhs(text: &str) -> Vec<&str> {
            found(find_nhs_at, text)
        }
        for number in ["401-023-2137", "221 395 1837", "0032698674", "943 476 5919"] {
            assert_eq!(
                nhs(&format!("NHS number: {number}.")),
                vec![number],
                "{number}"
            );
        }
        assert_eq!(
            nhs("registered with the National Health Service as 4010232137"),
            vec!["4010232137"]
        );
    }

    #[test]
    fn rejects_nhs_lookalikes() {
        fn nhs(text: &str) -> Vec<&str> {
            found(find_nhs_at, text)
        }
        for text in [
            "401-023-2137",       // no context
            "call 221 395 1837",  // a phone number, no context
            "NHS 401-023-2138",   // check digit
            "NHS 401 023 2137 5", // goes on
            "NHS 401-023 2137",   // mixed separators
            "NHS 40102321370",    // eleven digits
            "NHS 123 456 7890",   // remainder 10: never issued
            "NHS 401.023.2137",   // not an NHS layout
        ] {
            assert!(nhs(text).is_empty(), "{text}: {:?}", nhs(text));
        }
    }

    #[test]
    fn finds_ninos() {
        fn ninos(text: &str) -> Vec<&str> {
            found(find_nino_at, text)
        }
        for (text, nino) in [
            ("AA 12 34 56 B", "AA 12 34 56 B"),
            ("nino: PR 123612C", "PR 123612C"),
            (
                "Here is my National Insurance Number YZ 61 48 68 B",
                "YZ 61 48 68 B",
            ),
            ("NINO JG103759A.", "JG103759A"),
            ("(AB123456D)", "AB123456D"),
            ("nino hh 01 02 03 d", "hh 01 02 03 d"),
            ("national insurance number tw987654a", "tw987654a"),
        ] {
            assert_eq!(ninos(text), vec![nino], "{text}");
        }
    }

    #[test]
    fn rejects_nino_lookalikes() {
        fn ninos(text: &str) -> Vec<&str> {
            found(find_nino_at, text)
        }
        for text in [
            "QQ 12 34 56 C",       // HMRC's example, never allocated
            "AA 12 34 56 H",       // suffix
            "FQ 00 00 00 C",       // F never starts a prefix
            "AO 12 34 56 C",       // O never ends one
            "BG123612A",           // never allocated
            "nino: nt 99 88 77 a", // never allocated
            "UV 98 76 54 B",
            "tw987654a",  // lower case, no context
            "Ab123456C",  // mixed case
            "XAB123456C", // inside a word
            "AB123456CD",
            "AB1234567C",
            "AB12345C",
            "AB 1 23456 C",
            "AB  123456C",
            "AB123456C_x",
        ] {
            assert!(ninos(text).is_empty(), "{text}: {:?}", ninos(text));
        }
    }

    #[test]
    fn holds_cover_unfinished_numbers() {
        assert_eq!(nhs_hold_from(b"NHS 401 023 21"), 4);
        assert_eq!(nino_hold_from(b"nino AB 12 34"), 5);
        assert_eq!(nino_hold_from(b"nino AB123456"), 5);
        assert_eq!(nino_hold_from(b"x 12"), 4);
        assert_eq!(nino_hold_from(b"Keep it safe"), 12);
        assert_eq!(nino_hold_from(b"see AB"), 4);
        assert_eq!(nino_hold_from(b"see A"), 4);
    }
}
