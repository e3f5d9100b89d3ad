//! Interim per-window stream hold-back (see `policy::stream`): for each
//! detector family, the tail of a window that could still belong to a
//! match that is growing. PII detectors hold their trailing run of
//! characters (capped at their longest match); secret rules hold from a
//! keyword occurrence or a partial keyword at the end ([`LEAD`] bytes
//! earlier); keyword rules their longest keyword; admin patterns their
//! longest match up to [`PATTERN_HOLD_CAP`]. Released text is rescanned as
//! context by the stream inspector, so a match that began before the
//! release point is still redacted from there on or blocks the stream.

use super::{Builtin, DetectorSpec, RuleSpec, SecretRule};

/// Bytes held before a secret keyword occurrence.
pub const LEAD: usize = 24;
/// Longest hold-back for an admin `pattern` rule.
pub const PATTERN_HOLD_CAP: usize = 256;

#[derive(Debug, Clone)]
struct SecretHold {
    keywords: Vec<Vec<u8>>,
    max_len: usize,
}

/// Per-window hold-back for one compiled rule set.
#[derive(Debug, Clone, Default)]
pub struct StreamHold {
    card: bool,
    phone: bool,
    iban: bool,
    ssn: bool,
    ipv4: bool,
    ipv6: bool,
    email: bool,
    secrets: Vec<SecretHold>,
    fixed: usize,
}

impl StreamHold {
    /// The hold-back rules for `rules`, with the shipped secret rules plus
    /// `extra_secret_rules` for `secrets`.
    pub fn new(rules: &[RuleSpec], extra_secret_rules: &[SecretRule]) -> StreamHold {
        let mut hold = StreamHold::default();
        let mut wants_secrets = false;
        for rule in rules {
            match &rule.detector {
                DetectorSpec::Builtin(b) => match b {
                    Builtin::Email => hold.email = true,
                    Builtin::Phone => hold.phone = true,
                    Builtin::CreditCard => hold.card = true,
                    Builtin::Iban => hold.iban = true,
                    Builtin::UsSsn => hold.ssn = true,
                    Builtin::Ipv4 => hold.ipv4 = true,
                    Builtin::Ipv6 => hold.ipv6 = true,
                    Builtin::IpAddress => {
                        hold.ipv4 = true;
                        hold.ipv6 = true;
                    }
                    Builtin::Secrets => wants_secrets = true,
                },
                DetectorSpec::Pattern(p) => {
                    let len = super::limits::capped_regex_max_len(p).min(PATTERN_HOLD_CAP);
                    hold.fixed = hold.fixed.max(len);
                }
                DetectorSpec::Keywords(words) => {
                    let len = words.iter().map(|w| w.len()).max().unwrap_or(0) + 1;
                    hold.fixed = hold.fixed.max(len);
                }
            }
        }
        if wants_secrets {
            let shipped = super::builtin_secret_rules().unwrap_or_default();
            for rule in shipped.iter().chain(extra_secret_rules) {
                let max_len = super::limits::capped_regex_max_len(&rule.regex);
                if rule.keywords.is_empty() {
                    hold.fixed = hold.fixed.max(max_len);
                    continue;
                }
                hold.secrets.push(SecretHold {
                    keywords: rule
                        .keywords
                        .iter()
                        .map(|k| k.to_ascii_lowercase().into_bytes())
                        .collect(),
                    max_len,
                });
            }
        }
        hold
    }

    /// Bytes at the end of `window` that must not be released yet (on a
    /// char boundary, at most `window.len()`).
    pub fn hold(&self, window: &str) -> usize {
        let bytes = window.as_bytes();
        let mut hold = self.fixed;
        let run = |accept: fn(u8) -> bool, cap: usize| -> usize {
            let n = bytes.iter().rev().take_while(|&&b| accept(b)).count();
            n.min(cap) + 1
        };
        if self.card {
            hold = hold.max(run(
                |b| b.is_ascii_digit() || b == b' ' || b == b'-',
                super::card::MAX_LEN,
            ));
        }
        if self.phone {
            hold = hold.max(run(
                |b| b.is_ascii_digit() || b" ()+-.".contains(&b),
                super::phone::MAX_LEN,
            ));
        }
        if self.ssn {
            hold = hold.max(run(
                |b| b.is_ascii_digit() || b == b'-' || b == b' ',
                super::ssn::MAX_LEN,
            ));
        }
        if self.ipv4 {
            hold = hold.max(run(
                |b| b.is_ascii_digit() || b == b'.',
                super::ip::IPV4_MAX_LEN + 2,
            ));
        }
        if self.ipv6 {
            hold = hold.max(run(
                |b| b.is_ascii_hexdigit() || b == b':' || b == b'.',
                super::ip::IPV6_MAX_LEN,
            ));
        }
        if self.iban {
            hold = hold.max(iban_reach(bytes));
        }
        if self.email {
            hold = hold.max(run(
                |b| b.is_ascii_alphanumeric() || b"._%+-@".contains(&b),
                super::email::MAX_LEN,
            ));
        }
        for rule in &self.secrets {
            if let Some(from_end) = keyword_reach(bytes, &rule.keywords, rule.max_len) {
                hold = hold.max((from_end + LEAD).min(rule.max_len + LEAD));
            }
        }
        let mut hold = hold.min(window.len());
        while !window.is_char_boundary(window.len() - hold) {
            hold += 1;
        }
        hold
    }
}

/// How far from the end an IBAN could have started: the earliest position
/// in the trailing run of letters, digits and spaces (at most an IBAN long)
/// that begins a word and reads as the start of `CCdd…`.
fn iban_reach(bytes: &[u8]) -> usize {
    let run = bytes
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b' ')
        .count()
        .min(super::iban::MAX_LEN);
    for p in bytes.len() - run..bytes.len() {
        let begins_word = p == 0 || !bytes[p - 1].is_ascii_alphanumeric();
        let rest = &bytes[p..];
        let fits = |i: usize, ok: fn(u8) -> bool| rest.get(i).is_none_or(|&b| ok(b));
        if begins_word
            && rest[0].is_ascii_uppercase()
            && fits(1, |b| b.is_ascii_uppercase())
            && fits(2, |b| b.is_ascii_digit())
            && fits(3, |b| b.is_ascii_digit())
        {
            return bytes.len() - p + 1;
        }
    }
    0
}

/// How far from the end of `bytes` the earliest occurrence (or trailing
/// partial occurrence) of any keyword starts, within the last `span` bytes;
/// ASCII case-insensitive.
fn keyword_reach(bytes: &[u8], keywords: &[Vec<u8>], span: usize) -> Option<usize> {
    let longest = keywords.iter().map(Vec::len).max().unwrap_or(0);
    let tail = &bytes[bytes.len().saturating_sub(span + longest)..];
    let mut reach: Option<usize> = None;
    for keyword in keywords.iter().filter(|k| !k.is_empty()) {
        if let Some(at) = tail
            .windows(keyword.len())
            .position(|w| w.eq_ignore_ascii_case(keyword))
        {
            let from_end = tail.len() - at;
            reach = Some(reach.map_or(from_end, |r| r.max(from_end)));
            continue;
        }
        for len in (1..keyword.len()).rev() {
            if tail.len() >= len && tail[tail.len() - len..].eq_ignore_ascii_case(&keyword[..len]) {
                reach = Some(reach.map_or(len, |r| r.max(len)));
                break;
            }
        }
    }
    reach
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_set() -> StreamHold {
        let rules: Vec<RuleSpec> = Builtin::ALL
            .iter()
            .map(|b| RuleSpec {
                id: b.name().into(),
                detector: DetectorSpec::Builtin(*b),
            })
            .collect();
        StreamHold::new(&rules, &[])
    }

    #[test]
    fn plain_prose_holds_only_its_last_word() {
        let hold = full_set().hold("The quick brown fox jumps over the lazy dog and then sleeps");
        assert!(hold <= 32, "held {hold}");
    }

    #[test]
    fn partial_card_is_held() {
        assert!(full_set().hold("my card is 4111 1111 11") >= "4111 1111 11".len());
    }

    #[test]
    fn secrets_hold_from_their_keyword() {
        let set = full_set();
        let pem = "here:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA1234";
        let at = pem.find("-----BEGIN").unwrap();
        assert!(set.hold(pem) >= pem.len() - at);
        assert!(set.hold("token ghp_abc") >= "ghp_abc".len());
        assert!(set.hold("see gh") >= 2);
        let long_prose = format!("{}ghp_abcdef", "word ".repeat(2000));
        let hold = set.hold(&long_prose);
        assert!((10..400).contains(&hold), "held {hold}");
    }

    #[test]
    fn hold_is_on_a_char_boundary_and_bounded() {
        let set = full_set();
        let text = "é 4111 1111";
        assert!(text.is_char_boundary(text.len() - set.hold(text)));
        assert_eq!(set.hold(""), 0);
        assert!(set.hold("ab") <= 2);
    }
}
