//! The stream hold: how much of the end of a text may still be part of a
//! finding that is not final, because more text could complete, extend,
//! cancel or create it. See [`Scanner::stream_hold`](super::Scanner::stream_hold)
//! for the contract; its tests are at the end of this file.
//!
//! Words used here:
//! - *hold start*: the offset from which a detector holds; every finding of
//!   that detector that could change when text is appended starts at or
//!   after it. The text's length means "nothing held".
//! - *anchors*: ASCII-lowercased literal strings, one of which begins every
//!   match of a regex (`akia`, `ghp_`, `-----begin`), read off its syntax
//!   tree.
//! - *viable*: a text is viable for a regex if some continuation of it is a
//!   match. Each regex gets a second regex matching exactly the prefixes of
//!   its matches, assertions dropped (so it may say "viable" too often,
//!   never too rarely).
//! - *bound*: a secret rule's match that contains one of the rule's
//!   keywords. Every match of a rule without keywords counts as bound: that
//!   rule's scan reads the whole text.
//!
//! Hand-written detectors: each decides a candidate by reading forward
//! from its start over a few kinds of bytes (digits and separators for a
//! card) and then at most a byte or two past them. A decision that reads
//! past the end therefore started inside the trailing run of those bytes,
//! within the detector's longest match plus that look-ahead. Each
//! detector's `hold_from` returns the first place in that run where a
//! candidate can start; the reasoning is at each one.
//!
//! Regex rules (admin patterns, secret rules): a match of a regex with a
//! longest match of `reach` bytes is decided by the `reach` bytes from its
//! start and the char after them, so a leftmost-first scan of the text and
//! of any longer text agree up to the first match that reads past the end
//! of the shorter one. That match starts at an anchor occurrence at most
//! `reach` before the end whose text up to the end is viable, or at the
//! start of an anchor cut off by the end; a regex without anchors holds
//! `reach`. Secret rules add one twist: their scan only looks within
//! `reach` of keyword hits and cuts the text at the edge of that view, so a
//! match that is not bound can be cut off in one text and found whole once
//! more text brings a keyword hit near it. Such matches are held from
//! anchors up to `2 * reach + 1` back, and without the viability shortcut.
//! (Every shipped rule's matches are bound, except those of the AWS secret
//! key rule that spell `secret` with `ſ`, a Unicode case variant of `s`.)
//!
//! Unbounded regexes count as `reach = MATCH_LEN_CAP` and their longer
//! matches are reported clipped; such a match is held while it starts
//! within the cap of the end, and settled clipped after that.

use aho_corasick::{AhoCorasick, MatchKind};
use regex_syntax::hir::{Class, Hir, HirKind};

use super::boundary::floor_char_boundary;

/// Most anchors one regex may have; beyond that it counts as unanchored.
const MAX_ANCHORS: usize = 64;
/// Longest anchor kept, in bytes; anchors stop growing there.
const MAX_ANCHOR_LEN: usize = 32;
/// Most distinct (case-folded) characters a class may have to be spelled
/// out as anchors.
const MAX_CLASS_CHARS: usize = 10;
/// Size limit for a viability DFA's NFA; a larger one is not built and
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
        let folded = x.iter().map(u8::to_ascii_lowercase);
        let i = self
            .sorted
            .partition_point(|s| s.iter().copied().lt(folded.clone()));
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
    /// Per rule, its viability check, when one is needed (built on first
    /// use).
    viable: Vec<Option<Viability>>,
    /// Largest lookback of the anchored uses: how much of the end to search.
    region: usize,
    /// Largest lookback of the rules without anchors: they hold that much.
    unanchored: usize,
}

/// What one rule contributes before the shared pieces are built.
struct RuleAnchors {
    /// `None`: unanchored.
    anchors: Option<Vec<(Vec<u8>, bool)>>,
    bound: bool,
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
            let lookback = |bound: bool| {
                if bound {
                    spec.reach
                } else {
                    spec.reach.saturating_mul(2).saturating_add(1)
                }
            };
            let needs_viable = analysis
                .anchors
                .as_ref()
                .is_some_and(|a| a.iter().any(|&(_, bound)| bound));
            let regex = needs_viable.then(|| Viability::new(spec.pattern));
            match analysis.anchors {
                None => unanchored = unanchored.max(lookback(analysis.bound)),
                Some(anchors) => {
                    for (anchor, bound) in anchors {
                        let use_ = AnchorUse {
                            rule,
                            lookback: lookback(bound),
                            check_viable: bound && regex.is_some(),
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
        let mut from = floor_char_boundary(text, n.saturating_sub(self.unanchored));
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
        match &self.viable[rule] {
            Some(viability) if text.is_char_boundary(at) => viability.is_viable(text, at),
            _ => true,
        }
    }
}

/// Anchors of one rule, and whether its matches are bound.
fn analyse(spec: &HoldSpec<'_>) -> RuleAnchors {
    let Ok(hir) = regex_syntax::Parser::new().parse(spec.pattern) else {
        // Never happens for a pattern `regex` compiled; hold the most.
        return RuleAnchors {
            anchors: None,
            bound: false,
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
    let bound = keywords.is_empty() || always_bound(&hir, &contains_keyword);
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
            .map(|s| (s.clone(), bound || contains_keyword(s)))
            .collect();
        Some(minimal)
    };
    RuleAnchors { anchors, bound }
}

/// Does every match of `hir` contain a keyword? True if, for some item of
/// its top-level sequence, every match of the rest of the sequence from
/// there starts with a string containing one (`\bsk-…T3BlbkFJ…`).
fn always_bound(hir: &Hir, contains_keyword: &impl Fn(&[u8]) -> bool) -> bool {
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
        HirKind::Class(class) => {
            class_strings(class).map_or_else(Prefixes::unknown, Prefixes::complete)
        }
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

/// Whether a text can still become a match of one rule: the rule's own
/// regex as a lazy DFA (forward, anchored at the anchor occurrence, every
/// match kind), built the first time it is needed. Walking the rest of the
/// text through it, a dead state means no continuation can match; anything
/// else (still alive, a non-ASCII byte where a Unicode `\b` makes the
/// DFA give up, a DFA that could not be built) counts as viable, except a
/// match that ended before the last byte and cannot go on. Assertions are honoured as far as the text goes: a `\b` or `$`
/// after its last byte is still pending, so viable.
pub(crate) struct Viability {
    pattern: Box<str>,
    dfa: std::sync::OnceLock<Option<ViabilityDfa>>,
}

/// A built viability DFA and its caches (one per thread using it).
struct ViabilityDfa {
    dfa: regex_automata::hybrid::dfa::DFA,
    caches: regex_automata::util::pool::Pool<regex_automata::hybrid::dfa::Cache, CacheMaker>,
}

type CacheMaker = Box<dyn Fn() -> regex_automata::hybrid::dfa::Cache + Send + Sync>;

/// Room for one viability DFA's lazily built states, per thread.
const VIABLE_CACHE_BYTES: usize = 256 << 10;

impl std::fmt::Debug for Viability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Viability")
            .field("pattern", &self.pattern)
            .field("built", &self.dfa.get().is_some())
            .finish()
    }
}

impl Viability {
    pub(crate) fn new(pattern: &str) -> Viability {
        Viability {
            pattern: pattern.into(),
            dfa: std::sync::OnceLock::new(),
        }
    }

    fn dfa(&self) -> Option<&ViabilityDfa> {
        use regex_automata::hybrid::dfa::DFA;
        use regex_automata::nfa::thompson;
        self.dfa
            .get_or_init(|| {
                let dfa = DFA::builder()
                    .configure(
                        DFA::config()
                            .match_kind(regex_automata::MatchKind::All)
                            .unicode_word_boundary(true)
                            .cache_capacity(VIABLE_CACHE_BYTES)
                            .skip_cache_capacity_check(true),
                    )
                    .thompson(thompson::Config::new().nfa_size_limit(Some(VIABLE_SIZE_LIMIT)))
                    .build(&self.pattern)
                    .ok()?;
                let maker = dfa.clone();
                let make: CacheMaker = Box::new(move || maker.create_cache());
                Some(ViabilityDfa {
                    dfa,
                    caches: regex_automata::util::pool::Pool::new(make),
                })
            })
            .as_ref()
    }

    /// Whether `text[at..]` is the start of a match beginning at `at`.
    pub(crate) fn is_viable(&self, text: &str, at: usize) -> bool {
        use regex_automata::{Anchored, Input};
        let Some(built) = self.dfa() else { return true };
        let dfa = &built.dfa;
        let mut cache = built.caches.get();
        let cache = &mut *cache;
        let input = Input::new(text).range(at..).anchored(Anchored::Yes);
        let Ok(mut state) = dfa.start_state_forward(cache, &input) else {
            return true;
        };
        for &byte in &text.as_bytes()[at..] {
            state = match dfa.next_state(cache, state, byte) {
                Ok(next) => next,
                Err(_) => return true,
            };
            if state.is_tagged() {
                if state.is_dead() {
                    return false;
                }
                if state.is_quit() {
                    return true;
                }
            }
        }
        // A match state is reported one byte late: the match ended before
        // the last byte, and the finding is final unless some thread can
        // still go on from here.
        if state.is_match() {
            return (0..=u8::MAX).any(|byte| {
                dfa.next_state(cache, state, byte)
                    .map_or(true, |next| !next.is_dead())
            });
        }
        true
    }

    #[cfg(test)]
    pub(crate) fn is_compiled(&self) -> bool {
        self.dfa.get().is_some()
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
                .map(|(s, bound)| (String::from_utf8_lossy(&s).into_owned(), bound))
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
    fn a_keyword_inside_the_match_binds_every_anchor() {
        let keys = |pattern: &str, keywords: &[&str]| {
            anchors(pattern, keywords)
                .expect("anchored")
                .iter()
                .all(|&(_, bound)| bound)
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
    fn every_shipped_secret_rule_is_anchored_and_bound() {
        for rule in crate::guard::builtin_secret_rules().expect("parses") {
            let spec = HoldSpec {
                pattern: &rule.regex,
                reach: 100,
                keywords: Some(&rule.keywords),
            };
            let anchors = analyse(&spec).anchors.unwrap_or_default();
            assert!(!anchors.is_empty(), "{} has no anchors", rule.id);
            // Only Unicode case variants (`ſ`, `K`) may miss the keywords.
            for (anchor, bound) in anchors {
                assert!(bound || !anchor.is_ascii(), "{}: {anchor:?}", rule.id);
            }
            assert!(
                Viability::new(&rule.regex).dfa().is_some(),
                "{}: no viability DFA",
                rule.id
            );
        }
    }

    #[test]
    fn viability_regexes_are_compiled_when_an_anchor_ends_a_text() {
        let rules = crate::guard::builtin_secret_rules().expect("parses");
        let specs: Vec<HoldSpec<'_>> = rules
            .iter()
            .map(|rule| HoldSpec {
                pattern: &rule.regex,
                reach: 100,
                keywords: Some(&rule.keywords),
            })
            .collect();
        let hold = RegexHold::new(&specs);
        let compiled = |hold: &RegexHold| {
            hold.viable
                .iter()
                .flatten()
                .filter(|v| v.is_compiled())
                .count()
        };
        assert_eq!(compiled(&hold), 0);
        assert_eq!(hold.hold_from("ghp_Zq8wX4vT7nR2"), 0);
        let after = compiled(&hold);
        assert!((1..5).contains(&after), "{after}");
        assert_eq!(hold.hold_from("ghp_Zq8wX4vT7nR2"), 0);
        assert_eq!(compiled(&hold), after);
    }

    #[test]
    fn viability_accepts_exactly_the_prefixes_of_matches() {
        let viability = Viability::new(r"(?-u:\b)key-[a-z]{2,4}(?:=[0-9]+|!)(?-u:\b)");
        for viable in [
            "",
            "k",
            "key-",
            "key-ab",
            "key-abcd=",
            "key-ab=12",
            "key-abc!",
        ] {
            assert!(viability.is_viable(viable, 0), "{viable}");
        }
        for dead in ["x", "key-a1", "key-abcde", "key-ab!x", "key-ab=1a"] {
            assert!(!viability.is_viable(dead, 0), "{dead}");
        }
        // The text before the anchor counts for a leading `\b`.
        assert!(viability.is_viable("a key-ab", 2));
        assert!(!viability.is_viable("akey-ab", 1));
        // A Unicode `\b` cannot be decided on a non-ASCII byte: a finished
        // match that a non-ASCII byte might still change counts as viable.
        let unicode = Viability::new(r"\bkey-[a-z]{2,4}!\b");
        assert!(unicode.is_viable("key-ab!x", 0));
        assert!(!unicode.is_viable("key-ab1", 0));
        let multibyte = Viability::new("clé[0-9]");
        assert!(multibyte.is_viable("cl", 0) && multibyte.is_viable("clé", 0));
        assert!(!multibyte.is_viable("clx", 0));
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

/// [`Scanner::stream_hold`](super::Scanner::stream_hold) against its
/// contract, on random texts, and on the cases streams meet most.
#[cfg(test)]
mod contract_tests {
    use crate::guard::{Builtin, DetectorSpec, Finding, RuleSpec, Scanner, SecretRule};

    fn rules(detectors: Vec<DetectorSpec>) -> Vec<RuleSpec> {
        detectors
            .into_iter()
            .enumerate()
            .map(|(i, detector)| RuleSpec {
                id: format!("r{i}"),
                detector,
            })
            .collect()
    }

    fn builtins(list: &[Builtin]) -> Vec<RuleSpec> {
        rules(list.iter().map(|&b| DetectorSpec::Builtin(b)).collect())
    }

    fn full_set() -> Scanner {
        Scanner::compile(&builtins(Builtin::ALL), &[]).expect("compiles")
    }

    fn patterns_and_keywords() -> Scanner {
        let specs = rules(vec![
            DetectorSpec::Pattern(r"\bPRJ-\d{4}\b".into()),
            DetectorSpec::Pattern(r"(?i)ticket[_-]?[0-9]{2,5}".into()),
            // Unanchored: held by its longest match.
            DetectorSpec::Pattern(r"[A-Z]{2}\d{2,4}".into()),
            DetectorSpec::Keywords(vec![
                "falcon".into(),
                "blue heron".into(),
                "c++".into(),
                "clé".into(),
            ]),
        ]);
        Scanner::compile(&specs, &[]).expect("compiles")
    }

    /// Secrets with two extra rules: one whose matches contain its keyword,
    /// one whose matches never do (found only near someone else's keyword
    /// hit, the case held twice as far back).
    fn secrets_with_extras() -> Scanner {
        let extra = |id: &str, regex: &str| SecretRule {
            id: id.into(),
            description: None,
            regex: regex.into(),
            keywords: vec!["acme_".into()],
            entropy: None,
            secret_group: None,
            allowlists: Vec::new(),
            examples: Vec::new(),
            negatives: Vec::new(),
        };
        Scanner::compile(
            &builtins(&[Builtin::Secrets]),
            &[
                extra("acme-key", r"\bacme_[a-f0-9]{16}\b"),
                extra("zz-code", r"\bzz_[0-9]{4,6}\b"),
            ],
        )
        .expect("compiles")
    }

    /// The scanners the contract is checked on: the full set, admin rules,
    /// and each builtin alone, so that the larger hold of one detector
    /// cannot hide another's gap.
    fn scanners() -> Vec<(String, Scanner)> {
        let mut scanners: Vec<(String, Scanner)> = vec![
            ("full set".into(), full_set()),
            ("patterns and keywords".into(), patterns_and_keywords()),
            ("secrets with extras".into(), secrets_with_extras()),
        ];
        for &builtin in Builtin::ALL {
            let scanner = Scanner::compile(&builtins(&[builtin]), &[]).expect("compiles");
            scanners.push((builtin.name().into(), scanner));
        }
        scanners
    }

    /// splitmix64: a deterministic stream for the random texts.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len())]
        }

        /// 1 to `max` chars drawn from `alphabet`.
        fn chars(&mut self, alphabet: &str, max: usize) -> String {
            let alphabet: Vec<char> = alphabet.chars().collect();
            let len = 1 + self.below(max);
            (0..len)
                .map(|_| alphabet[self.below(alphabet.len())])
                .collect()
        }
    }

    const FRAGMENTS: &[&str] = &[
        // Cards and pieces of them.
        "4111 1111 1111 1111",
        "4111111111111111",
        "378282246310005",
        "5555-5555-5555-4444",
        "6011111111111117",
        "4111",
        "1111",
        "11",
        // Separators.
        " ",
        " ",
        " ",
        "-",
        ".",
        "/",
        ":",
        ",",
        "(",
        ")",
        "+",
        "\n",
        "_",
        "=",
        "\"",
        // Emails.
        "ana.silva@example.com",
        "@",
        "example",
        ".com",
        "x@y.io",
        "git@github.com:org/repo",
        // IPs and versions.
        "192.168.1.20",
        "10.0.0.1",
        "255.255.255.255",
        "2001:db8::7",
        "fe80::1",
        "::",
        "dead:beef",
        "1.2.3.4.5",
        "v1.2",
        "3.14",
        // Phones.
        "+44 20 7946 0958",
        "(415) 555-0132",
        "415-555-0132",
        "+1",
        // IBANs.
        "DE89 3704 0044 0532 0130 00",
        "DE89370400440532013000",
        "GB82 WEST 1234 5698 7654 32",
        "NL91ABNA0417164300",
        "DE",
        "GB82",
        // SSNs.
        "ssn ",
        "SSN: ",
        "078-05-1121",
        "123 45 6789",
        "123456789",
        "123-45-678",
        "078.05.1123",
        // National ids, their pieces and context words.
        "ITIN ",
        "911-70-1234",
        "passport ",
        "A12345678",
        "912803456",
        "routing ",
        "121000358",
        "3222-7162-7",
        "NHS ",
        "943 476 5919",
        "AB 12 34 56 C",
        "AB123456C",
        "nino ",
        "tw987654a",
        "12345678Z",
        "1111111-G",
        "dni ",
        "X9613851N",
        "Y8063915-Z",
        "RSSMRA85T10A562S",
        "RSSMRA85",
        "pesel ",
        "44051401359",
        "131052-308T",
        "311280-9200",
        "hetu ",
        "S1234567D",
        "51 824 753 556",
        "abn ",
        "004 085 616",
        "acn ",
        "876 543 210",
        "tfn ",
        "2123 45670 1",
        "medicare ",
        "ABCPD1234Z",
        "pan ",
        "3123 4567 8909",
        "aadhaar ",
        "960121-1021413",
        "rrn ",
        // Wallets, MAC addresses, the newer IP and phone forms.
        "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa",
        "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy",
        "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
        "bc1",
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
        "0x",
        "wallet ",
        "00:1A:2B:3C:4D:5E",
        "001a.2b3c.4d5e",
        "00:1A",
        "192.168.1.0/24",
        "/24",
        "fe80::1%eth0",
        "%eth0",
        "::1",
        "2001:db8::/32",
        "09-7625400",
        "5019717010103742",
        "DE89-3704-0044-0532-0130-00",
        "LY83002048000020100120361",
        "user@example.xn--p1ai",
        // Secrets and their prefixes.
        "ghp_R4nd0mT0k3nV4lu3F0rT3st1ngPurp0s3s12",
        "ghp_",
        "gh",
        "AKIAZ7VRSQ5TJX3KPM2W",
        "AKIA",
        "sk-ant-api03-Zq8wX4vT7nR2mK9pL3sD6fH1jG5bC0eA8yU4iO7tW2qE5rY9",
        "sk-",
        "sk-proj-",
        "T3BlbkFJ",
        "-----BEGIN RSA PRIVATE KEY-----\n",
        "MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi+\n",
        "-----END RSA PRIVATE KEY-----",
        "-----BEG",
        "password = \"Xq7#mK2vR9pL4sW8\"",
        "password",
        " = ",
        "DB_PASSWORD=",
        "token: ",
        "eyJhbGciOiJIUzI1NiJ9",
        ".eyJzdWIiOiIxMjM0NTY3ODkwIn0",
        ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
        "eyJ",
        "xoxb-2631234567-5012345678901-Zq8wX4vT7nR2mK9pL3sD6fH1",
        "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
        "aws_secret_access_key = ",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzQ3kR8vT2m",
        "ſecret_key = ",
        "sk_live_51Hq8wX4vT7nR2mK9pL3sD6fH1jG5bC0eA8yU4iO7",
        "https://hooks.slack.com/services/T01ABCDEF23/B04GHIJKL56/Zq8wX4vT7nR2mK9pL3sD6fH1",
        "acme_",
        "acme_0123456789abcdef",
        "zz_1234",
        "zz_",
        // Words, admin patterns and keywords.
        "the",
        "quick",
        "é",
        "secret",
        "token",
        "tokens",
        "PRJ-1234",
        "PRJ-",
        "ticket-42",
        "AB123",
        "falcon",
        "Falcon",
        "blue",
        "heron",
        "c++",
        "clé",
    ];

    /// Short continuations that change findings at the end: extend a
    /// number, make it a fraction or a version, end a word, finish a key.
    const ENDINGS: &[&str] = &[
        "5",
        ".5",
        "1",
        "1111",
        "x",
        "_",
        "@example.com",
        ".com",
        " ",
        "-",
        "::1",
        "0",
        "=",
        "!",
        "\n-----END RSA PRIVATE KEY-----",
        "T3BlbkFJabcdefghijklmnopqrstuvwxyz",
        "acme_",
        ".eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV",
        "s",
        " 1111 1111",
        "Z",
        "-Z",
        " C",
        "/24",
        "%eth0",
        ":5E",
        "-1",
        "a",
    ];

    /// Fragments, runs of digits, base64 and hex, mostly with a separator
    /// between them so that each can be a whole word.
    fn random_text(rng: &mut Rng) -> String {
        let mut text = String::new();
        for _ in 0..rng.below(40) {
            if rng.below(3) > 0 {
                text += rng.pick(&[" ", " ", " ", "\n", ", ", ": ", "(", ") ", "="]);
            }
            match rng.below(10) {
                0 => text += &rng.chars("0123456789", 20),
                1 => {
                    text += &rng.chars(
                        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_-",
                        60,
                    )
                }
                2 => text += &rng.chars("0123456789abcdef:.", 12),
                _ => text += rng.pick(FRAGMENTS),
            }
        }
        text
    }

    fn starting_before(findings: Vec<Finding>, r: usize) -> Vec<Finding> {
        findings.into_iter().filter(|f| f.start < r).collect()
    }

    /// Checks the contract for `text` cut at `cut`, with the rest of the
    /// text and with `ending` as continuations.
    fn check(scanner: &Scanner, name: &str, text: &str, cut: usize, ending: &str) {
        let head = &text[..cut];
        let hold = scanner.stream_hold(head);
        assert!(
            hold <= head.len(),
            "{name}: hold {hold} > {} for {head:?}",
            head.len()
        );
        assert!(
            hold <= scanner.max_match_len() + 1,
            "{name}: hold {hold} > max_match_len {} for {head:?}",
            scanner.max_match_len()
        );
        let r = head.len() - hold;
        assert!(head.is_char_boundary(r), "{name}: {r} in {head:?}");
        let settled = starting_before(scanner.scan(head), r);
        for continuation in [&text[cut..], ending] {
            let longer = format!("{head}{continuation}");
            let later = starting_before(scanner.scan(&longer), r);
            assert_eq!(
                settled, later,
                "{name}: hold {hold} of {head:?} + {continuation:?}"
            );
        }
    }

    #[test]
    fn findings_before_the_hold_never_change() {
        let scanners = scanners();
        let mut rng = Rng(0x5EED_0F0F_7E57);
        for _ in 0..300 {
            let text = random_text(&mut rng);
            let cuts: Vec<usize> = (0..8)
                .map(|_| rng.below(text.len() + 1))
                .map(|cut| {
                    (cut..=text.len())
                        .find(|&c| text.is_char_boundary(c))
                        .unwrap_or(0)
                })
                .chain([text.len()])
                .collect();
            for &cut in &cuts {
                let ending = rng.pick(ENDINGS);
                for (name, scanner) in &scanners {
                    check(scanner, name, &text, cut, ending);
                }
            }
        }
    }

    /// Every cut of a sample of each kind of data, in context.
    #[test]
    fn findings_before_the_hold_never_change_at_any_cut() {
        let samples = [
            "pay 4111 1111 1111 1111 now",
            "card 378282246310005.",
            "call +44 20 7946 0958 or (415) 555-0132",
            "IBAN DE89 3704 0044 0532 0130 00, ok",
            "ssn 123 45 6789 and 078-05-1121",
            "hosts 192.168.1.20 and 2001:db8::7 (1.2.3.4.5)",
            "mail ana.silva@example.com today",
            "key AKIAZ7VRSQ5TJX3KPM2W ok",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA3Tz2\n-----END RSA PRIVATE KEY-----\n",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fw",
            "export password = \"Xq7#mK2vR9pL4sW8\" ok",
            "ghp_R4nd0mT0k3nV4lu3F0rT3st1ngPurp0s3s12 sk-ant-api03-Zq8wX4vT7nR2mK9pL3sD6fH1jG5bC0eA8yU4iO7",
            "acme_ zz_1234 acme_0123456789abcdef zz_98765",
            "PRJ-1234 ticket-42 AB123 falcon blue heron c++ clé",
            // Decided by what follows the match.
            "ssn 078-05-1121. at 255.255.255.255. or 4111111111111111.",
            "call 415-555-0132/3, 415-555-0132,9 or 415-555-0132:5",
            "v6 2001:0db8:85a3:0000:0000:8a2e:0370:7334 ok",
            "ITIN 911-70-1234, passport A12345678, ABA routing 121000358.",
            "NHS 943 476 5919 NINO AB 12 34 56 C nino tw987654a DNI 1111111-G X9613851N",
            "cf RSSMRA85T10A562S PESEL 44051401359 HETU 131052-308T NRIC S1234567D.",
            "ABN 51 824 753 556 ACN 004 085 616 TFN 876 543 210 Medicare 2123 45670 1",
            "PAN ABCPD1234Z Aadhaar 3123 4567 8909 RRN 960121-1021413 and 9601211021413",
            "pay 1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa or bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
            "eth 0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed mac 00:1A:2B:3C:4D:5E 001a.2b3c.4d5e",
            "net 192.168.1.0/24 fe80::1%eth0/64 [::1]:80 call 09-7625400 ssn 078.05.1123",
        ];
        let scanners = scanners();
        for text in samples {
            for cut in (0..=text.len()).filter(|&c| text.is_char_boundary(c)) {
                for ending in ENDINGS {
                    for (name, scanner) in &scanners {
                        check(scanner, name, text, cut, ending);
                    }
                }
            }
        }
    }

    #[test]
    fn the_full_set_stays_within_the_longest_match() {
        let scanner = full_set();
        let mut rng = Rng(42);
        for _ in 0..200 {
            let text = random_text(&mut rng);
            assert!(scanner.stream_hold(&text) <= scanner.max_match_len());
        }
        let pk = patterns_and_keywords();
        for _ in 0..200 {
            let text = random_text(&mut rng);
            assert!(pk.stream_hold(&text) <= pk.max_match_len());
        }
    }

    #[test]
    fn prose_holds_about_its_last_word() {
        let scanner = full_set();
        for text in [
            "The quick brown fox jumps over the lazy dog, and then it naps in the warm sun",
            "Models read tokens; a token is a piece of a word. The secret: count them all",
            "To reset your password, open the settings page and follow the steps there",
            "In 2024 the team shipped version 1.2 of the tool to every engineer on staff",
            "Use `fn main() { println!(\"hello\"); }` and run it with cargo run --release",
        ] {
            let hold = scanner.stream_hold(text);
            assert!(hold <= 32, "{hold} for {text:?}");
            assert!(hold > 0, "the last word may still grow: {text:?}");
        }
        // A sentence that ends holds almost nothing.
        assert!(scanner.stream_hold("That is all.\n\n") <= 2);
    }

    #[test]
    fn unfinished_matches_are_held_whole() {
        let scanner = full_set();
        let hold = |text: &str| scanner.stream_hold(text);

        assert!(hold("my card is 4111 1111 11") >= "4111 1111 11".len());
        assert!(hold("token ghp_abc") >= "ghp_abc".len());
        assert!(hold("see gh") >= 2);
        assert!(hold("mail ana.silva@exam") >= "ana.silva@exam".len());
        assert!(hold("call +44 20 79") >= "+44 20 79".len());
        assert!(hold("NINO AB 12 34") >= "AB 12 34".len());
        assert!(hold("cf RSSMRA85T10A56") >= "RSSMRA85T10A56".len());
        assert!(hold("pay 1A1zP1eP5QGefi2DM") >= "1A1zP1eP5QGefi2DM".len());
        assert!(hold("mac 00:1A:2B:3C:4D") >= "00:1A:2B:3C:4D".len());
        assert!(hold("HETU 131052-30") >= "131052-30".len());
        assert!(hold("net 10.0.0.0/2") >= "10.0.0.0/2".len());
        assert!(hold("at fe80::1%et") >= "fe80::1%et".len());

        let pem = "Here it is:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyu";
        let begin = pem.find("-----BEGIN").expect("has BEGIN");
        assert_eq!(hold(pem), pem.len() - begin);
        // Once the END line is in, the key is settled.
        let done = format!("{pem}\n-----END RSA PRIVATE KEY-----\nKeep it safe");
        assert!(hold(&done) <= "safe".len(), "{}", hold(&done));

        let assignment = "config: password = \"Xq7#mK2v";
        let at = assignment.find("password").expect("has password");
        assert_eq!(hold(assignment), assignment.len() - at);
        // A secret word in prose starts nothing: `password` never gets its
        // `=`.
        assert!(hold("the password you chose is fine") <= 4);
    }

    #[test]
    fn keywords_and_patterns_hold_what_could_still_match() {
        let specs = rules(vec![
            DetectorSpec::Pattern(r"\bPRJ-\d{4}\b".into()),
            DetectorSpec::Keywords(vec!["falcon".into(), "blue heron".into()]),
        ]);
        let scanner = Scanner::compile(&specs, &[]).expect("compiles");
        let hold = |text: &str| scanner.stream_hold(text);
        assert_eq!(hold("project falcon"), "falcon".len(), "falcons?");
        assert_eq!(hold("a blue her"), "blue her".len());
        assert_eq!(hold("see PRJ-12"), "PRJ-12".len());
        assert_eq!(hold("nothing to see"), 0);
    }
}
