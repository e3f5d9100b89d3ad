//! Admin patterns: `pattern = "regex"` rules.
//!
//! An admin's regex could be anything, so there is no prefilter to derive:
//! it runs over the whole text (the `regex` crate does its own literal
//! prefiltering, so a pattern with a literal part is still fast). Empty
//! matches are skipped; matches longer than the pattern's reach (its
//! longest possible match, capped, see `limits.rs`) are reported clipped.

use regex::Regex;

use super::hold::{HoldSpec, RegexHold};
use super::limits::{capped_regex_max_len, clip_to_cap};
use super::scanner::CompileError;
use super::Finding;

/// One admin pattern, compiled.
#[derive(Debug)]
pub(crate) struct PatternDetector {
    rule: usize,
    regex: Regex,
    reach: usize,
    hold: RegexHold,
}

impl PatternDetector {
    /// Compiles the pattern of rule `rule` (id `id`); a bad regex is the
    /// policy's error, reported with the `regex` crate's message.
    pub(crate) fn compile(rule: usize, id: &str, pattern: &str) -> Result<Self, CompileError> {
        let regex = Regex::new(pattern).map_err(|e| CompileError::InvalidPattern {
            index: rule,
            id: id.to_string(),
            message: e.to_string(),
        })?;
        let reach = capped_regex_max_len(pattern);
        let hold = RegexHold::new(&[HoldSpec {
            pattern,
            reach,
            keywords: None,
        }]);
        Ok(PatternDetector {
            rule,
            regex,
            reach,
            hold,
        })
    }

    /// Longest finding this pattern reports, in bytes.
    pub(crate) fn max_len(&self) -> usize {
        self.reach
    }

    /// Where a match that more text could still change may start in `text`
    /// (its length if nowhere); see `hold.rs`.
    pub(crate) fn hold_from(&self, text: &str) -> usize {
        self.hold.hold_from(text)
    }

    /// Appends a finding for every non-empty match in `text`.
    pub(crate) fn find_all(&self, text: &str, out: &mut Vec<Finding>) {
        for m in self.regex.find_iter(text) {
            if m.is_empty() {
                continue;
            }
            let span = clip_to_cap(text, m.range());
            out.push(Finding {
                rule: self.rule,
                start: span.start,
                end: span.end,
                kind: "pattern".into(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(pattern: &str, text: &str) -> Vec<(usize, usize)> {
        let detector = PatternDetector::compile(0, "p", pattern).expect("compiles");
        let mut out = Vec::new();
        detector.find_all(text, &mut out);
        out.iter().map(|f| (f.start, f.end)).collect()
    }

    #[test]
    fn reports_every_match_and_skips_empty_ones() {
        assert_eq!(
            spans(r"PRJ-\d+", "PRJ-1 and PRJ-22"),
            vec![(0, 5), (10, 16)]
        );
        assert_eq!(spans("x*", "ab"), vec![]);
    }

    #[test]
    fn a_bad_regex_names_the_rule_and_says_why() {
        let err =
            PatternDetector::compile(3, "no-projects", "PRJ-(\\d+").expect_err("unclosed group");
        let message = err.to_string();
        assert!(message.contains("no-projects"), "{message}");
        assert!(message.contains('3'), "{message}");
        assert!(message.contains("unclosed group"), "{message}");
    }
}
