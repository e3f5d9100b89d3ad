//! Australian business, company, tax file and Medicare numbers.
//!
//! - `au_abn`, Australian Business Number: eleven digits, `51 824 753 556`
//!   or bare, whose weighted sum (the first digit less one; weights 10, 1,
//!   3, 5, …, 19) is a multiple of 89. The spaced 2-3-3-3 form is reported
//!   anywhere: it is how ABNs are printed, and one in 89 random numbers of
//!   that rare layout passes. Bare, only after a context word (`abn`,
//!   `business number`): eleven bare digits are mostly phone numbers and
//!   ids.
//! - `au_acn`, Australian Company Number: nine digits, `004 085 616` or
//!   bare, with a mod-10 check digit (weights 8 to 1). Only after `acn` or
//!   `company number`: 3-3-3 is also how thousands are grouped, and one in
//!   ten numbers passes.
//! - `au_tfn`, Tax File Number: nine digits, `876 543 210` or bare, whose
//!   weighted sum (1, 4, 3, 7, 5, 8, 6, 9, 10) is a multiple of 11. Only
//!   after `tfn` or `tax file number`, for the same reason. (Old eight-digit
//!   TFNs are not found.)
//! - `au_medicare`: ten digits, `2123 45670 1` or bare: a first digit 2–6,
//!   a check digit in ninth place (weights 1, 3, 7, 9 on the first eight,
//!   mod 10) and the card's issue number. Only after `medicare`: one in ten
//!   numbers passes.

use std::ops::Range;

use super::context;
use super::grouped::{self, Layout, Printed};

/// Longest ABN match in bytes: `51 824 753 556`.
pub(crate) const ABN_MAX_LEN: usize = 14;
/// Longest ACN match in bytes: `004 085 616`.
pub(crate) const ACN_MAX_LEN: usize = 11;
/// Longest TFN match in bytes: `876 543 210`.
pub(crate) const TFN_MAX_LEN: usize = 11;
/// Longest Medicare number match in bytes: `2123 45670 1`.
pub(crate) const MEDICARE_MAX_LEN: usize = 12;

const ABN_LAYOUTS: &[Layout] = &[Layout {
    groups: &[2, 3, 3, 3],
    separators: b" ",
}];
const THREE_THREE_THREE: &[Layout] = &[Layout {
    groups: &[3, 3, 3],
    separators: b" -",
}];
const MEDICARE_LAYOUTS: &[Layout] = &[Layout {
    groups: &[4, 5, 1],
    separators: b" -",
}];

const ABN_CONTEXT: &[&[u8]] = &[b"abn", b"australian business number", b"business number"];
const ACN_CONTEXT: &[&[u8]] = &[b"acn", b"australian company number", b"company number"];
const TFN_CONTEXT: &[&[u8]] = &[b"tfn", b"tax file number", b"tax file no"];
const MEDICARE_CONTEXT: &[&[u8]] = &[b"medicare"];

fn weighted_sum(digits: &[u8], weights: &[u32]) -> u32 {
    digits
        .iter()
        .zip(weights)
        .map(|(&d, &w)| u32::from(d) * w)
        .sum()
}

fn with_context(printed: Printed, bytes: &[u8], words: &[&[u8]]) -> Option<Range<usize>> {
    context::appears_before(bytes, printed.span.start, words).then_some(printed.span)
}

/// The ABN starting at the digit run `run`, if any.
pub(crate) fn find_abn_at(bytes: &[u8], run: Range<usize>) -> Option<Range<usize>> {
    let abn = grouped::read(bytes, run, 11, ABN_LAYOUTS)?;
    let d = abn.digits();
    let first = u32::from(d[0]).checked_sub(1)?;
    let sum = first * 10 + weighted_sum(&d[1..], &[1, 3, 5, 7, 9, 11, 13, 15, 17, 19]);
    if !sum.is_multiple_of(89) {
        return None;
    }
    if abn.separator.is_some() {
        return Some(abn.span);
    }
    with_context(abn, bytes, ABN_CONTEXT)
}

/// The ACN starting at the digit run `run`, if any.
pub(crate) fn find_acn_at(bytes: &[u8], run: Range<usize>) -> Option<Range<usize>> {
    let acn = grouped::read(bytes, run, 9, THREE_THREE_THREE)?;
    let d = acn.digits();
    let sum = weighted_sum(&d[..8], &[8, 7, 6, 5, 4, 3, 2, 1]);
    if (10 - sum % 10) % 10 != u32::from(d[8]) {
        return None;
    }
    with_context(acn, bytes, ACN_CONTEXT)
}

/// The TFN starting at the digit run `run`, if any.
pub(crate) fn find_tfn_at(bytes: &[u8], run: Range<usize>) -> Option<Range<usize>> {
    let tfn = grouped::read(bytes, run, 9, THREE_THREE_THREE)?;
    if !weighted_sum(tfn.digits(), &[1, 4, 3, 7, 5, 8, 6, 9, 10]).is_multiple_of(11) {
        return None;
    }
    with_context(tfn, bytes, TFN_CONTEXT)
}

/// The Medicare number starting at the digit run `run`, if any.
pub(crate) fn find_medicare_at(bytes: &[u8], run: Range<usize>) -> Option<Range<usize>> {
    let medicare = grouped::read(bytes, run, 10, MEDICARE_LAYOUTS)?;
    let d = medicare.digits();
    let check = weighted_sum(&d[..8], &[1, 3, 7, 9, 1, 3, 7, 9]) % 10;
    if !(2..=6).contains(&d[0]) || check != u32::from(d[8]) {
        return None;
    }
    with_context(medicare, bytes, MEDICARE_CONTEXT)
}

/// Where an ABN that more text could still change may start.
pub(crate) fn abn_hold_from(bytes: &[u8]) -> usize {
    grouped::hold_from(bytes, ABN_MAX_LEN)
}

/// Where an ACN that more text could still change may start.
pub(crate) fn acn_hold_from(bytes: &[u8]) -> usize {
    grouped::hold_from(bytes, ACN_MAX_LEN)
}

/// Where a TFN that more text could still change may start.
pub(crate) fn tfn_hold_from(bytes: &[u8]) -> usize {
    grouped::hold_from(bytes, TFN_MAX_LEN)
}

/// Where a Medicare number that more text could still change may start.
pub(crate) fn medicare_hold_from(bytes: &[u8]) -> usize {
    grouped::hold_from(bytes, MEDICARE_MAX_LEN)
}

#[cfg(test)]
mod tests {
    use super::super::digits::found_by_runs as found;
    use super::*;

    #[test]
    fn finds_abns() {
        fn abns(text: &str) -> Vec<&str> {
            found(find_abn_at, text)
        }
        assert_eq!(abns("51 824 753 556"), vec!["51 824 753 556"]);
        assert_eq!(
            abns("Supplier 53 004 085 616, paid"),
            vec!["53 004 085 616"]
        );
        assert_eq!(abns("ABN: 51824753556."), vec!["51824753556"]);
        for text in [
            "51824753556",    // bare, no context
            "52 824 753 556", // checksum
            "ABN 52824753556",
            "5282475355632",
            "52824753556AF",
            "51 824 753 5564",
            "123 456\n789",
            "51 824 753 556 1",
            "51-824-753-556",
            "ABN 01824753556",
        ] {
            assert!(abns(text).is_empty(), "{text}: {:?}", abns(text));
        }
    }

    #[test]
    fn finds_acns_only_with_context() {
        fn acns(text: &str) -> Vec<&str> {
            found(find_acn_at, text)
        }
        for number in ["000 000 019", "005 499 981", "006249976", "004 085 616"] {
            assert_eq!(acns(&format!("ACN {number}")), vec![number], "{number}");
        }
        for text in [
            "004 085 616",     // no context
            "ACN 824 753 557", // checksum
            "ACN 824753557",
            "ACN 004 085 616 1",
            "ACN 1,004,085,616",
        ] {
            assert!(acns(text).is_empty(), "{text}: {:?}", acns(text));
        }
    }

    #[test]
    fn finds_tfns_only_with_context() {
        fn tfns(text: &str) -> Vec<&str> {
            found(find_tfn_at, text)
        }
        for number in ["876 543 210", "876543210", "123 456 782"] {
            assert_eq!(
                tfns(&format!("my TFN is {number}")),
                vec![number],
                "{number}"
            );
        }
        assert_eq!(tfns("Tax File Number: 876543210."), vec!["876543210"]);
        for text in [
            "876 543 210",     // no context
            "TFN 824 753 557", // checksum
            "TFN 824753557",
            "TFN 5282475355632",
            "TFN 876 543 2101",
        ] {
            assert!(tfns(text).is_empty(), "{text}: {:?}", tfns(text));
        }
    }

    #[test]
    fn finds_medicare_numbers_only_with_context() {
        fn medicares(text: &str) -> Vec<&str> {
            found(find_medicare_at, text)
        }
        for number in ["2123 45670 1", "2123456701", "2123-45670-1"] {
            assert_eq!(
                medicares(&format!("Medicare card {number}")),
                vec![number],
                "{number}"
            );
        }
        for text in [
            "2123 45670 1",          // no context
            "medicare 2123 25870 1", // checksum
            "medicare 2123258701",
            "medicare 212345670221",
            "medicare 2123456702AF",
            "medicare 7123456751", // first digit 7 (check digit right)
            "medicare 2123 45670 1 2",
        ] {
            assert!(medicares(text).is_empty(), "{text}: {:?}", medicares(text));
        }
    }
}
