//! `outpost policy show`: the effective policy and where each rule of it
//! comes from (the baseline, the managed bundle, or a local `file:line`).

use serde_json::{json, Value};

use super::rules::{Policy, RuleOrigin};

/// The policy as JSON: version, baseline, layers, settings and rules.
pub fn to_json(policy: &Policy) -> Value {
    json!({
        "version": policy.version,
        "baseline": policy.baseline.to_string(),
        "layers": policy.sources.iter().zip(&policy.source_layers).map(|(path, layer)| json!({
            "layer": layer,
            "file": path.display().to_string(),
        })).collect::<Vec<_>>(),
        "settings": settings(policy).into_iter().map(|(k, v)| (k.to_string(), Value::String(v))).collect::<serde_json::Map<_, _>>(),
        "rules": policy.origins.iter().map(|o| json!({
            "kind": o.kind,
            "id": o.id,
            "summary": o.summary,
            "layer": o.layer,
            "at": at(o),
        })).collect::<Vec<_>>(),
    })
}

/// The policy as text, one rule per line, for people.
pub fn to_text(policy: &Policy) -> String {
    let mut out = format!(
        "policy version {}\nbaseline: {}\n",
        policy.version, policy.baseline
    );
    out.push_str("layers:\n");
    for (path, layer) in policy.sources.iter().zip(&policy.source_layers) {
        out.push_str(&format!("  {layer:<12} {}\n", path.display()));
    }
    out.push_str("settings:\n");
    for (key, value) in settings(policy) {
        out.push_str(&format!("  {key:<24} {value}\n"));
    }
    let width = |f: fn(&RuleOrigin) -> usize| policy.origins.iter().map(f).max().unwrap_or(0);
    let (kind_w, id_w, layer_w) = (
        width(|o| o.kind.len()).max(4),
        width(|o| o.id.chars().count()).max(2),
        width(|o| o.layer.len()).max(5),
    );
    out.push_str(&format!(
        "rules:\n  {:<kind_w$}  {:<id_w$}  {:<layer_w$}  WHAT / WHERE\n",
        "KIND", "ID", "LAYER"
    ));
    for o in &policy.origins {
        let what = if o.summary.is_empty() {
            at(o)
        } else {
            format!("{} ({})", o.summary, at(o))
        };
        out.push_str(&format!(
            "  {:<kind_w$}  {:<id_w$}  {:<layer_w$}  {what}\n",
            o.kind, o.id, o.layer
        ));
    }
    out
}

fn at(o: &RuleOrigin) -> String {
    format!("{}:{}:{}", o.at.file.display(), o.at.line, o.at.col)
}

fn settings(policy: &Policy) -> Vec<(&'static str, String)> {
    vec![
        ("max_body_bytes", policy.max_body_bytes.to_string()),
        (
            "on_unparseable",
            format!("{:?}", policy.on_unparseable).to_lowercase(),
        ),
        (
            "unscanned_audio",
            format!("{:?}", policy.unscanned_audio).to_lowercase(),
        ),
        (
            "on_audit_backlog",
            format!("{:?}", policy.on_audit_backlog).to_lowercase(),
        ),
        (
            "unknown_endpoints",
            policy.unknown_endpoints.name().to_string(),
        ),
        (
            "audit.content",
            format!("{:?}", policy.audit.content).to_lowercase(),
        ),
        (
            "default_output_tokens",
            policy.spend.default_output_tokens.to_string(),
        ),
    ]
}
