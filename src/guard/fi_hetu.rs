//! Finnish personal identity codes (*henkilötunnus*, HETU), `fi_hetu`.
//!
//! Eleven characters, `DDMMYYCZZZQ`: the date of birth, a century sign
//! (`+` for the 1800s; `-`, `U`–`Y` for the 1900s; `A`–`F` for the 2000s),
//! an individual number 002–999 (900–999 are temporary codes) and a check
//! character, `0123456789ABCDEFHJKLMNPRSTUVWXY` indexed by the nine digits
//! mod 31. The date must exist.
//!
//! Reported anywhere when the century sign or the check character is a
//! letter (`131052-308T`, `010594Y9032`): a date, a letter and a check that
//! random text passes one time in 31. When both are not (`311280-1234`, a
//! date, a dash and four digits, which is also how many order and case
//! numbers look) only after a context word (`hetu`, `henkilötunnus`,
//! `personal identity code`, `sotu`).

use std::ops::Range;

use super::boundary::{is_word_byte, number_starts_at};
use super::context;
use super::dates::is_valid_date;
use super::grouped::CONTINUING;
use super::hold::{first_from, trailing_run_start};

/// A HETU is always 11 bytes.
pub(crate) const MAX_LEN: usize = 11;

const CHECK_CHARS: &[u8; 31] = b"0123456789ABCDEFHJKLMNPRSTUVWXY";
const CONTEXT: &[&[u8]] = &[
    b"hetu",
    "henkilötunnus".as_bytes(),
    b"henkilotunnus",
    b"personal identity code",
    b"identity code",
    b"sotu",
    b"personbeteckning",
];

/// The HETU whose date is the digit run `run`, if any.
pub(crate) fn find_at(bytes: &[u8], run: Range<usize>) -> Option<Range<usize>> {
    if run.len() != 6 || !number_starts_at(bytes, run.start, CONTINUING) {
        return None;
    }
    let code = bytes.get(run.start..run.start + MAX_LEN)?;
    let end = run.start + MAX_LEN;
    let century = match code[6] {
        b'+' => 1800,
        b'-' | b'U'..=b'Y' => 1900,
        b'A'..=b'F' => 2000,
        _ => return None,
    };
    if !code[7..10].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let check = code[10];
    let continues = match bytes.get(end) {
        Some(&b) if is_word_byte(b) => true,
        // `…-1234.5`, `…-1234-5`: a longer number.
        Some(b'.' | b'-') => {
            check.is_ascii_digit() && bytes.get(end + 1).is_some_and(u8::is_ascii_digit)
        }
        _ => false,
    };
    if continues {
        return None;
    }
    let digit = |i: usize| u32::from(code[i] - b'0');
    let (day, month, year) = (
        digit(0) * 10 + digit(1),
        digit(2) * 10 + digit(3),
        century + digit(4) * 10 + digit(5),
    );
    let individual = digit(7) * 100 + digit(8) * 10 + digit(9);
    let nine = (0..6).chain(7..10).fold(0u32, |acc, i| acc * 10 + digit(i));
    let valid = is_valid_date(year, month, day)
        && individual >= 2
        && CHECK_CHARS[(nine % 31) as usize] == check;
    let plain = matches!(code[6], b'-' | b'+') && check.is_ascii_digit();
    let context_ok = !plain || context::appears_before(bytes, run.start, CONTEXT);
    (valid && context_ok).then_some(run.start..end)
}

/// Where a HETU that more text could still change may start: the first
/// digit of the trailing run of digits, capitals and `+-.`, at most
/// `MAX_LEN + 1` back (`…-1234` followed by `.5`).
pub(crate) fn hold_from(bytes: &[u8]) -> usize {
    let run = trailing_run_start(bytes, MAX_LEN + 1, |b| {
        b.is_ascii_digit() || b.is_ascii_uppercase() || matches!(b, b'+' | b'-' | b'.')
    });
    first_from(bytes, run, |b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::super::digits::found_by_runs;
    use super::*;

    fn hetus(text: &str) -> Vec<&str> {
        found_by_runs(find_at, text)
    }

    #[test]
    fn finds_hetus() {
        for code in [
            "131052-308T",
            "010594Y9032",
            "010594Y9021",
            "020594X903P",
            "020594X902N",
            "030594W903B",
            "030694W9024",
            "040594V9030",
            "040594V902Y",
            "050594U903M",
            "050594U902L",
            "010516B903X",
            "010516B902W",
            "020516C903K",
            "020516C902J",
            "030516D9037",
            "030516D9026",
            "010501E9032",
            "020502E902X",
            "020503F9037",
            "020504A902E",
            "020504B904H",
        ] {
            assert_eq!(hetus(&format!("HETU {code}.")), vec![code], "{code}");
            assert_eq!(hetus(&format!("({code})")), vec![code], "{code}");
        }
        assert_eq!(
            hetus("My personal identity code is: 010594Y9032. Thank you."),
            vec!["010594Y9032"]
        );
        assert_eq!(
            hetus("Here's my henkilötunnus 020594X902N."),
            vec!["020594X902N"]
        );
        assert_eq!(hetus("henkilötunnus 311280-9200"), vec!["311280-9200"]);
    }

    #[test]
    fn rejects_hetu_lookalikes() {
        for text in [
            "111111-111A", // check character
            "111111+110G",
            "311190-1111",
            "310289-211C", // 31 February
            "012245A110G", // month 22
            "010324A110G",
            "311280-9200", // digits only, no context
            "order 240115-1190",
            "131052-308T5",
            "131052-308TX",
            "x131052-308T",
            "131052-000V", // individual number 000 (check right)
            "131052_308T",
        ] {
            assert!(hetus(text).is_empty(), "{text}: {:?}", hetus(text));
        }
    }
}
