//! Globs on model names: `*` matches any run of characters, `?` exactly one;
//! everything else matches itself, ASCII case-insensitively
//! (`gpt-4o*`, `*-preview`, `claude-?-*`).
//!
//! Policy model rules, budget model filters and price-table entries all use
//! them; the module sits at the crate root so that `budget` needs nothing
//! from `policy` (the dependency runs policy → budget only).

/// A compiled glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: Vec<char>,
    text: String,
}

impl Glob {
    /// Compile `pattern` (any string is a valid glob).
    pub fn new(pattern: &str) -> Glob {
        Glob {
            pattern: pattern.to_ascii_lowercase().chars().collect(),
            text: pattern.to_string(),
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Does `name` match?
    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.to_ascii_lowercase().chars().collect();
        // Iterative matcher with one backtrack point for the last `*`:
        // linear in practice, never exponential.
        let (mut p, mut n) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while n < name.len() {
            match self.pattern.get(p) {
                Some('*') => {
                    star = Some((p, n));
                    p += 1;
                }
                Some(&c) if c == '?' || c == name[n] => {
                    p += 1;
                    n += 1;
                }
                _ => match star {
                    Some((sp, sn)) => {
                        p = sp + 1;
                        n = sn + 1;
                        star = Some((sp, sn + 1));
                    }
                    None => return false,
                },
            }
        }
        self.pattern[p..].iter().all(|&c| c == '*')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_model_names() {
        assert!(Glob::new("*").matches("gpt-4o"));
        assert!(Glob::new("*").matches(""));
        assert!(Glob::new("gpt-4o*").matches("gpt-4o-2024-08-06"));
        assert!(Glob::new("gpt-4o*").matches("GPT-4o"));
        assert!(!Glob::new("gpt-4o*").matches("gpt-4"));
        assert!(Glob::new("*-preview").matches("o1-preview"));
        assert!(!Glob::new("*-preview").matches("o1-preview-2"));
        assert!(Glob::new("claude-?-*").matches("claude-3-opus"));
        assert!(!Glob::new("claude-?-*").matches("claude-35-opus"));
        assert!(Glob::new("a*b*c").matches("aXXbYYbZc"));
        assert!(!Glob::new("a*b*c").matches("aXXbYYbZ"));
        assert!(!Glob::new("exact").matches("exactly"));
    }
}
