//! Polish PESEL numbers, `pl_pesel`.
//!
//! Eleven digits, written bare: `YYMMDD` (the month plus 20, 40, 60 or 80
//! for births in 2000–2299 or the 1800s), four serial digits and a check
//! digit (weights 1, 3, 7, 9, repeating; the check makes the sum a multiple
//! of 10). The date must exist.
//!
//! Reported only after the context word `pesel`: eleven bare digits are
//! often a phone number in E.164 without the `+` or an account id, and
//! about one in fifty random ones has a valid date and check digit.

use std::ops::Range;

use super::context;
use super::dates::is_valid_date;
use super::grouped;

/// A PESEL is always 11 digits.
pub(crate) const MAX_LEN: usize = 11;

const CONTEXT: &[&[u8]] = &[b"pesel"];
const WEIGHTS: [u32; 10] = [1, 3, 7, 9, 1, 3, 7, 9, 1, 3];

/// The PESEL that is the digit run `run`, if any.
pub(crate) fn find_at(bytes: &[u8], run: Range<usize>) -> Option<Range<usize>> {
    let pesel = grouped::read(bytes, run, MAX_LEN, &[])?;
    (is_valid(pesel.digits()) && context::appears_before(bytes, pesel.span.start, CONTEXT))
        .then_some(pesel.span)
}

/// Are `d` (11 values 0–9) a PESEL with a real date and the right check
/// digit?
fn is_valid(d: &[u8]) -> bool {
    let n = |i: usize| u32::from(d[i]);
    let (yy, mm, dd) = (n(0) * 10 + n(1), n(2) * 10 + n(3), n(4) * 10 + n(5));
    let (century, month) = match mm {
        81..=92 => (1800, mm - 80),
        1..=12 => (1900, mm),
        21..=32 => (2000, mm - 20),
        41..=52 => (2100, mm - 40),
        61..=72 => (2200, mm - 60),
        _ => return false,
    };
    let sum: u32 = WEIGHTS.iter().enumerate().map(|(i, w)| n(i) * w).sum();
    is_valid_date(century + yy, month, dd) && (10 - sum % 10) % 10 == n(10)
}

/// Where a PESEL that more text could still change may start.
pub(crate) fn hold_from(bytes: &[u8]) -> usize {
    grouped::hold_from(bytes, MAX_LEN)
}

#[cfg(test)]
mod tests {
    use super::super::digits::found_by_runs;
    use super::*;

    fn pesels(text: &str) -> Vec<&str> {
        found_by_runs(find_at, text)
    }

    #[test]
    fn finds_pesels_after_the_word_pesel() {
        for (text, pesel) in [
            ("PESEL: 44051401359", "44051401359"),
            ("My pesel is 11111111116.", "11111111116"),
            ("numer PESEL 02270803624", "02270803624"),
            ("PESEL 87123012343", "87123012343"),
        ] {
            assert_eq!(pesels(text), vec![pesel], "{text}");
        }
    }

    #[test]
    fn rejects_pesel_lookalikes() {
        for text in [
            "44051401359", // no context
            "tel. 44051401359",
            "PESEL 44051401358", // check digit
            "PESEL 1111321111",  // ten digits
            "PESEL 11110021111", // month 00
            "PESEL 11-11-11-11114",
            "PESEL 440514013590",
            "PESEL 44023001356", // 30 February (check digit right)
            "PESEL 4405140135.9",
        ] {
            assert!(pesels(text).is_empty(), "{text}: {:?}", pesels(text));
        }
    }
}
