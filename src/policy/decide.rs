//! Policy decisions: pure functions from a [`Policy`] and what a request or
//! response says to what must happen to it.
//!
//! - [`check_model`]: allow/deny globs, global and per provider;
//! - [`inspect_texts`]: run the guardrail scanner over texts, and say which
//!   rules hit (ids and counts, never the matched text), which texts to
//!   rewrite (redactions), and whether the whole thing is refused.
//!
//! A *refusal* carries the rule id and a message written for the person who
//! made the call: it ends up in the provider-shaped error their SDK shows.

use std::collections::BTreeMap;

use super::rules::{Action, ModelRules, Policy, Scan};
use crate::guard;
use crate::provider::{JsonPath, TextRole, TextSpan};
pub use crate::refusal::Refusal;

/// One rule's matches in one inspection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleHit {
    /// Guardrail id.
    pub rule: String,
    /// Its action.
    pub action: Action,
    /// Number of matches.
    pub count: usize,
    /// Detector kinds that matched (e.g. `credit_card`, `aws-access-key-id`).
    pub kinds: Vec<String>,
}

/// The outcome of scanning a set of texts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inspection {
    /// Every rule that matched, in guardrail order.
    pub hits: Vec<RuleHit>,
    /// Texts to rewrite (redactions), by JSON path.
    pub edits: Vec<(JsonPath, String)>,
    /// Object members to rename (a redaction in a member name), by the member's path.
    pub renames: Vec<(JsonPath, String)>,
    /// Set when a `block` rule matched.
    pub block: Option<Refusal>,
}

impl Inspection {
    /// The ids of rules with action `warn`.
    pub fn warnings(&self) -> impl Iterator<Item = &str> {
        self.hits
            .iter()
            .filter(|h| h.action == Action::Warn)
            .map(|h| h.rule.as_str())
    }
}

/// The replacement text for a redacted match.
pub fn redaction_label(rule: &str) -> String {
    format!("[REDACTED:{rule}]")
}

/// Is `model` allowed for `provider` (a provider table name)?
pub fn check_model(policy: &Policy, provider: &str, model: &str) -> Result<(), Refusal> {
    let refuse = |why: String, rule: &str| {
        let mut message = format!("Outpost policy does not allow model `{model}` ({why}).");
        if let Some(admin) = &policy.models.message {
            message.push(' ');
            message.push_str(admin);
        }
        Err(Refusal::policy(rule, message))
    };
    let scoped = policy
        .models
        .providers
        .iter()
        .filter(|(name, _)| name == provider)
        .map(|(_, rules)| rules);
    for rules in std::iter::once(&policy.models).chain(scoped) {
        if let Some(why) = model_refused(rules, model) {
            let rule = if why.starts_with("denied") {
                "models.deny"
            } else {
                "models.allow"
            };
            return refuse(why, rule);
        }
    }
    Ok(())
}

fn model_refused(rules: &ModelRules, model: &str) -> Option<String> {
    if let Some(deny) = rules.deny.iter().find(|d| d.glob.matches(model)) {
        return Some(format!(
            "denied by `{}` in {}",
            deny.glob.as_str(),
            deny.source.display()
        ));
    }
    rules
        .allow
        .iter()
        .find(|list| !list.globs.iter().any(|g| g.matches(model)))
        .map(|list| {
            let globs: Vec<&str> = list.globs.iter().map(|g| g.as_str()).collect();
            format!(
                "not in the allow list [{}] of {}",
                globs.join(", "),
                list.source.display()
            )
        })
}

/// Scan `texts` with `scan` and decide what happens.
pub fn inspect_texts<'t>(
    policy: &Policy,
    scan: &Scan,
    texts: impl IntoIterator<Item = &'t TextSpan>,
) -> Inspection {
    // guardrail index → (count, kinds)
    let mut counts: BTreeMap<usize, (usize, Vec<String>)> = BTreeMap::new();
    let mut edits = Vec::new();
    let mut renames = Vec::new();
    for span in texts {
        let findings = scan.scanner.scan(&span.text);
        if findings.is_empty() {
            continue;
        }
        let mut redact = Vec::new();
        for finding in findings {
            let Some(&g) = scan.guardrail_of.get(finding.rule) else {
                continue;
            };
            let entry = counts.entry(g).or_default();
            entry.0 += 1;
            if !entry.1.iter().any(|k| k == finding.kind.as_ref()) {
                entry.1.push(finding.kind.to_string());
            }
            if policy.guardrails[g].action == Action::Redact {
                redact.push(finding);
            }
        }
        if !redact.is_empty() {
            let rewritten = guard::redact(&span.text, &redact, |f| {
                let id = scan
                    .guardrail_of
                    .get(f.rule)
                    .map_or("policy", |&g| policy.guardrails[g].id.as_str());
                redaction_label(id)
            });
            let into = if span.role == TextRole::Key {
                &mut renames
            } else {
                &mut edits
            };
            into.push((span.path.clone(), rewritten));
        }
    }
    let hits: Vec<RuleHit> = counts
        .into_iter()
        .map(|(g, (count, kinds))| RuleHit {
            rule: policy.guardrails[g].id.clone(),
            action: policy.guardrails[g].action,
            count,
            kinds,
        })
        .collect();
    let block = hits.iter().find(|h| h.action == Action::Block).map(|hit| {
        let rule = policy
            .guardrails
            .iter()
            .find(|g| g.id == hit.rule)
            .and_then(|g| g.message.clone());
        let mut message = format!(
            "Blocked by Outpost policy rule `{}` (found: {}).",
            hit.rule,
            hit.kinds.join(", ")
        );
        if let Some(admin) = rule {
            message.push(' ');
            message.push_str(&admin);
        }
        Refusal::policy(&hit.rule, message)
    });
    Inspection {
        hits,
        edits,
        renames,
        block,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::load::{load_layers, Layer};
    use crate::provider::{self, Provider};

    fn policy(files: &[(&str, &str)]) -> Policy {
        let layers: Vec<Layer> = files.iter().map(|(p, t)| Layer::local(*p, *t)).collect();
        load_layers(&layers).unwrap()
    }

    #[test]
    fn model_rules_deny_and_intersect() {
        let p = policy(&[
            ("10.toml", "[models]\nallow = [\"gpt-*\", \"claude-*\"]\ndeny = [\"*-preview\"]\nmessage = \"Ask IT.\"\n"),
            ("20.toml", "[models]\nallow = [\"gpt-*\"]\n[models.providers.groq]\ndeny = [\"llama*\"]\n"),
        ]);
        assert!(check_model(&p, "openai", "gpt-4o").is_ok());
        let denied = check_model(&p, "openai", "gpt-4.5-preview").unwrap_err();
        assert_eq!(denied.rule.as_deref(), Some("models.deny"));
        assert!(denied.message.contains("`*-preview`") && denied.message.contains("10.toml"));
        assert!(denied.message.ends_with("Ask IT."));
        let not_allowed = check_model(&p, "anthropic", "claude-3-opus").unwrap_err();
        assert_eq!(not_allowed.rule.as_deref(), Some("models.allow"));
        assert!(
            not_allowed.message.contains("20.toml"),
            "{}",
            not_allowed.message
        );
        assert!(check_model(&p, "groq", "gpt-oss-20b").is_ok());
        let p2 = policy(&[("a.toml", "[models.providers.groq]\ndeny = [\"llama*\"]\n")]);
        assert!(check_model(&p2, "groq", "llama-3.3-70b").is_err());
        assert!(check_model(&p2, "openai", "llama-3.3-70b").is_ok());
    }

    #[test]
    fn inspection_redacts_blocks_and_counts_without_text() {
        let p = policy(&[(
            "g.toml",
            "[[guardrails]]\nid = \"cards\"\ndetect = \"credit_card\"\naction = \"redact\"\n\
             [[guardrails]]\nid = \"word\"\nkeywords = [\"bluebird\"]\naction = \"warn\"\n\
             [[guardrails]]\nid = \"keys\"\ndetect = \"secrets\"\naction = \"block\"\nmessage = \"No keys.\"\n",
        )]);
        let body = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"card 4111 1111 1111 1111 for bluebird"}]}"#;
        let call = provider::parse_request(Provider::OpenAi, "POST", "/v1/chat/completions", body)
            .unwrap();
        let scan = p.request_scan.as_ref().unwrap();
        let inspection = inspect_texts(&p, scan, &call.texts);
        assert!(inspection.block.is_none());
        assert_eq!(inspection.edits.len(), 1);
        assert_eq!(inspection.edits[0].1, "card [REDACTED:cards] for bluebird");
        assert_eq!(inspection.warnings().collect::<Vec<_>>(), ["word"]);
        assert!(format!("{:?}", inspection.hits).contains("credit_card"));
        assert!(!format!("{:?}", inspection.hits).contains("4111"));

        let body = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"key AKIAIOSFODNN7EXAMPLQ"}]}"#;
        let call = provider::parse_request(Provider::OpenAi, "POST", "/v1/chat/completions", body)
            .unwrap();
        let blocked = inspect_texts(&p, scan, &call.texts).block.unwrap();
        assert_eq!(blocked.rule.as_deref(), Some("keys"));
        assert!(
            blocked.message.contains("`keys`") && blocked.message.ends_with("No keys."),
            "{}",
            blocked.message
        );
        assert!(!blocked.message.contains("AKIA"));
    }
}
