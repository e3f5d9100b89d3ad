//! International Bank Account Numbers (ISO 13616).
//!
//! An IBAN is a country code (two letters), two check digits and a BBAN of
//! letters and digits; the total length is fixed per country
//! ([`COUNTRY_LENGTHS`]: every country of the SWIFT IBAN registry, release
//! 100 of 2025, Libya, Somalia, Sudan, Burundi, Djibouti, the Falklands,
//! Honduras, Mongolia, Nicaragua, Oman, Russia and Yemen included). Written
//! compact (`DE89370400440532013000`) or printed in groups of four
//! (`DE89 3704 0044 0532 0130 00`, `DE89-3704-0044-0532-0130-00`): a single
//! space or dash, the same throughout, may follow any fourth character,
//! nowhere else. Letters in either case.
//!
//! The candidate comes from the digit-run pass: a run of digits right after
//! two letters that start a word. It is an IBAN if the country is known,
//! exactly the country's length of characters follows (not more: the next
//! byte must not continue the word), and the mod-97 check (ISO 7064) gives
//! 1, which a typo or a random string passes one time in 97.

use std::ops::Range;

use super::boundary::{number_ends_at, number_starts_at};
use super::hold::trailing_run_start;

/// Longest IBAN match in bytes: 34 characters and a space after every four.
pub(crate) const MAX_LEN: usize = 34 + 8;

/// Total IBAN length per country, sorted by country code.
const COUNTRY_LENGTHS: &[([u8; 2], usize)] = &[
    (*b"AD", 24),
    (*b"AE", 23),
    (*b"AL", 28),
    (*b"AT", 20),
    (*b"AZ", 28),
    (*b"BA", 20),
    (*b"BE", 16),
    (*b"BG", 22),
    (*b"BH", 22),
    (*b"BI", 27),
    (*b"BR", 29),
    (*b"BY", 28),
    (*b"CH", 21),
    (*b"CR", 22),
    (*b"CY", 28),
    (*b"CZ", 24),
    (*b"DE", 22),
    (*b"DJ", 27),
    (*b"DK", 18),
    (*b"DO", 28),
    (*b"EE", 20),
    (*b"EG", 29),
    (*b"ES", 24),
    (*b"FI", 18),
    (*b"FK", 18),
    (*b"FO", 18),
    (*b"FR", 27),
    (*b"GB", 22),
    (*b"GE", 22),
    (*b"GI", 23),
    (*b"GL", 18),
    (*b"GR", 27),
    (*b"GT", 28),
    (*b"HN", 28),
    (*b"HR", 21),
    (*b"HU", 28),
    (*b"IE", 22),
    (*b"IL", 23),
    (*b"IQ", 23),
    (*b"IS", 26),
    (*b"IT", 27),
    (*b"JO", 30),
    (*b"KW", 30),
    (*b"KZ", 20),
    (*b"LB", 28),
    (*b"LC", 32),
    (*b"LI", 21),
    (*b"LT", 20),
    (*b"LU", 20),
    (*b"LV", 21),
    (*b"LY", 25),
    (*b"MC", 27),
    (*b"MD", 24),
    (*b"ME", 22),
    (*b"MK", 19),
    (*b"MN", 20),
    (*b"MR", 27),
    (*b"MT", 31),
    (*b"MU", 30),
    (*b"NI", 28),
    (*b"NL", 18),
    (*b"NO", 15),
    (*b"OM", 23),
    (*b"PK", 24),
    (*b"PL", 28),
    (*b"PS", 29),
    (*b"PT", 25),
    (*b"QA", 29),
    (*b"RO", 24),
    (*b"RS", 22),
    (*b"RU", 33),
    (*b"SA", 24),
    (*b"SC", 31),
    (*b"SD", 18),
    (*b"SE", 24),
    (*b"SI", 19),
    (*b"SK", 24),
    (*b"SM", 27),
    (*b"SO", 23),
    (*b"ST", 25),
    (*b"SV", 28),
    (*b"TL", 23),
    (*b"TN", 24),
    (*b"TR", 26),
    (*b"UA", 29),
    (*b"VA", 22),
    (*b"VG", 24),
    (*b"XK", 20),
    (*b"YE", 30),
];

const MAX_CHARS: usize = 34;

/// The IBAN whose check digits start the digit run `run`, if any.
pub(crate) fn find_at(bytes: &[u8], run: Range<usize>) -> Option<Range<usize>> {
    let start = run.start.checked_sub(2)?;
    let (c0, c1) = (bytes[start], bytes[start + 1]);
    if !c0.is_ascii_alphabetic() || !c1.is_ascii_alphabetic() || run.len() < 2 {
        return None;
    }
    if !number_starts_at(bytes, start, b"") {
        return None;
    }
    let country = [c0.to_ascii_uppercase(), c1.to_ascii_uppercase()];
    let length = country_length(country)?;

    let mut chars = [0u8; MAX_CHARS];
    chars[..2].copy_from_slice(&country);
    let mut count = 2;
    let mut pos = run.start;
    let mut separator = None;
    while count < length {
        match bytes.get(pos) {
            Some(&b) if b.is_ascii_alphanumeric() => {
                chars[count] = b.to_ascii_uppercase();
                count += 1;
                pos += 1;
            }
            // The printed form: a single space or dash after every fourth
            // character, the same one throughout.
            Some(&sep @ (b' ' | b'-'))
                if count % 4 == 0
                    && separator.is_none_or(|s| s == sep)
                    && bytes.get(pos + 1).is_some_and(u8::is_ascii_alphanumeric) =>
            {
                separator = Some(sep);
                pos += 1;
            }
            _ => return None,
        }
    }
    // `DE89-3704-…-00-1` goes on past the IBAN's length.
    let dash_continues = separator == Some(b'-')
        && bytes.get(pos) == Some(&b'-')
        && bytes.get(pos + 1).is_some_and(u8::is_ascii_alphanumeric);
    if !number_ends_at(bytes, pos, b"") || dash_continues {
        return None;
    }
    mod97_is_one(&chars[..length]).then_some(start..pos)
}

/// Where an IBAN that more text could still change may start in `bytes`
/// (the length if nowhere).
///
/// A candidate is two letters starting a word, then a digit run, then
/// letters, digits and single spaces or dashes up to the country's length,
/// decided by the byte after (two if it is a dash): one that reads past the
/// end lies in the trailing run of letters, digits, spaces and dashes,
/// within `MAX_LEN + 1`. Its first two bytes are letters and the third a
/// digit, unless the end comes first.
pub(crate) fn hold_from(bytes: &[u8]) -> usize {
    let n = bytes.len();
    let run = trailing_run_start(bytes, MAX_LEN + 1, |b| {
        b.is_ascii_alphanumeric() || b == b' ' || b == b'-'
    });
    let starts_here = |p: usize| {
        bytes[p].is_ascii_alphabetic()
            && bytes.get(p + 1).is_none_or(u8::is_ascii_alphabetic)
            && bytes.get(p + 2).is_none_or(u8::is_ascii_digit)
            && number_starts_at(bytes, p, b"")
    };
    (run..n).find(|&p| starts_here(p)).unwrap_or(n)
}

fn country_length(country: [u8; 2]) -> Option<usize> {
    COUNTRY_LENGTHS
        .binary_search_by_key(&country, |&(code, _)| code)
        .ok()
        .map(|i| COUNTRY_LENGTHS[i].1)
}

/// ISO 7064 mod 97-10 over the IBAN moved four characters left, letters
/// as 10–35. `iban` is uppercase alphanumeric.
fn mod97_is_one(iban: &[u8]) -> bool {
    let (head, tail) = iban.split_at(4);
    let remainder = tail.iter().chain(head).fold(0u32, |acc, &c| {
        if c.is_ascii_digit() {
            (acc * 10 + u32::from(c - b'0')) % 97
        } else {
            (acc * 100 + u32::from(c - b'A' + 10)) % 97
        }
    });
    // Check digits are digits; `GBAB…` would otherwise pass by accident.
    head[2].is_ascii_digit() && head[3].is_ascii_digit() && remainder == 1
}

#[cfg(test)]
mod tests {
    use super::super::digits::found_by_runs;
    use super::*;

    fn ibans(text: &str) -> Vec<&str> {
        found_by_runs(find_at, text)
    }

    #[test]
    fn country_table_is_sorted_for_binary_search() {
        assert!(COUNTRY_LENGTHS.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(COUNTRY_LENGTHS
            .iter()
            .all(|&(_, len)| (15..=MAX_CHARS).contains(&len)));
    }

    #[test]
    fn finds_valid_ibans_compact_and_grouped() {
        for iban in [
            "DE89 3704 0044 0532 0130 00",
            "DE89370400440532013000",
            "GB82 WEST 1234 5698 7654 32",
            "FR14 2004 1010 0505 0001 3M02 606",
            "NL91ABNA0417164300",
            "CH9300762011623852957",
            "BE68539007547034",
            "NO9386011117947",
            "ES9121000418450200051332",
            "IT60X0542811101000000123456",
            "gb82west12345698765432",
            // Spaces where the print groups fall, even if some are missing.
            "DE89 37040044 0532 0130 00",
            "DE89-3704-0044-0532-0130-00",
            // The registry's recent additions.
            "LY83 0020 4800 0020 1001 2036 1",
            "LY83002048000020100120361",
            "SO21 1000 0010 0100 0100 141",
            "SD21 2901 0501 2340 01",
            "BI42 1000 0100 0100 0033 2045 181",
            "DJ21 0001 0000 0001 5400 0100 186",
            "FK88 SC12 3456 7890 12",
            "HN05 CABF 0000 0000 0000 0025 0005",
            "MN12 1234 1234 5678 9123",
            "NI45 BAPR 0000 0013 0000 0355 8124",
            "OM81 0180 0000 0129 9123 456",
            "RU02 0445 2560 0407 0281 0412 3456 7890 1",
            "YE15 CBYE 0001 0188 6123 4567 8912 34",
        ] {
            assert_eq!(
                ibans(&format!("IBAN: {iban}, thanks")),
                vec![iban],
                "{iban}"
            );
        }
    }

    #[test]
    fn rejects_bad_checksums_lengths_and_contexts() {
        for text in [
            "DE89 3704 0044 0532 0130 01",     // checksum
            "DE88370400440532013000",          // checksum
            "DE8937040044053201300",           // one short
            "DE893704004405320130001",         // one long
            "DE89 370 40044 0532 0130 00",     // a space not after a fourth char
            "ZZ89370400440532013000",          // unknown country
            "XDE89370400440532013000",         // inside a word
            "DE89370400440532013000_x",        // continues a word
            "DE89-3704-0044-0532-0130-01",     // checksum, dashed
            "DE89-3704 0044-0532-0130-00",     // mixed separators
            "DE89--3704-0044-0532-0130-00",    // two dashes
            "DE89-3704-0044-0532-0130-00-7",   // goes on
            "LY83 0020 4800 0020 1001 2036",   // Libya is 25 long
            "LY84 0020 4800 0020 1001 2036 1", // checksum
        ] {
            assert!(ibans(text).is_empty(), "{text}");
        }
    }
}
