//! The stream hold: how much of the end of a text may still be part of a
//! finding that is not final, because more text could complete, extend,
//! cancel or create it. See [`Scanner::stream_hold`](super::Scanner::stream_hold)
//! for the contract.
//!
//! Words used here:
//! - *hold start*: the offset from which a detector holds; every finding of
//!   that detector that could change when text is appended starts at or
//!   after it. The text's length means "nothing held".
//! - *anchors*: ASCII-lowercased literal strings, one of which begins every
//!   match of a regex (`akia`, `ghp_`, `-----begin`), read off its syntax
//!   tree. A match that could still change starts at an anchor occurrence
//!   near the end, or at the start of an anchor that the end cuts off.
//! - *viable*: a text is viable for a regex if some continuation of it is a
//!   match. An anchor occurrence whose text up to the end is not viable
//!   (`token` followed by `s are counted`) starts no unfinished match. Each
//!   regex gets a second regex for this, matching exactly the prefixes of
//!   its matches (assertions dropped, so it may say "viable" too often,
//!   never too rarely).
//! - *keyed*: a secret rule's match that contains one of the rule's
//!   keywords. The secret scan only looks near keyword hits and cuts the
//!   text at the edge of that view (see `secrets.rs`), so a match that
//!   contains no keyword can be cut off in one text and found whole once
//!   more text adds a keyword hit nearby: such matches are held twice as far
//!   back, and without the viability shortcut.
//!
//! The hand-written detectors answer from their own reading rules, in each
//! detector's file (`hold_from`); this file has what they share
//! ([`trailing_run_start`]) and what the regex-based rules need
//! ([`RegexHold`], [`PrefixSet`]).

use aho_corasick::{AhoCorasick, MatchKind};
use regex::{Regex, RegexBuilder};
use regex_syntax::hir::{Class, Hir, HirKind, Look, Repetition};

/// Most anchors one regex may have; beyond that it counts as unanchored.
const MAX_ANCHORS: usize = 64;
/// Longest anchor kept, in bytes; anchors stop growing there.
const MAX_ANCHOR_LEN: usize = 32;
/// Most distinct (case-folded) characters a class may have to be spelled
/// out as anchors.
const MAX_CLASS_CHARS: usize = 10;
/// Compiled-size limit for a viability regex; a larger one is not built and
/// every anchor occurrence counts as viable.
const VIABLE_SIZE_LIMIT: usize = 32 << 20;

/// Start of the longest suffix of `bytes` whose bytes all satisfy `keep`,
/// looking back at most `cap` bytes.
pub(crate) fn trailing_run_start(bytes: &[u8], cap: usize, keep: impl Fn(u8) -> bool) -> usize {
    let floor = bytes.len().saturating_sub(cap);
    let mut start = bytes.len();
    while start > floor && keep(bytes[start - 1]) {
        start -= 1;
    }
    start
}

/// The first offset at or after `from` whose byte satisfies `starts`, or
/// the end of `bytes`.
pub(crate) fn first_from(bytes: &[u8], from: usize, starts: impl Fn(u8) -> bool) -> usize {
    let tail = bytes.get(from..).unwrap_or_default();
    tail.iter()
        .position(|&b| starts(b))
        .map_or(bytes.len(), |i| from + i)
}

/// A set of ASCII-lowercased strings, asked which suffix of a text is the
/// start of one of them (ASCII-case-insensitively; other bytes exactly).
#[derive(Debug, Default)]
pub(crate) struct PrefixSet {
    sorted: Vec<Box<[u8]>>,
    longest: usize,
}

impl PrefixSet {
    /// The set of `strings`, which must be ASCII-lowercased.
    pub(crate) fn new(strings: impl IntoIterator<Item = Vec<u8>>) -> PrefixSet {
        let mut sorted: Vec<Box<[u8]>> = strings.into_iter().map(Vec::into_boxed_slice).collect();
        sorted.sort_unstable();
        sorted.dedup();
        let longest = sorted.iter().map(|s| s.len()).max().unwrap_or(0);
        PrefixSet { sorted, longest }
    }

    /// The earliest start of a non-empty suffix of `bytes` that is a prefix
    /// of (or equal to) one of the strings.
    pub(crate) fn earliest_partial(&self, bytes: &[u8]) -> Option<usize> {
        let n = bytes.len();
        (n.saturating_sub(self.longest)..n).find(|&s| self.has_prefix(&bytes[s..]))
    }

    fn has_prefix(&self, x: &[u8]) -> bool {
        // Strings starting with `x` (folded) are the first ones not below it.
        let below = |s: &Box<[u8]>| s.iter().copied().lt(x.iter().map(u8::to_ascii_lowercase));
        let i = self.sorted.partition_point(below);
        self.sorted
            .get(i)
            .is_some_and(|s| s.len() >= x.len() && s[..x.len()].eq_ignore_ascii_case(x))
    }
}

/// A regex-based rule as [`RegexHold`] needs it.
pub(crate) struct HoldSpec<'a> {
    /// The regex, as given to `regex::Regex::new`.
    pub(crate) pattern: &'a str,
    /// Its longest reported match (see `limits.rs`).
    pub(crate) reach: usize,
    /// For a secret rule with keywords: its keywords, because the scan then
    /// only looks near them. `None` for a regex run over the whole text
    /// (admin patterns, secret rules without keywords).
    pub(crate) keywords: Option<&'a [String]>,
}

/// One rule's use of one anchor.
#[derive(Debug, Clone, Copy)]
struct AnchorUse {
    rule: usize,
    /// How far before the end an occurrence may start and still matter.
    lookback: usize,
    /// Whether an occurrence that is not viable can be skipped.
    check_viable: bool,
}

/// The hold of a set of regex-based rules: for secret rules (one for all
/// of them) and for each admin pattern.
#[derive(Debug)]
pub(crate) struct RegexHold {
    /// Finds every anchor of every anchored rule, overlapping,
    /// ASCII-case-insensitively.
    finder: Option<AhoCorasick>,
    /// The uses of each anchor, by the finder's pattern id.
    uses: Vec<Vec<AnchorUse>>,
    /// Every anchor, for anchors cut off by the end.
    partial: PrefixSet,
    /// Per rule, the viability regex, when one was built.
    viable: Vec<Option<Regex>>,
    /// Largest lookback of the anchored uses: how much of the end to search.
    region: usize,
    /// Largest lookback of the rules without anchors: they hold that much.
    unanchored: usize,
}

/// What one rule contributes before the shared pieces are built.
struct RuleAnchors {
    /// `None`: unanchored.
    anchors: Option<Vec<(Vec<u8>, bool)>>,
    keyed: bool,
}

impl RegexHold {
    /// Analyses `specs` (rule `i` is `specs[i]`).
    pub(crate) fn new(specs: &[HoldSpec<'_>]) -> RegexHold {
        let mut distinct: Vec<Vec<u8>> = Vec::new();
        let mut uses: Vec<Vec<AnchorUse>> = Vec::new();
        let mut viable = Vec::with_capacity(specs.len());
        let mut region = 0;
        let mut unanchored = 0;
        for (rule, spec) in specs.iter().enumerate() {
            let analysis = analyse(spec);
            let lookback = |keyed: bool| {
                if keyed {
                    spec.reach
                } else {
                    spec.reach.saturating_mul(2).saturating_add(1)
                }
            };
            let needs_viable = analysis
                .anchors
                .as_ref()
                .is_some_and(|a| a.iter().any(|&(_, keyed)| keyed));
            let regex = if needs_viable {
                viability_regex(spec.pattern)
            } else {
                None
            };
            match analysis.anchors {
                None => unanchored = unanchored.max(lookback(analysis.keyed)),
                Some(anchors) => {
                    for (anchor, keyed) in anchors {
                        let use_ = AnchorUse {
                            rule,
                            lookback: lookback(keyed),
                            check_viable: keyed && regex.is_some(),
                        };
                        region = region.max(use_.lookback);
                        match distinct.iter().position(|a| *a == anchor) {
                            Some(i) => uses[i].push(use_),
                            None => {
                                distinct.push(anchor);
                                uses.push(vec![use_]);
                            }
                        }
                    }
                }
            }
            viable.push(regex);
        }
        // Anchors are short literals, a few per rule: far below the
        // automaton's limits. Failing to build one only costs precision.
        let finder = if distinct.is_empty() {
            None
        } else {
            AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .build(&distinct)
                .ok()
        };
        if finder.is_none() && !distinct.is_empty() {
            unanchored = unanchored.max(region);
        }
        RegexHold {
            finder,
            uses,
            partial: PrefixSet::new(distinct),
            viable,
            region,
            unanchored,
        }
    }

    /// The hold start of these rules in `text`.
    pub(crate) fn hold_from(&self, text: &str) -> usize {
        let bytes = text.as_bytes();
        let n = bytes.len();
        let mut from = floor_boundary(text, n.saturating_sub(self.unanchored));
        if let Some(s) = self.partial.earliest_partial(bytes) {
            from = from.min(s);
        }
        let Some(finder) = &self.finder else {
            return from;
        };
        let region = n.saturating_sub(self.region);
        for m in finder.find_overlapping_iter(&bytes[region..]) {
            let at = region + m.start();
            if at >= from {
                continue;
            }
            let counts = self.uses[m.pattern().as_usize()].iter().any(|u| {
                at + u.lookback >= n && (!u.check_viable || self.is_viable(u.rule, text, at))
            });
            if counts {
                from = at;
            }
        }
        from
    }

    fn is_viable(&self, rule: usize, text: &str, at: usize) -> bool {
        match (&self.viable[rule], text.get(at..)) {
            (Some(regex), Some(rest)) => regex.is_match(rest),
            _ => true,
        }
    }
}

/// The largest char boundary of `text` at or below `i`.
fn floor_boundary(text: &str, i: usize) -> usize {
    super::boundary::floor_char_boundary(text, i)
}

/// Anchors and keyedness of one rule.
fn analyse(spec: &HoldSpec<'_>) -> RuleAnchors {
    let Ok(hir) = regex_syntax::Parser::new().parse(spec.pattern) else {
        // Never happens for a pattern `regex` compiled; hold the most.
        return RuleAnchors {
            anchors: None,
            keyed: false,
        };
    };
    let keywords: Vec<Vec<u8>> = spec
        .keywords
        .unwrap_or_default()
        .iter()
        .map(|k| k.as_bytes().to_ascii_lowercase())
        .collect();
    let contains_keyword = |s: &[u8]| {
        keywords
            .iter()
            .any(|k| !k.is_empty() && s.windows(k.len()).any(|w| w == k.as_slice()))
    };
    // Without keywords the scan reads the whole text: no view to cut.
    let keyed = keywords.is_empty() || always_keyed(&hir, &contains_keyword);
    let first = prefixes(&hir);
    let anchors = if first.strings.iter().any(Vec::is_empty) {
        None
    } else {
        let minimal: Vec<(Vec<u8>, bool)> = first
            .strings
            .iter()
            .filter(|s| {
                !first
                    .strings
                    .iter()
                    .any(|t| t.len() < s.len() && s.starts_with(t))
            })
            .map(|s| (s.clone(), keyed || contains_keyword(s)))
            .collect();
        Some(minimal)
    };
    RuleAnchors { anchors, keyed }
}

/// Does every match of `hir` contain a keyword? True if, for some item of
/// its top-level sequence, every match of the rest of the sequence from
/// there starts with a string containing one (`\bsk-…T3BlbkFJ…`).
fn always_keyed(hir: &Hir, contains_keyword: &impl Fn(&[u8]) -> bool) -> bool {
    let mut items = Vec::new();
    flatten(hir, &mut items);
    (0..items.len()).any(|i| {
        let p = concat_prefixes(&items[i..]);
        !p.strings.is_empty() && p.strings.iter().all(|s| contains_keyword(s))
    })
}

fn flatten<'h>(hir: &'h Hir, out: &mut Vec<&'h Hir>) {
    match hir.kind() {
        HirKind::Concat(items) => items.iter().for_each(|item| flatten(item, out)),
        HirKind::Capture(capture) => flatten(&capture.sub, out),
        _ => out.push(hir),
    }
}

/// Strings (ASCII-lowercased) one of which begins every match; if
/// `complete`, each is a whole match, so what follows may extend them.
struct Prefixes {
    strings: Vec<Vec<u8>>,
    complete: bool,
}

impl Prefixes {
    fn complete(strings: Vec<Vec<u8>>) -> Prefixes {
        Prefixes {
            strings,
            complete: true,
        }
    }

    fn partial(strings: Vec<Vec<u8>>) -> Prefixes {
        Prefixes {
            strings,
            complete: false,
        }
    }

    /// Nothing known: a match may begin with anything.
    fn unknown() -> Prefixes {
        Prefixes::partial(vec![Vec::new()])
    }
}

fn prefixes(hir: &Hir) -> Prefixes {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Prefixes::complete(vec![Vec::new()]),
        HirKind::Literal(literal) => {
            let folded = literal.0.to_ascii_lowercase();
            if folded.len() > MAX_ANCHOR_LEN {
                Prefixes::partial(vec![folded[..MAX_ANCHOR_LEN].to_vec()])
            } else {
                Prefixes::complete(vec![folded])
            }
        }
        HirKind::Class(class) => class_strings(class).map_or_else(Prefixes::unknown, Prefixes::complete),
        HirKind::Capture(capture) => prefixes(&capture.sub),
        HirKind::Concat(items) => {
            let items: Vec<&Hir> = items.iter().collect();
            concat_prefixes(&items)
        }
        HirKind::Alternation(alternatives) => {
            let mut strings = Vec::new();
            let mut complete = true;
            for alternative in alternatives {
                let p = prefixes(alternative);
                complete &= p.complete;
                strings.extend(p.strings);
                if strings.len() > MAX_ANCHORS {
                    return Prefixes::unknown();
                }
            }
            dedup(&mut strings);
            Prefixes { strings, complete }
        }
        HirKind::Repetition(rep) => {
            if rep.max == Some(0) {
                return Prefixes::complete(vec![Vec::new()]);
            }
            let sub = prefixes(&rep.sub);
            let mut strings = sub.strings;
            if rep.min == 0 {
                strings.push(Vec::new());
                dedup(&mut strings);
            }
            Prefixes {
                strings,
                complete: sub.complete && rep.max == Some(1),
            }
        }
    }
}

fn concat_prefixes(items: &[&Hir]) -> Prefixes {
    let mut acc: Vec<Vec<u8>> = vec![Vec::new()];
    for item in items {
        let p = prefixes(item);
        if acc.len() * p.strings.len() > MAX_ANCHORS {
            return Prefixes::partial(acc);
        }
        let mut next = Vec::with_capacity(acc.len() * p.strings.len());
        for head in &acc {
            for tail in &p.strings {
                if head.len() + tail.len() > MAX_ANCHOR_LEN {
                    return Prefixes::partial(acc);
                }
                let mut joined = head.clone();
                joined.extend_from_slice(tail);
                next.push(joined);
            }
        }
        dedup(&mut next);
        acc = next;
        if !p.complete {
            return Prefixes::partial(acc);
        }
    }
    Prefixes::complete(acc)
}

/// The members of a small class as folded strings; `None` if it has more
/// than [`MAX_CLASS_CHARS`] after folding.
fn class_strings(class: &Class) -> Option<Vec<Vec<u8>>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut add = |member: Vec<u8>| {
        if !out.contains(&member) {
            out.push(member);
        }
        out.len() <= MAX_CLASS_CHARS
    };
    // Folding at most halves a class, so a wider one never fits.
    let too_wide = 2 * MAX_CLASS_CHARS as u32;
    match class {
        Class::Unicode(class) => {
            for range in class.iter() {
                if u32::from(range.end()) - u32::from(range.start()) >= too_wide {
                    return None;
                }
                for c in range.start()..=range.end() {
                    let mut buf = [0u8; 4];
                    if !add(c.encode_utf8(&mut buf).as_bytes().to_ascii_lowercase()) {
                        return None;
                    }
                }
            }
        }
        Class::Bytes(class) => {
            for range in class.iter() {
                if u32::from(range.end()) - u32::from(range.start()) >= too_wide {
                    return None;
                }
                for b in range.start()..=range.end() {
                    if !add(vec![b.to_ascii_lowercase()]) {
                        return None;
                    }
                }
            }
        }
    }
    Some(out)
}

fn dedup(strings: &mut Vec<Vec<u8>>) {
    strings.sort_unstable();
    strings.dedup();
}

/// `\A(?:P)\z` where `P` matches exactly the prefixes of the matches of
/// `pattern`, with every assertion dropped (so a cut through `\b` or `$`
/// is always viable). `None` if it would be too large.
fn viability_regex(pattern: &str) -> Option<Regex> {
    let hir = regex_syntax::Parser::new().parse(pattern).ok()?;
    let anchored = Hir::concat(vec![
        Hir::look(Look::Start),
        prefix_language(&hir),
        Hir::look(Look::End),
    ]);
    RegexBuilder::new(&anchored.to_string())
        .size_limit(VIABLE_SIZE_LIMIT)
        .build()
        .ok()
}

fn optional(hir: Hir) -> Hir {
    Hir::repetition(Repetition {
        min: 0,
        max: Some(1),
        greedy: true,
        sub: Box::new(hir),
    })
}

/// The prefixes of the matches of `hir`, assertions dropped. Linear in the
/// size of `hir` (per nesting level of repetitions, twice): a sequence
/// `A B C` becomes `p(A) | A (p(B) | B p(C))`.
fn prefix_language(hir: &Hir) -> Hir {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Hir::empty(),
        HirKind::Literal(literal) => {
            // Cut between chars only: the parts must stay valid UTF-8.
            let units: Vec<Hir> = match std::str::from_utf8(&literal.0) {
                Ok(s) => s
                    .chars()
                    .map(|c| Hir::literal(c.to_string().into_bytes()))
                    .collect(),
                Err(_) => literal.0.iter().map(|&b| Hir::literal([b])).collect(),
            };
            units.into_iter().rev().fold(Hir::empty(), |rest, unit| {
                optional(Hir::concat(vec![unit, rest]))
            })
        }
        HirKind::Class(_) => optional(hir.clone()),
        HirKind::Capture(capture) => prefix_language(&capture.sub),
        HirKind::Concat(items) => items.iter().rev().fold(Hir::empty(), |rest, item| {
            Hir::alternation(vec![
                prefix_language(item),
                Hir::concat(vec![without_looks(item), rest]),
            ])
        }),
        HirKind::Alternation(alternatives) => {
            Hir::alternation(alternatives.iter().map(prefix_language).collect())
        }
        HirKind::Repetition(rep) => match rep.max {
            Some(0) => Hir::empty(),
            max => Hir::concat(vec![
                Hir::repetition(Repetition {
                    min: 0,
                    max: max.map(|m| m - 1),
                    greedy: true,
                    sub: Box::new(without_looks(&rep.sub)),
                }),
                prefix_language(&rep.sub),
            ]),
        },
    }
}

/// `hir` with every assertion replaced by the empty regex and without
/// capture groups.
fn without_looks(hir: &Hir) -> Hir {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Hir::empty(),
        HirKind::Literal(_) | HirKind::Class(_) => hir.clone(),
        HirKind::Capture(capture) => without_looks(&capture.sub),
        HirKind::Concat(items) => Hir::concat(items.iter().map(without_looks).collect()),
        HirKind::Alternation(alternatives) => {
            Hir::alternation(alternatives.iter().map(without_looks).collect())
        }
        HirKind::Repetition(rep) => Hir::repetition(Repetition {
            sub: Box::new(without_looks(&rep.sub)),
            ..rep.clone()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchors(pattern: &str, keywords: &[&str]) -> Option<Vec<(String, bool)>> {
        let keywords: Vec<String> = keywords.iter().map(|k| k.to_string()).collect();
        let spec = HoldSpec {
            pattern,
            reach: 100,
            keywords: Some(&keywords),
        };
        analyse(&spec).anchors.map(|a| {
            let mut a: Vec<(String, bool)> = a
                .into_iter()
                .map(|(s, keyed)| (String::from_utf8_lossy(&s).into_owned(), keyed))
                .collect();
            a.sort();
            a
        })
    }

    #[test]
    fn anchors_are_the_literal_starts_of_every_match() {
        assert_eq!(
            anchors(r"\bgh[pousr]_[A-Za-z0-9]{36}\b", &["ghp_", "gho_"]),
            Some(vec![
                ("gho_".into(), true),
                ("ghp_".into(), true),
                ("ghr_".into(), false),
                ("ghs_".into(), false),
                ("ghu_".into(), false),
            ])
        );
        // A shorter anchor makes the longer ones it starts redundant.
        assert_eq!(
            anchors(r"sk-(?:proj-)?[a-z]{5}", &["sk-"]),
            Some(vec![("sk-".into(), true)])
        );
        // Case-insensitive classes fold; optional parts branch.
        assert_eq!(
            anchors(r"(?i-u)(?:aws_)?KEY=", &["key"]),
            Some(vec![("aws_key=".into(), true), ("key=".into(), true)])
        );
        assert_eq!(anchors(r"[a-z]+_key", &["_key"]), None);
        assert_eq!(anchors(r"(?:ab)*c", &["c"]), None);
    }

    #[test]
    fn a_keyword_inside_the_match_keys_every_anchor() {
        let keys = |pattern: &str, keywords: &[&str]| {
            anchors(pattern, keywords)
                .expect("anchored")
                .iter()
                .all(|&(_, keyed)| keyed)
        };
        assert!(keys(r"\bsk-[a-z]{3,9}MARK[a-z]{3}", &["mark"]));
        assert!(!keys(r"\bsk-[a-z]{3,9}(?:MARK)?[a-z]{3}", &["mark"]));
        // Unicode case folding: `(?i)s` also matches `ſ`, which is not the
        // ASCII keyword `secret`.
        let aws = anchors(r"(?i)secret=", &["secret"]).expect("anchored");
        assert!(aws.contains(&("secret=".into(), true)), "{aws:?}");
        assert!(aws.contains(&("ſecret=".into(), false)), "{aws:?}");
    }

    #[test]
    fn viability_accepts_exactly_the_prefixes_of_matches() {
        let regex = viability_regex(r"\bkey-[a-z]{2,4}(?:=[0-9]+|!)\b").expect("builds");
        for viable in ["", "k", "key-", "key-ab", "key-abcd=", "key-ab=12", "key-abc!"] {
            assert!(regex.is_match(viable), "{viable}");
        }
        for dead in ["x", "key-a1", "key-abcde", "key-ab!x", "key-ab=1a"] {
            assert!(!regex.is_match(dead), "{dead}");
        }
        let multibyte = viability_regex("clé[0-9]").expect("builds");
        assert!(multibyte.is_match("cl") && multibyte.is_match("clé"));
    }

    #[test]
    fn partial_suffixes_are_found_case_insensitively() {
        let set = PrefixSet::new([b"ghp_".to_vec(), b"-----begin".to_vec()]);
        assert_eq!(set.earliest_partial(b"xx GH"), Some(3));
        assert_eq!(set.earliest_partial(b"xx ghp_"), Some(3));
        assert_eq!(set.earliest_partial(b"xx -----BEG"), Some(3));
        assert_eq!(set.earliest_partial(b"xx ghp_a"), None);
        assert_eq!(set.earliest_partial(b""), None);
    }

    #[test]
    fn trailing_runs_stop_at_the_cap() {
        assert_eq!(trailing_run_start(b"ab 123", 10, |b| b.is_ascii_digit()), 3);
        assert_eq!(trailing_run_start(b"123456", 4, |b| b.is_ascii_digit()), 2);
        assert_eq!(first_from(b"ab 1", 0, |b| b.is_ascii_digit()), 3);
        assert_eq!(first_from(b"ab", 1, |b| b.is_ascii_digit()), 2);
    }
}
