//! Indian PAN and Aadhaar numbers.
//!
//! - `in_pan`, Permanent Account Number: ten capitals and digits,
//!   `AAAAA9999A`, whose fourth letter is the holder's type (`P` person,
//!   `C` company, `H` Hindu undivided family, `F` firm, `A` association,
//!   `T` trust, `B` body of individuals, `L` local authority, `J`
//!   artificial juridical person, `G` government). Only after a context
//!   word (`pan`, `permanent account number`, `income tax`): the last letter
//!   is a check letter whose algorithm is not public, so the shape is all
//!   there is, and booking references and SKUs have that shape too.
//! - `in_aadhaar`: twelve digits, the first 2–9, a Verhoeff check digit,
//!   not a palindrome. Printed `2345 6789 0124` (as on the card) it is
//!   reported anywhere; bare, dashed or with colons (`3123:4567:8909`) only
//!   after a context word (`aadhaar`, `aadhar`, `uidai`, `uid`): one
//!   12-digit id in ten passes Verhoeff.

use std::ops::Range;

use super::boundary::{byte_before, is_word_byte};
use super::context;
use super::grouped::{self, Layout};
use super::hold::trailing_run_start;

/// A PAN is always 10 bytes.
pub(crate) const PAN_MAX_LEN: usize = 10;
/// Longest Aadhaar match in bytes: `2345 6789 0124`.
pub(crate) const AADHAAR_MAX_LEN: usize = 14;

const PAN_HOLDER_TYPES: &[u8] = b"ABCFGHJLPT";
const PAN_CONTEXT: &[&[u8]] = &[
    b"pan",
    b"permanent account number",
    b"income tax",
    b"pan no",
];

const AADHAAR_LAYOUTS: &[Layout] = &[Layout {
    groups: &[4, 4, 4],
    separators: b" -:",
}];
const AADHAAR_CONTEXT: &[&[u8]] = &[b"aadhaar", b"aadhar", b"uidai", b"uid"];

/// Verhoeff's dihedral group D5 multiplication table.
const VERHOEFF_D: [[u8; 10]; 10] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
    [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
    [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
    [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
    [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
    [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
];
/// Verhoeff's position permutations.
const VERHOEFF_P: [[u8; 10]; 8] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
    [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
    [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
    [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
    [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
];

/// The PAN whose four digits are the digit run `run`, if any.
pub(crate) fn find_pan_at(bytes: &[u8], run: Range<usize>) -> Option<Range<usize>> {
    if run.len() != 4 {
        return None;
    }
    let start = run.start.checked_sub(5)?;
    let letters = &bytes[start..run.start];
    let last = *bytes.get(run.end)?;
    let end = run.end + 1;
    let shape_ok = letters.iter().all(u8::is_ascii_uppercase)
        && PAN_HOLDER_TYPES.contains(&letters[3])
        && last.is_ascii_uppercase()
        && !byte_before(bytes, start).is_some_and(is_word_byte)
        && !bytes.get(end).is_some_and(|&b| is_word_byte(b));
    (shape_ok && context::appears_before(bytes, start, PAN_CONTEXT)).then_some(start..end)
}

/// Where a PAN that more text could still change may start: a capital
/// starting a word in the trailing run of capitals and digits, at most
/// `PAN_MAX_LEN + 1` back.
pub(crate) fn pan_hold_from(bytes: &[u8]) -> usize {
    let n = bytes.len();
    let run = trailing_run_start(bytes, PAN_MAX_LEN + 1, |b| {
        b.is_ascii_uppercase() || b.is_ascii_digit()
    });
    (run..n)
        .find(|&p| {
            bytes[p].is_ascii_uppercase() && !byte_before(bytes, p).is_some_and(is_word_byte)
        })
        .unwrap_or(n)
}

/// The Aadhaar number starting at the digit run `run`, if any.
pub(crate) fn find_aadhaar_at(bytes: &[u8], run: Range<usize>) -> Option<Range<usize>> {
    let aadhaar = grouped::read(bytes, run, 12, AADHAAR_LAYOUTS)?;
    let d = aadhaar.digits();
    let palindrome = d.iter().eq(d.iter().rev());
    if d[0] < 2 || palindrome || !verhoeff_valid(d) {
        return None;
    }
    let context_ok = aadhaar.separator == Some(b' ')
        || context::appears_before(bytes, aadhaar.span.start, AADHAAR_CONTEXT);
    context_ok.then_some(aadhaar.span)
}

/// Where an Aadhaar number that more text could still change may start.
pub(crate) fn aadhaar_hold_from(bytes: &[u8]) -> usize {
    grouped::hold_from(bytes, AADHAAR_MAX_LEN)
}

/// The Verhoeff check over `digits` (values 0–9, check digit last).
fn verhoeff_valid(digits: &[u8]) -> bool {
    let check = digits.iter().rev().enumerate().fold(0u8, |c, (i, &d)| {
        VERHOEFF_D[usize::from(c)][usize::from(VERHOEFF_P[i % 8][usize::from(d)])]
    });
    check == 0
}

#[cfg(test)]
mod tests {
    use super::super::digits::found_by_runs as found;
    use super::*;

    #[test]
    fn finds_pans_only_with_context() {
        fn pans(text: &str) -> Vec<&str> {
            found(find_pan_at, text)
        }
        assert_eq!(
            pans("My PAN number is ABBPM4567S with a lot of text beyond it"),
            vec!["ABBPM4567S"]
        );
        assert_eq!(pans("PAN: AAACA1111R."), vec!["AAACA1111R"]);
        assert_eq!(pans("income tax id ABCPD1234Z"), vec!["ABCPD1234Z"]);
        for text in [
            "ABCPD1234Z",     // no context
            "PAN ABCND1234Z", // N is no holder type
            "PAN A1111DFSFS",
            "PAN ABCD1234",
            "PAN abcpd1234z",
            "PAN XABCPD1234Z",
            "PAN ABCPD1234ZZ",
            "PAN ABCPD12345Z",
            "Japan ABCPD1234Z", // `pan` inside a word
        ] {
            assert!(pans(text).is_empty(), "{text}: {:?}", pans(text));
        }
    }

    #[test]
    fn finds_spaced_aadhaar_anywhere_and_other_forms_with_context() {
        fn aadhaars(text: &str) -> Vec<&str> {
            found(find_aadhaar_at, text)
        }
        assert_eq!(aadhaars("3123 4567 8909"), vec!["3123 4567 8909"]);
        assert_eq!(aadhaars("id 3998 7654 3211."), vec!["3998 7654 3211"]);
        for number in ["312345678909", "3123-4567-8909", "3998:7654:3211"] {
            assert_eq!(
                aadhaars(&format!("Aadhaar {number}")),
                vec![number],
                "{number}"
            );
        }
        assert_eq!(
            aadhaars("My Aadhaar number is 400123456787 with a lot of text beyond it"),
            vec!["400123456787"]
        );
    }

    #[test]
    fn rejects_aadhaar_lookalikes() {
        fn aadhaars(text: &str) -> Vec<&str> {
            found(find_aadhaar_at, text)
        }
        for text in [
            "312345678909",         // bare, no context
            "3123-4567-8909",       // dashed, no context
            "aadhaar 123456789012", // first digit 1, Verhoeff fails
            "aadhaar 1234 5678 9012",
            "1234 5678 9012",
            "aadhaar 312345678908", // Verhoeff
            "4111 1111 1111 1111",  // a card: goes on
            "3123 4567 8909 1234",
            "12 3123 4567 8909",
            "aadhaar 3123456789091",
            "aadhaar 3123 4567-8909",
        ] {
            assert!(aadhaars(text).is_empty(), "{text}: {:?}", aadhaars(text));
        }
    }

    #[test]
    fn verhoeff_matches_known_numbers() {
        let digits = |s: &str| s.bytes().map(|b| b - b'0').collect::<Vec<u8>>();
        assert!(verhoeff_valid(&digits("2363")));
        assert!(verhoeff_valid(&digits("312345678909")));
        assert!(verhoeff_valid(&digits("400123456787")));
        assert!(!verhoeff_valid(&digits("123456789012")));
        assert!(!verhoeff_valid(&digits("2364")));
    }

    #[test]
    fn holds_cover_unfinished_ids() {
        assert_eq!(pan_hold_from(b"PAN ABCPD12"), 4);
        assert_eq!(aadhaar_hold_from(b"id 3123 4567 89"), 3);
    }
}
