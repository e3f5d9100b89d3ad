//! Korean resident registration numbers, `kr_rrn`.
//!
//! Thirteen digits, `YYMMDD-GNNNNNC` or bare: the date of birth, a digit
//! `G` for sex and century (1, 2, 5, 6: the 1900s; 3, 4, 7, 8: the 2000s;
//! 5–8 are the foreign residents' registration numbers, same format), five
//! digits and a check digit: 11 less the digits weighted 2–9, 2–5, mod 11,
//! mod 10. The date must exist.
//!
//! - Dashed with a valid check digit: reported anywhere; a date, a dash and
//!   seven digits that pass one time in ten are rare outside RRNs.
//! - Dashed without a valid check digit: only after a context word (`rrn`,
//!   `resident registration`, `주민등록번호`). Numbers issued since October
//!   2020 end in random digits instead of a check digit, so the check
//!   cannot be required of them, but without it the shape alone is too
//!   weak.
//! - Bare, only after a context word and with a valid check digit: thirteen
//!   bare digits are most often a millisecond timestamp (`1705312345678`
//!   reads as 17-05-31).

use std::ops::Range;

use super::context;
use super::dates::is_valid_date;
use super::grouped::{self, Layout};

/// Longest RRN match in bytes: `YYMMDD-GNNNNNC`.
pub(crate) const MAX_LEN: usize = 14;

const LAYOUTS: &[Layout] = &[Layout {
    groups: &[6, 7],
    separators: b"-",
}];
const CONTEXT: &[&[u8]] = &[
    b"rrn",
    b"resident registration",
    b"registration number",
    "주민등록번호".as_bytes(),
    "주민번호".as_bytes(),
];
const WEIGHTS: [u32; 12] = [2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5];

/// The RRN starting at the digit run `run`, if any.
pub(crate) fn find_at(bytes: &[u8], run: Range<usize>) -> Option<Range<usize>> {
    let rrn = grouped::read(bytes, run, 13, LAYOUTS)?;
    let d = rrn.digits();
    let n = |i: usize| u32::from(d[i]);
    let century = match d[6] {
        1 | 2 | 5 | 6 => 1900,
        3 | 4 | 7 | 8 => 2000,
        _ => return None,
    };
    if !is_valid_date(
        century + n(0) * 10 + n(1),
        n(2) * 10 + n(3),
        n(4) * 10 + n(5),
    ) {
        return None;
    }
    let sum: u32 = WEIGHTS.iter().enumerate().map(|(i, w)| n(i) * w).sum();
    let checked = (11 - sum % 11) % 10 == n(12);
    let dashed = rrn.separator.is_some();
    let context_ok = || context::appears_before(bytes, rrn.span.start, CONTEXT);
    let found = (dashed && checked) || (context_ok() && (dashed || checked));
    found.then_some(rrn.span)
}

/// Where an RRN that more text could still change may start.
pub(crate) fn hold_from(bytes: &[u8]) -> usize {
    grouped::hold_from(bytes, MAX_LEN)
}

#[cfg(test)]
mod tests {
    use super::super::digits::found_by_runs;
    use super::*;

    fn rrns(text: &str) -> Vec<&str> {
        found_by_runs(find_at, text)
    }

    #[test]
    fn finds_rrns() {
        for (text, rrn) in [
            ("960121-1021413", "960121-1021413"),
            ("050912-2000019", "050912-2000019"),
            ("His RRN is 9601211021413", "9601211021413"),
            ("RRN 0509122000019.", "0509122000019"),
            // Issued after 2020: no check digit, needs context.
            ("His Korean RRN is 960121-1234567", "960121-1234567"),
            ("주민등록번호: 000505-3637892", "000505-3637892"),
        ] {
            assert_eq!(rrns(text), vec![rrn], "{text}");
        }
    }

    #[test]
    fn rejects_rrn_lookalikes() {
        for text in [
            "960121-1234567", // no check digit, no context
            "9601211021413",  // bare, no context
            "1705312345678",  // a millisecond timestamp
            "001332-1234567", // month 13
            "RRN 0013321234567",
            "960121+1021413",
            "960111-10214131",
            "RRN 960303-0021413", // century digit 0
            "RRN 960121-9021413", // century digit 9
            "RRN 960230-1021413", // 30 February
            "RRN 9601211021414",  // bare, check digit
            "960121-1021413-1",
            "x960121-1021413",
        ] {
            assert!(rrns(text).is_empty(), "{text}: {:?}", rrns(text));
        }
    }
}
