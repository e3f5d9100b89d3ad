//! US taxpayer, passport and bank routing numbers (the SSN is `ssn.rs`).
//!
//! - `us_itin`, the IRS's Individual Taxpayer Identification Number:
//!   `9dd-dd-dddd` whose middle group is 50–65, 70–88, 90–92 or 94–99 (the
//!   IRS's ranges; 50–65 were added in 2011). The dashed form is reported
//!   anywhere, like a dashed SSN: little else is written that way. Spaced
//!   (`9dd dd dddd`), dotted and bare (`9dddddddd`) forms only after a
//!   context word (`itin`, `tin`, `taxpayer`, `tax id`), since nine digits
//!   starting with 9 are as often an order number.
//! - `us_passport`: nine digits, or a letter and eight digits (the
//!   next-generation book, `A12345678`), only after `passport`. There is no
//!   check digit, so the number alone says nothing.
//! - `us_bank_routing`, the ABA routing transit number: nine digits, bare
//!   or `dddd-dddd-d`, with a Federal Reserve prefix (00–12, 21–32, 61–72,
//!   80) and the ABA check (weights 3, 7, 1), only after a context word
//!   (`routing`, `aba`, `rtn`, `transit number`): one nine-digit number in
//!   about twenty passes both by chance.
//!
//! `us_bank_account` is left out on purpose: an account number is 4 to 17
//! digits in whatever scheme the bank likes, with no check digit anyone
//! outside the bank can compute, so even with a context word it cannot be
//! told from any other number near the word "account".

use std::ops::Range;

use super::boundary::{byte_before, is_word_byte, number_ends_at};
use super::context;
use super::grouped::{self, Layout, CONTINUING};
use super::hold::{first_from, trailing_run_start};

/// Longest ITIN match in bytes: `9dd-dd-dddd`.
pub(crate) const ITIN_MAX_LEN: usize = 11;
/// Longest passport match in bytes: nine digits, or a letter and eight.
pub(crate) const PASSPORT_MAX_LEN: usize = 9;
/// Longest routing number match in bytes: `dddd-dddd-d`.
pub(crate) const ROUTING_MAX_LEN: usize = 11;

const ITIN_LAYOUTS: &[Layout] = &[Layout {
    groups: &[3, 2, 4],
    separators: b"- .",
}];
const ITIN_CONTEXT: &[&[u8]] = &[
    b"itin",
    b"tin",
    b"taxpayer",
    b"tax id",
    b"tax identification",
];

const PASSPORT_CONTEXT: &[&[u8]] = &[b"passport", b"passport#"];

const ROUTING_LAYOUTS: &[Layout] = &[Layout {
    groups: &[4, 4, 1],
    separators: b"-",
}];
const ROUTING_CONTEXT: &[&[u8]] = &[b"routing", b"aba", b"rtn", b"abarouting", b"transit number"];

/// The ITIN starting at the digit run `run`, if any.
pub(crate) fn find_itin_at(bytes: &[u8], run: Range<usize>) -> Option<Range<usize>> {
    if bytes.get(run.start) != Some(&b'9') {
        return None;
    }
    let itin = grouped::read(bytes, run, 9, ITIN_LAYOUTS)?;
    let d = itin.digits();
    let group = d[3] * 10 + d[4];
    let issued = matches!(group, 50..=65 | 70..=88 | 90..=92 | 94..=99);
    let context_ok = itin.separator == Some(b'-')
        || context::appears_before(bytes, itin.span.start, ITIN_CONTEXT);
    (issued && context_ok).then_some(itin.span)
}

/// Where an ITIN that more text could still change may start.
pub(crate) fn itin_hold_from(bytes: &[u8]) -> usize {
    grouped::hold_from(bytes, ITIN_MAX_LEN)
}

/// The passport number starting at (or one letter before) the digit run
/// `run`, if any.
pub(crate) fn find_passport_at(bytes: &[u8], run: Range<usize>) -> Option<Range<usize>> {
    let start = match run.len() {
        9 => run.start,
        8 => {
            let letter = run.start.checked_sub(1)?;
            let starts_word = !byte_before(bytes, letter).is_some_and(is_word_byte);
            if !bytes[letter].is_ascii_uppercase() || !starts_word {
                return None;
            }
            letter
        }
        _ => return None,
    };
    if run.len() == 9 && grouped::read(bytes, run.clone(), 9, &[]).is_none() {
        return None;
    }
    if !number_ends_at(bytes, run.end, CONTINUING) {
        return None;
    }
    context::appears_before(bytes, start, PASSPORT_CONTEXT).then_some(start..run.end)
}

/// Where a passport number that more text could still change may start:
/// the first digit or capital of the trailing run of digits, capitals and
/// punctuation, at most `PASSPORT_MAX_LEN + 1` back.
pub(crate) fn passport_hold_from(bytes: &[u8]) -> usize {
    let run = trailing_run_start(bytes, PASSPORT_MAX_LEN + 1, |b| {
        b.is_ascii_digit() || b.is_ascii_uppercase() || b == b' ' || CONTINUING.contains(&b)
    });
    first_from(bytes, run, |b| b.is_ascii_digit() || b.is_ascii_uppercase())
}

/// The routing number starting at the digit run `run`, if any.
pub(crate) fn find_routing_at(bytes: &[u8], run: Range<usize>) -> Option<Range<usize>> {
    let routing = grouped::read(bytes, run, 9, ROUTING_LAYOUTS)?;
    let d = routing.digits();
    let prefix = d[0] * 10 + d[1];
    let federal_reserve = matches!(prefix, 0..=12 | 21..=32 | 61..=72 | 80);
    let weighted: u32 = d
        .iter()
        .zip([3u32, 7, 1].iter().cycle())
        .map(|(&digit, &w)| u32::from(digit) * w)
        .sum();
    let valid = federal_reserve && weighted.is_multiple_of(10);
    (valid && context::appears_before(bytes, routing.span.start, ROUTING_CONTEXT))
        .then_some(routing.span)
}

/// Where a routing number that more text could still change may start.
pub(crate) fn routing_hold_from(bytes: &[u8]) -> usize {
    grouped::hold_from(bytes, ROUTING_MAX_LEN)
}

#[cfg(test)]
mod tests {
    use super::super::digits::found_by_runs as found;
    use super::*;

    #[test]
    fn finds_itins() {
        fn itins(text: &str) -> Vec<&str> {
            found(find_itin_at, text)
        }
        assert_eq!(itins("ITIN 911-70-1234 on file"), vec!["911-70-1234"]);
        assert_eq!(itins("(900-50-0001)"), vec!["900-50-0001"]);
        assert_eq!(itins("filed with 999-99-9999."), vec!["999-99-9999"]);
        assert_eq!(itins("my ITIN: 911701234"), vec!["911701234"]);
        assert_eq!(itins("taxpayer id 911 70 1234"), vec!["911 70 1234"]);
        assert_eq!(itins("TIN 911.94.1234"), vec!["911.94.1234"]);
    }

    #[test]
    fn rejects_itin_lookalikes() {
        fn itins(text: &str) -> Vec<&str> {
            found(find_itin_at, text)
        }
        for text in [
            "911-89-1234", // 89 is not issued
            "my taxpayer id 911-89-1234",
            "911-93-1234", // 93 is not issued
            "911-49-1234",
            "811-70-1234",       // not 9xx
            "order 911701234",   // bare, no context
            "ref 911 70 1234",   // spaced, no context
            "testing 911701234", // `tin` inside a word
            "911-70-12345",
            "1911-70-1234",
            "911-70-1234-5",
            "911-70-1234x",
            "ITIN 911-701234",
        ] {
            assert!(itins(text).is_empty(), "{text}: {:?}", itins(text));
        }
    }

    #[test]
    fn finds_passports_only_with_context() {
        fn passports(text: &str) -> Vec<&str> {
            found(find_passport_at, text)
        }
        assert_eq!(passports("US passport 912803456"), vec!["912803456"]);
        assert_eq!(passports("Passport No: A12345678."), vec!["A12345678"]);
        assert_eq!(passports("passport#: 340020013"), vec!["340020013"]);
        for text in [
            "912803456",
            "order A12345678",
            "passport 91280345",
            "passport 9128034567",
            "passport BA12345678",
            "passport a12345678",
            "passport 912803456.5",
            "passport 912-803-456",
        ] {
            assert!(passports(text).is_empty(), "{text}: {:?}", passports(text));
        }
    }

    #[test]
    fn finds_routing_numbers_only_with_context() {
        fn routings(text: &str) -> Vec<&str> {
            found(find_routing_at, text)
        }
        for number in [
            "121000358",
            "3222-7162-7",
            "121042882",
            "0711-0130-7",
            "011000015",
        ] {
            assert_eq!(
                routings(&format!("ABA routing number {number}.")),
                vec![number],
                "{number}"
            );
        }
        for text in [
            "121000358",           // no context
            "routing 421042111",   // checksum
            "routing 1234-0000-0", // checksum
            "routing 130000006",   // checksum ok, 13 is no Federal Reserve prefix
            "routing 12100035",    // short
            "routing 1210003580",  // long
            "routing 121-000-358", // not a routing layout
            "aba 121000358/1",
        ] {
            assert!(routings(text).is_empty(), "{text}: {:?}", routings(text));
        }
    }

    #[test]
    fn holds_cover_unfinished_numbers() {
        assert_eq!(itin_hold_from(b"itin 911-70-12"), 5);
        assert_eq!(passport_hold_from(b"passport A1234"), 9);
        assert_eq!(routing_hold_from(b"aba 3222-7162-"), 4);
        assert_eq!(routing_hold_from(b"nothing"), 7);
    }
}
