//! Numbers printed bare (`123456789`) or in digit groups (`123-45-6789`,
//! `51 824 753 556`, `2123 45670 1`): the reader shared by the national-id
//! and bank-number detectors, which then check the digits.
//!
//! Words used here:
//! - *layout*: the group sizes of one printed form and the separators that
//!   may join its groups. A number uses one separator throughout.
//! - *whole*: the number does not continue a word or a longer number on
//!   either side (see `boundary.rs`; [`CONTINUING`] lists the punctuation
//!   that continues one), and, when grouped, is not preceded or followed by
//!   its own separator and another digit: `004 085 616 123` is not the
//!   number `004 085 616`, and `4111 1111 1111 1111` holds no 12-digit
//!   number.

use std::ops::Range;

use super::boundary::{byte_before, digit_run_end, number_ends_at, number_starts_at};
use super::hold::{first_from, trailing_run_start};

/// Most digits a number read here may have.
pub(crate) const MAX_DIGITS: usize = 19;

/// Bytes that, next to a digit, make a number part of a longer token:
/// decimals, thousands, dates and ranges, paths, times.
pub(crate) const CONTINUING: &[u8] = b".,-/:";

/// One printed form of a number: its group sizes, and the separators that
/// may join them.
pub(crate) struct Layout {
    /// Digits per group, first to last.
    pub(crate) groups: &'static [usize],
    /// Bytes that may separate the groups.
    pub(crate) separators: &'static [u8],
}

/// A number as read from the text.
pub(crate) struct Printed {
    /// Where it is.
    pub(crate) span: Range<usize>,
    /// The separator between its groups; `None` if it is printed bare.
    pub(crate) separator: Option<u8>,
    digits: [u8; MAX_DIGITS],
    len: usize,
}

impl Printed {
    /// The digits, as values 0–9.
    pub(crate) fn digits(&self) -> &[u8] {
        &self.digits[..self.len]
    }
}

/// The whole number of `total` digits whose first digit run is `run`:
/// bare (the run is all of it) or printed in one of `layouts`.
pub(crate) fn read(
    bytes: &[u8],
    run: Range<usize>,
    total: usize,
    layouts: &[Layout],
) -> Option<Printed> {
    if total > MAX_DIGITS || !number_starts_at(bytes, run.start, CONTINUING) {
        return None;
    }
    let (end, separator) = if run.len() == total {
        (run.end, None)
    } else {
        layouts
            .iter()
            .find_map(|layout| grouped_end(bytes, &run, layout))?
    };
    if !number_ends_at(bytes, end, CONTINUING) {
        return None;
    }
    if let Some(sep) = separator {
        let continues_before = byte_before(bytes, run.start) == Some(sep)
            && byte_before(bytes, run.start - 1).is_some_and(|b| b.is_ascii_digit());
        let continues_after =
            bytes.get(end) == Some(&sep) && bytes.get(end + 1).is_some_and(u8::is_ascii_digit);
        if continues_before || continues_after {
            return None;
        }
    }
    let mut printed = Printed {
        span: run.start..end,
        separator,
        digits: [0; MAX_DIGITS],
        len: 0,
    };
    for &b in bytes[run.start..end].iter().filter(|b| b.is_ascii_digit()) {
        *printed.digits.get_mut(printed.len)? = b - b'0';
        printed.len += 1;
    }
    (printed.len == total).then_some(printed)
}

/// End and separator of the number starting at `run` in `layout`, if it
/// is printed that way.
fn grouped_end(bytes: &[u8], run: &Range<usize>, layout: &Layout) -> Option<(usize, Option<u8>)> {
    let (&first, rest) = layout.groups.split_first()?;
    if run.len() != first || rest.is_empty() {
        return None;
    }
    let sep = *bytes.get(run.end)?;
    if !layout.separators.contains(&sep) {
        return None;
    }
    let mut pos = run.end;
    for &size in rest {
        if bytes.get(pos) != Some(&sep) {
            return None;
        }
        let end = digit_run_end(bytes, pos + 1);
        if end - (pos + 1) != size {
            return None;
        }
        pos = end;
    }
    Some((pos, Some(sep)))
}

/// Where a number read by [`read`] that more text could still change may
/// start in `bytes` (the length if nowhere), for a detector whose longest
/// match is `max_len` bytes.
///
/// A candidate reads, from its first digit, only digits and separators,
/// then one byte past them, and a second if that one is a separator or
/// continuing punctuation (`…6789.5`, `… 616 1`). So a decision that reads
/// past the end started inside the trailing run of digits, spaces and
/// punctuation, at most `max_len + 1` back.
pub(crate) fn hold_from(bytes: &[u8], max_len: usize) -> usize {
    let run = trailing_run_start(bytes, max_len + 1, |b| {
        b.is_ascii_digit() || b == b' ' || CONTINUING.contains(&b)
    });
    first_from(bytes, run, |b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPACED_3_3_3: &[Layout] = &[Layout {
        groups: &[3, 3, 3],
        separators: b" -",
    }];

    fn read_str(text: &str, total: usize) -> Option<(&str, Option<u8>, Vec<u8>)> {
        let bytes = text.as_bytes();
        let start = bytes.iter().position(u8::is_ascii_digit)?;
        let run = start..digit_run_end(bytes, start);
        let printed = read(bytes, run, total, SPACED_3_3_3)?;
        Some((
            &text[printed.span.clone()],
            printed.separator,
            printed.digits().to_vec(),
        ))
    }

    #[test]
    fn reads_bare_and_grouped_numbers() {
        let (span, sep, digits) = read_str("no. 004 085 616.", 9).expect("grouped");
        assert_eq!((span, sep), ("004 085 616", Some(b' ')));
        assert_eq!(digits, vec![0, 0, 4, 0, 8, 5, 6, 1, 6]);
        let (span, sep, _) = read_str("no. 004085616, ok", 9).expect("bare");
        assert_eq!((span, sep), ("004085616", None));
        assert_eq!(
            read_str("(004-085-616)", 9).map(|r| r.0),
            Some("004-085-616")
        );
    }

    #[test]
    fn rejects_numbers_that_are_part_of_longer_ones() {
        for text in [
            "004 085 616 123",
            "12 004 085 616",
            "004 085 6161",
            "004-085 616",
            "0040856161",
            "004085616.5",
            "1.004085616",
            "x004085616",
            "004085616x",
            "004 085",
        ] {
            assert!(read_str(text, 9).is_none(), "{text}");
        }
    }

    #[test]
    fn holds_the_trailing_number() {
        assert_eq!(hold_from(b"tfn 876 543 21", 11), 4);
        assert_eq!(hold_from(b"tfn 876 543 210.", 11), 4);
        assert_eq!(hold_from(b"tfn 876 543 210 x", 11), 17);
        assert_eq!(hold_from(b"the end", 11), 7);
    }
}
