//! Context words: the words that make an ambiguous number worth reporting.
//!
//! Nine bare digits are an order id far more often than an SSN, and a
//! 10-digit number that passes mod 11 is a phone number nine times in ten.
//! Such forms are reported only when a *context word* (`ssn`, `routing`,
//! `aadhaar`, …) appears in the [`WINDOW`] bytes before the number.
//!
//! A context word matches ASCII-case-insensitively, as a whole word: the
//! bytes on either side must not be ASCII letters or digits (a plural `s`
//! may follow: `SSNs`). So `ssn` is not found in `classname`, nor `tin` in
//! `testing`. Words may contain spaces (`social security`) and non-ASCII
//! letters, which match as written (`henkilötunnus`).
//!
//! Only text before the number counts: it is already there when a stream
//! decides, so context never makes a stream hold more (see `hold.rs`).

/// How far before a number its context word may start, in bytes.
pub(crate) const WINDOW: usize = 48;

/// Does one of `words` (lowercase) lie within the [`WINDOW`] bytes before
/// `start`?
pub(crate) fn appears_before(bytes: &[u8], start: usize, words: &[&[u8]]) -> bool {
    let from = start.saturating_sub(WINDOW);
    words.iter().any(|word| {
        (from..start.saturating_sub(word.len().saturating_sub(1)))
            .any(|at| is_word_at(bytes, at, word))
    })
}

/// Is `word` at `at` in `bytes`, as a whole word?
fn is_word_at(bytes: &[u8], at: usize, word: &[u8]) -> bool {
    let Some(found) = bytes.get(at..at + word.len()) else {
        return false;
    };
    if word.is_empty() || !found.eq_ignore_ascii_case(word) {
        return false;
    }
    let is_alnum = |b: Option<&u8>| b.is_some_and(u8::is_ascii_alphanumeric);
    let first = word[0];
    let last = word[word.len() - 1];
    let left_ok = !first.is_ascii_alphanumeric() || at == 0 || !is_alnum(bytes.get(at - 1));
    let mut after = at + word.len();
    if last.is_ascii_alphabetic() && matches!(bytes.get(after), Some(b's' | b'S')) {
        after += 1;
    }
    let right_ok = !last.is_ascii_alphanumeric() || !is_alnum(bytes.get(after));
    left_ok && right_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn near(text: &str, words: &[&[u8]]) -> bool {
        appears_before(text.as_bytes(), text.len(), words)
    }

    #[test]
    fn finds_whole_words_in_any_case() {
        assert!(near("SSN: ", &[b"ssn"]));
        assert!(near("my ssn is ", &[b"ssn"]));
        assert!(near("SSNs on file: ", &[b"ssn"]));
        assert!(near("Social Security no. ", &[b"social security"]));
        assert!(near("ss#", &[b"ss#"]));
        assert!(near(
            "Minun henkilötunnus on ",
            &["henkilötunnus".as_bytes()]
        ));
    }

    #[test]
    fn ignores_words_inside_other_words() {
        assert!(!near("classname ", &[b"ssn"]));
        assert!(!near("testing ", &[b"tin"]));
        assert!(!near("tinned ", &[b"tin"]));
        assert!(!near("ssn2 ", &[b"ssn"]));
        assert!(!near("nothing here ", &[b"ssn"]));
    }

    #[test]
    fn only_the_window_before_counts() {
        let far = format!("ssn {}", "x ".repeat(WINDOW / 2));
        assert!(!near(&far, &[b"ssn"]));
        let close = format!("ssn {}", "x ".repeat(WINDOW / 2 - 3));
        assert!(near(&close, &[b"ssn"]));
        // After the number does not count.
        let text = b"123456789 ssn";
        assert!(!appears_before(text, 0, &[b"ssn"]));
    }
}
