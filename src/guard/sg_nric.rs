//! Singapore NRIC and FIN numbers, `sg_nric`.
//!
//! Nine characters: a prefix letter (`S`, `T` for citizens and permanent
//! residents born before and from 2000; `F`, `G` for foreigners issued
//! before and from 2000; `M` for foreigners from 2022), seven digits and a
//! check letter: the digits weighted 2, 7, 6, 5, 4, 3, 2, plus 4 for `T`
//! and `G` and 3 for `M`, mod 11, looked up in the prefix's table.
//!
//! Reported anywhere, in capitals only (`S1234567D`): the prefix, the
//! shape and the check letter, which random text passes one time in 11,
//! are rare together outside these ids.

use std::ops::Range;

use super::boundary::{byte_before, is_word_byte};
use super::hold::trailing_run_start;

/// An NRIC is always 9 bytes.
pub(crate) const MAX_LEN: usize = 9;

const WEIGHTS: [u32; 7] = [2, 7, 6, 5, 4, 3, 2];
const CITIZEN_LETTERS: &[u8; 11] = b"JZIHGFEDCBA";
const FOREIGNER_LETTERS: &[u8; 11] = b"XWUTRQPNMLK";
/// The M series differs from F and G only at remainder 8.
const M_SERIES_LETTERS: &[u8; 11] = b"XWUTRQPNJLK";

/// The NRIC whose digits are the digit run `run`, if any.
pub(crate) fn find_at(bytes: &[u8], run: Range<usize>) -> Option<Range<usize>> {
    if run.len() != 7 {
        return None;
    }
    let start = run.start.checked_sub(1)?;
    let (offset, letters) = match bytes[start] {
        b'S' => (0, CITIZEN_LETTERS),
        b'T' => (4, CITIZEN_LETTERS),
        b'F' => (0, FOREIGNER_LETTERS),
        b'G' => (4, FOREIGNER_LETTERS),
        b'M' => (3, M_SERIES_LETTERS),
        _ => return None,
    };
    let check = *bytes.get(run.end)?;
    let end = run.end + 1;
    if byte_before(bytes, start).is_some_and(is_word_byte)
        || bytes.get(end).is_some_and(|&b| is_word_byte(b))
    {
        return None;
    }
    let sum: u32 = bytes[run]
        .iter()
        .zip(WEIGHTS)
        .map(|(&d, w)| u32::from(d - b'0') * w)
        .sum();
    (letters[((sum + offset) % 11) as usize] == check).then_some(start..end)
}

/// Where an NRIC that more text could still change may start: a prefix
/// letter starting a word in the trailing run of digits and capitals, at
/// most `MAX_LEN + 1` back.
pub(crate) fn hold_from(bytes: &[u8]) -> usize {
    let n = bytes.len();
    let run = trailing_run_start(bytes, MAX_LEN + 1, |b| {
        b.is_ascii_digit() || b.is_ascii_uppercase()
    });
    (run..n)
        .find(|&p| b"STFGM".contains(&bytes[p]) && !byte_before(bytes, p).is_some_and(is_word_byte))
        .unwrap_or(n)
}

#[cfg(test)]
mod tests {
    use super::super::digits::found_by_runs;
    use super::*;

    fn nrics(text: &str) -> Vec<&str> {
        found_by_runs(find_at, text)
    }

    #[test]
    fn finds_nrics_of_every_series() {
        for nric in [
            "S1234567D",
            "S2740116C",
            "T1234567J",
            "F1234567N",
            "G1234567X",
            "M5012345J",
            "M4332674T",
        ] {
            assert_eq!(
                nrics(&format!("NRIC {nric} was processed")),
                vec![nric],
                "{nric}"
            );
        }
        assert_eq!(nrics("S9108268C T7572225C").len(), 2);
    }

    #[test]
    fn rejects_nric_lookalikes() {
        for text in [
            "S1234567A", // check letter
            "T1234567Z",
            "A1234567Z", // no such series
            "PA12348L",
            "s1234567d",  // lower case
            "XS1234567D", // inside a word
            "S1234567DX",
            "S12345678D",
            "S123456D",
        ] {
            assert!(nrics(text).is_empty(), "{text}: {:?}", nrics(text));
        }
    }

    #[test]
    fn holds_a_prefix_starting_a_word() {
        assert_eq!(hold_from(b"nric S12345"), 5);
        assert_eq!(hold_from(b"nric XS12345"), 12);
    }
}
