//! Secrets: credentials and keys, found by curated rules.
//!
//! A *secret rule* ([`SecretRule`], fields as in gitleaks) is a regex with
//! a keyword prefilter, an optional entropy floor and an optional secret
//! group; `policy/secrets.toml` documents the fields and holds the built-in
//! rules, and admins add their own in the same format.
//!
//! How a scan runs, so that 20 regexes never each walk the whole text:
//! 1. One pass finds every keyword of every rule (ASCII-case-insensitive,
//!    overlapping, so `sk-` and `sk-ant-` at the same place both count);
//!    see `keyword_finder.rs` for why that is not Aho-Corasick.
//! 2. Each hit gives its rules a *window*: the bytes within the rule's
//!    *reach* (its longest possible match, [`limits`](super::limits)) of the
//!    keyword, plus one char on the right so that `\b` and `$` at the end of
//!    a match see the real next char. A match that contains the keyword
//!    lies wholly inside. Overlapping windows of one rule are merged.
//! 3. The rule's regex runs over each window, with the text before the
//!    window as look-behind context (`find_at` on the text cut at the
//!    window's end). A match that touches the cut end may be cut short and
//!    is dropped, unless it is already longer than the reach: then it is a
//!    capped rule's long match, reported clipped.
//! 4. A match passes if the entropy of its secret (the `secret_group`, or
//!    the whole match) reaches the rule's floor.
//!
//! So a match is found when it lies within the reach of a keyword hit; a
//! keyword that is part of the match always qualifies. A rule without
//! keywords runs over the whole text.

use std::ops::Range;
use std::sync::Arc;

use regex::Regex;
use serde::Deserialize;

use super::boundary::{ceil_char_boundary, floor_char_boundary};
use super::hold::{HoldSpec, RegexHold};
use super::keyword_finder::KeywordFinder;
use super::lazy::LazyRegex;
use super::limits::{capped_regex_max_len, clip_to_cap};
use super::scanner::{CompileError, SecretRuleProblem};

/// The built-in rules, compiled in.
const BUILTIN_RULES: &str = include_str!("../../policy/secrets.toml");

/// One secret rule, as written in `policy/secrets.toml` or in an admin's
/// policy. See that file for what each field means.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRule {
    /// Unique id, reported as the finding's kind.
    pub id: String,
    /// For people.
    pub description: Option<String>,
    /// Rust `regex` syntax.
    pub regex: String,
    /// Prefilter: the regex runs only near these (ASCII-case-insensitive).
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Minimum Shannon entropy of the secret, bits per byte (0–8).
    pub entropy: Option<f64>,
    /// Capture group that is the secret; the whole match if absent.
    pub secret_group: Option<usize>,
    /// A match any of these allows is not reported (placeholders, test
    /// values).
    #[serde(default)]
    pub allowlists: Vec<Allowlist>,
    /// Texts the rule must find a secret in (checked by the tests for the
    /// built-in rules, and when an admin's policy is loaded).
    #[serde(default)]
    pub examples: Vec<String>,
    /// Texts the rule must find nothing in (checked like `examples`).
    #[serde(default)]
    pub negatives: Vec<String>,
}

/// Values a rule does not report, as gitleaks' `[[rules.allowlists]]`:
/// a match is allowed when its secret (or whole match, by `target`) matches
/// one of `regexes` or contains one of `stopwords` (ASCII case-insensitive);
/// with `condition = "and"`, when every listed kind of criterion holds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allowlist {
    /// For people.
    pub description: Option<String>,
    /// Rust `regex` syntax, searched in the target.
    #[serde(default)]
    pub regexes: Vec<String>,
    /// Substrings, ASCII case-insensitive.
    #[serde(default)]
    pub stopwords: Vec<String>,
    /// How the criteria combine.
    #[serde(default)]
    pub condition: AllowCondition,
    /// What `regexes` are searched in.
    #[serde(default)]
    pub target: AllowTarget,
}

/// How an allowlist's criteria combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AllowCondition {
    /// Any criterion allows the match.
    #[default]
    Or,
    /// Every kind of criterion listed (regexes, stopwords) must hold.
    And,
}

/// What an allowlist's `regexes` are searched in. (gitleaks also has
/// `line`; a line can grow as a stream goes on, so a finding would not be
/// final when its match is: such allowlists are read as `match`, which
/// allows less.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AllowTarget {
    /// The secret (the secret group, else the whole match).
    #[default]
    Secret,
    /// The whole match.
    Match,
}

/// `policy/secrets.toml` does not parse: a bug in Outpost, caught by its
/// tests, never the admin's fault.
#[derive(Debug, Clone, thiserror::Error)]
#[error("built-in secret rules (policy/secrets.toml) do not parse: {0}")]
pub struct SecretRulesError(#[from] toml::de::Error);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretRulesFile {
    /// Apply to every rule of the file.
    #[serde(default)]
    allowlists: Vec<Allowlist>,
    rules: Vec<SecretRule>,
}

/// The built-in secret rules, parsed from `policy/secrets.toml`, each with
/// the file's own allowlists added to its own.
pub fn builtin_secret_rules() -> Result<Vec<SecretRule>, SecretRulesError> {
    let file: SecretRulesFile = toml::from_str(BUILTIN_RULES)?;
    let mut rules = file.rules;
    for rule in &mut rules {
        rule.allowlists.extend(file.allowlists.iter().cloned());
    }
    Ok(rules)
}

/// [`builtin_secret_rules`], parsed once per process: every policy load
/// compiles two scanners, and the file is 160 KB of TOML.
pub(crate) fn shipped_secret_rules() -> Result<&'static [SecretRule], SecretRulesError> {
    static SHIPPED: std::sync::OnceLock<Result<Vec<SecretRule>, SecretRulesError>> =
        std::sync::OnceLock::new();
    SHIPPED
        .get_or_init(builtin_secret_rules)
        .as_deref()
        .map_err(Clone::clone)
}

/// A secret rule ready to run.
#[derive(Debug)]
struct CompiledRule {
    id: String,
    /// Compiled on first use: most rules' keywords never occur.
    regex: LazyRegex,
    entropy: Option<f64>,
    secret_group: Option<usize>,
    /// Longest match reported, in bytes (capped, see `limits`).
    reach: usize,
    /// Shared between the rules that list the same allowlist (the file's
    /// own apply to every rule: compiled once, not once per rule).
    allowlists: Vec<Arc<CompiledAllowlist>>,
}

#[derive(Debug)]
struct CompiledAllowlist {
    regexes: Option<regex::RegexSet>,
    /// ASCII-lowercased.
    stopwords: Vec<String>,
    condition: AllowCondition,
    target: AllowTarget,
}

impl CompiledAllowlist {
    /// Whether the match `whole`, with secret `secret`, is allowed.
    fn allows(&self, whole: &str, secret: &str) -> bool {
        let by_regex = self.regexes.as_ref().map(|set| {
            set.is_match(match self.target {
                AllowTarget::Secret => secret,
                AllowTarget::Match => whole,
            })
        });
        let by_stopword = (!self.stopwords.is_empty()).then(|| {
            let secret = secret.to_ascii_lowercase();
            self.stopwords.iter().any(|w| secret.contains(w.as_str()))
        });
        let mut criteria = [by_regex, by_stopword].into_iter().flatten();
        match self.condition {
            AllowCondition::Or => criteria.any(|hit| hit),
            AllowCondition::And => {
                let all: Vec<bool> = criteria.collect();
                !all.is_empty() && all.into_iter().all(|hit| hit)
            }
        }
    }
}

/// One secret found: which rule (index in the matcher), where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SecretHit {
    pub(crate) rule: usize,
    pub(crate) span: Range<usize>,
}

/// All secret rules of a scanner, with their shared keyword finder.
#[derive(Debug)]
pub(crate) struct SecretMatcher {
    rules: Vec<CompiledRule>,
    /// Over every distinct (ASCII-lowercased) keyword.
    keywords: KeywordFinder,
    /// Rules per keyword, by keyword index.
    keyword_rules: Vec<Vec<usize>>,
    /// Rules without keywords: run over the whole text.
    unkeyed: Vec<usize>,
    /// Where an unfinished match may start, for streams.
    hold: RegexHold,
}

impl SecretMatcher {
    /// Compiles `rules`, checking every field. Ids must be unique.
    pub(crate) fn compile<'a>(
        rules: impl IntoIterator<Item = &'a SecretRule>,
    ) -> Result<SecretMatcher, CompileError> {
        let mut compiled: Vec<CompiledRule> = Vec::new();
        // Distinct ASCII-lowercased keywords, and the rules using each.
        let mut distinct: Vec<String> = Vec::new();
        let mut keyword_rules: Vec<Vec<usize>> = Vec::new();
        let mut unkeyed = Vec::new();
        let mut sources: Vec<&SecretRule> = Vec::new();
        let mut allowlists: Vec<(&Allowlist, Arc<CompiledAllowlist>)> = Vec::new();
        for rule in rules {
            let index = compiled.len();
            if compiled.iter().any(|c| c.id == rule.id) {
                return Err(CompileError::DuplicateSecretRule {
                    id: rule.id.clone(),
                });
            }
            compiled.push(compile_rule(rule, &mut allowlists)?);
            sources.push(rule);
            if rule.keywords.is_empty() {
                unkeyed.push(index);
            }
            for keyword in &rule.keywords {
                let keyword = keyword.to_ascii_lowercase();
                let id = match distinct.iter().position(|k| *k == keyword) {
                    Some(id) => id,
                    None => {
                        distinct.push(keyword);
                        keyword_rules.push(Vec::new());
                        distinct.len() - 1
                    }
                };
                if !keyword_rules[id].contains(&index) {
                    keyword_rules[id].push(index);
                }
            }
        }
        let keywords = KeywordFinder::new(&distinct).map_err(|e| CompileError::KeywordMatcher {
            message: e.to_string(),
        })?;
        let specs: Vec<HoldSpec<'_>> = sources
            .iter()
            .zip(&compiled)
            .map(|(source, rule)| HoldSpec {
                pattern: &source.regex,
                reach: rule.reach,
                keywords: Some(&source.keywords),
            })
            .collect();
        let hold = RegexHold::new(&specs);
        Ok(SecretMatcher {
            rules: compiled,
            keywords,
            keyword_rules,
            unkeyed,
            hold,
        })
    }

    /// Checks the `examples` and `negatives` of `rules` (the rules this
    /// matcher was compiled from, in order, from rule `first` on), run through the whole matcher
    /// as a scan would: each example must give a hit of its rule, and no
    /// negative may.
    pub(crate) fn check_examples<'a>(
        &self,
        first: usize,
        rules: impl IntoIterator<Item = &'a SecretRule>,
    ) -> Result<(), CompileError> {
        let mut hits = Vec::new();
        for (index, rule) in (first..).zip(rules) {
            let mut hit_in = |text: &str| {
                hits.clear();
                self.find_all(text, &mut hits);
                hits.iter().any(|h| h.rule == index)
            };
            let problem = if let Some(n) = rule.examples.iter().position(|e| !hit_in(e)) {
                SecretRuleProblem::ExampleNotFound { example: n + 1 }
            } else if let Some(n) = rule.negatives.iter().position(|e| hit_in(e)) {
                SecretRuleProblem::NegativeFound { negative: n + 1 }
            } else {
                continue;
            };
            return Err(CompileError::InvalidSecretRule {
                id: rule.id.clone(),
                problem,
            });
        }
        Ok(())
    }

    /// The id of rule `rule`.
    pub(crate) fn rule_id(&self, rule: usize) -> &str {
        &self.rules[rule].id
    }

    /// Longest secret reported, in bytes.
    pub(crate) fn max_len(&self) -> usize {
        self.rules.iter().map(|r| r.reach).max().unwrap_or(0)
    }

    /// Where a secret that more text could still change may start in `text`
    /// (its length if nowhere); see `hold.rs`.
    pub(crate) fn hold_from(&self, text: &str) -> usize {
        self.hold.hold_from(text)
    }

    /// Appends every secret in `text` to `out`, grouped by rule in rule
    /// order, each rule's hits left to right.
    pub(crate) fn find_all(&self, text: &str, out: &mut Vec<SecretHit>) {
        let mut windows: Vec<(usize, usize, usize)> = Vec::new();
        self.keywords.find_all(text.as_bytes(), |hit| {
            for &rule in &self.keyword_rules[hit.keyword] {
                let reach = self.rules[rule].reach;
                let start = floor_char_boundary(text, hit.end.saturating_sub(reach));
                let end = ceil_char_boundary(text, hit.start.saturating_add(reach) + 1);
                windows.push((rule, start, end));
            }
        });
        for &rule in &self.unkeyed {
            windows.push((rule, 0, text.len()));
        }
        windows.sort_unstable();

        let mut merged: Option<(usize, usize, usize)> = None;
        for (rule, start, end) in windows {
            match merged.as_mut() {
                Some((r, _, e)) if *r == rule && start <= *e => *e = (*e).max(end),
                _ => {
                    if let Some((r, s, e)) = merged.replace((rule, start, end)) {
                        self.search_window(r, text, s..e, out);
                    }
                }
            }
        }
        if let Some((r, s, e)) = merged {
            self.search_window(r, text, s..e, out);
        }
    }

    /// Runs rule `index` over `window` of `text`.
    fn search_window(
        &self,
        index: usize,
        text: &str,
        window: Range<usize>,
        out: &mut Vec<SecretHit>,
    ) {
        let rule = &self.rules[index];
        let haystack = &text[..window.end];
        let Some(regex) = rule.regex.get() else {
            // It compiled when the policy loaded, so this cannot happen;
            // if it did, the window is reported rather than let through.
            tracing::error!(rule = %rule.id, "secret rule's regex failed to compile on use");
            out.push(SecretHit {
                rule: index,
                span: clip_to_cap(text, window),
            });
            return;
        };
        let cut = window.end < text.len();
        let mut at = window.start;
        while at <= haystack.len() {
            let (whole, secret) = match rule.secret_group {
                Some(group) => {
                    let Some(captures) = regex.captures_at(haystack, at) else {
                        break;
                    };
                    let Some(whole) = captures.get(0) else { break };
                    // A group outside the match's path: report the whole match.
                    let secret = captures.get(group).unwrap_or(whole);
                    (whole.range(), secret.range())
                }
                None => {
                    let Some(m) = regex.find_at(haystack, at) else {
                        break;
                    };
                    (m.range(), m.range())
                }
            };
            let touches_cut = cut && whole.end == window.end;
            if touches_cut && whole.len() <= rule.reach {
                // Possibly cut short by the window; out of every keyword's reach.
                break;
            }
            if !secret.is_empty()
                && rule.entropy.is_none_or(|floor| {
                    shannon_entropy(&haystack.as_bytes()[secret.clone()]) >= floor
                })
                && !rule
                    .allowlists
                    .iter()
                    .any(|a| a.allows(&haystack[whole.clone()], &haystack[secret.clone()]))
            {
                out.push(SecretHit {
                    rule: index,
                    span: clip_to_cap(text, secret),
                });
            }
            if touches_cut {
                break;
            }
            at = if whole.is_empty() {
                ceil_char_boundary(text, whole.end + 1)
            } else {
                whole.end
            };
        }
    }
}

fn compile_rule<'a>(
    rule: &'a SecretRule,
    shared: &mut Vec<(&'a Allowlist, Arc<CompiledAllowlist>)>,
) -> Result<CompiledRule, CompileError> {
    let invalid = |problem| CompileError::InvalidSecretRule {
        id: rule.id.clone(),
        problem,
    };
    if rule.id.trim().is_empty() {
        return Err(invalid(SecretRuleProblem::EmptyId));
    }
    if let Some(position) = rule.keywords.iter().position(|k| k.is_empty()) {
        return Err(invalid(SecretRuleProblem::EmptyKeyword { position }));
    }
    if let Some(floor) = rule.entropy {
        if !(0.0..=8.0).contains(&floor) {
            return Err(invalid(SecretRuleProblem::EntropyOutOfRange {
                entropy: floor,
            }));
        }
    }
    // Compiled here to check it, and again on first use (see `lazy.rs`).
    let regex = Regex::new(&rule.regex).map_err(|e| {
        invalid(SecretRuleProblem::InvalidRegex {
            message: e.to_string(),
        })
    })?;
    if let Some(group) = rule.secret_group {
        // `captures_len` counts group 0, the whole match.
        let groups = regex.captures_len() - 1;
        if group > groups {
            return Err(invalid(SecretRuleProblem::NoSuchGroup { group, groups }));
        }
    }
    let mut allowlists = Vec::new();
    for allow in &rule.allowlists {
        if let Some((_, done)) = shared.iter().find(|(a, _)| *a == allow) {
            allowlists.push(done.clone());
            continue;
        }
        let regexes = (!allow.regexes.is_empty())
            .then(|| regex::RegexSet::new(&allow.regexes))
            .transpose()
            .map_err(|e| {
                invalid(SecretRuleProblem::InvalidAllowlistRegex {
                    message: e.to_string(),
                })
            })?;
        let compiled = Arc::new(CompiledAllowlist {
            regexes,
            stopwords: allow
                .stopwords
                .iter()
                .map(|w| w.to_ascii_lowercase())
                .collect(),
            condition: allow.condition,
            target: allow.target,
        });
        shared.push((allow, compiled.clone()));
        allowlists.push(compiled);
    }
    Ok(CompiledRule {
        id: rule.id.clone(),
        reach: capped_regex_max_len(&rule.regex),
        regex: LazyRegex::new(rule.regex.as_str()),
        entropy: rule.entropy,
        secret_group: rule.secret_group,
        allowlists,
    })
}

/// Shannon entropy of `bytes` in bits per byte: 0 for one repeated byte,
/// log2(n) for n distinct bytes used equally.
pub(crate) fn shannon_entropy(bytes: &[u8]) -> f64 {
    if bytes.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in bytes {
        counts[usize::from(b)] += 1;
    }
    let total = bytes.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / total;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table-driven check of `policy/secrets.toml`: every rule has an
    /// example and a negative, every example is found by its rule and no
    /// negative is, all through the whole matcher as a scan runs it.
    #[test]
    fn every_builtin_rule_finds_its_examples_and_none_of_its_negatives() {
        let rules = builtin_secret_rules().unwrap();
        let bare: Vec<&str> = rules
            .iter()
            .filter(|r| r.examples.is_empty() || r.negatives.is_empty())
            .map(|r| r.id.as_str())
            .collect();
        assert!(
            bare.is_empty(),
            "rules without an example and a negative: {bare:?}"
        );
        let matcher = SecretMatcher::compile(&rules).unwrap();
        let mut failures = Vec::new();
        let mut hits = Vec::new();
        for (index, rule) in rules.iter().enumerate() {
            for example in &rule.examples {
                hits.clear();
                matcher.find_all(example, &mut hits);
                if !hits.iter().any(|h| h.rule == index) {
                    failures.push(format!("{}: example not found: {example}", rule.id));
                }
            }
            for negative in &rule.negatives {
                hits.clear();
                matcher.find_all(negative, &mut hits);
                if hits.iter().any(|h| h.rule == index) {
                    failures.push(format!("{}: negative found: {negative}", rule.id));
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        // And the check the policy loader runs agrees.
        matcher.check_examples(0, &rules).unwrap();
    }

    fn acme(allowlists: Vec<Allowlist>) -> SecretRule {
        SecretRule {
            id: "acme".into(),
            description: None,
            regex: r"acme_([a-z0-9]{12})".into(),
            keywords: vec!["acme_".into()],
            entropy: None,
            secret_group: Some(1),
            allowlists,
            examples: Vec::new(),
            negatives: Vec::new(),
        }
    }

    fn finds(rule: &SecretRule, text: &str) -> bool {
        let matcher = SecretMatcher::compile([rule]).unwrap();
        let mut hits = Vec::new();
        matcher.find_all(text, &mut hits);
        !hits.is_empty()
    }

    fn allow(regexes: &[&str], stopwords: &[&str]) -> Allowlist {
        Allowlist {
            description: None,
            regexes: regexes.iter().map(|r| r.to_string()).collect(),
            stopwords: stopwords.iter().map(|r| r.to_string()).collect(),
            condition: AllowCondition::Or,
            target: AllowTarget::Secret,
        }
    }

    #[test]
    fn allowlists_drop_what_they_match_and_keep_the_rest() {
        let rule = acme(vec![allow(&["^0+$"], &["test"])]);
        assert!(finds(&rule, "acme_k3j9x2m7q1z8"));
        assert!(!finds(&rule, "acme_000000000000"), "regex on the secret");
        assert!(!finds(&rule, "acme_mytestvalue"), "stopword");
        assert!(!finds(
            &rule,
            "acme_MYTESTVALUE".to_ascii_lowercase().as_str()
        ));

        // The regex sees the secret, not the match, unless told.
        let on_secret = acme(vec![allow(&["^acme_"], &[])]);
        assert!(finds(&on_secret, "acme_k3j9x2m7q1z8"));
        let on_match = acme(vec![Allowlist {
            target: AllowTarget::Match,
            ..allow(&["^acme_"], &[])
        }]);
        assert!(!finds(&on_match, "acme_k3j9x2m7q1z8"));

        // "and": every kind of criterion listed must hold.
        let both = acme(vec![Allowlist {
            condition: AllowCondition::And,
            ..allow(&["^k"], &["z8"])
        }]);
        assert!(!finds(&both, "acme_k3j9x2m7q1z8"));
        assert!(finds(&both, "acme_k3j9x2m7q1a1"), "stopword missing");
        assert!(finds(&both, "acme_a3j9x2m7q1z8"), "regex missing");
    }

    #[test]
    fn the_files_placeholders_are_allowed_for_every_builtin_rule() {
        let rules = builtin_secret_rules().unwrap();
        let matcher = SecretMatcher::compile(&rules).unwrap();
        let found = |text: &str| {
            let mut hits = Vec::new();
            matcher.find_all(text, &mut hits);
            hits.into_iter()
                .map(|h| matcher.rule_id(h.rule).to_string())
                .collect::<Vec<_>>()
        };
        for placeholder in [
            "AKIAIOSFODNN7EXAMPLE",
            concat!("gh", "p_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
            "api_key = \"sk-your-api-key-goes-here-1234567890\"",
            "password: ${DB_PASSWORD_2}",
            "token = \"{{ vault_token_2 }}\"",
            "client_secret=changeme12345678",
        ] {
            assert_eq!(found(placeholder), Vec::<String>::new(), "{placeholder}");
        }
        // A real-shaped key is still found.
        assert_eq!(found("AKIAZ7VRSQ5TJX3KPM2W"), ["aws-access-key-id"]);
    }

    #[test]
    fn an_admins_examples_are_checked_against_the_rule() {
        let mut rule = acme(Vec::new());
        rule.examples = vec!["token acme_k3j9x2m7q1z8 here".into(), "acme_short".into()];
        let matcher = SecretMatcher::compile([&rule]).unwrap();
        let err = matcher.check_examples(0, [&rule]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "secret rule `acme`: example 2 is not found by the rule"
        );
        rule.examples.pop();
        rule.negatives = vec!["acme_k3j9x2m7q1z8".into()];
        let err = matcher.check_examples(0, [&rule]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "secret rule `acme`: negative 1 is found by the rule"
        );
    }

    fn builtin() -> SecretMatcher {
        let rules = builtin_secret_rules().expect("the shipped file parses");
        SecretMatcher::compile(&rules).expect("the shipped rules compile")
    }

    /// (rule id, matched text) for every hit in `text`.
    fn hits<'t>(matcher: &SecretMatcher, text: &'t str) -> Vec<(String, &'t str)> {
        let mut out = Vec::new();
        matcher.find_all(text, &mut out);
        out.into_iter()
            .map(|h| (matcher.rule_id(h.rule).to_string(), &text[h.span]))
            .collect()
    }

    fn ids(matcher: &SecretMatcher, text: &str) -> Vec<String> {
        hits(matcher, text).into_iter().map(|(id, _)| id).collect()
    }

    #[test]
    fn shipped_rules_parse_compile_and_all_have_keywords() {
        let rules = builtin_secret_rules().expect("parses");
        assert!(rules.len() >= 15);
        for rule in &rules {
            assert!(!rule.keywords.is_empty(), "{} has no keywords", rule.id);
            assert!(rule.description.is_some(), "{} has no description", rule.id);
        }
        builtin();
    }

    #[test]
    fn a_rules_regex_is_compiled_only_when_its_keyword_occurs() {
        let matcher = builtin();
        let compiled = |m: &SecretMatcher| {
            m.rules
                .iter()
                .filter(|r| r.regex.is_compiled())
                .map(|r| r.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(compiled(&matcher), Vec::<String>::new());
        assert_eq!(ids(&matcher, "nothing to see here"), Vec::<String>::new());
        assert_eq!(compiled(&matcher), Vec::<String>::new());
        let key = "AKIAZ7QK4XHM2WV5PJ3N";
        assert_eq!(ids(&matcher, key), ["aws-access-key-id"]);
        let rules = compiled(&matcher);
        assert!(
            rules.contains(&"aws-access-key-id".to_string()),
            "{rules:?}"
        );
        assert!(rules.len() < 5, "{rules:?}");
        // Compiled once, it gives the same answer again.
        assert_eq!(ids(&matcher, key), ["aws-access-key-id"]);
    }

    #[test]
    fn secret_group_reports_only_the_secret() {
        let matcher = builtin();
        let text = r#"config = {"api_key": "Zq8wX4vT7nR2mK9pL3sD6fH1"}"#;
        assert_eq!(
            hits(&matcher, text),
            vec![(
                "generic-secret-assignment".to_string(),
                "Zq8wX4vT7nR2mK9pL3sD6fH1"
            )]
        );
        let text = "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYzQ3kR8vT2m\n";
        let found = hits(&matcher, text);
        assert!(
            found
                .iter()
                .all(|(_, s)| *s == "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzQ3kR8vT2m"),
            "{found:?}"
        );
    }

    #[test]
    fn near_misses_are_not_secrets() {
        let matcher = builtin();
        for text in [
            "sk-abc123",                                       // sk- and too few chars
            "sk-proj-short",                                   // too short
            "the task-force risk-assessment desk-job",         // sk- inside words
            r#"password = "aaaaaaaaaaaaaaaaaaaa""#,            // low entropy
            r#"api_key = "xxxxxxxxxxxxxxxxxxxxxxxx""#,         // placeholder
            "password = os.environ[\"DB_PASSWORD\"]",          // a lookup, not a value
            "token = self.config.auth_token_value",            // attribute access
            "max_tokens = 4096000000000000000",                // not a secret name
            "tokenizer = AutoTokenizer.from_pretrained(name)", // not a secret name
            "tokenizer_name = bert-base-multilingual-cased",   // not a secret name
            r#"HandshakeTrafficSecret => "SERVER_HANDSHAKE_TRAFFIC_SECRET","#, // a constant
            r#"token: "correct-horse-battery-staple""#,        // no digit
            "AKIAAAAAAAAAAAAAAAAA",                            // fake key id
            "AKIAZ7VRSQ5TJX3KPM2WX",                           // too long
            "ghp_short",                                       // too short
            "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3",        // git sha
            "550e8400-e29b-41d4-a716-446655440000",            // UUID
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
            "eyJhbGciOiJIUzI1NiJ9 alone", // a JWT header alone
            "We discussed the secret of the Asian token economy.",
        ] {
            assert!(
                hits(&matcher, text).is_empty(),
                "{text}: {:?}",
                hits(&matcher, text)
            );
        }
    }

    #[test]
    fn keywords_are_case_insensitive_prefilters() {
        let rule = SecretRule {
            id: "corp-key".into(),
            description: None,
            regex: r"\bCORP-[0-9]{6}\b".into(),
            keywords: vec!["corp-".into()],
            entropy: None,
            secret_group: None,
            allowlists: Vec::new(),
            examples: Vec::new(),
            negatives: Vec::new(),
        };
        let matcher = SecretMatcher::compile([&rule]).expect("compiles");
        assert_eq!(ids(&matcher, "id CORP-123456 ok"), vec!["corp-key"]);
        assert!(ids(&matcher, "CORP-12345").is_empty());
    }

    #[test]
    fn windows_give_the_same_answer_as_a_whole_text_search() {
        let keyed = SecretRule {
            id: "w".into(),
            description: None,
            regex: r"\bkey-[a-z]{4}\b".into(),
            keywords: vec!["key-".into()],
            entropy: None,
            secret_group: None,
            allowlists: Vec::new(),
            examples: Vec::new(),
            negatives: Vec::new(),
        };
        let unkeyed = SecretRule {
            keywords: Vec::new(),
            ..keyed.clone()
        };
        let with_windows = SecretMatcher::compile([&keyed]).expect("compiles");
        let whole_text = SecretMatcher::compile([&unkeyed]).expect("compiles");
        let filler = "é words key-abcde mykey-abcd ".repeat(40);
        let text = format!("key-abcd {filler} key-wxyz, key-qrst");
        let mut a = Vec::new();
        let mut b = Vec::new();
        with_windows.find_all(&text, &mut a);
        whole_text.find_all(&text, &mut b);
        assert_eq!(a, b);
        assert_eq!(a.len(), 3);
    }

    #[test]
    fn unbounded_rules_report_long_matches_clipped() {
        let matcher = builtin();
        let body = "QUJD".repeat(2000);
        let text = format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----");
        let found = hits(&matcher, &text);
        assert_eq!(
            found.len(),
            1,
            "{:?}",
            found
                .iter()
                .map(|(id, s)| (id, s.len()))
                .collect::<Vec<_>>()
        );
        assert_eq!(found[0].1.len(), super::super::MATCH_LEN_CAP);
        assert!(found[0].1.starts_with("-----BEGIN PRIVATE KEY-----"));
    }

    #[test]
    fn a_private_key_is_matched_through_its_end_line() {
        let matcher = builtin();
        let key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=\n-----END OPENSSH PRIVATE KEY-----";
        let text = format!("my key:\n{key}\nplease check it");
        assert_eq!(
            hits(&matcher, &text),
            vec![("private-key".to_string(), key)]
        );
    }

    #[test]
    fn entropy_is_measured_in_bits_per_byte() {
        assert_eq!(shannon_entropy(b""), 0.0);
        assert_eq!(shannon_entropy(b"aaaa"), 0.0);
        assert!((shannon_entropy(b"abcd") - 2.0).abs() < 1e-9);
        assert!((shannon_entropy(b"0123456789abcdef") - 4.0).abs() < 1e-9);
    }
}
