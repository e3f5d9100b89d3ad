//! Regexes compiled on first use.
//!
//! A policy holds a few hundred secret rules, each with a regex and a
//! stream-hold regex beside it. Compiled, they take tens of megabytes, yet
//! a rule's regex only runs near a hit of its keywords and its hold regex
//! only when one of its anchors is at the end of a stream: most of them
//! never run. So each is compiled the first time it is needed, and kept.
//! Whether a pattern compiles is still checked when the policy loads (by
//! compiling it there once), so a bad rule is a policy error, never a
//! failure on the call path.

use std::sync::OnceLock;

use regex::{Regex, RegexBuilder};

/// A regex compiled the first time [`LazyRegex::get`] is called.
#[derive(Debug)]
pub(crate) struct LazyRegex {
    pattern: Box<str>,
    size_limit: Option<usize>,
    compiled: OnceLock<Option<Regex>>,
}

impl LazyRegex {
    /// `pattern`, built with the builder's defaults or `size_limit`.
    pub(crate) fn new(pattern: impl Into<Box<str>>, size_limit: Option<usize>) -> LazyRegex {
        LazyRegex {
            pattern: pattern.into(),
            size_limit,
            compiled: OnceLock::new(),
        }
    }

    /// The regex; `None` if the pattern does not build. Blocks while
    /// another thread compiles it.
    pub(crate) fn get(&self) -> Option<&Regex> {
        self.compiled
            .get_or_init(|| {
                let mut builder = RegexBuilder::new(&self.pattern);
                if let Some(limit) = self.size_limit {
                    builder.size_limit(limit);
                }
                builder.build().ok()
            })
            .as_ref()
    }

    /// Whether it has been compiled.
    #[cfg(test)]
    pub(crate) fn is_compiled(&self) -> bool {
        self.compiled.get().is_some()
    }
}
