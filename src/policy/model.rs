//! The policy file format (version 1), as serde sees it.
//!
//! These are the *raw* shapes of one file: every field that a person can get
//! wrong keeps its span, so `policy::load` can point at the exact line and
//! column. Unknown keys are errors. `policy::load` validates and merges raw
//! layers into the [`super::Policy`] the request path uses.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

pub use crate::budget::pricing::PriceEntry;

/// One policy file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// Format version; only 1 exists.
    pub version: Option<Spanned<u32>>,
    /// `false` turns the shipped baseline layer off (it is on by default).
    pub baseline: Option<Spanned<bool>>,
    /// In the managed layer: `true` forbids local files to turn the
    /// baseline off.
    pub lock_baseline: Option<Spanned<bool>>,
    /// Largest request or response body Outpost inspects (bytes).
    pub max_body_bytes: Option<Spanned<u64>>,
    /// What to do with a body a known endpoint cannot parse, or one over
    /// `max_body_bytes`: `block` (default) or `forward` uninspected.
    pub on_unparseable: Option<Spanned<String>>,
    /// Whether unscannable audio may go over a socket: "block" | "allow".
    pub unscanned_audio: Option<Spanned<String>>,
    /// When the audit writer's queue is full: `block` new requests
    /// (default) or `allow` them unaudited (counted).
    pub on_audit_backlog: Option<Spanned<String>>,
    /// Which hosts are intercepted.
    pub intercept: Option<RawIntercept>,
    /// Model allow/deny rules.
    pub models: Option<RawModels>,
    /// Guardrails.
    #[serde(default)]
    pub guardrails: Vec<RawGuardrail>,
    /// Extra secret-detection rules (gitleaks-like), used by `detect = "secrets"`.
    #[serde(default)]
    pub secret_rules: Vec<RawSecretRule>,
    /// Files of secret rules in other formats (gitleaks').
    #[serde(default)]
    pub secret_sources: Vec<RawSecretSource>,
    /// Spending limits.
    #[serde(default)]
    pub budgets: Vec<RawBudget>,
    /// Request and token rate limits.
    #[serde(default)]
    pub rate_limits: Vec<RawRateLimit>,
    /// What a model without a price costs: `"block"`, `"allow"` or
    /// `{ default_usd_per_mtok = … }` (default: a conservative rate, warned).
    pub unpriced: Option<Spanned<toml::Value>>,
    /// Output tokens a budget reserves for a call that sets no
    /// `max_tokens` (default 8192).
    pub default_output_tokens: Option<Spanned<u64>>,
    /// Price overrides, same fields as `policy/pricing.toml`'s `[[price]]`.
    #[serde(default)]
    pub prices: Vec<Spanned<PriceEntry>>,
    /// Audit settings.
    pub audit: Option<RawAudit>,
    /// Per provider name (or `"*"`): `"direct"` or `"gateway"` (the
    /// agent's `[gateway]`).
    #[serde(default)]
    pub routes: BTreeMap<String, Spanned<String>>,
}

/// `[intercept]`. `hosts` and `exclude` are kept as absent or present so
/// that a table setting only `unknown_endpoints` leaves the host lists alone.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIntercept {
    /// Host patterns to intercept.
    pub hosts: Option<Vec<Spanned<String>>>,
    /// Host patterns always tunnelled.
    pub exclude: Option<Vec<Spanned<String>>>,
    /// Body-carrying requests to endpoints no provider adapter knows, on
    /// intercepted hosts: `scan` (default), `block` or `forward`.
    pub unknown_endpoints: Option<Spanned<String>>,
}

/// `[models]`, with optional per-provider tables.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModels {
    /// Globs on the model name; absent means all.
    pub allow: Option<Vec<Spanned<String>>>,
    /// Globs on the model name.
    #[serde(default)]
    pub deny: Vec<Spanned<String>>,
    /// The message shown when a model is refused.
    pub message: Option<String>,
    /// `[models.providers.<name>]`: rules for one provider only.
    #[serde(default)]
    pub providers: BTreeMap<String, Spanned<RawModelRules>>,
}

/// Allow/deny for one provider.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModelRules {
    /// Globs on the model name; absent means all.
    pub allow: Option<Vec<Spanned<String>>>,
    /// Globs on the model name.
    #[serde(default)]
    pub deny: Vec<Spanned<String>>,
}

/// One `[[guardrails]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGuardrail {
    /// Unique rule id (shown to users and in the audit log).
    pub id: Spanned<String>,
    /// A built-in detector name.
    pub detect: Option<Spanned<String>>,
    /// A regular expression.
    pub pattern: Option<Spanned<String>>,
    /// Whole words, case-insensitive.
    pub keywords: Option<Spanned<Vec<String>>>,
    /// block | redact | warn | log.
    pub action: Spanned<String>,
    /// Directions: request, response (default both).
    pub on: Option<Spanned<Vec<String>>>,
    /// Shown to the user when this rule refuses something.
    pub message: Option<String>,
}

/// One `[[secret_rules]]` entry (same fields as `policy/secrets.toml`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecretRule {
    /// Rule id.
    pub id: Spanned<String>,
    /// What it finds.
    pub description: Option<String>,
    /// The regex.
    pub regex: Spanned<String>,
    /// Prefilter keywords.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Minimum Shannon entropy (bits per char) of the secret.
    pub entropy: Option<f64>,
    /// Capture group holding the secret.
    pub secret_group: Option<usize>,
    /// Values not reported.
    #[serde(default)]
    pub allowlists: Vec<crate::guard::Allowlist>,
    /// Texts the rule must find a secret in (checked on load).
    #[serde(default)]
    pub examples: Vec<String>,
    /// Texts the rule must find nothing in (checked on load).
    #[serde(default)]
    pub negatives: Vec<String>,
}

/// One `[[secret_sources]]` entry: a file of secret rules to load.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecretSource {
    /// A gitleaks config (its `[[rules]]`); relative to the policy file.
    pub gitleaks: Spanned<String>,
}

/// One `[[budgets]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudget {
    /// Unique id.
    pub id: Spanned<String>,
    /// user | device | provider | model | all.
    pub per: Spanned<String>,
    /// The limit in US dollars per window.
    pub limit_usd: Spanned<f64>,
    /// hour | day | week | month.
    pub window: Spanned<String>,
    /// Fraction of the limit at which a warning is added.
    pub warn_at: Option<Spanned<f64>>,
    /// Restrict to these providers.
    pub providers: Option<Spanned<Vec<String>>>,
    /// Restrict to models matching these globs.
    pub models: Option<Vec<String>>,
    /// IANA zone whose calendar the window follows (default UTC).
    pub time_zone: Option<Spanned<String>>,
}

/// One `[[rate_limits]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    /// Unique id.
    pub id: Spanned<String>,
    /// user | device | provider | model | all.
    pub per: Spanned<String>,
    /// Requests per window.
    pub requests: Option<Spanned<u64>>,
    /// Tokens per window.
    pub tokens: Option<Spanned<u64>>,
    /// second | minute | hour | day.
    pub window: Spanned<String>,
}

/// `[audit]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// none | hash | redacted | full.
    pub content: Option<Spanned<String>>,
    /// Longest prompt or completion kept in `redacted`/`full` mode (chars).
    pub max_content_chars: Option<Spanned<u64>>,
}
