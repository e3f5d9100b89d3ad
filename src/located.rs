//! Errors pinned to a place in a text file: `file:line:col: message`.
//!
//! Config and policy files are TOML written by people. When one is wrong, the
//! person needs the file, the line, the column and the key, in the format
//! editors and CI annotators already understand. This module turns a byte
//! offset (a toml span) into that, and parses TOML so that every serde error
//! carries the dotted key path it happened at.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// One problem in one file, at one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The file the text came from (or a label such as `<embedded default>`).
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
    /// What is wrong, naming the key where there is one.
    pub message: String,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

impl std::error::Error for Located {}

impl Located {
    /// A problem at byte offset `at` of `text` (clamped to the text).
    pub fn at(file: &Path, text: &str, at: usize, message: impl Into<String>) -> Located {
        let (line, col) = line_col(text, at);
        Located {
            file: file.to_path_buf(),
            line,
            col,
            message: message.into(),
        }
    }

    /// A problem at the start of `span` (or of the file when there is none).
    pub fn span(
        file: &Path,
        text: &str,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> Located {
        Located::at(file, text, span.map_or(0, |s| s.start), message)
    }
}

/// 1-based line and column (in chars) of byte offset `at` in `text`.
pub fn line_col(text: &str, at: usize) -> (usize, usize) {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = text[line_start..at].chars().count() + 1;
    (line, col)
}

/// Deserialize TOML `text` from `file` into `T`, or one located error that
/// names the dotted key path (`upstream.connect_timeout_secs: invalid type…`).
pub fn parse_toml<T: DeserializeOwned>(file: &Path, text: &str) -> Result<T, Located> {
    let de = toml::de::Deserializer::parse(text)
        .map_err(|e| Located::span(file, text, e.span(), e.message().trim().to_string()))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = if path.is_empty() || path == "." {
            inner.message().trim().to_string()
        } else {
            format!("`{path}`: {}", inner.message().trim())
        };
        Located::span(file, text, inner.span(), message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        a: Option<u32>,
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        n: Option<u32>,
    }

    #[test]
    fn line_and_column_are_one_based_and_count_chars() {
        assert_eq!(line_col("abc", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 3), (2, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("é\nxé y", 7), (2, 4));
        assert_eq!(line_col("ab", 99), (1, 3));
    }

    #[test]
    fn unknown_key_names_the_key_and_line() {
        let text = "a = 1\n[inner]\nn = 2\nbogus = 3\n";
        let err = parse_toml::<Doc>(Path::new("x.toml"), text).unwrap_err();
        assert_eq!(err.line, 4, "{err}");
        assert!(err.message.contains("bogus"), "{err}");
        assert!(err.to_string().starts_with("x.toml:4:"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_dotted_path() {
        let text = "a = 1\n[inner]\nn = \"two\"\n";
        let err = parse_toml::<Doc>(Path::new("x.toml"), text).unwrap_err();
        assert_eq!((err.line, err.col), (3, 5), "{err}");
        assert!(err.message.contains("inner.n"), "{err}");
    }

    #[test]
    fn syntax_error_is_located() {
        let err = parse_toml::<Doc>(Path::new("x.toml"), "a = 1\nb = = 2\n").unwrap_err();
        assert_eq!(err.line, 2, "{err}");
    }
}
