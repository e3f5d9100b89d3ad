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
//! One pass over digit runs feeds every detector of numbers and ids (cards,
//! phones, IBANs, IPv4, national ids, wallets, MAC addresses: each id has
//! a digit somewhere, and the pass offers a run only to the detectors whose
//! shapes fit its length and neighbours, `numbers.rs`); `memchr` finds
//! every `@` (email) and
//! `:` (IPv6); one pass finds every secret rule's keywords
//! (`keyword_finder.rs`), and a secret rule's regex then runs only on a
//! short window around each keyword hit.
//!
//! Precision comes first: a number that is often something else (nine bare
//! digits, a 3-3-3 group) is reported only after a context word (`ssn`,
//! `routing`, `medicare`, …; see `context.rs`), and each file's docs say
//! what its detector finds with and without one.
//!
//! Files, one per detector family: `email.rs`, `phone.rs`, `card.rs`,
//! `iban.rs`, `ssn.rs`, `ip.rs`, `us_ids.rs` (ITIN, passport, routing
//! number), `uk_ids.rs` (NHS number, NINO), `es_ids.rs` (NIF, NIE),
//! `it_fiscal_code.rs`, `pl_pesel.rs`, `fi_hetu.rs`, `sg_nric.rs`,
//! `au_ids.rs` (ABN, ACN, TFN, Medicare), `in_ids.rs` (PAN, Aadhaar),
//! `kr_rrn.rs`, `crypto_wallet.rs`, `mac_address.rs`, `secrets.rs`,
//! `pattern.rs`, `keywords.rs`; shared pieces: `digits.rs` (the digit-run
//! pass), `numbers.rs` (the table of detectors it feeds), `grouped.rs`
//! (numbers printed in digit groups), `context.rs`
//! (context words), `dates.rs` (dates of birth inside ids),
//! `keyword_finder.rs` (the keyword pass for secrets), `boundary.rs` (where
//! a match may start and end), `limits.rs` (how long a match may be),
//! `hold.rs` (how much of a stream's end may still change,
//! [`Scanner::stream_hold`]), `scanner.rs` (compiling rules, running a
//! scan), `redact.rs`.

mod au_ids;
mod boundary;
mod card;
mod context;
mod crypto_wallet;
mod dates;
mod digits;
mod email;
mod es_ids;
mod fi_hetu;
mod grouped;
mod hold;
mod iban;
mod in_ids;
mod ip;
mod it_fiscal_code;
mod keyword_finder;
mod keywords;
mod kr_rrn;
mod lazy;
mod limits;
mod mac_address;
mod numbers;
mod pattern;
mod phone;
mod pl_pesel;
mod redact;
mod scanner;
mod secrets;
mod sg_nric;
mod ssn;
mod uk_ids;
mod us_ids;

use std::borrow::Cow;

pub use limits::MATCH_LEN_CAP;
pub use redact::redact;
pub use scanner::{CompileError, Scanner};
pub use secrets::{
    builtin_secret_rules, AllowCondition, AllowTarget, Allowlist, SecretRule, SecretRulesError,
};

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
    /// group and serial; the bare, spaced and dotted forms only next to a
    /// keyword.
    UsSsn,
    /// `ipv4`: dotted quad, each octet ≤ 255, not part of a longer dotted
    /// run; with its CIDR prefix length if written (`10.0.0.0/8`).
    Ipv4,
    /// `ipv6`: any form `std::net::Ipv6Addr` parses, with at least one
    /// decimal digit and four hex digits (so `Foo::bar` is not), or `::1`;
    /// with its zone id and CIDR prefix length if written.
    Ipv6,
    /// `ip_address`: an alias for [`Builtin::Ipv4`] and [`Builtin::Ipv6`]
    /// together; its findings carry kind `ipv4` or `ipv6`. Not in
    /// [`Builtin::ALL`], which lists each detector once.
    IpAddress,
    /// `secrets`: credentials and keys, from the rules in
    /// `policy/secrets.toml` plus the admin's extra secret rules.
    Secrets,
    /// `us_itin`: US Individual Taxpayer Identification Number, `9dd-dd-dddd`
    /// with an issued middle group; the spaced, dotted and bare forms only
    /// next to a keyword.
    UsItin,
    /// `us_passport`: US passport number, nine digits or a letter and eight,
    /// only next to `passport`.
    UsPassport,
    /// `us_bank_routing`: ABA routing number, nine digits with a Federal
    /// Reserve prefix and the ABA check, only next to a keyword.
    UsBankRouting,
    /// `uk_nhs`: NHS number, ten digits with the mod-11 check, only next to
    /// a keyword.
    UkNhs,
    /// `uk_nino`: UK National Insurance number, `AB 12 34 56 C` with
    /// HMRC's prefix rules; in lower case only next to a keyword.
    UkNino,
    /// `es_nif`: Spanish DNI/NIF, eight digits and the check letter (seven
    /// only next to a keyword).
    EsNif,
    /// `es_nie`: Spanish NIE, `X`/`Y`/`Z`, seven digits and the check letter.
    EsNie,
    /// `it_fiscal_code`: Italian codice fiscale, sixteen characters with a
    /// month letter, a day of birth and the check letter.
    ItFiscalCode,
    /// `pl_pesel`: Polish PESEL, eleven digits with a valid date and check
    /// digit, only next to `pesel`.
    PlPesel,
    /// `fi_hetu`: Finnish personal identity code, `DDMMYYCZZZQ` with a
    /// valid date and check character; the all-digit form only next to a
    /// keyword.
    FiHetu,
    /// `sg_nric`: Singapore NRIC/FIN, `S1234567D` with the series' check
    /// letter.
    SgNric,
    /// `au_abn`: Australian Business Number, mod 89; bare only next to a
    /// keyword.
    AuAbn,
    /// `au_acn`: Australian Company Number, with its check digit, only next
    /// to a keyword.
    AuAcn,
    /// `au_tfn`: Australian Tax File Number, weights mod 11, only next to a
    /// keyword.
    AuTfn,
    /// `au_medicare`: Australian Medicare card number, with its check digit,
    /// only next to `medicare`.
    AuMedicare,
    /// `in_pan`: Indian Permanent Account Number, `ABCPD1234Z`, only next to
    /// a keyword.
    InPan,
    /// `in_aadhaar`: Indian Aadhaar number, twelve digits with the Verhoeff
    /// check; other than `2345 6789 0124` only next to a keyword.
    InAadhaar,
    /// `kr_rrn`: Korean resident registration number, `YYMMDD-GNNNNNC` with
    /// a valid date and check digit (without the check, or bare, only next
    /// to a keyword).
    KrRrn,
    /// `crypto_wallet`: Bitcoin (Base58Check, Bech32/Bech32m) and Ethereum
    /// (EIP-55; unchecksummed only next to a keyword) addresses.
    CryptoWallet,
    /// `mac_address`: MAC address, six hex pairs with `:` or `-`, or
    /// `xxxx.xxxx.xxxx`, with at least one letter and one decimal digit.
    MacAddress,
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
        Builtin::UsItin,
        Builtin::UsPassport,
        Builtin::UsBankRouting,
        Builtin::UkNhs,
        Builtin::UkNino,
        Builtin::EsNif,
        Builtin::EsNie,
        Builtin::ItFiscalCode,
        Builtin::PlPesel,
        Builtin::FiHetu,
        Builtin::SgNric,
        Builtin::AuAbn,
        Builtin::AuAcn,
        Builtin::AuTfn,
        Builtin::AuMedicare,
        Builtin::InPan,
        Builtin::InAadhaar,
        Builtin::KrRrn,
        Builtin::CryptoWallet,
        Builtin::MacAddress,
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
            "us_itin" => Some(Builtin::UsItin),
            "us_passport" => Some(Builtin::UsPassport),
            "us_bank_routing" => Some(Builtin::UsBankRouting),
            "uk_nhs" => Some(Builtin::UkNhs),
            "uk_nino" => Some(Builtin::UkNino),
            "es_nif" => Some(Builtin::EsNif),
            "es_nie" => Some(Builtin::EsNie),
            "it_fiscal_code" => Some(Builtin::ItFiscalCode),
            "pl_pesel" => Some(Builtin::PlPesel),
            "fi_hetu" => Some(Builtin::FiHetu),
            "sg_nric" => Some(Builtin::SgNric),
            "au_abn" => Some(Builtin::AuAbn),
            "au_acn" => Some(Builtin::AuAcn),
            "au_tfn" => Some(Builtin::AuTfn),
            "au_medicare" => Some(Builtin::AuMedicare),
            "in_pan" => Some(Builtin::InPan),
            "in_aadhaar" => Some(Builtin::InAadhaar),
            "kr_rrn" => Some(Builtin::KrRrn),
            "crypto_wallet" => Some(Builtin::CryptoWallet),
            "mac_address" => Some(Builtin::MacAddress),
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
            Builtin::UsItin => "us_itin",
            Builtin::UsPassport => "us_passport",
            Builtin::UsBankRouting => "us_bank_routing",
            Builtin::UkNhs => "uk_nhs",
            Builtin::UkNino => "uk_nino",
            Builtin::EsNif => "es_nif",
            Builtin::EsNie => "es_nie",
            Builtin::ItFiscalCode => "it_fiscal_code",
            Builtin::PlPesel => "pl_pesel",
            Builtin::FiHetu => "fi_hetu",
            Builtin::SgNric => "sg_nric",
            Builtin::AuAbn => "au_abn",
            Builtin::AuAcn => "au_acn",
            Builtin::AuTfn => "au_tfn",
            Builtin::AuMedicare => "au_medicare",
            Builtin::InPan => "in_pan",
            Builtin::InAadhaar => "in_aadhaar",
            Builtin::KrRrn => "kr_rrn",
            Builtin::CryptoWallet => "crypto_wallet",
            Builtin::MacAddress => "mac_address",
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

impl DetectorSpec {
    /// How `outpost policy show` names it: `secrets`, `pattern "…"`,
    /// `keywords [a, b]`.
    pub fn describe(&self) -> String {
        match self {
            DetectorSpec::Builtin(b) => b.name().to_string(),
            DetectorSpec::Pattern(p) => format!("pattern {p:?}"),
            DetectorSpec::Keywords(k) => format!("keywords [{}]", k.join(", ")),
        }
    }
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
        assert_eq!(Builtin::ALL.len(), 28);
        assert!(!Builtin::ALL.contains(&Builtin::IpAddress));
        for (i, a) in Builtin::ALL.iter().enumerate() {
            assert!(!Builtin::ALL[i + 1..].contains(a), "{} twice", a.name());
        }
    }

    #[test]
    fn scanner_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Scanner>();
    }
}
