//! Regexes compiled on first use.
//!
//! A policy holds a few hundred secret rules. Compiled, their regexes take
//! tens of megabytes, yet a rule's regex only runs near a hit of its
//! keywords: most of them never run. So each is compiled the first time
//! it is needed, and kept (the stream hold builds its DFAs the same way, in
//! `hold.rs`). Whether a pattern compiles is still checked when the policy loads (by
//! compiling it there once), so a bad rule is a policy error, never a
//! failure on the call path.

use std::sync::OnceLock;

use regex::Regex;

/// A regex compiled the first time [`LazyRegex::get`] is called.
#[derive(Debug)]
pub(crate) struct LazyRegex {
    pattern: Box<str>,
    compiled: OnceLock<Option<Regex>>,
}

impl LazyRegex {
    /// `pattern`, compiled as `Regex::new` would.
    pub(crate) fn new(pattern: impl Into<Box<str>>) -> LazyRegex {
        LazyRegex {
            pattern: pattern.into(),
            compiled: OnceLock::new(),
        }
    }

    /// The regex; `None` if the pattern does not build. Blocks while
    /// another thread compiles it.
    pub(crate) fn get(&self) -> Option<&Regex> {
        self.compiled
            .get_or_init(|| Regex::new(&self.pattern).ok())
            .as_ref()
    }

    /// Whether it has been compiled.
    #[cfg(test)]
    pub(crate) fn is_compiled(&self) -> bool {
        self.compiled.get().is_some()
    }
}
