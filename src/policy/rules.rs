//! The validated, merged policy the request path reads.
//!
//! A [`Policy`] is immutable: a reload builds a new one and swaps it in, so a
//! request keeps the policy it started with until it ends. Everything here
//! has been checked by `policy::load`; nothing on the request path parses.
//!
//! The spending rules (budgets, rate limits, prices) are defined in
//! [`crate::budget::rules`] and re-exported here, so that `budget` never
//! depends on `policy`.

use std::path::PathBuf;

use super::intercept::InterceptList;
pub use crate::budget::rules::{
    BudgetRule, BudgetWindow, RateLimitRule, RateWindow, Scope, SpendPolicy, DEFAULT_OUTPUT_TOKENS,
};
use crate::glob::Glob;
use crate::guard::{DetectorSpec, Scanner};

/// Default for `max_body_bytes` (32 MiB: large enough for image prompts).
pub const DEFAULT_MAX_BODY_BYTES: u64 = 32 * 1024 * 1024;

/// The whole policy in force.
pub struct Policy {
    /// Short content hash of the merged sources (audit `policy_version`).
    pub version: String,
    /// The files merged, in order (or the embedded default's label).
    pub sources: Vec<PathBuf>,
    /// The layer of each of `sources`: `baseline`, `managed v7`, `local`.
    pub source_layers: Vec<String>,
    /// Hosts to intercept.
    pub intercept: InterceptList,
    /// Model allow/deny.
    pub models: ModelRules,
    /// Guardrails in file order.
    pub guardrails: Vec<Guardrail>,
    /// Compiled scanner over the guardrails that apply to requests.
    pub request_scan: Option<Scan>,
    /// Compiled scanner over the guardrails that apply to responses.
    pub response_scan: Option<Scan>,
    /// Largest body inspected.
    pub max_body_bytes: u64,
    /// What to do with bodies that cannot be inspected.
    pub on_unparseable: OnUnparseable,
    /// Whether audio (and video) sent over a WebSocket, which no guardrail
    /// can read, may reach the provider.
    pub unscanned_audio: UnscannedAudio,
    /// What to do when the audit queue is full.
    pub on_audit_backlog: OnAuditBacklog,
    /// What to do with body-carrying requests to endpoints no provider
    /// adapter knows, on intercepted hosts.
    pub unknown_endpoints: UnknownEndpoints,
    /// Budgets, rate limits and pricing.
    pub spend: SpendPolicy,
    /// Audit settings.
    pub audit: AuditSettings,
    /// What the policy's files name but could not be used, each at its
    /// place (a gitleaks rule whose regex does not compile): logged on load
    /// and shown by status. Not errors: the rest is in force.
    pub notes: Vec<crate::located::Located>,
    /// Which host is which provider: the shipped table, plus the managed
    /// bundle's `providers.toml` when it has one.
    pub providers: std::sync::Arc<crate::provider::ProviderTable>,
    /// Providers (by name, or `*` for all) whose calls go through the
    /// agent's `[gateway]`; the others go direct.
    pub gateway_routes: Vec<String>,
    /// Whether the shipped baseline layer is part of this policy.
    pub baseline: Baseline,
    /// Where each rule came from, in merge order (`outpost policy show`).
    pub origins: Vec<RuleOrigin>,
}

impl Policy {
    /// Whether calls to `provider` go through the gateway.
    pub fn routes_via_gateway(&self, provider: &str) -> bool {
        self.gateway_routes
            .iter()
            .any(|p| p == "*" || p == provider)
    }
}

/// Whether the shipped baseline is in force.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Baseline {
    /// In force, below the other layers.
    #[default]
    On,
    /// Turned off by `baseline = false` at `by`.
    Off {
        /// The key that turned it off.
        by: crate::located::Located,
    },
    /// Not part of this merge (a single file checked on its own, tests).
    NotLoaded,
}

impl std::fmt::Display for Baseline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Baseline::On => f.write_str("on"),
            Baseline::Off { by } => write!(
                f,
                "off (baseline = false at {}:{}:{})",
                by.file.display(),
                by.line,
                by.col
            ),
            Baseline::NotLoaded => f.write_str("not loaded"),
        }
    }
}

/// One rule of the merged policy and the layer and place that set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleOrigin {
    /// `guardrail`, `secret rule`, `budget`, `rate limit`, `model allow`,
    /// `model deny`, `intercept host`, `intercept exclude`.
    pub kind: &'static str,
    /// The rule's id, or the pattern.
    pub id: String,
    /// A one-line summary of what it does.
    pub summary: String,
    /// `baseline`, `managed v7` or `local`.
    pub layer: String,
    /// File, line and column of its definition.
    pub at: crate::located::Located,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("version", &self.version)
            .field("sources", &self.sources)
            .field("guardrails", &self.guardrails.len())
            .finish_non_exhaustive()
    }
}

/// A compiled scanner and, for each of its rules, the guardrail it came from.
pub struct Scan {
    /// The scanner.
    pub scanner: Scanner,
    /// Scanner rule index → index into [`Policy::guardrails`].
    pub guardrail_of: Vec<usize>,
}

/// `on_unparseable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnparseable {
    /// Refuse the request with a clear error (default).
    Block,
    /// Forward it uninspected (audited as such).
    Forward,
}

/// `unscanned_audio`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnscannedAudio {
    /// Refuse audio and video messages: they cannot be scanned (default).
    Block,
    /// Forward them; the call's record says audio went unscanned.
    Allow,
}

/// `on_audit_backlog`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnAuditBacklog {
    /// Refuse new requests with a clear error until the writer catches up.
    Block,
    /// Serve them unaudited; the count is kept and shown.
    Allow,
}

/// `[intercept] unknown_endpoints`: what happens to a body-carrying request
/// to an intercepted host when no provider adapter knows its endpoint (a new
/// API, a vendor extension), so its texts cannot be read by field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownEndpoints {
    /// Scan every string of a JSON body with the request guardrails
    /// (default).
    Scan,
    /// Refuse the request.
    Block,
    /// Forward it uninspected (audited as such).
    Forward,
}

impl UnknownEndpoints {
    /// Parse a policy value.
    pub fn parse(s: &str) -> Option<UnknownEndpoints> {
        Some(match s {
            "scan" => UnknownEndpoints::Scan,
            "block" => UnknownEndpoints::Block,
            "forward" => UnknownEndpoints::Forward,
            _ => return None,
        })
    }

    /// The name used in policy files and the audit log.
    pub fn name(self) -> &'static str {
        match self {
            UnknownEndpoints::Scan => "scan",
            UnknownEndpoints::Block => "block",
            UnknownEndpoints::Forward => "forward",
        }
    }
}

/// What a guardrail does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// Record in the audit log only.
    Log,
    /// Forward, add a warning header, audit.
    Warn,
    /// Replace the match with `[REDACTED:<id>]`.
    Redact,
    /// Refuse with the provider's error shape.
    Block,
}

impl Action {
    /// The name used in policy files and the audit log.
    pub fn name(self) -> &'static str {
        match self {
            Action::Log => "log",
            Action::Warn => "warn",
            Action::Redact => "redact",
            Action::Block => "block",
        }
    }
}

/// One guardrail.
#[derive(Debug, Clone)]
pub struct Guardrail {
    /// Unique id.
    pub id: String,
    /// What it looks for.
    pub detector: DetectorSpec,
    /// What happens on a match.
    pub action: Action,
    /// Applies to request texts.
    pub on_request: bool,
    /// Applies to response texts.
    pub on_response: bool,
    /// Admin's message for users.
    pub message: Option<String>,
    /// The file that defined it.
    pub source: PathBuf,
}

/// A set of globs from one layer; a model must match one of them.
#[derive(Debug, Clone)]
pub struct AllowList {
    /// The globs.
    pub globs: Vec<Glob>,
    /// The file that set them.
    pub source: PathBuf,
}

/// A deny glob and where it came from.
#[derive(Debug, Clone)]
pub struct DenyGlob {
    /// The glob.
    pub glob: Glob,
    /// The file that set it.
    pub source: PathBuf,
}

/// Allow/deny rules for models: all apply together.
#[derive(Debug, Clone, Default)]
pub struct ModelRules {
    /// Every layer's allow list must admit the model (lists intersect).
    pub allow: Vec<AllowList>,
    /// Any deny glob refuses the model (lists union).
    pub deny: Vec<DenyGlob>,
    /// Per-provider rules, by provider name (`openai`, `mistral`, …).
    pub providers: Vec<(String, ModelRules)>,
    /// Message shown when a model is refused.
    pub message: Option<String>,
}

/// What of the prompt and completion text the audit log keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditContent {
    /// Nothing.
    None,
    /// SHA-256 of the texts (default).
    Hash,
    /// The texts after redaction.
    Redacted,
    /// The texts as sent.
    Full,
}

/// `[audit]`.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// Content mode.
    pub content: AuditContent,
    /// Longest text kept in `redacted`/`full` mode, in chars.
    pub max_content_chars: usize,
}

/// Default for `[audit] max_content_chars`.
pub const DEFAULT_MAX_CONTENT_CHARS: usize = 4096;

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            content: AuditContent::Hash,
            max_content_chars: DEFAULT_MAX_CONTENT_CHARS,
        }
    }
}
