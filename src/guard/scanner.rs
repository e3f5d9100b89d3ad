//! The scanner: a policy's rules compiled once, run on every text.
//!
//! [`Scanner::compile`] validates every rule (bad regexes, empty keyword
//! lists and broken secret rules are errors naming the rule) and builds
//! each detector once, however many rules use it: two rules on `email`
//! run the email detector once and each get a finding. [`Scanner::scan`]
//! runs the passes the rules need (see the module docs of `guard` for why
//! there are few), then sorts the findings by position.
//!
//! A scanner holds no per-scan state: it is `Send + Sync` and shared by
//! every request of a policy version.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use super::keywords::KeywordDetector;
use super::numbers::{self, Dispatch, HoldFrom, NUMBER_DETECTORS};
use super::pattern::PatternDetector;
use super::secrets::{shipped_secret_rules, SecretHit, SecretMatcher, SecretRulesError};
use super::{email, ip};
use super::{Builtin, DetectorSpec, Finding, RuleSpec, SecretRule};

/// Why a policy's rules do not compile. Every variant but
/// [`CompileError::BuiltinSecretRules`] is the policy's fault and names
/// the rule (index in the slice given to [`Scanner::compile`] and id, or
/// the secret rule's id).
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// A `pattern` rule's regex does not compile; `message` is the `regex`
    /// crate's explanation.
    #[error("guardrail rule {index} `{id}`: invalid pattern: {message}")]
    InvalidPattern {
        /// Index of the rule.
        index: usize,
        /// Id of the rule.
        id: String,
        /// The `regex` crate's error text.
        message: String,
    },
    /// A `keywords` rule has no keywords.
    #[error("guardrail rule {index} `{id}`: empty keyword list")]
    EmptyKeywordList {
        /// Index of the rule.
        index: usize,
        /// Id of the rule.
        id: String,
    },
    /// A `keywords` rule has an empty or all-whitespace keyword.
    #[error("guardrail rule {index} `{id}`: keyword {position} is empty")]
    EmptyKeyword {
        /// Index of the rule.
        index: usize,
        /// Id of the rule.
        id: String,
        /// Position of the keyword in the rule's list, from 0.
        position: usize,
    },
    /// A secret rule (built-in or extra) is broken.
    #[error("secret rule `{id}`: {problem}")]
    InvalidSecretRule {
        /// Id of the secret rule.
        id: String,
        /// What is wrong with it.
        problem: SecretRuleProblem,
    },
    /// Two secret rules share an id (an extra rule may not reuse a
    /// built-in id: that would silently replace a shipped rule).
    #[error("secret rule `{id}` is defined more than once")]
    DuplicateSecretRule {
        /// The repeated id.
        id: String,
    },
    /// The keyword automaton could not be built (too many or too long
    /// keywords for its memory limits).
    #[error("keyword matcher: {message}")]
    KeywordMatcher {
        /// The `aho-corasick` crate's error text.
        message: String,
    },
    /// The shipped `policy/secrets.toml` is broken: our fault, not the
    /// policy's.
    #[error(transparent)]
    BuiltinSecretRules(#[from] SecretRulesError),
}

impl CompileError {
    /// Index of the guardrail rule at fault (in the slice given to
    /// [`Scanner::compile`]), for errors about one.
    pub fn rule_index(&self) -> Option<usize> {
        match self {
            CompileError::InvalidPattern { index, .. }
            | CompileError::EmptyKeywordList { index, .. }
            | CompileError::EmptyKeyword { index, .. } => Some(*index),
            _ => None,
        }
    }

    /// Id of the secret rule at fault, for errors about one.
    pub fn secret_rule_id(&self) -> Option<&str> {
        match self {
            CompileError::InvalidSecretRule { id, .. }
            | CompileError::DuplicateSecretRule { id } => Some(id),
            _ => None,
        }
    }
}

/// What is wrong with a secret rule.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SecretRuleProblem {
    /// The id is empty.
    #[error("empty id")]
    EmptyId,
    /// The regex does not compile.
    #[error("invalid regex: {message}")]
    InvalidRegex {
        /// The `regex` crate's error text.
        message: String,
    },
    /// `secret_group` names a group the regex does not have.
    #[error("secret_group {group} does not exist (the regex has {groups} groups)")]
    NoSuchGroup {
        /// The configured group.
        group: usize,
        /// How many capture groups the regex has.
        groups: usize,
    },
    /// `entropy` is outside 0–8 bits per byte (or not a number).
    #[error("entropy {entropy} is not between 0 and 8 bits per byte")]
    EntropyOutOfRange {
        /// The configured floor.
        entropy: f64,
    },
    /// A keyword is the empty string.
    #[error("keyword {position} is empty")]
    EmptyKeyword {
        /// Position of the keyword in the rule's list, from 0.
        position: usize,
    },
    /// An allowlist regex does not compile.
    #[error("invalid allowlist regex: {message}")]
    InvalidAllowlistRegex {
        /// The `regex` crate's error text.
        message: String,
    },
    /// One of the rule's `examples` gives no hit of the rule.
    #[error("example {example} is not found by the rule")]
    ExampleNotFound {
        /// 1-based position in `examples`.
        example: usize,
    },
    /// One of the rule's `negatives` gives a hit of the rule.
    #[error("negative {negative} is found by the rule")]
    NegativeFound {
        /// 1-based position in `negatives`.
        negative: usize,
    },
}

/// Which rules use each builtin detector (indexes into the rule slice).
#[derive(Debug)]
struct BuiltinRules {
    email: Vec<usize>,
    ipv6: Vec<usize>,
    secrets: Vec<usize>,
    /// Per row of [`NUMBER_DETECTORS`] (see `numbers.rs`).
    numbers: Vec<Vec<usize>>,
}

impl Default for BuiltinRules {
    fn default() -> BuiltinRules {
        BuiltinRules {
            email: Vec::new(),
            ipv6: Vec::new(),
            secrets: Vec::new(),
            numbers: vec![Vec::new(); NUMBER_DETECTORS.len()],
        }
    }
}

impl BuiltinRules {
    fn add(&mut self, builtin: Builtin, rule: usize) {
        match builtin {
            Builtin::Email => self.email.push(rule),
            Builtin::Ipv6 => self.ipv6.push(rule),
            Builtin::IpAddress => {
                self.add(Builtin::Ipv4, rule);
                self.ipv6.push(rule);
            }
            Builtin::Secrets => self.secrets.push(rule),
            // Every other builtin has a row (a test in `numbers.rs` checks).
            number => {
                if let Some(row) = numbers::row_of(number) {
                    self.numbers[row].push(rule);
                }
            }
        }
    }
}

/// A policy's guardrail rules, compiled. See the module docs.
#[derive(Debug)]
pub struct Scanner {
    builtins: BuiltinRules,
    /// Which number detectors each digit run goes to; `None` if no rule
    /// uses one.
    numbers: Option<Dispatch>,
    secrets: Arc<SecretMatcher>,
    patterns: Vec<PatternDetector>,
    keywords: Option<KeywordDetector>,
    max_match_len: usize,
}

/// The secret matcher for the shipped rules plus `extra`, shared with the
/// last scanner compiled from the same rules. A policy compiles two scanners
/// (requests, responses) and every reload compiles them again; the secret
/// rules and their stream-hold regexes are the bulk of a scanner's memory,
/// and are the same in all of them.
fn shared_secret_matcher(
    shipped: &[SecretRule],
    extra: &[SecretRule],
) -> Result<Arc<SecretMatcher>, CompileError> {
    type Cached = Option<(Vec<SecretRule>, Arc<SecretMatcher>)>;
    static LAST: Mutex<Cached> = Mutex::new(None);
    // A poisoned lock only means a compile panicked; the cache is still valid.
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((rules, matcher)) = last.as_ref() {
        if rules.as_slice() == extra {
            return Ok(matcher.clone());
        }
    }
    let matcher = Arc::new(SecretMatcher::compile(shipped.iter().chain(extra))?);
    // An admin's examples are checked now, against every rule at once, as
    // a scan runs them; the shipped rules' are checked by the tests.
    matcher.check_examples(shipped.len(), extra)?;
    *last = Some((extra.to_vec(), matcher.clone()));
    Ok(matcher)
}

/// Appends one finding per rule in `rules` for the span `start..end`.
fn push_for_rules(
    out: &mut Vec<Finding>,
    rules: &[usize],
    start: usize,
    end: usize,
    kind: Cow<'static, str>,
) {
    out.extend(rules.iter().map(|&rule| Finding {
        rule,
        start,
        end,
        kind: kind.clone(),
    }));
}

impl Scanner {
    /// Compiles `rules` (findings refer to them by index) with the
    /// built-in secret rules plus `extra_secret_rules` for the `secrets`
    /// builtin. The extra rules are validated even if no rule uses
    /// `secrets`, so a broken one is reported when the policy is loaded.
    pub fn compile(
        rules: &[RuleSpec],
        extra_secret_rules: &[SecretRule],
    ) -> Result<Scanner, CompileError> {
        let mut builtins = BuiltinRules::default();
        let mut patterns = Vec::new();
        let mut keyword_rules = Vec::new();
        for (index, rule) in rules.iter().enumerate() {
            match &rule.detector {
                DetectorSpec::Builtin(builtin) => builtins.add(*builtin, index),
                DetectorSpec::Pattern(pattern) => {
                    patterns.push(PatternDetector::compile(index, &rule.id, pattern)?)
                }
                DetectorSpec::Keywords(words) => {
                    keyword_rules.push((index, rule.id.as_str(), words.as_slice()))
                }
            }
        }
        let keywords = if keyword_rules.is_empty() {
            None
        } else {
            Some(KeywordDetector::compile(keyword_rules)?)
        };
        let secrets = shared_secret_matcher(shipped_secret_rules()?, extra_secret_rules)?;

        let mut max_match_len = 0;
        let mut widen = |used: &[usize], len: usize| {
            if !used.is_empty() {
                max_match_len = max_match_len.max(len);
            }
        };
        widen(&builtins.email, email::MAX_LEN);
        for (rules, detector) in builtins.numbers.iter().zip(NUMBER_DETECTORS) {
            widen(rules, detector.max_len);
        }
        widen(&builtins.ipv6, ip::IPV6_MAX_LEN);
        widen(&builtins.secrets, secrets.max_len());
        for pattern in &patterns {
            max_match_len = max_match_len.max(pattern.max_len());
        }
        if let Some(keywords) = &keywords {
            max_match_len = max_match_len.max(keywords.max_len());
        }

        let numbers = Dispatch::new(|row| !builtins.numbers[row].is_empty());
        Ok(Scanner {
            builtins,
            numbers,
            secrets,
            patterns,
            keywords,
            max_match_len,
        })
    }

    /// Every finding of every rule in `text`, sorted by start (then end,
    /// then rule). A rule reports a span at most once.
    pub fn scan(&self, text: &str) -> Vec<Finding> {
        let mut out = Vec::new();
        if !self.builtins.email.is_empty() {
            self.find_emails(text, &mut out);
        }
        if let Some(numbers) = &self.numbers {
            self.find_numbers(numbers, text, &mut out);
        }
        if !self.builtins.ipv6.is_empty() {
            self.find_ipv6(text, &mut out);
        }
        if !self.builtins.secrets.is_empty() {
            self.find_secrets(text, &mut out);
        }
        for pattern in &self.patterns {
            pattern.find_all(text, &mut out);
        }
        if let Some(keywords) = &self.keywords {
            keywords.find_all(text, &mut out);
        }
        // Stable, so of two secret rules with the same span the earlier one
        // (in rule order) is kept by `dedup_by`.
        out.sort_by_key(|f| (f.start, f.end, f.rule));
        out.dedup_by(|later, kept| {
            later.rule == kept.rule && later.start == kept.start && later.end == kept.end
        });
        out
    }

    /// The longest match, in bytes, any finding of this scanner can span.
    /// Regexes that can match without bound count as
    /// [`MATCH_LEN_CAP`](super::MATCH_LEN_CAP), and their longer matches are
    /// reported clipped to it (see `limits.rs` for the trade-off). 0 if
    /// there are no rules. A stream holds back much less: see
    /// [`Scanner::stream_hold`].
    pub fn max_match_len(&self) -> usize {
        self.max_match_len
    }

    /// How many bytes at the end of `text` a stream must still hold back:
    /// the ones that could be part of a finding that is not final yet,
    /// because more text could complete, extend, cancel or create it.
    ///
    /// Contract: let `r = text.len() - stream_hold(text)` (a char boundary
    /// of `text`). For any continuation `c`, the findings of
    /// `scan(text + c)` that start before `r` are exactly the findings of
    /// `scan(text)` that start before `r` (same rule, span and kind). So a
    /// stream may settle and release everything before `r`.
    ///
    /// Each detector in use names the earliest place such a finding could
    /// start (see `hold.rs` and each detector's `hold_from`); on prose that
    /// is about the last word, on `4111 1111 11` the whole number, inside a
    /// PEM key block everything from `-----BEGIN`.
    ///
    /// Bounds: at most `text.len()`, and at most [`Scanner::max_match_len`]
    /// for the built-in set. Two things can need more, because a decision
    /// reads past the match: a scanner whose longest rule is a number or id
    /// detector (`123-45-6789.` is no SSN if a digit follows: up to
    /// `max_match_len() + 1`), and a secret rule whose matches need not
    /// contain one of its keywords (up to twice its longest match, see
    /// `hold.rs`).
    ///
    /// The one gap: a match of an unbounded regex longer than
    /// [`MATCH_LEN_CAP`](super::MATCH_LEN_CAP) is reported clipped, and is
    /// held only while it starts within the cap of the end.
    ///
    /// Cost: linear in the last few KiB of `text`, whatever its length.
    pub fn stream_hold(&self, text: &str) -> usize {
        let bytes = text.as_bytes();
        let b = &self.builtins;
        let numbers = b
            .numbers
            .iter()
            .zip(NUMBER_DETECTORS)
            .map(|(rules, detector)| (rules.as_slice(), detector.hold_from));
        let others: [(&[usize], HoldFrom); 2] =
            [(&b.email, email::hold_from), (&b.ipv6, ip::ipv6_hold_from)];
        let mut from = text.len();
        for (rules, hold_from) in numbers.chain(others) {
            if !rules.is_empty() {
                from = from.min(hold_from(bytes));
            }
        }
        if !b.secrets.is_empty() {
            from = from.min(self.secrets.hold_from(text));
        }
        for pattern in &self.patterns {
            from = from.min(pattern.hold_from(text));
        }
        if let Some(keywords) = &self.keywords {
            from = from.min(keywords.hold_from(text));
        }
        text.len() - from
    }

    fn find_emails(&self, text: &str, out: &mut Vec<Finding>) {
        let kind = Cow::Borrowed(Builtin::Email.name());
        let bytes = text.as_bytes();
        for at in memchr::memchr_iter(b'@', bytes) {
            if let Some(m) = email::find_around(bytes, at) {
                push_for_rules(out, &self.builtins.email, m.start, m.end, kind.clone());
            }
        }
    }

    /// The single pass over digit runs (see `numbers.rs`).
    fn find_numbers(&self, numbers: &Dispatch, text: &str, out: &mut Vec<Finding>) {
        numbers.for_each_match(text.as_bytes(), |row, m| {
            let kind = Cow::Borrowed(NUMBER_DETECTORS[row].builtin.name());
            push_for_rules(out, &self.builtins.numbers[row], m.start, m.end, kind);
        });
    }

    fn find_ipv6(&self, text: &str, out: &mut Vec<Finding>) {
        let kind = Cow::Borrowed(Builtin::Ipv6.name());
        let bytes = text.as_bytes();
        let mut resume = 0;
        for colon in memchr::memchr_iter(b':', bytes) {
            if colon < resume {
                continue;
            }
            let token = ip::find_ipv6_around(bytes, colon);
            resume = token.end;
            if let Some(m) = token.address {
                push_for_rules(out, &self.builtins.ipv6, m.start, m.end, kind.clone());
            }
        }
    }

    fn find_secrets(&self, text: &str, out: &mut Vec<Finding>) {
        let mut hits: Vec<SecretHit> = Vec::new();
        self.secrets.find_all(text, &mut hits);
        for hit in hits {
            let kind = Cow::Owned(self.secrets.rule_id(hit.rule).to_string());
            push_for_rules(
                out,
                &self.builtins.secrets,
                hit.span.start,
                hit.span.end,
                kind,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::MATCH_LEN_CAP;

    fn builtin_rules(builtins: &[Builtin]) -> Vec<RuleSpec> {
        builtins
            .iter()
            .map(|&b| RuleSpec {
                id: format!("no-{}", b.name()),
                detector: DetectorSpec::Builtin(b),
            })
            .collect()
    }

    fn full_set() -> Scanner {
        Scanner::compile(&builtin_rules(Builtin::ALL), &[]).expect("compiles")
    }

    /// (kind, matched text) of every finding.
    fn found<'t>(scanner: &Scanner, text: &'t str) -> Vec<(String, &'t str)> {
        scanner
            .scan(text)
            .into_iter()
            .map(|f| (f.kind.to_string(), &text[f.start..f.end]))
            .collect()
    }

    const MIXED: &str = "Hi, I'm Ana (ana.silva@example.com, +44 20 7946 0958). \
        Released v1.2.3.4.5 on 2024-01-15; build a94a8fe5ccb19ba61c4c0873d391e987982fbbd3, \
        request 550e8400-e29b-41d4-a716-446655440000, order 123-45-6789X. \
        Pay 4111 1111 1111 1111 or IBAN DE89 3704 0044 0532 0130 00, SSN 078-05-1121. \
        Server 192.168.1.20 and 2001:db8::7 run std::fmt at 10:30:00. \
        export AWS_ACCESS_KEY_ID=AKIAZ7VRSQ5TJX3KPM2W\n\
        card 4111111111111112 is a typo, so is DE89 3704 0044 0532 0130 01.";

    #[test]
    fn the_full_set_finds_each_kind_once_in_mixed_text() {
        let findings = found(&full_set(), MIXED);
        assert_eq!(
            findings,
            vec![
                ("email".to_string(), "ana.silva@example.com"),
                ("phone".to_string(), "+44 20 7946 0958"),
                ("credit_card".to_string(), "4111 1111 1111 1111"),
                ("iban".to_string(), "DE89 3704 0044 0532 0130 00"),
                ("us_ssn".to_string(), "078-05-1121"),
                ("ipv4".to_string(), "192.168.1.20"),
                ("ipv6".to_string(), "2001:db8::7"),
                ("aws-access-key-id".to_string(), "AKIAZ7VRSQ5TJX3KPM2W"),
            ]
        );
    }

    #[test]
    fn findings_point_at_their_rule_and_are_sorted() {
        let rules = builtin_rules(&[Builtin::Secrets, Builtin::Email, Builtin::CreditCard]);
        let scanner = Scanner::compile(&rules, &[]).expect("compiles");
        let findings = scanner.scan(MIXED);
        assert!(findings.windows(2).all(|w| w[0].start <= w[1].start));
        let rule_of = |kind: &str| findings.iter().find(|f| f.kind == kind).map(|f| f.rule);
        assert_eq!(rule_of("aws-access-key-id"), Some(0));
        assert_eq!(rule_of("email"), Some(1));
        assert_eq!(rule_of("credit_card"), Some(2));
        assert_eq!(findings.len(), 3);
    }

    #[test]
    fn two_rules_on_one_builtin_each_get_the_finding() {
        let mut rules = builtin_rules(&[Builtin::Email, Builtin::Email]);
        rules.push(RuleSpec {
            id: "ips".into(),
            detector: DetectorSpec::Builtin(Builtin::IpAddress),
        });
        let scanner = Scanner::compile(&rules, &[]).expect("compiles");
        let findings = scanner.scan("a@example.com 10.0.0.1 fe80::1");
        let summary: Vec<(usize, &str)> =
            findings.iter().map(|f| (f.rule, f.kind.as_ref())).collect();
        assert_eq!(
            summary,
            vec![(0, "email"), (1, "email"), (2, "ipv4"), (2, "ipv6")]
        );
    }

    #[test]
    fn patterns_and_keywords_run_alongside_builtins() {
        let rules = vec![
            RuleSpec {
                id: "projects".into(),
                detector: DetectorSpec::Pattern(r"\bPRJ-\d{4}\b".into()),
            },
            RuleSpec {
                id: "codenames".into(),
                detector: DetectorSpec::Keywords(vec!["Falcon".into(), "blue heron".into()]),
            },
            RuleSpec {
                id: "mail".into(),
                detector: DetectorSpec::Builtin(Builtin::Email),
            },
        ];
        let scanner = Scanner::compile(&rules, &[]).expect("compiles");
        let text = "PRJ-1234 (falcon) mailed to x@falcon.example.com re BLUE HERON";
        assert_eq!(
            found(&scanner, text),
            vec![
                ("pattern".to_string(), "PRJ-1234"),
                ("keywords".to_string(), "falcon"),
                ("email".to_string(), "x@falcon.example.com"),
                ("keywords".to_string(), "falcon"),
                ("keywords".to_string(), "BLUE HERON"),
            ]
        );
    }

    #[test]
    fn a_bad_pattern_error_names_the_rule_and_gives_the_regex_error() {
        let mut rules = builtin_rules(&[Builtin::Email]);
        rules.push(RuleSpec {
            id: "broken-rule".into(),
            detector: DetectorSpec::Pattern("([a-z]+".into()),
        });
        let err = Scanner::compile(&rules, &[]).expect_err("unclosed group");
        assert_eq!(err.rule_index(), Some(1));
        let message = err.to_string();
        assert!(
            message.contains("guardrail rule 1 `broken-rule`"),
            "{message}"
        );
        assert!(message.contains("unclosed group"), "{message}");
    }

    #[test]
    fn an_empty_keyword_list_is_an_error() {
        let rules = vec![RuleSpec {
            id: "words".into(),
            detector: DetectorSpec::Keywords(Vec::new()),
        }];
        let err = Scanner::compile(&rules, &[]).expect_err("empty");
        assert_eq!(err.rule_index(), Some(0));
        assert_eq!(
            err.to_string(),
            "guardrail rule 0 `words`: empty keyword list"
        );
    }

    fn extra(id: &str, regex: &str) -> SecretRule {
        SecretRule {
            id: id.into(),
            description: None,
            regex: regex.into(),
            keywords: vec!["acme_".into()],
            entropy: None,
            secret_group: None,
            allowlists: Vec::new(),
            examples: Vec::new(),
            negatives: Vec::new(),
        }
    }

    #[test]
    fn extra_secret_rules_are_found_with_their_id_as_kind() {
        let rules = builtin_rules(&[Builtin::Secrets]);
        let scanner = Scanner::compile(&rules, &[extra("acme-key", r"\bacme_[a-f0-9]{16}\b")])
            .expect("compiles");
        assert_eq!(
            found(&scanner, "use acme_0123456789abcdef here"),
            vec![("acme-key".to_string(), "acme_0123456789abcdef")]
        );
    }

    #[test]
    fn broken_extra_secret_rules_are_errors_naming_the_rule() {
        let no_rules: [RuleSpec; 0] = [];
        let err =
            Scanner::compile(&no_rules, &[extra("acme-key", "acme_(")]).expect_err("bad regex");
        assert_eq!(err.secret_rule_id(), Some("acme-key"));
        assert!(
            err.to_string()
                .starts_with("secret rule `acme-key`: invalid regex:"),
            "{err}"
        );

        let err = Scanner::compile(&no_rules, &[extra("jwt", "acme_x")]).expect_err("duplicate id");
        assert!(matches!(err, CompileError::DuplicateSecretRule { ref id } if id == "jwt"));

        let grouped = SecretRule {
            secret_group: Some(2),
            ..extra("acme-key", "acme_(x)")
        };
        let err = Scanner::compile(&no_rules, &[grouped]).expect_err("no group 2");
        assert!(
            err.to_string().contains("secret_group 2 does not exist"),
            "{err}"
        );

        let noisy = SecretRule {
            entropy: Some(9.0),
            ..extra("acme-key", "acme_x")
        };
        let err = Scanner::compile(&no_rules, &[noisy]).expect_err("entropy > 8");
        assert!(matches!(
            err,
            CompileError::InvalidSecretRule {
                problem: SecretRuleProblem::EntropyOutOfRange { .. },
                ..
            }
        ));
    }

    #[test]
    fn max_match_len_is_the_bound_of_the_rules_in_use() {
        let no_rules: [RuleSpec; 0] = [];
        assert_eq!(
            Scanner::compile(&no_rules, &[])
                .expect("compiles")
                .max_match_len(),
            0
        );
        let only = |detector| {
            let rules = vec![RuleSpec {
                id: "r".into(),
                detector,
            }];
            Scanner::compile(&rules, &[])
                .expect("compiles")
                .max_match_len()
        };
        assert_eq!(only(DetectorSpec::Pattern("abc|de".into())), 3);
        assert_eq!(only(DetectorSpec::Pattern("a+".into())), MATCH_LEN_CAP);
        assert_eq!(
            only(DetectorSpec::Keywords(vec!["ab".into(), "abcdef".into()])),
            6
        );
        assert_eq!(only(DetectorSpec::Builtin(Builtin::UsSsn)), 11);
        assert_eq!(only(DetectorSpec::Builtin(Builtin::MacAddress)), 17);
        assert_eq!(only(DetectorSpec::Builtin(Builtin::CryptoWallet)), 90);
        assert_eq!(only(DetectorSpec::Builtin(Builtin::Ipv4)), 18);
        assert_eq!(full_set().max_match_len(), MATCH_LEN_CAP);
    }

    #[test]
    fn no_finding_is_longer_than_max_match_len() {
        let mut rules = builtin_rules(Builtin::ALL);
        rules.push(RuleSpec {
            id: "greedy".into(),
            detector: DetectorSpec::Pattern(r"Q[A-Z]+".into()),
        });
        let scanner = Scanner::compile(&rules, &[]).expect("compiles");
        let long_key = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----",
            "QUJD".repeat(3000)
        );
        let long_email = format!("{}@{}.example.com", "a".repeat(64), "b".repeat(63));
        let text = format!(
            "{MIXED}\n{long_key}\n{long_email}\n+44 (0)20 7946 0958 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 \
             eyJ{}.eyJ{}.sig_{}",
            "A".repeat(3000),
            "B".repeat(3000),
            "C".repeat(100)
        );
        let findings = scanner.scan(&text);
        let kinds: Vec<&str> = findings.iter().map(|f| f.kind.as_ref()).collect();
        for kind in ["private-key", "pattern", "email", "phone", "ipv6", "jwt"] {
            assert!(kinds.contains(&kind), "{kind} not in {kinds:?}");
        }
        let max = scanner.max_match_len();
        for f in &findings {
            assert!(f.len() <= max, "{} is {} bytes > {max}", f.kind, f.len());
            assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
        }
        assert!(
            findings.iter().any(|f| f.len() == MATCH_LEN_CAP),
            "clipping was exercised"
        );
    }

    /// Kinds found before the national ids, wallets and MAC addresses came:
    /// a sample of those may also be, say, a phone number.
    const FIRST_KINDS: &[&str] = &["email", "phone", "credit_card", "iban", "ipv4", "ipv6"];

    #[test]
    fn the_full_set_finds_each_id_in_a_sentence() {
        let scanner = full_set();
        for (text, kind, matched) in [
            ("ITIN 911-70-1234 on file", "us_itin", "911-70-1234"),
            ("my passport no. A12345678.", "us_passport", "A12345678"),
            (
                "ABA routing number 121000358",
                "us_bank_routing",
                "121000358",
            ),
            ("NHS number 943 476 5919", "uk_nhs", "943 476 5919"),
            ("NINO AB 12 34 56 C please", "uk_nino", "AB 12 34 56 C"),
            ("Mi DNI es 12345678Z.", "es_nif", "12345678Z"),
            ("Mi NIE es X9613851N", "es_nie", "X9613851N"),
            (
                "codice fiscale RSSMRA85T10A562S",
                "it_fiscal_code",
                "RSSMRA85T10A562S",
            ),
            ("PESEL: 44051401359", "pl_pesel", "44051401359"),
            ("HETU 131052-308T", "fi_hetu", "131052-308T"),
            ("NRIC S1234567D was processed", "sg_nric", "S1234567D"),
            ("ABN 51 824 753 556", "au_abn", "51 824 753 556"),
            ("ACN 004 085 616", "au_acn", "004 085 616"),
            ("my TFN is 876 543 210", "au_tfn", "876 543 210"),
            ("Medicare card 2123 45670 1", "au_medicare", "2123 45670 1"),
            ("My PAN is ABCPD1234Z", "in_pan", "ABCPD1234Z"),
            ("Aadhaar 3123 4567 8909", "in_aadhaar", "3123 4567 8909"),
            ("His RRN is 960121-1021413", "kr_rrn", "960121-1021413"),
            (
                "send to 1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa",
                "crypto_wallet",
                "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa",
            ),
            (
                "to 0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
                "crypto_wallet",
                "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            ),
            (
                "mac 00:1A:2B:3C:4D:5E up",
                "mac_address",
                "00:1A:2B:3C:4D:5E",
            ),
            ("listen on [::1]:8080", "ipv6", "::1"),
            ("route fe80::1%eth0 and", "ipv6", "fe80::1%eth0"),
            ("subnet 192.168.1.0/24 only", "ipv4", "192.168.1.0/24"),
            ("card 5019717010103742", "credit_card", "5019717010103742"),
            ("call 09-7625400", "phone", "09-7625400"),
            ("SSN 078.05.1123", "us_ssn", "078.05.1123"),
        ] {
            let findings = found(&scanner, text);
            let ids: Vec<&(String, &str)> = findings
                .iter()
                .filter(|(k, _)| k == kind || !FIRST_KINDS.contains(&k.as_str()))
                .collect();
            assert_eq!(
                ids,
                vec![&(kind.to_string(), matched)],
                "{text}: {findings:?}"
            );
        }
    }

    #[test]
    fn the_full_set_ignores_near_misses() {
        let scanner = full_set();
        for text in [
            "card 4111111111111112 fails Luhn",
            "order 123-45-6789X and 000-12-3456",
            "version 1.2.3.4.5, v1.2.3.4, tag 2.3.1",
            "dates 2024-01-15, 15.01.2024, 2024-01-15T10:30:00Z",
            "uuid 550e8400-e29b-41d4-a716-446655440000",
            "sha a94a8fe5ccb19ba61c4c0873d391e987982fbbd3",
            "iban DE89 3704 0044 0532 0130 01",
            "key sk-abc123",
            r#"password = "aaaaaaaaaaaaaaaaaaaa""#,
            "counts 1,234,567 and 1 234 567 890 and 3.14159",
            "ids 4155550132 20240115093000 1705312345678901234",
            "rust std::fmt::Display and a::b::c, time 10:30:00",
            "icon@2x.png, npm i pkg@1.2.3, std::1 and a::1",
            "commit 3f786850e387550fdab836ed7e6dc881de23001b, tree 1b2e5f5a",
            "sha256 8f953371d3e85eddb89b05ed6b9e680791055315c73e1025ab5dba7bb2aee189",
            "uuid 123e4567-e89b-12d3-a456-426614174000",
            "released 1.24.3, 10.0.19045.3803 and v2.3.1-rc.1",
            "at 1705312345678 and 20240115T103000Z, 2024-01-15 10:30:00.123",
            "order 123456789, ref 876543210, invoice 004085616, id 2123456701",
            "ids 44051401359 9601211021413 400123456787 121000358",
            "parts AB123456 and X-12345 and SKU ABCPD1234Z",
            "hash 0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
            "macs de:ad:be:ef:ca:fe 00:11:22:33:44:55 24-01-15-10-30-00",
            "thousands 1 234 567 and 12 345 678 901 and 123 456 789",
        ] {
            assert!(
                found(&scanner, text).is_empty(),
                "{text}: {:?}",
                found(&scanner, text)
            );
        }
    }
}
