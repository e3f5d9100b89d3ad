//! Payment card numbers (PANs).
//!
//! A candidate is a chain of digit *groups*: the first group is a whole
//! digit run of 4–19 digits; further groups (3+ digits) follow after a
//! single space or dash, the same separator throughout (`4111 1111 1111
//! 1111`, `3782-822463-10005`, `4111111111111111`). A card is the longest
//! prefix of the chain with 13–19 digits that passes:
//! - the network's prefix (IIN range) and length: Visa 4 (13, 16, 19),
//!   Mastercard 51–55 and 2221–2720 (16), Amex 34/37 (15), Discover 6011,
//!   644–649 and 65 (16–19), JCB 3528–3589 (16–19), Diners 36, 38 and
//!   300–305 (14–19), UnionPay 62 (16–19), UATP 1 (15), Dankort 5019
//!   (16), Maestro UK 6759 (16–19);
//! - the Luhn check digit.
//!
//! Groups are whole digit runs, so a card is never cut out of a longer run
//! of digits (a 20-digit id is not a card). A chain may start at any run,
//! so `ref 12 4111 1111 1111 1111` still finds the card. A decimal point on
//! either side (`0.4111…`) means it is a fraction, not a card.

use std::ops::Range;

use super::boundary::{digit_run_end, number_ends_at, number_starts_at};
use super::hold::{first_from, trailing_run_start};

/// Longest card match in bytes: 19 digits and 18 separators.
pub(crate) const MAX_LEN: usize = 19 + 18;

const MIN_DIGITS: usize = 13;
const MAX_DIGITS: usize = 19;
/// Real cards print in at most 5 groups; 8 leaves room for odd layouts.
const MAX_GROUPS: usize = 8;
/// Bytes that, followed by a digit, continue a number: a decimal point.
const CONTINUING: &[u8] = b".";

/// The card number whose first group is the digit run `first`, if any.
pub(crate) fn find_at(bytes: &[u8], first: Range<usize>) -> Option<Range<usize>> {
    if !(4..=MAX_DIGITS).contains(&first.len()) || !number_starts_at(bytes, first.start, CONTINUING)
    {
        return None;
    }
    let mut groups = [(0usize, 0usize); MAX_GROUPS];
    groups[0] = (first.start, first.end);
    let mut count = 1;
    let mut digits = first.len();
    let mut separator = None;
    while count < MAX_GROUPS {
        let end = groups[count - 1].1;
        let sep = match bytes.get(end) {
            Some(&b @ (b' ' | b'-')) if separator.is_none_or(|s| s == b) => b,
            _ => break,
        };
        let group_end = digit_run_end(bytes, end + 1);
        let len = group_end - (end + 1);
        if len < 3 || digits + len > MAX_DIGITS {
            break;
        }
        separator = Some(sep);
        groups[count] = (end + 1, group_end);
        count += 1;
        digits += len;
    }

    // Longest prefix of the chain first.
    for taken in (1..=count).rev() {
        let chain = &groups[..taken];
        let total: usize = chain.iter().map(|(s, e)| e - s).sum();
        let end = chain[taken - 1].1;
        if !(MIN_DIGITS..=MAX_DIGITS).contains(&total) || !number_ends_at(bytes, end, CONTINUING) {
            continue;
        }
        let mut pan = [0u8; MAX_DIGITS];
        let mut n = 0;
        for &(s, e) in chain {
            for &b in &bytes[s..e] {
                pan[n] = b - b'0';
                n += 1;
            }
        }
        if is_valid_pan(&pan[..n]) {
            return Some(first.start..end);
        }
    }
    None
}

/// Where a card that more text could still change may start in `bytes`
/// (the length if nowhere): the first digit of the trailing run of digits,
/// spaces, dashes and dots, at most [`MAX_LEN`] back.
///
/// A candidate reads, from its first digit, only digits and separators,
/// then one byte past them (two if it is a `.`: `4111….5` is a fraction).
/// So a decision that reads past the end started inside that run, and at
/// most 19 digits, 7 separators and a dot before the end.
pub(crate) fn hold_from(bytes: &[u8]) -> usize {
    let run = trailing_run_start(bytes, MAX_LEN, |b| {
        b.is_ascii_digit() || matches!(b, b' ' | b'-' | b'.')
    });
    first_from(bytes, run, |b| b.is_ascii_digit())
}

/// Does `digits` (values 0–9) have a known network prefix and length and a
/// valid Luhn check digit?
pub(crate) fn is_valid_pan(digits: &[u8]) -> bool {
    network_accepts(digits) && luhn_valid(digits)
}

/// The Luhn mod-10 check: from the right, double every second digit.
fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Does the number start with an issuer prefix of a major network, and
/// have a length that network issues?
fn network_accepts(digits: &[u8]) -> bool {
    if digits.len() < 4 {
        return false;
    }
    let prefix = |n: usize| {
        digits[..n]
            .iter()
            .fold(0u32, |acc, &d| acc * 10 + u32::from(d))
    };
    let (p1, p2, p3, p4) = (prefix(1), prefix(2), prefix(3), prefix(4));
    let len = digits.len();
    let visa = p1 == 4 && matches!(len, 13 | 16 | 19);
    let mastercard = ((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && len == 16;
    let amex = matches!(p2, 34 | 37) && len == 15;
    let discover =
        (p4 == 6011 || p2 == 65 || (644..=649).contains(&p3)) && (16..=19).contains(&len);
    let jcb = (3528..=3589).contains(&p4) && (16..=19).contains(&len);
    let diners = (matches!(p2, 36 | 38) || (300..=305).contains(&p3)) && (14..=19).contains(&len);
    let unionpay = p2 == 62 && (16..=19).contains(&len);
    let uatp = p1 == 1 && len == 15;
    let dankort = p4 == 5019 && len == 16;
    let maestro_uk = p4 == 6759 && (16..=19).contains(&len);
    visa || mastercard
        || amex
        || discover
        || jcb
        || diners
        || unionpay
        || uatp
        || dankort
        || maestro_uk
}

#[cfg(test)]
mod tests {
    use super::super::digits::digit_runs;
    use super::*;

    /// Every card the detector reports in `text`, trying each digit run as
    /// a start the way the scanner does.
    fn cards(text: &str) -> Vec<&str> {
        let bytes = text.as_bytes();
        let mut resume = 0;
        let mut found = Vec::new();
        for run in digit_runs(bytes) {
            if run.start < resume {
                continue;
            }
            if let Some(m) = find_at(bytes, run) {
                resume = m.end;
                found.push(&text[m]);
            }
        }
        found
    }

    #[test]
    fn finds_test_cards_of_every_network() {
        for pan in [
            "4111111111111111",    // Visa
            "4222222222222",       // Visa, 13 digits
            "5555555555554444",    // Mastercard
            "2221000000000009",    // Mastercard 2-series
            "378282246310005",     // Amex
            "6011111111111117",    // Discover
            "3530111333300000",    // JCB
            "30569309025904",      // Diners
            "6200000000000005",    // UnionPay
            "6205500000000000004", // UnionPay, 19 digits
            "122000000000003",     // UATP (AirPlus)
            "5019717010103742",    // Dankort
            "6759649826438453",    // Maestro UK
            "6759000000000000005", // Maestro UK, 19 digits
        ] {
            assert_eq!(cards(&format!("card: {pan}.")), vec![pan], "{pan}");
        }
    }

    #[test]
    fn finds_grouped_cards() {
        for text in [
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "3782 822463 10005",
            "5555-5555-5555-4444",
        ] {
            assert_eq!(cards(&format!("pay with {text}, thanks")), vec![text]);
        }
        // A card followed by an expiry and a CVV still ends at the card.
        assert_eq!(
            cards("4111 1111 1111 1111 12/27 123"),
            vec!["4111 1111 1111 1111"]
        );
        // A chain may start after an unrelated number.
        assert_eq!(
            cards("ref 12 4111 1111 1111 1111"),
            vec!["4111 1111 1111 1111"]
        );
    }

    #[test]
    fn rejects_luhn_failures_and_unknown_networks() {
        assert!(cards("4111111111111112").is_empty(), "Luhn fails");
        assert!(cards("4111 1111 1111 1112").is_empty(), "Luhn fails");
        assert!(cards("1234567812345670").is_empty(), "Luhn ok, no network");
        assert!(cards("1220000000000002").is_empty(), "UATP has 15 digits");
        assert!(cards("122000000000004").is_empty(), "UATP, Luhn fails");
        assert!(cards("50197170101037").is_empty(), "Dankort has 16 digits");
        assert!(
            cards("6759649826438454").is_empty(),
            "Maestro UK, Luhn fails"
        );
        assert!(
            cards("411111111111111").is_empty(),
            "Visa has no 15-digit PANs"
        );
        // A one-digit group after the card is not part of it.
        assert_eq!(cards("378282246310005 0"), vec!["378282246310005"]);
    }

    #[test]
    fn rejects_numbers_inside_longer_numbers_and_words() {
        assert!(cards("41111111111111110").is_empty(), "17-digit Visa");
        assert!(cards("94111111111111111111").is_empty(), "20-digit run");
        assert!(cards("id x4111111111111111").is_empty(), "inside a word");
        assert!(cards("4111111111111111x").is_empty(), "inside a word");
        assert!(cards("0.4111111111111111").is_empty(), "a fraction");
        assert!(cards("4111111111111111.5").is_empty(), "a fraction");
        assert!(cards("4111 1111-1111 1111").is_empty(), "mixed separators");
        assert!(cards("4111  1111  1111  1111").is_empty(), "double spaces");
        assert!(cards("2024-01-15 2024-01-16").is_empty(), "dates");
    }
}
