//! Spanish identity numbers: the DNI/NIF of citizens and the NIE of
//! foreigners, each ending in a check letter.
//!
//! The check letter is `TRWAGMYFPDXBNJZSQVHLCKE` indexed by the number mod
//! 23, so a random number with a random capital after it passes one time
//! in 23; the shape (digits run straight into one capital) is itself rare
//! outside these ids.
//!
//! - `es_nif`: eight digits and the letter, `12345678Z` or `12345678-Z`,
//!   reported anywhere. Seven digits (a DNI whose leading zero was dropped,
//!   `1111111-G`) only after a context word (`dni`, `nif`, `documento
//!   nacional`, `identificación`), since seven digits and a capital are
//!   also how some part numbers look.
//! - `es_nie`: `X`, `Y` or `Z` (standing for 0, 1, 2), seven digits and the
//!   letter, with an optional dash after the first letter and before the
//!   last (`X9613851N`, `Y8063915-Z`, `X-1234567-L`), reported anywhere.
//!
//! Letters must be capitals: `12345678z` is more often an identifier.

use std::ops::Range;

use super::boundary::{byte_before, is_word_byte, number_starts_at};
use super::context;
use super::grouped::CONTINUING;
use super::hold::{first_from, trailing_run_start};

/// Longest NIF match in bytes: `12345678-Z`.
pub(crate) const NIF_MAX_LEN: usize = 10;
/// Longest NIE match in bytes: `X-1234567-L`.
pub(crate) const NIE_MAX_LEN: usize = 11;

const CHECK_LETTERS: &[u8; 23] = b"TRWAGMYFPDXBNJZSQVHLCKE";
const NIF_CONTEXT: &[&[u8]] = &[
    b"dni",
    b"nif",
    b"documento nacional",
    "identificación".as_bytes(),
    b"identificacion",
];

/// The NIF starting at the digit run `run`, if any.
pub(crate) fn find_nif_at(bytes: &[u8], run: Range<usize>) -> Option<Range<usize>> {
    if !matches!(run.len(), 7 | 8) || !number_starts_at(bytes, run.start, CONTINUING) {
        return None;
    }
    let (letter, end) = check_letter_after(bytes, run.end)?;
    let number = digits_value(&bytes[run.clone()]);
    let context_ok = run.len() == 8 || context::appears_before(bytes, run.start, NIF_CONTEXT);
    (letter == expected_letter(number) && context_ok).then_some(run.start..end)
}

/// Where a NIF that more text could still change may start: the first
/// digit of the trailing run of digits, dashes and capitals, at most
/// `NIF_MAX_LEN + 1` back.
pub(crate) fn nif_hold_from(bytes: &[u8]) -> usize {
    let run = trailing_run_start(bytes, NIF_MAX_LEN + 1, |b| {
        b.is_ascii_digit() || b == b'-' || b.is_ascii_uppercase()
    });
    first_from(bytes, run, |b| b.is_ascii_digit())
}

/// The NIE whose seven digits are the digit run `run`, if any.
pub(crate) fn find_nie_at(bytes: &[u8], run: Range<usize>) -> Option<Range<usize>> {
    if run.len() != 7 {
        return None;
    }
    let start = match byte_before(bytes, run.start)? {
        b'-' => run.start.checked_sub(2)?,
        _ => run.start - 1,
    };
    let prefix = match bytes[start] {
        b'X' => 0,
        b'Y' => 1,
        b'Z' => 2,
        _ => return None,
    };
    if byte_before(bytes, start).is_some_and(is_word_byte) {
        return None;
    }
    let (letter, end) = check_letter_after(bytes, run.end)?;
    let number = prefix * 10_000_000 + digits_value(&bytes[run]);
    (letter == expected_letter(number)).then_some(start..end)
}

/// Where a NIE that more text could still change may start: an `X`, `Y`
/// or `Z` starting a word in the trailing run of digits, dashes and
/// capitals, at most `NIE_MAX_LEN + 1` back.
pub(crate) fn nie_hold_from(bytes: &[u8]) -> usize {
    let n = bytes.len();
    let run = trailing_run_start(bytes, NIE_MAX_LEN + 1, |b| {
        b.is_ascii_digit() || b == b'-' || b.is_ascii_uppercase()
    });
    (run..n)
        .find(|&p| {
            matches!(bytes[p], b'X' | b'Y' | b'Z')
                && !byte_before(bytes, p).is_some_and(is_word_byte)
        })
        .unwrap_or(n)
}

/// The capital after the digits ending at `at`, or after a dash there, and
/// the end of the id: it must end the word.
fn check_letter_after(bytes: &[u8], at: usize) -> Option<(u8, usize)> {
    let at = if bytes.get(at) == Some(&b'-') {
        at + 1
    } else {
        at
    };
    let letter = *bytes.get(at)?;
    let end = at + 1;
    let ends_word = !bytes.get(end).is_some_and(|&b| is_word_byte(b));
    (letter.is_ascii_uppercase() && ends_word).then_some((letter, end))
}

fn digits_value(digits: &[u8]) -> u32 {
    digits
        .iter()
        .fold(0u32, |acc, &d| acc * 10 + u32::from(d - b'0'))
}

fn expected_letter(number: u32) -> u8 {
    CHECK_LETTERS[(number % 23) as usize]
}

#[cfg(test)]
mod tests {
    use super::super::digits::found_by_runs as found;
    use super::*;

    #[test]
    fn finds_nifs() {
        fn nifs(text: &str) -> Vec<&str> {
            found(find_nif_at, text)
        }
        for (text, nif) in [
            ("55555555K", "55555555K"),
            ("55555555-K", "55555555-K"),
            ("01111111G", "01111111G"),
            ("Mi DNI es 12345678Z.", "12345678Z"),
            ("NIF: 1111111-G", "1111111-G"),
            ("dni 1111111G", "1111111G"),
        ] {
            assert_eq!(nifs(text), vec![nif], "{text}");
        }
    }

    #[test]
    fn rejects_nif_lookalikes() {
        fn nifs(text: &str) -> Vec<&str> {
            found(find_nif_at, text)
        }
        for text in [
            "401-023-2138",
            "12345678A",        // wrong letter
            "1111111G",         // seven digits, no context
            "12345678z",        // lower case
            "12345678ZZ",       // goes on
            "X12345678Z",       // inside a word
            "123456789Z",       // nine digits
            "1.12345678Z",      // a longer number
            "20240115T103000Z", // a date and a time
            "12345678--Z",
        ] {
            assert!(nifs(text).is_empty(), "{text}: {:?}", nifs(text));
        }
    }

    #[test]
    fn finds_nies() {
        fn nies(text: &str) -> Vec<&str> {
            found(find_nie_at, text)
        }
        for (text, nie) in [
            ("Z8078221M", "Z8078221M"),
            ("X9613851N", "X9613851N"),
            ("Y8063915Z", "Y8063915Z"),
            ("Y8063915-Z", "Y8063915-Z"),
            ("Mi NIE es X9613851N", "X9613851N"),
            ("Z8078221M en mi NIE", "Z8078221M"),
            (
                "Mi Número de identificación de extranjero es Y8063915-Z",
                "Y8063915-Z",
            ),
            ("X-9613851-N", "X-9613851-N"),
        ] {
            assert_eq!(nies(text), vec![nie], "{text}");
        }
    }

    #[test]
    fn rejects_nie_lookalikes() {
        fn nies(text: &str) -> Vec<&str> {
            found(find_nie_at, text)
        }
        for text in [
            "Y8063915Q", // wrong letter
            "Y806391Q",  // six digits
            "58063915Q",
            "W8063915Q",
            "x9613851n",
            "AX9613851N",
            "X9613851NN",
            "X96138510N",
        ] {
            assert!(nies(text).is_empty(), "{text}: {:?}", nies(text));
        }
    }

    #[test]
    fn holds_cover_unfinished_ids() {
        assert_eq!(nif_hold_from(b"DNI 12345678-"), 4);
        assert_eq!(nie_hold_from(b"NIE X-961385"), 4);
        assert_eq!(nie_hold_from(b"NIE"), 3);
    }
}
