//! Admin keyword lists: `keywords = ["project falcon", "acme-internal"]`.
//!
//! Every keyword of every keyword rule goes into one Aho-Corasick automaton
//! (ASCII-case-insensitive; non-ASCII letters match as written), searched
//! once with overlapping matches so that one keyword inside another (`acme`,
//! `acme corp`) or the same keyword in two rules all report.
//!
//! Whole words only: where a keyword begins with a word character (letter,
//! digit or `_`, Unicode-aware), the character before the match must not be
//! one, and likewise at its end. A keyword edge that is punctuation
//! (`c++`, `@corp`) needs no boundary there, like `\b` would.

use aho_corasick::{AhoCorasick, MatchKind};

use super::hold::PrefixSet;
use super::scanner::CompileError;
use super::Finding;

/// One keyword of one rule, by automaton pattern id.
#[derive(Debug)]
struct Keyword {
    rule: usize,
    bounded_start: bool,
    bounded_end: bool,
}

/// All keyword rules of a scanner.
#[derive(Debug)]
pub(crate) struct KeywordDetector {
    automaton: AhoCorasick,
    keywords: Vec<Keyword>,
    max_len: usize,
    /// Every keyword, ASCII-lowercased, for the stream hold.
    prefixes: PrefixSet,
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

impl KeywordDetector {
    /// Builds one automaton for `rules`: (rule index, rule id, keywords).
    /// A rule with no keywords, or an empty keyword, is the policy's error.
    pub(crate) fn compile<'a>(
        rules: impl IntoIterator<Item = (usize, &'a str, &'a [String])>,
    ) -> Result<Self, CompileError> {
        let mut patterns: Vec<&str> = Vec::new();
        let mut keywords = Vec::new();
        for (rule, id, words) in rules {
            if words.is_empty() {
                return Err(CompileError::EmptyKeywordList {
                    index: rule,
                    id: id.to_string(),
                });
            }
            for (position, word) in words.iter().enumerate() {
                let (Some(first), Some(last)) = (word.chars().next(), word.chars().next_back())
                else {
                    return Err(CompileError::EmptyKeyword {
                        index: rule,
                        id: id.to_string(),
                        position,
                    });
                };
                if word.trim().is_empty() {
                    return Err(CompileError::EmptyKeyword {
                        index: rule,
                        id: id.to_string(),
                        position,
                    });
                }
                patterns.push(word);
                keywords.push(Keyword {
                    rule,
                    bounded_start: is_word_char(first),
                    bounded_end: is_word_char(last),
                });
            }
        }
        let automaton = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(&patterns)
            .map_err(|e| CompileError::KeywordMatcher {
                message: e.to_string(),
            })?;
        let max_len = patterns.iter().map(|p| p.len()).max().unwrap_or(0);
        let prefixes = PrefixSet::new(patterns.iter().map(|p| p.as_bytes().to_ascii_lowercase()));
        Ok(KeywordDetector {
            automaton,
            keywords,
            max_len,
            prefixes,
        })
    }

    /// Longest finding, in bytes: the longest keyword.
    pub(crate) fn max_len(&self) -> usize {
        self.max_len
    }

    /// Where a keyword finding that more text could still change may start
    /// in `text` (its length if nowhere): at a keyword the end cuts off, or
    /// one that ends at the end (the next char decides if it is a whole
    /// word). Everything else a finding reads lies before its end.
    pub(crate) fn hold_from(&self, text: &str) -> usize {
        self.prefixes
            .earliest_partial(text.as_bytes())
            .unwrap_or(text.len())
    }

    /// Appends a finding for every whole-word keyword occurrence.
    pub(crate) fn find_all(&self, text: &str, out: &mut Vec<Finding>) {
        for hit in self.automaton.find_overlapping_iter(text) {
            let keyword = &self.keywords[hit.pattern().as_usize()];
            // A keyword is valid UTF-8 and matched byte for byte (ASCII
            // letters aside), so the hit lies on char boundaries.
            let before = text.get(..hit.start()).and_then(|s| s.chars().next_back());
            let after = text.get(hit.end()..).and_then(|s| s.chars().next());
            if (keyword.bounded_start && before.is_some_and(is_word_char))
                || (keyword.bounded_end && after.is_some_and(is_word_char))
            {
                continue;
            }
            out.push(Finding {
                rule: keyword.rule,
                start: hit.start(),
                end: hit.end(),
                kind: "keywords".into(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(words: &[&str], text: &str) -> Vec<String> {
        let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        let detector = KeywordDetector::compile([(0, "k", words.as_slice())]).expect("compiles");
        let mut out = Vec::new();
        detector.find_all(text, &mut out);
        out.iter()
            .map(|f| text[f.start..f.end].to_string())
            .collect()
    }

    #[test]
    fn matches_whole_words_in_any_ascii_case() {
        assert_eq!(
            found(&["falcon"], "Project FALCON, falcons, falcon_x, Falcon."),
            vec!["FALCON", "Falcon"]
        );
        assert_eq!(
            found(&["project falcon"], "re: Project  Falcon / project falcon"),
            vec!["project falcon"]
        );
    }

    #[test]
    fn overlapping_keywords_all_report() {
        assert_eq!(
            found(&["acme", "acme corp"], "Acme Corp"),
            vec!["Acme", "Acme Corp"]
        );
    }

    #[test]
    fn punctuation_edges_need_no_boundary_and_unicode_letters_count_as_word() {
        assert_eq!(found(&["c++"], "we use c++17 here"), vec!["c++"]);
        assert_eq!(found(&["@corp"], "mail x@corp.example"), vec!["@corp"]);
        assert!(found(&["café"], "cafés").is_empty());
        assert_eq!(found(&["café"], "un café."), vec!["café"]);
        assert!(found(&["falcon"], "éfalcon").is_empty());
    }

    #[test]
    fn empty_lists_and_empty_keywords_are_errors_naming_the_rule() {
        let empty: Vec<String> = Vec::new();
        let err = KeywordDetector::compile([(2, "secret-words", empty.as_slice())])
            .expect_err("empty list");
        assert!(matches!(
            err,
            CompileError::EmptyKeywordList { index: 2, .. }
        ));
        assert!(err.to_string().contains("secret-words"));
        let blank = vec!["ok".to_string(), " ".to_string()];
        let err =
            KeywordDetector::compile([(0, "k", blank.as_slice())]).expect_err("blank keyword");
        assert!(matches!(
            err,
            CompileError::EmptyKeyword { position: 1, .. }
        ));
    }
}
