//! gitleaks-format rule files, named by a policy's `[[secret_sources]]`
//! (`gitleaks = "/etc/outpost/gitleaks.toml"`), so that a team that keeps a
//! gitleaks config uses it as it is.
//!
//! What is read, and how it maps onto Outpost's secret rules:
//! - `[[rules]]`: `id`, `description`, `regex`, `secretGroup`, `entropy`,
//!   `keywords`, `allowlists` (and the older single `allowlist`). Each
//!   becomes a secret rule named `gitleaks:<id>`, so that a copy of
//!   gitleaks' default config does not clash with the built-in rules of the
//!   same names (both run; a finding names the one that fired).
//! - allowlists: `regexes`, `stopwords`, `condition` (`OR`/`AND`) and
//!   `regexTarget` (`secret`, `match`; `line` is read as `match`, which
//!   allows less: a streamed line can still grow). `paths` and `commits`
//!   never match a prompt: an allowlist with only those is dropped, and
//!   under `AND` one with them can never allow. The file's own top-level
//!   `[allowlist]` / `[[allowlists]]` apply to its rules (to `targetRules`
//!   where given).
//! - `[extend] useDefault`: Outpost's built-in rules, which cover gitleaks'
//!   default families, are always in force, so it changes nothing;
//!   `[extend] path` loads that file's rules too (one level), less its
//!   `disabledRules`.
//!
//! Not loaded, each with a note naming the rule: path-only rules and rules
//! with a `path` (a prompt has no file path), and rules whose regex the Rust
//! engine cannot compile (`file:line:col` and the reason). The other rules
//! still load: a note is not an error. Composite rules (`[[rules.required]]`)
//! load without their requirement, so they find more, never less.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::guard::{AllowCondition, AllowTarget, Allowlist, SecretRule};
use crate::located::Located;

/// The prefix of every rule id read from a gitleaks file.
pub const ID_PREFIX: &str = "gitleaks:";

/// The rules of one gitleaks file, and what was left out of it.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Rules, ids prefixed with [`ID_PREFIX`].
    pub rules: Vec<SecretRule>,
    /// Rules and allowlists not loaded, and why.
    pub notes: Vec<Located>,
    /// Every file read (the source and its `[extend] path`), with its text,
    /// so the policy version changes when one does.
    pub files: Vec<(PathBuf, String)>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawFile {
    #[serde(default)]
    rules: Vec<RawRule>,
    extend: Option<RawExtend>,
    allowlist: Option<RawAllowlist>,
    #[serde(default)]
    allowlists: Vec<RawAllowlist>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawExtend {
    path: Option<Spanned<String>>,
    #[serde(default)]
    disabled_rules: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRule {
    id: Spanned<String>,
    description: Option<String>,
    regex: Option<Spanned<String>>,
    secret_group: Option<usize>,
    entropy: Option<f64>,
    #[serde(default)]
    keywords: Vec<String>,
    path: Option<String>,
    allowlist: Option<RawAllowlist>,
    #[serde(default)]
    allowlists: Vec<RawAllowlist>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAllowlist {
    description: Option<String>,
    condition: Option<Spanned<String>>,
    regex_target: Option<Spanned<String>>,
    #[serde(default)]
    regexes: Vec<Spanned<String>>,
    #[serde(default)]
    stopwords: Vec<String>,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    commits: Vec<String>,
    #[serde(default)]
    target_rules: Vec<String>,
}

/// Reads `path` as a gitleaks config. `Err` when the file (or its
/// `[extend] path`) cannot be read or is not TOML; a rule that cannot be
/// used is a note instead.
pub fn load(
    path: &Path,
    read: &dyn Fn(&Path) -> Result<String, Located>,
) -> Result<Loaded, Located> {
    let mut loaded = Loaded::default();
    let text = read(path)?;
    let file = parse(path, &text)?;
    let mut disabled = BTreeSet::new();
    if let Some(extend) = &file.extend {
        if let Some(base) = &extend.path {
            let base_path = path.parent().unwrap_or(Path::new(".")).join(base.get_ref());
            let base_text = read(&base_path)?;
            let base_file = parse(&base_path, &base_text)?;
            disabled.extend(extend.disabled_rules.iter().cloned());
            if base_file.extend.as_ref().is_some_and(|e| e.path.is_some()) {
                loaded.notes.push(Located::span(
                    &base_path,
                    &base_text,
                    None,
                    "gitleaks: its own [extend] path is not followed (one level only)",
                ));
            }
            add_file(&mut loaded, &base_path, &base_text, base_file, &disabled);
            loaded.files.push((base_path, base_text));
        }
    }
    add_file(&mut loaded, path, &text, file, &BTreeSet::new());
    loaded.files.push((path.to_path_buf(), text));
    Ok(loaded)
}

fn parse(path: &Path, text: &str) -> Result<RawFile, Located> {
    toml::from_str(text).map_err(|e| {
        Located::span(
            path,
            text,
            e.span(),
            format!("not a gitleaks config: {}", e.message()),
        )
    })
}

/// Adds the usable rules of `file` (but `disabled`) to `loaded`.
fn add_file(
    loaded: &mut Loaded,
    path: &Path,
    text: &str,
    file: RawFile,
    disabled: &BTreeSet<String>,
) {
    let note = |span: Option<std::ops::Range<usize>>, message: String| {
        Located::span(path, text, span, format!("gitleaks: {message}"))
    };
    let global: Vec<RawAllowlist> = file.allowlist.into_iter().chain(file.allowlists).collect();
    for raw in file.rules {
        let id = raw.id.get_ref().clone();
        if disabled.contains(&id) {
            continue;
        }
        let span = raw.id.span();
        let Some(regex) = raw.regex else {
            loaded.notes.push(note(
                Some(span),
                format!("rule `{id}` has no regex (a path-only rule): not loaded, a prompt has no file path"),
            ));
            continue;
        };
        if raw.path.is_some() {
            loaded.notes.push(note(
                Some(span),
                format!(
                    "rule `{id}` applies only to file paths: not loaded, a prompt has no file path"
                ),
            ));
            continue;
        }
        let compiled = match regex::Regex::new(regex.get_ref()) {
            Ok(compiled) => compiled,
            Err(e) => {
                loaded.notes.push(note(
                    Some(regex.span()),
                    format!(
                        "rule `{id}`: its regex does not compile in Outpost's engine (Rust regex): {}; not loaded",
                        one_line(&e.to_string())
                    ),
                ));
                continue;
            }
        };
        // `captures_len` counts group 0, the whole match.
        let groups = compiled.captures_len() - 1;
        if let Some(group) = raw.secret_group.filter(|&g| g > groups) {
            loaded.notes.push(note(
                Some(regex.span()),
                format!("rule `{id}`: secretGroup {group} does not exist (the regex has {groups} groups); not loaded"),
            ));
            continue;
        }
        if let Some(entropy) = raw.entropy.filter(|e| !(0.0..=8.0).contains(e)) {
            loaded.notes.push(note(
                Some(span.clone()),
                format!("rule `{id}`: entropy {entropy} is not between 0 and 8 bits; not loaded"),
            ));
            continue;
        }
        let own = raw.allowlist.into_iter().chain(raw.allowlists);
        let shared = global
            .iter()
            .filter(|a| a.target_rules.is_empty() || a.target_rules.contains(&id))
            .cloned();
        let mut allowlists = Vec::new();
        for allow in own.chain(shared) {
            match allowlist(&id, allow) {
                Ok(Some(a)) => allowlists.push(a),
                Ok(None) => {}
                Err((span, message)) => loaded.notes.push(note(span, message)),
            }
        }
        loaded.rules.push(SecretRule {
            id: format!("{ID_PREFIX}{id}"),
            description: raw.description,
            regex: regex.into_inner(),
            keywords: raw.keywords.into_iter().filter(|k| !k.is_empty()).collect(),
            entropy: raw.entropy,
            secret_group: raw.secret_group.filter(|&g| g > 0),
            allowlists,
            examples: Vec::new(),
            negatives: Vec::new(),
        });
    }
}

type NoteAt = (Option<std::ops::Range<usize>>, String);

/// One gitleaks allowlist as Outpost's, `None` when it can never allow a
/// prompt's match.
fn allowlist(rule: &str, raw: RawAllowlist) -> Result<Option<Allowlist>, NoteAt> {
    let condition_at = raw.condition.as_ref().map(Spanned::span);
    let condition = match raw.condition.as_ref().map(|c| c.get_ref().to_ascii_uppercase()).as_deref() {
        None | Some("OR") => AllowCondition::Or,
        Some("AND") => AllowCondition::And,
        Some(other) => {
            return Err((
                condition_at,
                format!("rule `{rule}`: allowlist condition {other:?} is neither OR nor AND; allowlist not loaded"),
            ))
        }
    };
    let target_at = raw.regex_target.as_ref().map(Spanned::span);
    let target = match raw.regex_target.as_ref().map(|t| t.get_ref().as_str()) {
        None | Some("secret") => AllowTarget::Secret,
        Some("match") | Some("line") => AllowTarget::Match,
        Some(other) => {
            return Err((
                target_at,
                format!(
                "rule `{rule}`: allowlist regexTarget {other:?} is unknown; allowlist not loaded"
            ),
            ))
        }
    };
    let unmatched = !raw.paths.is_empty() || !raw.commits.is_empty();
    if raw.regexes.is_empty() && raw.stopwords.is_empty() {
        return Ok(None);
    }
    if unmatched && condition == AllowCondition::And {
        // A path or commit criterion never holds for a prompt.
        return Ok(None);
    }
    for regex in &raw.regexes {
        if let Err(e) = regex::Regex::new(regex.get_ref()) {
            return Err((
                Some(regex.span()),
                format!(
                    "rule `{rule}`: an allowlist regex does not compile in Outpost's engine: {}; allowlist not loaded",
                    one_line(&e.to_string())
                ),
            ));
        }
    }
    Ok(Some(Allowlist {
        description: raw.description,
        regexes: raw.regexes.into_iter().map(Spanned::into_inner).collect(),
        stopwords: raw.stopwords,
        condition,
        target,
    }))
}

/// The `regex` crate's multi-line error, on one line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '^' || c == ' '))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_str(text: &str) -> Loaded {
        let path = Path::new("/etc/outpost/gitleaks.toml");
        let text = text.to_string();
        load(path, &move |_| Ok(text.clone())).unwrap()
    }

    const FILE: &str = r#"title = "acme gitleaks config"

[extend]
useDefault = true

[[rules]]
id = "acme-api-token"
description = "ACME API token"
regex = '''\b(acme_[a-z0-9]{24})\b'''
secretGroup = 1
entropy = 3.2
keywords = ["acme_"]

  [[rules.allowlists]]
  regexes = ['''^acme_0{24}$''']
  stopwords = ["sample"]

[[rules]]
id = "acme-go-only"
regex = '''acme_(?P<x>\Q.\E)'''
keywords = ["acme_"]

[[rules]]
id = "pkcs12-file"
path = '''(?i)\.p12$'''

[allowlist]
description = "global"
regexTarget = "line"
regexes = ['''(?i)unit[_-]?test''']
"#;

    #[test]
    fn rules_load_with_their_allowlists_and_the_rest_are_noted() {
        let loaded = from_str(FILE);
        let ids: Vec<&str> = loaded.rules.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["gitleaks:acme-api-token"]);
        let rule = &loaded.rules[0];
        assert_eq!(rule.secret_group, Some(1));
        assert_eq!(rule.entropy, Some(3.2));
        assert_eq!(rule.keywords, ["acme_"]);
        assert_eq!(rule.allowlists.len(), 2, "its own and the file's");
        assert_eq!(rule.allowlists[1].target, AllowTarget::Match);

        let notes: Vec<String> = loaded.notes.iter().map(ToString::to_string).collect();
        assert_eq!(notes.len(), 2, "{notes:#?}");
        // The Go-only \Q…\E is reported where it is, with the reason.
        assert!(
            notes[0].starts_with("/etc/outpost/gitleaks.toml:20:9: gitleaks: rule `acme-go-only`: its regex does not compile"),
            "{}",
            notes[0]
        );
        assert!(
            notes[1].contains("rule `pkcs12-file` has no regex (a path-only rule)"),
            "{}",
            notes[1]
        );
    }

    #[test]
    fn loaded_rules_find_secrets_and_honour_allowlists() {
        let loaded = from_str(FILE);
        let specs = [crate::guard::RuleSpec {
            id: "secrets".into(),
            detector: crate::guard::DetectorSpec::Builtin(crate::guard::Builtin::Secrets),
        }];
        let scanner = crate::guard::Scanner::compile(&specs, &loaded.rules).unwrap();
        let kinds = |text: &str| {
            scanner
                .scan(text)
                .into_iter()
                .map(|f| f.kind.into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            kinds("token acme_k3j9x2m7q1z8w4v6b5n0c2l9 ok"),
            ["gitleaks:acme-api-token"]
        );
        assert!(
            kinds("token acme_000000000000000000000000 ok").is_empty(),
            "own regex"
        );
        assert!(
            kinds("token acme_sample7q1z8w4v6b5n0c2l9 ok").is_empty(),
            "stopword"
        );
        assert!(
            kinds("acme_unittestq1z8w4v6b5n0c2").is_empty(),
            "the file's allowlist"
        );
        // regexTarget = "line" is read as the match, which allows less.
        assert_eq!(
            kinds("unit_test acme_k3j9x2m7q1z8w4v6b5n0c2l9"),
            ["gitleaks:acme-api-token"]
        );
    }

    #[test]
    fn a_rule_the_engine_would_refuse_is_a_note_not_a_broken_policy() {
        let text = "[[rules]]\nid = \"grouped\"\nregex = 'acme_([0-9]{8})'\nsecretGroup = 2\n\n\
                    [[rules]]\nid = \"noisy\"\nregex = 'acme_[0-9]{8}'\nentropy = 9.5\n\n\
                    [[rules]]\nid = \"allowed\"\nregex = 'acme_[0-9]{8}'\n\
                    allowlists = [{ condition = \"XOR\", stopwords = [\"x\"] }]\n";
        let loaded = load(Path::new("/g.toml"), &|_| Ok(text.to_string())).unwrap();
        let notes: Vec<String> = loaded.notes.iter().map(ToString::to_string).collect();
        assert_eq!(notes.len(), 3, "{notes:#?}");
        assert!(
            notes[0]
                .starts_with("/g.toml:3:9: gitleaks: rule `grouped`: secretGroup 2 does not exist"),
            "{}",
            notes[0]
        );
        assert!(
            notes[1].starts_with("/g.toml:7:6: gitleaks: rule `noisy`: entropy 9.5"),
            "{}",
            notes[1]
        );
        assert!(
            notes[2].starts_with("/g.toml:14:29: gitleaks: rule `allowed`: allowlist condition"),
            "{}",
            notes[2]
        );
        // The rule with the bad allowlist loads without it; the whole
        // set still compiles.
        let ids: Vec<&str> = loaded.rules.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["gitleaks:allowed"]);
        let no_rules: [crate::guard::RuleSpec; 0] = [];
        crate::guard::Scanner::compile(&no_rules, &loaded.rules).unwrap();
    }

    #[test]
    fn extend_path_loads_the_base_less_its_disabled_rules() {
        let read = |path: &Path| -> Result<String, Located> {
            Ok(match path.file_name().and_then(|n| n.to_str()) {
                Some("base.toml") => "[[rules]]\nid = \"one\"\nregex = 'one_[0-9]{8}'\nkeywords = [\"one_\"]\n\n[[rules]]\nid = \"two\"\nregex = 'two_[0-9]{8}'\nkeywords = [\"two_\"]\n".into(),
                _ => "[extend]\npath = \"base.toml\"\ndisabledRules = [\"two\"]\n\n[[rules]]\nid = \"three\"\nregex = 'three_[0-9]{8}'\n".into(),
            })
        };
        let loaded = load(Path::new("/etc/outpost/gitleaks.toml"), &read).unwrap();
        let ids: Vec<&str> = loaded.rules.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["gitleaks:one", "gitleaks:three"]);
        assert_eq!(loaded.files.len(), 2);
    }

    #[test]
    fn a_file_that_is_not_toml_is_an_error_at_its_place() {
        let text = "[[rules]]\nid = \"x\"\nregex = 'unclosed\n";
        let err = load(Path::new("/g.toml"), &|_| Ok(text.to_string())).unwrap_err();
        assert!(err.to_string().starts_with("/g.toml:3:"), "{err}");
        assert!(err.message.contains("not a gitleaks config"), "{err}");
    }
}
