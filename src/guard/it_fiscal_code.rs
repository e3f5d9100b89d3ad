//! Italian fiscal codes (*codice fiscale*), `it_fiscal_code`.
//!
//! Sixteen characters, one word: six letters (from the surname and name),
//! two digits (year of birth), a month letter (`ABCDEHLMPRST`), two digits
//! (day of birth, plus 40 for women: 01–31 or 41–71), a letter and three
//! digits (the place of birth), and a check letter computed from the other
//! fifteen (odd positions through the official conversion table, even
//! positions by value, sum mod 26). In *omocodia* (two people would get the
//! same code) digits are replaced by `LMNPQRSTUV` from the right; such codes
//! are found too, as long as one real digit is left (the candidate comes
//! from the digit-run pass; a code with all seven digits replaced is
//! missed).
//!
//! Reported anywhere, in capitals or in lower case (not mixed): the letter
//! and digit positions, the month letter, the day range and the check
//! letter together make a random 16-character word pass far less than one
//! time in a million.

use std::ops::Range;

use super::boundary::{byte_before, is_word_byte};
use super::hold::trailing_run_start;

/// A fiscal code is always 16 bytes.
pub(crate) const MAX_LEN: usize = 16;

/// Positions that hold digits (or their omocodia letters).
const DIGIT_POSITIONS: [usize; 7] = [6, 7, 9, 10, 12, 13, 14];
/// Omocodia letters, standing for 0–9.
const OMOCODIA: &[u8; 10] = b"LMNPQRSTUV";
const MONTHS: &[u8] = b"ABCDEHLMPRST";
/// Values of characters at odd (1-based) positions for the check letter:
/// `0`/`A` → 1, `1`/`B` → 0, …
const ODD_VALUES: [u8; 26] = [
    1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23,
];

/// The fiscal code whose first digit run is `run`, if any.
pub(crate) fn find_at(bytes: &[u8], run: Range<usize>) -> Option<Range<usize>> {
    if run.len() > 3 {
        return None;
    }
    // Back over the letters to the start of the word: at least the six
    // name letters, at most the fifteen before the check letter.
    let mut start = run.start;
    while start > 0 && run.start - start < MAX_LEN - 1 && bytes[start - 1].is_ascii_alphabetic() {
        start -= 1;
    }
    let end = start + MAX_LEN;
    let code = bytes.get(start..end)?;
    if run.start - start < 6
        || byte_before(bytes, start).is_some_and(is_word_byte)
        || bytes.get(end).is_some_and(|&b| is_word_byte(b))
        || !code.iter().all(u8::is_ascii_alphanumeric)
    {
        return None;
    }
    let upper = code.iter().all(|b| !b.is_ascii_lowercase());
    let lower = code.iter().all(|b| !b.is_ascii_uppercase());
    if !(upper || lower) {
        return None;
    }
    let mut code: [u8; MAX_LEN] = code.try_into().ok()?;
    code.make_ascii_uppercase();
    is_valid(&code).then_some(start..end)
}

/// Is `code` (16 capitals and digits) a well-formed fiscal code with the
/// right check letter?
fn is_valid(code: &[u8; MAX_LEN]) -> bool {
    let letters_ok = [0, 1, 2, 3, 4, 5, 8, 11, 15]
        .iter()
        .all(|&i| code[i].is_ascii_uppercase());
    let mut digits = [0u8; 7];
    for (slot, &i) in digits.iter_mut().zip(&DIGIT_POSITIONS) {
        let c = code[i];
        *slot = if c.is_ascii_digit() {
            c - b'0'
        } else if let Some(d) = OMOCODIA.iter().position(|&o| o == c) {
            d as u8
        } else {
            return false;
        };
    }
    let day = digits[2] * 10 + digits[3];
    let date_ok = MONTHS.contains(&code[8]) && matches!(day, 1..=31 | 41..=71);
    letters_ok && date_ok && check_letter(&code[..15]) == code[15]
}

/// The check letter of the first fifteen characters.
fn check_letter(first: &[u8]) -> u8 {
    let value = |c: u8| {
        if c.is_ascii_digit() {
            c - b'0'
        } else {
            c - b'A'
        }
    };
    let sum: u32 = first
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            // Positions count from 1: index 0 is odd.
            let v = value(c);
            u32::from(if i % 2 == 0 {
                ODD_VALUES[usize::from(v)]
            } else {
                v
            })
        })
        .sum();
    b'A' + (sum % 26) as u8
}

/// Where a fiscal code that more text could still change may start in
/// `bytes` (the length if nowhere): the start of the trailing word, if it
/// is at most [`MAX_LEN`] long and starts with a letter. A candidate reads
/// its sixteen characters and the byte after them.
pub(crate) fn hold_from(bytes: &[u8]) -> usize {
    let n = bytes.len();
    let word = trailing_run_start(bytes, MAX_LEN + 1, is_word_byte);
    if n - word > MAX_LEN || !bytes.get(word).is_some_and(u8::is_ascii_alphabetic) {
        return n;
    }
    word
}

#[cfg(test)]
mod tests {
    use super::super::digits::found_by_runs_resuming;
    use super::*;

    fn codes(text: &str) -> Vec<&str> {
        found_by_runs_resuming(find_at, text)
    }

    #[test]
    fn finds_fiscal_codes() {
        for code in [
            "AAAAAA00B11C333Y",
            "RSSMRA85T10A562S",
            "MRTMTT25D09F205Z",
            "BNZVCN32S10E573Z",
            "rssmra85t10a562s",
            // Omocodia: the last digit of the place code replaced by `N`.
            "RSSMRA85T10A56NH",
        ] {
            assert_eq!(
                codes(&format!("codice fiscale: {code}.")),
                vec![code],
                "{code}"
            );
        }
        assert_eq!(
            codes("AAAAAA00B11C333Y and RSSMRA85T10A562S"),
            vec!["AAAAAA00B11C333Y", "RSSMRA85T10A562S"]
        );
    }

    #[test]
    fn rejects_fiscal_code_lookalikes() {
        for text in [
            "AAAAAA00B11C333N", // check letter
            "AAAAAA - 00B11C333N",
            "A55AAA00B11C333N",
            "RSSMRA85Z10A562B",  // no month Z (check letter right)
            "RSSMRA85T35A562G",  // day 35 (check letter right)
            "RSSMRA85T10A562",   // fifteen
            "RSSMRA85T10A562SX", // seventeen
            "XRSSMRA85T10A562S",
            "RssMRA85T10A562S", // mixed case
            "RSSMRA85T10A562S_1",
            "a94a8fe5ccb19ba6", // hex
        ] {
            assert!(codes(text).is_empty(), "{text}: {:?}", codes(text));
        }
    }

    #[test]
    fn holds_the_trailing_word() {
        assert_eq!(hold_from(b"cf RSSMRA85T10A5"), 3);
        assert_eq!(hold_from(b"cf RSSMRA85T10A562S"), 3);
        assert_eq!(hold_from(b"cf RSSMRA85T10A562SX"), 20);
        assert_eq!(hold_from(b"cf 123"), 6);
    }
}
