//! Policy: which hosts are intercepted and what is allowed on them.
//!
//! - [`model`]: the file format as serde reads it (spans kept for errors);
//! - [`load`]: files → validated, merged [`Policy`] (merging only tightens);
//! - [`rules`]: the validated types the request path reads;
//! - [`decide`]: pure decisions (model rules, guardrail inspection);
//! - [`stream`]: the same decisions applied incrementally to SSE streams;
//! - [`watch`]: the policy in force, hot-reloaded from `policy_dir`;
//! - [`intercept`]: host patterns (model-name globs are [`crate::glob`]).

pub mod decide;
pub mod gitleaks;
pub mod intercept;
pub mod load;
pub mod model;
pub mod rules;
pub mod show;
pub mod stream;
pub mod watch;

pub use rules::Policy;

/// The shipped default policy, compiled in.
pub const DEFAULT_POLICY: &str = include_str!("../../policy/default.toml");

/// Provider names accepted in `[models.providers.<name>]`: the native four
/// and every name in the provider table.
pub fn known_provider_names() -> Vec<String> {
    let mut names: Vec<String> = ["openai", "anthropic", "gemini", "azure"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let Ok(table) = crate::provider::ProviderTable::embedded() {
        for name in table.names() {
            if !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
        }
    }
    names
}

/// Is `name` a provider name policy may refer to?
pub fn known_provider_name(name: &str) -> bool {
    known_provider_names().iter().any(|n| n == name)
}
