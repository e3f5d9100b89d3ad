//! Which provider a host is: the table in `policy/providers.toml`, as data.
//!
//! A host *pattern* is an exact lower-case DNS name (`api.groq.com`) or
//! `*.suffix` (`*.openai.azure.com`: any name under the suffix, at any
//! depth, but not the suffix itself). [`ProviderTable::lookup`] prefers an
//! exact match, then the longest matching suffix. [`ProviderTable::hosts`]
//! lists the patterns, the candidates for the intercept list.
//!
//! The file is compiled in ([`ProviderTable::embedded`]); a broken entry is
//! reported as `file:line:col: message` like every policy file.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::Deserialize;

use super::Provider;
use crate::located::{parse_toml, Located};

/// The shipped table.
const EMBEDDED: &str = include_str!("../../policy/providers.toml");
/// How errors in the shipped table name it.
const EMBEDDED_LABEL: &str = "<embedded policy/providers.toml>";

/// One provider the table knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderEntry {
    /// Short stable name (`openai`, `groq`, …).
    pub name: String,
    /// Its native API family.
    pub kind: Provider,
    /// Whether Outpost may add `stream_options.include_usage` to its
    /// streaming chat calls (see [`ensure_stream_usage`](super::ensure_stream_usage)).
    pub stream_options: bool,
}

/// A problem with a providers table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderTableError {
    /// Not TOML, or not the table's schema (unknown key, unknown kind, …).
    #[error(transparent)]
    Invalid(Located),
    /// A host pattern that is not a lower-case DNS name or `*.suffix`.
    #[error(transparent)]
    BadHostPattern(Located),
    /// A pattern listed twice, or a name used twice.
    #[error(transparent)]
    Duplicate(Located),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    provider: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    name: String,
    kind: RawKind,
    hosts: Vec<String>,
    #[serde(default)]
    stream_options: bool,
}

#[derive(Deserialize, Clone, Copy)]
enum RawKind {
    #[serde(rename = "openai")]
    OpenAi,
    #[serde(rename = "anthropic")]
    Anthropic,
    #[serde(rename = "gemini")]
    Gemini,
    #[serde(rename = "azure")]
    Azure,
    #[serde(rename = "openai-compatible")]
    OpenAiCompatible,
}

impl From<RawKind> for Provider {
    fn from(kind: RawKind) -> Provider {
        match kind {
            RawKind::OpenAi => Provider::OpenAi,
            RawKind::Anthropic => Provider::Anthropic,
            RawKind::Gemini => Provider::Gemini,
            RawKind::Azure => Provider::Azure,
            RawKind::OpenAiCompatible => Provider::OpenAiCompatible,
        }
    }
}

/// Hosts → providers.
#[derive(Debug, Clone)]
pub struct ProviderTable {
    entries: Vec<ProviderEntry>,
    /// Every pattern in file order, with its entry.
    patterns: Vec<(String, usize)>,
    exact: HashMap<String, usize>,
    /// `.suffix` (with the leading dot) → entry, longest first.
    wildcards: Vec<(String, usize)>,
}

impl ProviderTable {
    /// The table compiled into the agent.
    pub fn embedded() -> Result<ProviderTable, ProviderTableError> {
        ProviderTable::from_toml(Path::new(EMBEDDED_LABEL), EMBEDDED)
    }

    /// A table from TOML `text` read from `file` (named in errors).
    pub fn from_toml(file: &Path, text: &str) -> Result<ProviderTable, ProviderTableError> {
        let raw: RawTable = parse_toml(file, text).map_err(ProviderTableError::Invalid)?;
        ProviderTable::from_raw(raw, file, text)
    }

    /// The shipped table with the entries of `text` (a managed bundle's
    /// `providers.toml`) added; an entry named as a shipped one replaces it.
    pub fn embedded_with(file: &Path, text: &str) -> Result<ProviderTable, ProviderTableError> {
        let overlay: RawTable = parse_toml(file, text).map_err(ProviderTableError::Invalid)?;
        let base: RawTable =
            parse_toml(Path::new(EMBEDDED_LABEL), EMBEDDED).map_err(ProviderTableError::Invalid)?;
        let replaced: HashSet<&str> = overlay.provider.iter().map(|e| e.name.as_str()).collect();
        let mut provider: Vec<RawEntry> = base
            .provider
            .into_iter()
            .filter(|e| !replaced.contains(e.name.as_str()))
            .collect();
        provider.extend(overlay.provider);
        ProviderTable::from_raw(RawTable { provider }, file, text)
    }

    fn from_raw(
        raw: RawTable,
        file: &Path,
        text: &str,
    ) -> Result<ProviderTable, ProviderTableError> {
        let locate = |needle: &str, message: String| {
            let quoted = format!("\"{needle}\"");
            let at = text.find(&quoted).unwrap_or(0);
            Located::at(file, text, at, message)
        };
        let mut table = ProviderTable {
            entries: Vec::with_capacity(raw.provider.len()),
            patterns: Vec::new(),
            exact: HashMap::new(),
            wildcards: Vec::new(),
        };
        let mut names: HashSet<String> = HashSet::new();
        let mut owners: HashMap<String, String> = HashMap::new();
        for entry in raw.provider {
            if !names.insert(entry.name.clone()) {
                let message = format!("provider name `{}` is used twice", entry.name);
                return Err(ProviderTableError::Duplicate(locate(&entry.name, message)));
            }
            let id = table.entries.len();
            for pattern in &entry.hosts {
                if let Err(reason) = check_pattern(pattern) {
                    let message = format!(
                        "provider `{}`: host pattern `{pattern}` {reason}",
                        entry.name
                    );
                    return Err(ProviderTableError::BadHostPattern(locate(pattern, message)));
                }
                if let Some(first) = owners.insert(pattern.clone(), entry.name.clone()) {
                    let message = format!(
                        "host pattern `{pattern}` is listed by both `{first}` and `{}`",
                        entry.name
                    );
                    return Err(ProviderTableError::Duplicate(locate(pattern, message)));
                }
                table.patterns.push((pattern.clone(), id));
                match pattern.strip_prefix('*') {
                    Some(suffix) => table.wildcards.push((suffix.to_owned(), id)),
                    None => {
                        table.exact.insert(pattern.clone(), id);
                    }
                }
            }
            table.entries.push(ProviderEntry {
                name: entry.name,
                kind: entry.kind.into(),
                stream_options: entry.stream_options,
            });
        }
        table
            .wildcards
            .sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
        Ok(table)
    }

    /// The provider for `host` (lower-case; a trailing dot is ignored).
    pub fn lookup(&self, host: &str) -> Option<&ProviderEntry> {
        let host = host.strip_suffix('.').unwrap_or(host);
        let id = self.exact.get(host).copied().or_else(|| {
            self.wildcards
                .iter()
                .find(|(suffix, _)| host.len() > suffix.len() && host.ends_with(suffix.as_str()))
                .map(|(_, id)| *id)
        })?;
        self.entries.get(id)
    }

    /// Every host pattern, in file order.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.patterns.iter().map(|(pattern, _)| pattern.as_str())
    }

    /// Every provider name, in file order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|entry| entry.name.as_str())
    }

    /// Every provider, in file order.
    pub fn entries(&self) -> impl Iterator<Item = &ProviderEntry> {
        self.entries.iter()
    }
}

/// Why `pattern` is not a lower-case DNS name or `*.suffix` of one.
fn check_pattern(pattern: &str) -> Result<(), &'static str> {
    let (name, wildcard) = match pattern.strip_prefix("*.") {
        Some(suffix) => (suffix, true),
        None => (pattern, false),
    };
    if name.is_empty() || name.len() > 253 {
        return Err("is not a host name");
    }
    let labels: Vec<&str> = name.split('.').collect();
    if wildcard && labels.len() < 2 {
        return Err("would match a whole top-level domain");
    }
    for label in labels {
        let valid_chars = label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if label.is_empty() || label.len() > 63 || !valid_chars {
            return Err("must be lower-case letters, digits, '-' and dots, or start with \"*.\"");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("has a label starting or ending with '-'");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Result<ProviderTable, ProviderTableError> {
        ProviderTable::from_toml(Path::new("providers.toml"), text)
    }

    #[test]
    fn embedded_table_loads_and_knows_the_natives_and_the_compatible_hosts() {
        let table = ProviderTable::embedded().unwrap();
        for host in [
            "api.openai.com",
            "api.anthropic.com",
            "generativelanguage.googleapis.com",
            "x.openai.azure.com",
        ] {
            let entry = table.lookup(host).unwrap();
            assert_eq!(entry.kind, Provider::for_host(host), "{host}");
        }
        let expected = [
            ("api.mistral.ai", "mistral"),
            ("api.groq.com", "groq"),
            ("api.deepseek.com", "deepseek"),
            ("api.x.ai", "xai"),
            ("api.together.xyz", "together"),
            ("api.together.ai", "together"),
            ("api.fireworks.ai", "fireworks"),
            ("api.perplexity.ai", "perplexity"),
            ("openrouter.ai", "openrouter"),
            ("api.cerebras.ai", "cerebras"),
        ];
        for (host, name) in expected {
            let entry = table.lookup(host).unwrap();
            assert_eq!(
                (entry.name.as_str(), entry.kind),
                (name, Provider::OpenAiCompatible),
                "{host}"
            );
        }
        assert!(!table.lookup("api.mistral.ai").unwrap().stream_options);
        assert!(table.lookup("api.openai.com").unwrap().stream_options);
        assert!(table.hosts().any(|h| h == "*.openai.azure.com"));
        assert_eq!(table.lookup("example.com"), None);
    }

    #[test]
    fn wildcards_match_names_under_the_suffix_only() {
        let table = table(
            r#"
            [[provider]]
            name = "azure"
            kind = "azure"
            hosts = ["*.openai.azure.com"]
            [[provider]]
            name = "special"
            kind = "openai-compatible"
            hosts = ["*.eu.openai.azure.com", "exact.openai.azure.com"]
            "#,
        )
        .unwrap();
        assert_eq!(table.lookup("r.openai.azure.com").unwrap().name, "azure");
        assert_eq!(table.lookup("a.b.openai.azure.com").unwrap().name, "azure");
        assert_eq!(
            table.lookup("r.eu.openai.azure.com").unwrap().name,
            "special"
        );
        assert_eq!(
            table.lookup("exact.openai.azure.com").unwrap().name,
            "special"
        );
        assert_eq!(
            table.lookup("exact.openai.azure.com.").unwrap().name,
            "special"
        );
        assert_eq!(table.lookup("openai.azure.com"), None);
        assert_eq!(table.lookup("evilopenai.azure.com"), None);
        assert_eq!(
            table.hosts().collect::<Vec<_>>(),
            [
                "*.openai.azure.com",
                "*.eu.openai.azure.com",
                "exact.openai.azure.com"
            ]
        );
    }

    #[test]
    fn bad_tables_are_located_errors() {
        let err = table("[[provider]]\nname = \"x\"\nkind = \"nope\"\nhosts = []\n").unwrap_err();
        assert!(
            matches!(&err, ProviderTableError::Invalid(located) if located.line == 3),
            "{err}"
        );

        let err = table("[[provider]]\nname = \"x\"\nkind = \"openai\"\nhosts = [\"API.x.com\"]\n")
            .unwrap_err();
        let ProviderTableError::BadHostPattern(located) = &err else {
            panic!("{err}")
        };
        assert_eq!((located.line, located.col), (4, 10));

        for bad in ["*.com", "a..b", "-a.com", "*", "a b.com", ""] {
            let text =
                format!("[[provider]]\nname = \"x\"\nkind = \"openai\"\nhosts = [\"{bad}\"]\n");
            assert!(
                matches!(table(&text), Err(ProviderTableError::BadHostPattern(_))),
                "{bad}"
            );
        }

        let twice = "[[provider]]\nname = \"a\"\nkind = \"openai\"\nhosts = [\"h.com\"]\n\
                     [[provider]]\nname = \"b\"\nkind = \"openai\"\nhosts = [\"h.com\"]\n";
        let err = table(twice).unwrap_err();
        assert!(
            err.to_string().contains("listed by both `a` and `b`"),
            "{err}"
        );
    }
}
