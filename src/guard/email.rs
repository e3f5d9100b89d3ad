//! Email addresses.
//!
//! Candidates come from `memchr` over `@`. Around each `@`:
//! - the *local part* is the run of `A–Z a–z 0–9 . _ % + -` before it
//!   (1–64 bytes, leading dots dropped, not ending with a dot, no `..`);
//! - the *domain* is the run of `A–Z a–z 0–9 . -` after it (at most 253
//!   bytes, a trailing full stop dropped), at least two labels of 1–63
//!   bytes that neither start nor end with `-`, and a top-level domain of
//!   two or more letters or in punycode (`xn--p1ai`, the ASCII form of
//!   `.рф`; punycode labels below it, `xn--bcher-kva`, are plain labels).
//!
//! RFC 5322 allows much more (quoted local parts, IP literals); what people
//! paste into prompts is this. Kept out: `@decorators`, `@scope/pkg`,
//! `pkg@1.2.3`, `user@localhost`, and `icon@2x.png` (a retina image name,
//! not an address).

use std::ops::Range;

use super::boundary::is_word_byte;
use super::hold::trailing_run_start;

const LOCAL_MAX: usize = 64;
const DOMAIN_MAX: usize = 253;
const LABEL_MAX: usize = 63;
/// Longest email match in bytes.
pub(crate) const MAX_LEN: usize = LOCAL_MAX + 1 + DOMAIN_MAX;

fn is_local_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_domain_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')
}

/// The email address around the `@` at `at`, if any.
pub(crate) fn find_around(bytes: &[u8], at: usize) -> Option<Range<usize>> {
    // Local part: scan back, one byte past the limit to see if it is longer.
    let mut start = at;
    while start > 0 && at - start <= LOCAL_MAX && is_local_byte(bytes[start - 1]) {
        start -= 1;
    }
    if at - start > LOCAL_MAX {
        return None;
    }
    // Dots before the address are punctuation (`see ...alice@example.com`).
    while start < at && bytes[start] == b'.' {
        start += 1;
    }
    let local = &bytes[start..at];
    if local.is_empty() || local[local.len() - 1] == b'.' || local.windows(2).any(|w| w == b"..") {
        return None;
    }

    let domain_start = at + 1;
    let mut end = domain_start;
    while end < bytes.len() && end - domain_start <= DOMAIN_MAX && is_domain_byte(bytes[end]) {
        end += 1;
    }
    // Punctuation ending the sentence is not part of the domain.
    while end > domain_start && matches!(bytes[end - 1], b'.' | b'-') {
        end -= 1;
    }
    let domain = &bytes[domain_start..end];
    if domain.len() > DOMAIN_MAX
        || bytes
            .get(end)
            .is_some_and(|&b| is_word_byte(b) || b == b'@')
        || !domain_ok(domain)
    {
        return None;
    }
    Some(start..end)
}

/// Where an address that more text could still change may start in
/// `bytes` (the length if nowhere).
///
/// Two cases. The end may be a local part whose `@` has not come yet: the
/// trailing run of local-part bytes, at most [`LOCAL_MAX`] of it. Or an `@`
/// may be followed by domain bytes up to the end, within [`DOMAIN_MAX`]: its
/// domain can still grow or be cancelled (`a@b.co` + `m`, + `_x`), so hold
/// from its local part.
pub(crate) fn hold_from(bytes: &[u8]) -> usize {
    let n = bytes.len();
    let mut from = trailing_run_start(bytes, LOCAL_MAX, is_local_byte);
    let domain = trailing_run_start(bytes, DOMAIN_MAX + 1, is_domain_byte);
    if n - domain <= DOMAIN_MAX && domain > 0 && bytes[domain - 1] == b'@' {
        let at = domain - 1;
        let local = trailing_run_start(&bytes[..at], LOCAL_MAX + 1, is_local_byte);
        // A longer local part is rejected whatever follows.
        if at - local <= LOCAL_MAX {
            from = from.min(local);
        }
    }
    from
}

fn domain_ok(domain: &[u8]) -> bool {
    let mut labels = domain.split(|&b| b == b'.');
    let Some(first) = labels.next() else {
        return false;
    };
    let mut count = 0;
    let mut last = first;
    for label in std::iter::once(first).chain(labels) {
        if label.is_empty()
            || label.len() > LABEL_MAX
            || label[0] == b'-'
            || label[label.len() - 1] == b'-'
        {
            return false;
        }
        count += 1;
        last = label;
    }
    let retina = first.len() >= 2
        && first[first.len() - 1] == b'x'
        && first[..first.len() - 1].iter().all(u8::is_ascii_digit);
    count >= 2 && tld_ok(last) && !retina
}

/// Two or more letters, or punycode: `xn--` and at least two letters,
/// digits or dashes.
fn tld_ok(tld: &[u8]) -> bool {
    let letters = tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic);
    let punycode = tld.len() >= 6
        && tld[..4].eq_ignore_ascii_case(b"xn--")
        && tld[4..]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-');
    letters || punycode
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emails(text: &str) -> Vec<&str> {
        let bytes = text.as_bytes();
        memchr::memchr_iter(b'@', bytes)
            .filter_map(|at| find_around(bytes, at))
            .map(|m| &text[m])
            .collect()
    }

    #[test]
    fn finds_addresses() {
        for addr in [
            "alice@example.com",
            "first.last+tag@mail.example.co.uk",
            "a_b-c%d@sub-domain.example.org",
            "x@y.io",
            "USER@EXAMPLE.COM",
        ] {
            assert_eq!(emails(&format!("mail {addr}.")), vec![addr], "{addr}");
            assert_eq!(emails(&format!("<{addr}>")), vec![addr], "{addr}");
        }
        assert_eq!(emails("é alice@example.com é"), vec!["alice@example.com"]);
        assert_eq!(
            emails("git@github.com:org/repo.git"),
            vec!["git@github.com"]
        );
        assert_eq!(
            emails("see ...alice@example.com"),
            vec!["alice@example.com"]
        );
    }

    #[test]
    fn finds_punycode_domains() {
        for addr in [
            "user@xn--bcher-kva.example",
            "info@xn--mller-kva.de",
            "user@example.xn--p1ai",
            "user@xn--80ak6aa92e.xn--p1ai",
            "USER@EXAMPLE.XN--P1AI",
        ] {
            assert_eq!(emails(&format!("mail {addr}.")), vec![addr], "{addr}");
        }
        for text in [
            "user@example.xn--1",
            "user@example.xn--p",
            "user@example.xn-p1ai",
        ] {
            assert!(emails(text).is_empty(), "{text}: {:?}", emails(text));
        }
    }

    #[test]
    fn rejects_things_that_are_not_addresses() {
        for text in [
            "@property",
            "import from @types/node",
            "npm i left-pad@1.3.0",
            "user@localhost",
            "icon@2x.png",
            "a@b.c",
            "a@b.c0m",
            "al..ice@example.com",
            "alice@-example.com",
            "alice@example-.com",
            "alice@@example.com",
            "alice@example..com",
            "alice@example.com_x",
        ] {
            assert!(emails(text).is_empty(), "{text}: {:?}", emails(text));
        }
    }

    #[test]
    fn rejects_over_long_parts() {
        let long_local = format!("{}@example.com", "a".repeat(LOCAL_MAX + 1));
        assert!(emails(&long_local).is_empty());
        let ok_local = format!("{}@example.com", "a".repeat(LOCAL_MAX));
        assert_eq!(emails(&ok_local).len(), 1);
        let long_label = format!("a@{}.com", "b".repeat(LABEL_MAX + 1));
        assert!(emails(&long_label).is_empty());
    }
}
