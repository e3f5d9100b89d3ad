//! Which CONNECT targets Outpost terminates TLS for.
//!
//! A *host pattern* is an exact name (`api.openai.com`) or a suffix wildcard
//! (`*.openai.azure.com`, matching any name under the suffix but not the
//! suffix itself). The *intercept list* is the `[intercept]` table of the
//! policy: `hosts` to intercept, and `exclude` for hosts that must always be
//! tunnelled (mTLS endpoints, where a proxy cannot present the client's
//! certificate). Names are compared lower-cased without a trailing dot; IP
//! literals are never intercepted (the CA excludes every IP range).

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::model::RawIntercept;
use crate::config::normalize_host;
use crate::located::{parse_toml, Located};

/// An exact host name or a `*.suffix` wildcard.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    /// Matches this name only.
    Exact(String),
    /// Matches any name ending in `.suffix` (the stored value, without `*.`).
    Suffix(String),
}

impl HostPattern {
    /// Parse a pattern; the error says what is wrong with it.
    pub fn parse(raw: &str) -> Result<HostPattern, String> {
        let lowered = normalize_host(raw.trim());
        let (wild, name) = match lowered.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lowered.as_str()),
        };
        if name.is_empty() {
            return Err(format!("{raw:?} is empty"));
        }
        if name.parse::<IpAddr>().is_ok() {
            return Err(format!(
                "{raw:?} is an IP address; only host names can be intercepted"
            ));
        }
        let valid_label = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !name.split('.').all(valid_label) {
            return Err(format!(
                "{raw:?} is not a host name or \"*.suffix\" pattern (wildcards only as a leading \"*.\")"
            ));
        }
        Ok(if wild {
            HostPattern::Suffix(name.to_string())
        } else {
            HostPattern::Exact(name.to_string())
        })
    }

    /// Does `host` (already normalized) match?
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(name) => host == name,
            HostPattern::Suffix(suffix) => host
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        }
    }

    /// The DNS name constraint that covers this pattern: the name itself, or
    /// the suffix (RFC 5280 DNS constraints cover a name and its subdomains).
    pub fn constraint(&self) -> &str {
        match self {
            HostPattern::Exact(name) | HostPattern::Suffix(name) => name,
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(name) => f.write_str(name),
            HostPattern::Suffix(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

/// The hosts Outpost intercepts, minus those it must tunnel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterceptList {
    /// Every pattern to intercept, of every group.
    hosts: Vec<HostPattern>,
    groups: Vec<InterceptGroup>,
}

/// One policy layer's hosts, with the excludes that apply to them (its
/// own and those of the layers below it: a higher layer cannot exclude a
/// host a lower one intercepts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct InterceptGroup {
    hosts: Vec<HostPattern>,
    exclude: Vec<HostPattern>,
}

impl InterceptList {
    /// Build from patterns (already parsed).
    pub fn new(hosts: Vec<HostPattern>, exclude: Vec<HostPattern>) -> InterceptList {
        InterceptList::layered(vec![(hosts, exclude)])
    }

    /// Build from groups of (hosts, the excludes that apply to them): a
    /// host is intercepted if one group's hosts match it and that group's
    /// excludes do not.
    pub fn layered(groups: Vec<(Vec<HostPattern>, Vec<HostPattern>)>) -> InterceptList {
        let mut hosts: Vec<HostPattern> = Vec::new();
        for pattern in groups.iter().flat_map(|(h, _)| h) {
            if !hosts.contains(pattern) {
                hosts.push(pattern.clone());
            }
        }
        let groups = groups
            .into_iter()
            .map(|(hosts, exclude)| InterceptGroup { hosts, exclude })
            .collect();
        InterceptList { hosts, groups }
    }

    /// The `[intercept]` table of the shipped default policy.
    pub fn embedded_default() -> Result<InterceptList, Located> {
        from_policy_toml(
            Path::new("<embedded policy/default.toml>"),
            super::DEFAULT_POLICY,
        )
    }

    /// Should a CONNECT to `host` be intercepted?
    pub fn intercepts(&self, host: &str) -> bool {
        let host = normalize_host(host);
        if host.parse::<IpAddr>().is_ok() {
            return false;
        }
        self.groups.iter().any(|g| {
            g.hosts.iter().any(|p| p.matches(&host)) && !g.exclude.iter().any(|p| p.matches(&host))
        })
    }

    /// Each group's hosts and the excludes that apply to them (see
    /// [`InterceptList::layered`]).
    pub fn groups(&self) -> impl Iterator<Item = (&[HostPattern], &[HostPattern])> {
        self.groups
            .iter()
            .map(|g| (g.hosts.as_slice(), g.exclude.as_slice()))
    }

    /// A proxy auto-config file: `PROXY proxy` for the intercepted hosts,
    /// `DIRECT` for every other, for browsers and apps that follow the
    /// system PAC setting instead of `HTTPS_PROXY`.
    pub fn pac(&self, proxy: std::net::SocketAddr) -> String {
        let test = |p: &HostPattern| match p {
            HostPattern::Exact(name) => format!("host == {}", js_string(name)),
            HostPattern::Suffix(suffix) => {
                format!("dnsDomainIs(host, {})", js_string(&format!(".{suffix}")))
            }
        };
        let any = |patterns: &[HostPattern]| {
            if patterns.is_empty() {
                "false".to_string()
            } else {
                patterns.iter().map(test).collect::<Vec<_>>().join(" || ")
            }
        };
        let mut out = String::from(
            "// Outpost: AI provider hosts go through the local agent, everything else direct.\n\
             function FindProxyForURL(url, host) {\n  host = host.toLowerCase();\n",
        );
        for (hosts, exclude) in self.groups() {
            if hosts.is_empty() {
                continue;
            }
            out.push_str(&format!(
                "  if (({}) && !({})) return \"PROXY {proxy}\";\n",
                any(hosts),
                any(exclude)
            ));
        }
        out.push_str("  return \"DIRECT\";\n}\n");
        out
    }

    /// The patterns to intercept.
    pub fn hosts(&self) -> &[HostPattern] {
        &self.hosts
    }
}

/// `s` as a JavaScript string literal (host names: no quotes or escapes
/// to expect, but never trusted to have none).
fn js_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

/// A policy document as far as its `[intercept]` host lists go (the same
/// table shape `policy::load` reads; other keys are not looked at here).
#[derive(Deserialize)]
struct PolicyDoc {
    #[serde(default)]
    intercept: Option<RawIntercept>,
}

/// Read the `[intercept]` table of a policy document.
pub fn from_policy_toml(file: &Path, text: &str) -> Result<InterceptList, Located> {
    let doc: PolicyDoc = parse_toml(file, text)?;
    let Some(raw) = doc.intercept else {
        return Ok(InterceptList::default());
    };
    let parse_all = |key: &str, items: Vec<Spanned<String>>| {
        items
            .into_iter()
            .map(|item| {
                HostPattern::parse(item.get_ref()).map_err(|msg| {
                    Located::span(
                        file,
                        text,
                        Some(item.span()),
                        format!("`intercept.{key}`: {msg}"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(InterceptList::new(
        parse_all("hosts", raw.hosts.unwrap_or_default())?,
        parse_all("exclude", raw.exclude.unwrap_or_default())?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(s: &str) -> HostPattern {
        HostPattern::parse(s).unwrap()
    }

    #[test]
    fn exact_and_suffix_patterns_match() {
        assert!(pat("api.openai.com").matches("api.openai.com"));
        assert!(!pat("api.openai.com").matches("xapi.openai.com"));
        let azure = pat("*.openai.azure.com");
        assert!(azure.matches("contoso.openai.azure.com"));
        assert!(azure.matches("a.b.openai.azure.com"));
        assert!(!azure.matches("openai.azure.com"));
        assert!(!azure.matches("evilopenai.azure.com"));
        assert_eq!(azure.constraint(), "openai.azure.com");
        assert_eq!(azure.to_string(), "*.openai.azure.com");
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(HostPattern::parse("").is_err());
        assert!(HostPattern::parse("10.0.0.1").is_err());
        assert!(HostPattern::parse("api.*.com").is_err());
        assert!(HostPattern::parse("a b.com").is_err());
        assert_eq!(
            pat("API.OpenAI.com."),
            HostPattern::Exact("api.openai.com".into())
        );
    }

    #[test]
    fn default_list_intercepts_providers_and_tunnels_the_rest() {
        let list = InterceptList::embedded_default().unwrap();
        assert!(list.intercepts("api.openai.com"));
        assert!(list.intercepts("API.ANTHROPIC.COM."));
        assert!(list.intercepts("generativelanguage.googleapis.com"));
        assert!(list.intercepts("myres.openai.azure.com"));
        assert!(!list.intercepts("mtls.api.openai.com"));
        assert!(!list.intercepts("example.com"));
        assert!(!list.intercepts("127.0.0.1"));
    }

    #[test]
    fn bad_entry_is_located() {
        let text = "[intercept]\nhosts = [\n  \"ok.com\",\n  \"bad*.com\",\n]\n";
        let err = from_policy_toml(Path::new("p.toml"), text).unwrap_err();
        assert_eq!((err.line, err.col), (4, 3), "{err}");
        assert!(err.message.contains("intercept.hosts"), "{err}");
    }

    #[test]
    fn other_intercept_keys_do_not_break_the_host_list() {
        let text = "[intercept]\nhosts = [\"a.com\"]\nunknown_endpoints = \"block\"\n";
        let list = from_policy_toml(Path::new("p.toml"), text).unwrap();
        assert!(list.intercepts("a.com"));
    }
}
