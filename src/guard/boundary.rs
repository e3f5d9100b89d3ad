//! Where a match may start and end.
//!
//! The hand-written detectors work on the UTF-8 bytes of the text and only
//! start or end a match next to an ASCII byte, so every offset they report
//! is a char boundary of the `&str`.
//!
//! Words: a *word byte* is an ASCII letter, digit or `_`. A match must not
//! continue a word on either side (`x4111…`, `v1.2.3.4`, `123-45-6789X`).
//! Non-ASCII bytes count as non-word: a number next to `é` is still a
//! number. A *continuation* is a punctuation byte that, with a digit on its
//! far side, makes a number part of a longer one (`1.5`, `12/25`, `10:30`);
//! each detector says which punctuation continues its numbers.

/// Is `b` an ASCII letter, digit or `_`?
pub(crate) fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The byte just before offset `i`, if any.
pub(crate) fn byte_before(bytes: &[u8], i: usize) -> Option<u8> {
    i.checked_sub(1).and_then(|j| bytes.get(j).copied())
}

/// Can a number start at `start`? Not after a word byte, and not after a
/// `continuing` byte that itself follows a digit.
pub(crate) fn number_starts_at(bytes: &[u8], start: usize, continuing: &[u8]) -> bool {
    match byte_before(bytes, start) {
        None => true,
        Some(b) if is_word_byte(b) => false,
        Some(b) if continuing.contains(&b) => {
            !byte_before(bytes, start - 1).is_some_and(|c| c.is_ascii_digit())
        }
        Some(_) => true,
    }
}

/// Can a number end at `end` (exclusive)? Not before a word byte, and not
/// before a `continuing` byte that is itself followed by a digit.
pub(crate) fn number_ends_at(bytes: &[u8], end: usize, continuing: &[u8]) -> bool {
    match bytes.get(end).copied() {
        None => true,
        Some(b) if is_word_byte(b) => false,
        Some(b) if continuing.contains(&b) => {
            !bytes.get(end + 1).is_some_and(|c| c.is_ascii_digit())
        }
        Some(_) => true,
    }
}

/// End (exclusive) of the run of ASCII digits starting at `from`.
pub(crate) fn digit_run_end(bytes: &[u8], from: usize) -> usize {
    let tail = bytes.get(from..).unwrap_or_default();
    from + tail
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(tail.len())
}

/// The largest char boundary of `text` at or below `i`.
pub(crate) fn floor_char_boundary(text: &str, i: usize) -> usize {
    let mut i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The smallest char boundary of `text` at or above `i`.
pub(crate) fn ceil_char_boundary(text: &str, i: usize) -> usize {
    let mut i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_do_not_start_inside_words_or_decimals() {
        let text = b"x12 1.5 a-7 3-4";
        assert!(!number_starts_at(text, 1, b"."), "after a letter");
        assert!(!number_starts_at(text, 6, b"."), "after `1.`");
        assert!(number_starts_at(text, 10, b"-"), "`-` after a letter");
        assert!(!number_starts_at(text, 14, b"-"), "`-` after a digit");
        assert!(number_starts_at(text, 0, b"."), "at the start");
    }

    #[test]
    fn numbers_do_not_end_before_words_or_decimals() {
        let text = b"12x 1.5 7. 8";
        assert!(!number_ends_at(text, 2, b"."));
        assert!(!number_ends_at(text, 5, b"."));
        assert!(number_ends_at(text, 9, b"."), "`.` ending a sentence");
        assert!(number_ends_at(text, 12, b"."), "at the end");
    }

    #[test]
    fn char_boundaries_snap_outwards_and_inwards() {
        let text = "aé b";
        assert_eq!(floor_char_boundary(text, 2), 1);
        assert_eq!(ceil_char_boundary(text, 2), 3);
        assert_eq!(ceil_char_boundary(text, 99), text.len());
    }
}
