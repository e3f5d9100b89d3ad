//! Phone numbers.
//!
//! A candidate is a chain of digit groups starting at a digit run, at a `+`
//! before it, or at a `(` before it. Groups are joined by one separator
//! (space, `-`, `.`); one group may be in parentheses (`(415) 555-0132`,
//! `+44 (0)20 7946 0958`, `1 (415) 555-0132`). The whole chain must
//! validate; it is never cut shorter to make a phone number out of the
//! start of something longer.
//!
//! - *International* (starts with `+`): 8–15 digits (E.164), separators
//!   may mix, the first group (the country code) has 1–3 digits unless it
//!   is the only group (`+14155550132`).
//! - *National* (no `+`): 10–12 digits in at least two groups, one kind of
//!   separator throughout; or 9 digits after a two-digit trunk area code
//!   `0d` in groups of three or more (`09-7625400`, `03-123-4567`: Israeli
//!   and Seoul landlines). Rules that keep other numbers out:
//!   - a bare run of digits is never a phone (ids, card numbers);
//!   - with `.` only `415.555.0132`, `1.415.555.0132` and
//!     `01.23.45.67.89` (so IPs and versions are not phones);
//!   - groups of exactly three after a short first group are thousands
//!     (`1 234 567 890`);
//!   - `YYYY-MM-…` starts a date;
//!   - only the first group may have one digit, and only a trunk `0`/`1`.
//!
//! A chain cannot start right after a digit and a separator (the middle of
//! a longer number) nor end right before a separator and a digit.

use std::ops::Range;

use super::boundary::{byte_before, digit_run_end, number_ends_at, number_starts_at};
use super::hold::{first_from, trailing_run_start};

/// Longest phone match in bytes; longer chains are not phone numbers.
pub(crate) const MAX_LEN: usize = 32;

const MAX_GROUPS: usize = 8;
const INTERNATIONAL_DIGITS: Range<usize> = 8..16;
const NATIONAL_DIGITS: Range<usize> = 10..13;
/// Bytes that, next to a digit, continue a number into this one.
const CONTINUING_BEFORE: &[u8] = b" .-/:,";
const CONTINUING_AFTER: &[u8] = b".-/:,";

/// The groups of a candidate, as read.
#[derive(Default)]
struct Chain {
    /// Digits per group.
    groups: [usize; MAX_GROUPS],
    count: usize,
    digits: usize,
    /// Index of the group in parentheses.
    paren: Option<usize>,
    /// The first separator between two plain groups, if any. National
    /// numbers keep to it; international ones may mix separators.
    separator: Option<u8>,
    /// First and second digit of the first group.
    first_digit: u8,
    second_digit: u8,
    end: usize,
}

/// The phone number around the digit run `run`, if `run` starts one.
pub(crate) fn find_at(bytes: &[u8], run: Range<usize>) -> Option<Range<usize>> {
    let (start, international, opens_paren) = match byte_before(bytes, run.start) {
        Some(b'+') => (run.start - 1, true, false),
        Some(b'(') => (run.start - 1, false, true),
        _ => (run.start, false, false),
    };
    // The common case, a lone number, leaves here.
    if !international && !opens_paren && !matches!(bytes.get(run.end), Some(b' ' | b'-' | b'.')) {
        return None;
    }
    // A `+` starts a new number even right after another one.
    let continuing: &[u8] = if international {
        b""
    } else {
        CONTINUING_BEFORE
    };
    if !number_starts_at(bytes, start, continuing) {
        return None;
    }
    let chain = read_chain(bytes, run.start, opens_paren, international)?;
    let valid = if international {
        international_shape_ok(&chain)
    } else {
        national_shape_ok(&chain)
    };
    (valid && chain.end - start <= MAX_LEN && number_ends_at(bytes, chain.end, CONTINUING_AFTER))
        .then_some(start..chain.end)
}

/// Where a phone number that more text could still change may start in
/// `bytes` (the length if nowhere): the first digit, `+` or `(` of the
/// trailing run of digits, separators, parentheses and continuing
/// punctuation, at most [`MAX_LEN`] back.
///
/// A candidate reads only such bytes, then at most three more to see if
/// the chain goes on (` (4`) or two to see if a longer number does
/// (`/3`). With fewer than 16 digits and 8 groups (beyond that it is
/// rejected whatever follows) that is under 30 bytes from its start.
pub(crate) fn hold_from(bytes: &[u8]) -> usize {
    let run = trailing_run_start(bytes, MAX_LEN, |b| {
        b.is_ascii_digit() || b" .-()+/:,".contains(&b)
    });
    first_from(bytes, run, |b| b.is_ascii_digit() || b == b'+' || b == b'(')
}

/// Reads groups from the digit at `pos` while a separator and another
/// group follow. `None` if the chain has too many digits or groups to be a
/// phone number at all.
fn read_chain(
    bytes: &[u8],
    mut pos: usize,
    opens_paren: bool,
    international: bool,
) -> Option<Chain> {
    let mut chain = Chain {
        first_digit: bytes.get(pos).copied().unwrap_or(b'0'),
        second_digit: bytes.get(pos + 1).copied().unwrap_or(b'0'),
        ..Chain::default()
    };
    let mut in_paren = opens_paren;
    loop {
        let end = digit_run_end(bytes, pos);
        chain.digits += end - pos;
        if chain.digits >= INTERNATIONAL_DIGITS.end || chain.count == MAX_GROUPS {
            return None;
        }
        chain.groups[chain.count] = end - pos;
        if in_paren {
            chain.paren = Some(chain.count);
        }
        chain.count += 1;
        pos = end;

        if in_paren {
            in_paren = false;
            if bytes.get(pos) != Some(&b')') {
                return None;
            }
            pos += 1;
            match (bytes.get(pos), bytes.get(pos + 1)) {
                (Some(d), _) if d.is_ascii_digit() => continue,
                (Some(b' ' | b'-'), Some(d)) if d.is_ascii_digit() => {
                    pos += 1;
                    continue;
                }
                _ => break,
            }
        }

        match (bytes.get(pos), bytes.get(pos + 1), bytes.get(pos + 2)) {
            (Some(&sep @ (b' ' | b'-' | b'.')), Some(d), _) if d.is_ascii_digit() => {
                match chain.separator {
                    None => chain.separator = Some(sep),
                    Some(s) if s == sep => {}
                    // A national number ends where its separator changes.
                    Some(_) if !international => break,
                    Some(_) => {}
                }
                pos += 1;
            }
            (Some(b' ' | b'-'), Some(b'('), Some(d))
                if d.is_ascii_digit() && chain.paren.is_none() =>
            {
                in_paren = true;
                pos += 2;
            }
            _ => break,
        }
    }
    chain.end = pos;
    Some(chain)
}

fn international_shape_ok(chain: &Chain) -> bool {
    let groups = &chain.groups[..chain.count];
    INTERNATIONAL_DIGITS.contains(&chain.digits)
        && (chain.count == 1 || (1..=3).contains(&groups[0]))
        && chain.paren.is_none_or(|i| (1..=4).contains(&groups[i]))
}

fn national_shape_ok(chain: &Chain) -> bool {
    let groups = &chain.groups[..chain.count];
    let trunk_area_nine = chain.digits == 9
        && groups[0] == 2
        && chain.first_digit == b'0'
        && (b'1'..=b'9').contains(&chain.second_digit)
        && groups[1..].iter().all(|&g| g >= 3);
    if !(NATIONAL_DIGITS.contains(&chain.digits) || trunk_area_nine) || chain.count < 2 {
        return false;
    }
    if groups[1..].iter().any(|&g| g < 2) || groups.iter().any(|&g| g > 8) {
        return false;
    }
    let trunk = groups[0] == 1;
    if trunk && !matches!(chain.first_digit, b'0' | b'1') {
        return false;
    }
    match chain.paren {
        // An area code, first or after a trunk digit.
        Some(i) => (i == 0 || (i == 1 && trunk)) && (2..=4).contains(&groups[i]),
        None => {
            if groups[0] > 5 {
                return false;
            }
            let thousands =
                chain.count >= 3 && groups[0] <= 3 && groups[1..].iter().all(|&g| g == 3);
            let date = chain.separator == Some(b'-')
                && groups[0] == 4
                && groups[1] == 2
                && matches!(chain.first_digit, b'1' | b'2');
            let dotted_ok = chain.separator != Some(b'.')
                || groups == [3, 3, 4]
                || (trunk && groups == [1, 3, 3, 4])
                || (groups == [2, 2, 2, 2, 2] && chain.first_digit == b'0');
            !thousands && !date && dotted_ok
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::digits::digit_runs;
    use super::*;

    fn phones(text: &str) -> Vec<&str> {
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
    fn finds_international_and_national_forms() {
        for number in [
            "+14155550132",
            "+1 415 555 0132",
            "+1 415-555-0132",
            "+1 (415) 555-0132",
            "+44 20 7946 0958",
            "+44 (0)20 7946 0958",
            "+49 30 12345678",
            "+33 1 23 45 67 89",
            "(415) 555-0132",
            "(415)555-0132",
            "415-555-0132",
            "415.555.0132",
            "415 555 0132",
            "1-415-555-0132",
            "1 (415) 555-0132",
            "020 7946 0958",
            "07700 900123",
            "030 12345678",
            "01 23 45 67 89",
            "01.23.45.67.89",
            // Israel: mobile, landline, international.
            "052-1234567",
            "09-7625400",
            "03-123-4567",
            "(03) 123-4567",
            "+972-52-123-4567",
            "+972 52 123 4567",
            "+972521234567",
        ] {
            assert_eq!(phones(&format!("call {number}.")), vec![number], "{number}");
        }
    }

    #[test]
    fn a_phone_ends_where_its_separator_changes() {
        assert_eq!(phones("call 415-555-0132 12 times"), vec!["415-555-0132"]);
    }

    #[test]
    fn rejects_numbers_that_are_not_phones() {
        for text in [
            "4155550132",                               // bare run: an id, not a phone
            "4111111111111111",                         // card number
            "4111 1111 1111 1111",                      // grouped card number
            "2024-01-15",                               // date
            "2024-01-15 10:30:00",                      // timestamp
            "2024-01-15-1234",                          // date-based id
            "1.2.3.4.5",                                // version
            "10.11.12.13.14",                           // version
            "192.168.100.200",                          // IPv4
            "123-45-6789",                              // SSN shape, 9 digits
            "1 234 567 890",                            // thousands
            "+123",                                     // too short
            "+1234567890123456",                        // too long for E.164
            "+2024-01-15",                              // date after a plus
            "x+14155550132",                            // inside an expression
            "v415-555-0132",                            // inside a word
            "415-555-0132/3",                           // longer number
            "415-555-0132.5",                           // longer number
            "12-1234567",                               // 9 digits, no trunk 0
            "00-1234567",                               // 9 digits, no area
            "09.762.5400",                              // 9 digits, dotted
            "09-76-25-400",                             // 9 digits, short groups
            "123e4567-e89b-12d3-a456-426614174000",     // UUID
            "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3", // git sha
        ] {
            assert!(phones(text).is_empty(), "{text}: {:?}", phones(text));
        }
    }

    #[test]
    fn every_match_fits_the_maximum_length() {
        let text = "+44 (0)20 7946 0958 +1 415-555-0132 +123456789012345";
        for phone in phones(text) {
            assert!(phone.len() <= MAX_LEN, "{phone}");
        }
        assert_eq!(phones(text).len(), 3);
    }
}
