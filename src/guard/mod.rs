//! Guardrail detectors: find personal data, secrets and admin-defined
//! patterns in text, and redact them.
//!
//! This module is pure: strings in, [`Finding`]s out; no I/O, no async. The
//! policy layer turns each `[[guardrails]]` entry into a [`RuleSpec`],
//! compiles the list once per policy version into a [`Scanner`] that every
//! request shares, calls [`Scanner::scan`] on each text of a request or
//! response, and, for `action = "redact"`, rewrites the text with [`redact()`].
//!
//! Words used in this module:
//! - *rule*: one [`RuleSpec`], an id plus a detector. A [`Finding`] points
//!   back to its rule by index into the slice given to [`Scanner::compile`].
//! - *detector*: what recognises one kind of data: a [`Builtin`], an
//!   admin's regex (`pattern`) or an admin's keyword list (`keywords`).
//! - *candidate*: a span found by a cheap single-pass prefilter that a
//!   detector then validates (Luhn, mod-97, octet ranges, entropy, …).
//!   Detectors validate; a bare regex match is never enough for a builtin.
//! - *secret rule*: one `[[rules]]` entry of `policy/secrets.toml`, or an
//!   admin's extra rule in the same format ([`SecretRule`]); together they
//!   make up the `secrets` builtin.
//! - *finding*: the byte range of the scanned text a rule matched, and the
//!   kind of data. Never the matched text itself, so findings can be logged
//!   and audited as they are.
//!
//! Why it is fast (target ≥ 300 MB/s per core with every builtin on, see
//! `benches/guard.rs`): no regex runs over the whole text for a builtin.
//! One pass over digit runs feeds cards, phones, SSNs, IPv4 and IBANs;
//! `memchr` finds every `@` (email) and `:` (IPv6); one pass finds every
//! secret rule's keywords (`keyword_finder.rs`), and a secret rule's regex
//! then runs only on a short window around each keyword hit.
//!
//! Files, one per detector family: `email.rs`, `phone.rs`, `card.rs`,
//! `iban.rs`, `ssn.rs`, `ip.rs`, `secrets.rs`, `pattern.rs`, `keywords.rs`;
//! shared pieces: `digits.rs` (the digit-run pass), `keyword_finder.rs`
//! (the keyword pass for secrets), `boundary.rs` (where a match may start
//! and end), `limits.rs` (how long a match may be), `hold.rs` (how much of
//! a stream's end may still change, [`Scanner::stream_hold`]), `scanner.rs`
//! (compiling rules, running a scan), `redact.rs`.

mod boundary;
mod card;
mod digits;
mod email;
mod hold;
mod iban;
mod ip;
mod keyword_finder;
mod keywords;
mod limits;
mod pattern;
mod phone;
mod redact;
mod scanner;
mod secrets;
mod ssn;

use std::borrow::Cow;

pub use limits::MATCH_LEN_CAP;
pub use redact::redact;
pub use scanner::{CompileError, Scanner};
pub use secrets::{builtin_secret_rules, SecretRule, SecretRulesError};

/// A detector shipped with Outpost, named in policy files by
/// [`Builtin::name`] (`detect = "credit_card"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Builtin {
    /// `email`: `local@domain.tld`, top-level domain of two or more letters.
    Email,
    /// `phone`: `+` international forms (8–15 digits) and common national
    /// forms with separators (10–12 digits); never a bare digit run.
    Phone,
    /// `credit_card`: 13–19 digits, known network prefix and length, valid
    /// Luhn check digit.
    CreditCard,
    /// `iban`: country, check digits and BBAN of the country's length,
    /// mod-97 check.
    Iban,
    /// `us_ssn`: US Social Security number, `ddd-dd-dddd` with valid area,
    /// group and serial; the bare and spaced forms only next to a keyword.
    UsSsn,
    /// `ipv4`: dotted quad, each octet ≤ 255, not part of a longer dotted
    /// run.
    Ipv4,
    /// `ipv6`: any form `std::net::Ipv6Addr` parses, with at least one
    /// decimal digit and four hex digits (so `::1` and `Foo::bar` are not).
    Ipv6,
    /// `ip_address`: an alias for [`Builtin::Ipv4`] and [`Builtin::Ipv6`]
    /// together; its findings carry kind `ipv4` or `ipv6`. Not in
    /// [`Builtin::ALL`], which lists each detector once.
    IpAddress,
    /// `secrets`: credentials and keys, from the rules in
    /// `policy/secrets.toml` plus the admin's extra secret rules.
    Secrets,
}

impl Builtin {
    /// Every distinct builtin detector, each once (without the
    /// [`Builtin::IpAddress`] alias): "the full built-in set".
    pub const ALL: &[Builtin] = &[
        Builtin::Email,
        Builtin::Phone,
        Builtin::CreditCard,
        Builtin::Iban,
        Builtin::UsSsn,
        Builtin::Ipv4,
        Builtin::Ipv6,
        Builtin::Secrets,
    ];

    /// The builtin a policy file names, e.g. `"credit_card"`; `None` for an
    /// unknown name. Accepts `"ip_address"` for [`Builtin::IpAddress`].
    pub fn from_name(name: &str) -> Option<Builtin> {
        match name {
            "email" => Some(Builtin::Email),
            "phone" => Some(Builtin::Phone),
            "credit_card" => Some(Builtin::CreditCard),
            "iban" => Some(Builtin::Iban),
            "us_ssn" => Some(Builtin::UsSsn),
            "ipv4" => Some(Builtin::Ipv4),
            "ipv6" => Some(Builtin::Ipv6),
            "ip_address" => Some(Builtin::IpAddress),
            "secrets" => Some(Builtin::Secrets),
            _ => None,
        }
    }

    /// The name policy files use for this builtin.
    pub fn name(self) -> &'static str {
        match self {
            Builtin::Email => "email",
            Builtin::Phone => "phone",
            Builtin::CreditCard => "credit_card",
            Builtin::Iban => "iban",
            Builtin::UsSsn => "us_ssn",
            Builtin::Ipv4 => "ipv4",
            Builtin::Ipv6 => "ipv6",
            Builtin::IpAddress => "ip_address",
            Builtin::Secrets => "secrets",
        }
    }
}

/// What a rule looks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DetectorSpec {
    /// A detector shipped with Outpost.
    Builtin(Builtin),
    /// An admin's regular expression (Rust `regex` syntax), matched
    /// anywhere in the text. Findings have kind `"pattern"`.
    Pattern(String),
    /// Words or phrases matched whole-word and ASCII-case-insensitively
    /// (non-ASCII letters match as written). Findings have kind
    /// `"keywords"`.
    Keywords(Vec<String>),
}

/// One guardrail rule as the scanner needs it: the policy's rule id (for
/// error messages) and its detector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpec {
    /// The policy's rule id, e.g. `"no-card-numbers"`.
    pub id: String,
    /// What the rule detects.
    pub detector: DetectorSpec,
}

/// One match: which rule, where (byte offsets into the scanned text, on
/// char boundaries, `start < end`), and what kind of data. Carries no part
/// of the matched text, so it is safe to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Index of the rule in the slice given to [`Scanner::compile`].
    pub rule: usize,
    /// First byte of the match.
    pub start: usize,
    /// One past the last byte of the match.
    pub end: usize,
    /// The kind of data: a builtin's name (`"credit_card"`, `"ipv4"`), the
    /// secret rule id for secrets (`"aws-access-key-id"`), `"pattern"` or
    /// `"keywords"`.
    pub kind: Cow<'static, str>,
}

impl Finding {
    /// Length of the match in bytes.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// True for an empty span; the scanner never reports one.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_name_round_trips() {
        for &builtin in Builtin::ALL.iter().chain([&Builtin::IpAddress]) {
            assert_eq!(Builtin::from_name(builtin.name()), Some(builtin));
        }
        assert_eq!(Builtin::from_name("credit-card"), None);
        assert_eq!(Builtin::from_name("EMAIL"), None);
    }

    #[test]
    fn all_lists_each_detector_once_without_the_alias() {
        assert_eq!(Builtin::ALL.len(), 8);
        assert!(!Builtin::ALL.contains(&Builtin::IpAddress));
    }

    #[test]
    fn scanner_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Scanner>();
    }
}
