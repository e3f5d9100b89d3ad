//! MAC addresses (EUI-48), `mac_address`.
//!
//! Six pairs of hex digits joined by `:` or `-`, the same throughout
//! (`00:1A:2B:3C:4D:5E`, `00-1a-2b-3c-4d-5e`), or Cisco's three groups of
//! four joined by `.` (`001a.2b3c.4d5e`). The address is one token: not
//! next to a word byte, and not part of a longer run of groups
//! (`00:11:22:33:44:55:66`, an IPv6 address, `1a:2b:3c` in a longer list).
//!
//! Reported anywhere, with two limits that keep dates, times and numbers
//! out:
//! - at least one of the twelve hex digits must be a letter `a`–`f`:
//!   `24-01-15-10-30-00` is a timestamp and `1234.5678.9012` a number, while
//!   a real address is all decimal about one time in 300;
//! - the candidate comes from the digit-run pass, so at least one must be a
//!   decimal digit: all-letter addresses (`ff:ff:ff:ff:ff:ff`, the
//!   broadcast address, and made-up ones like `de:ad:be:ef:ca:fe`) are not
//!   found, and identify no device anyway.
//!
//! The address is decided at its first *deciding* digit run: one not
//! between two letters. Every run in a pair form touches a separator or
//! the pair's letter on one side, so this only matters in Cisco's form,
//! where digits can sit inside a quad (`ab1c`): an address whose digits all
//! do (`abcd.e1fa.bcde`, about one in 350) is missed. The gain is that the
//! digits of hex hashes and UUIDs, which sit between letters by the
//! thousand, are never looked at.

use std::ops::Range;

use super::boundary::{byte_before, is_word_byte};
use super::hold::{first_from, trailing_run_start};

/// Longest MAC match in bytes: `00:1A:2B:3C:4D:5E`.
pub(crate) const MAX_LEN: usize = 17;
/// Cisco's form: `001a.2b3c.4d5e`.
const CISCO_LEN: usize = 14;

fn is_separator(b: u8) -> bool {
    matches!(b, b':' | b'-' | b'.')
}

fn is_mac_byte(b: u8) -> bool {
    b.is_ascii_hexdigit() || is_separator(b)
}

/// Does the digit run `start..end` sit between two letters?
fn between_letters(bytes: &[u8], start: usize, end: usize) -> bool {
    byte_before(bytes, start).is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.get(end).is_some_and(u8::is_ascii_alphabetic)
}

/// The MAC address containing the digit run `run`, if this run is its
/// first deciding run (see the module docs).
pub(crate) fn find_at(bytes: &[u8], run: Range<usize>) -> Option<Range<usize>> {
    if run.len() > 4 || between_letters(bytes, run.start, run.end) {
        return None;
    }
    // The common case, a number in prose or code, leaves here.
    if !pair_fits(bytes, &run) && !quad_fits(bytes, &run) {
        return None;
    }
    let mut start = run.start;
    while start > 0 && run.start - start < MAX_LEN - 1 && is_mac_byte(bytes[start - 1]) {
        start -= 1;
    }
    // An earlier deciding run of the same token already decided it.
    let mut i = start;
    while i < run.start {
        if bytes[i].is_ascii_digit() {
            let end = i + bytes[i..run.start]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            if !between_letters(bytes, i, end) {
                return None;
            }
            i = end;
        } else {
            i += 1;
        }
    }
    if byte_before(bytes, start).is_some_and(|b| is_word_byte(b) || is_separator(b)) {
        return None;
    }
    let (end, separator) = pairs_end(bytes, start).or_else(|| cisco_end(bytes, start))?;
    let continues = match bytes.get(end) {
        Some(&b) if is_word_byte(b) => true,
        Some(&b) if b == separator => bytes.get(end + 1).is_some_and(u8::is_ascii_hexdigit),
        _ => false,
    };
    let has_letter = bytes[start..end].iter().any(u8::is_ascii_alphabetic);
    (!continues && has_letter).then_some(start..end)
}

/// The byte at `i` (0 past either end: `i` may have wrapped below 0).
fn at(bytes: &[u8], i: usize) -> u8 {
    bytes.get(i).copied().unwrap_or(0)
}

/// Can `run` lie in a hex pair of a six-pair address? Then the pair (one
/// of at most two places) sees its separator in three of the six places
/// every three bytes around it: a cheap test that dates (`2024-05-12`) and
/// times (`14:03:22`) fail.
fn pair_fits(bytes: &[u8], run: &Range<usize>) -> bool {
    if run.len() > 2 {
        return false;
    }
    (run.end.saturating_sub(2)..run.start + 1).any(|a| {
        let sep = match (at(bytes, a.wrapping_sub(1)), at(bytes, a + 2)) {
            (b @ (b':' | b'-'), _) | (_, b @ (b':' | b'-')) => b,
            _ => return false,
        };
        let slots = [
            a.wrapping_sub(7),
            a.wrapping_sub(4),
            a.wrapping_sub(1),
            a + 2,
            a + 5,
            a + 8,
        ];
        let hits = slots.iter().filter(|&&i| at(bytes, i) == sep).count();
        hits >= 3 && at(bytes, a).is_ascii_hexdigit() && at(bytes, a + 1).is_ascii_hexdigit()
    })
}

/// Can `run` lie in a quad of Cisco's form? Then the quad sees a dot in two
/// of the four places every five bytes around it.
fn quad_fits(bytes: &[u8], run: &Range<usize>) -> bool {
    (run.end.saturating_sub(4)..run.start + 1).any(|a| {
        let slots = [a.wrapping_sub(6), a.wrapping_sub(1), a + 4, a + 9];
        let dots = slots.iter().filter(|&&i| at(bytes, i) == b'.').count();
        dots >= 2 && (a..a + 4).all(|i| at(bytes, i).is_ascii_hexdigit())
    })
}

/// End and separator of six hex pairs from `start`.
fn pairs_end(bytes: &[u8], start: usize) -> Option<(usize, u8)> {
    let mac = bytes.get(start..start + MAX_LEN)?;
    let separator = mac[2];
    if separator != b':' && separator != b'-' {
        return None;
    }
    let ok = mac.iter().enumerate().all(|(i, &b)| {
        if i % 3 == 2 {
            b == separator
        } else {
            b.is_ascii_hexdigit()
        }
    });
    ok.then_some((start + MAX_LEN, separator))
}

/// End of Cisco's three dotted quads from `start`.
fn cisco_end(bytes: &[u8], start: usize) -> Option<(usize, u8)> {
    let mac = bytes.get(start..start + CISCO_LEN)?;
    let ok = mac.iter().enumerate().all(|(i, &b)| {
        if i % 5 == 4 {
            b == b'.'
        } else {
            b.is_ascii_hexdigit()
        }
    });
    ok.then_some((start + CISCO_LEN, b'.'))
}

/// Where a MAC address that more text could still change may start in
/// `bytes` (the length if nowhere): the first hex digit of the trailing run
/// of hex digits and separators, at most `MAX_LEN + 1` back. A candidate
/// reads only such bytes from its start, then one byte past them, and a
/// second if that one is its separator.
pub(crate) fn hold_from(bytes: &[u8]) -> usize {
    let run = trailing_run_start(bytes, MAX_LEN + 1, is_mac_byte);
    first_from(bytes, run, |b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::super::digits::found_by_runs_resuming;
    use super::*;

    fn macs(text: &str) -> Vec<&str> {
        found_by_runs_resuming(find_at, text)
    }

    #[test]
    fn finds_mac_addresses_in_each_form() {
        for mac in [
            "00:1A:2B:3C:4D:5E",
            "00-1a-2b-3c-4d-5e",
            "ab:cd:ef:01:23:45",
            "aa:bb:cc:dd:ee:f0",
            "001a.2b3c.4d5e",
            "a1bc.2def.abcd", // decided at `2`: `1` sits between letters
            "F0:9F:C2:1A:7B:3E",
        ] {
            assert_eq!(macs(&format!("mac {mac}.")), vec![mac], "{mac}");
            assert_eq!(macs(&format!("[{mac}]")), vec![mac], "{mac}");
        }
        assert_eq!(
            macs("eth0 00:1A:2B:3C:4D:5E, wlan0 00:1A:2B:3C:4D:5F"),
            vec!["00:1A:2B:3C:4D:5E", "00:1A:2B:3C:4D:5F"]
        );
    }

    #[test]
    fn rejects_mac_lookalikes() {
        for text in [
            "00:11:22:33:44:55", // all decimal: could be anything
            "24-01-15-10-30-00", // a timestamp
            "1234.5678.9012",
            "de:ad:be:ef:ca:fe", // no decimal digit
            "ff:ff:ff:ff:ff:ff",
            "00:1A:2B:3C:4D:5E:6F", // seven groups
            "11:00:1A:2B:3C:4D:5E",
            "00:1A:2B:3C:4D",    // five
            "00:1A-2B:3C:4D:5E", // mixed separators
            "x00:1A:2B:3C:4D:5E",
            "00:1A:2B:3C:4D:5Ex",
            "001a.2b3c.4d5e.6f70",
            "2001:db8::1a:2b",
            "10:30:00",
            "550e8400-e29b-41d4-a716-446655440000",
            "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3",
            "0:1A:2B:3C:4D:5E",
            "abcd.e1fa.bcde", // see the module docs
        ] {
            assert!(macs(text).is_empty(), "{text}: {:?}", macs(text));
        }
    }

    #[test]
    fn holds_the_trailing_hex_run() {
        assert_eq!(hold_from(b"mac 00:1A:2B:3C"), 4);
        assert_eq!(hold_from(b"mac 00:1A:2B:3C:4D:5E:"), 4);
        assert_eq!(hold_from(b"mac ok"), 6);
    }
}
