//! Token usage, normalised across providers so pricing and budgets read one
//! shape.
//!
//! The providers disagree on what their counts include; [`Usage`] picks one
//! convention and every adapter converts to it:
//!
//! | field | includes | OpenAI (Chat / Responses) | Anthropic | Gemini |
//! |---|---|---|---|---|
//! | `input_tokens` | **all** input: uncached + cache reads + cache writes | `prompt_tokens` / `input_tokens` (already include cached) | `input_tokens + cache_read_input_tokens + cache_creation_input_tokens` (Anthropic's `input_tokens` excludes both) | `promptTokenCount` (includes cached) `+ toolUsePromptTokenCount` |
//! | `cached_input_tokens` | cache reads (a subset of input) | `*_tokens_details.cached_tokens` | `cache_read_input_tokens` | `cachedContentTokenCount` |
//! | `cache_write_tokens` | cache writes (a subset of input) | 0 | `cache_creation_input_tokens` | 0 |
//! | `output_tokens` | **all** output, reasoning included | `completion_tokens` / `output_tokens` (include reasoning) | `output_tokens` | `candidatesTokenCount + thoughtsTokenCount` (Gemini's excludes thoughts) |
//! | `reasoning_tokens` | reasoning (a subset of output) | `*_tokens_details.reasoning_tokens` | 0 (not reported apart) | `thoughtsTokenCount` |
//!
//! So a price table applies the input rate to
//! [`Usage::uncached_input_tokens`], the cache-read rate to
//! `cached_input_tokens`, the cache-write rate to `cache_write_tokens`, and
//! the output rate to `output_tokens`.

use serde_json::Value;

use super::call::{ApiCall, WireFormat};
use super::{anthropic, gemini, openai};

/// Tokens one call used, in the convention of the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// All input tokens, cache reads and writes included.
    pub input_tokens: u64,
    /// All output tokens, reasoning included.
    pub output_tokens: u64,
    /// Input tokens read from a prompt cache (part of `input_tokens`).
    pub cached_input_tokens: u64,
    /// Input tokens written to a prompt cache (part of `input_tokens`; Anthropic only).
    pub cache_write_tokens: u64,
    /// Reasoning ("thinking") tokens (part of `output_tokens`).
    pub reasoning_tokens: u64,
}

impl Usage {
    /// Input tokens neither read from nor written to a cache.
    pub fn uncached_input_tokens(&self) -> u64 {
        self.input_tokens
            .saturating_sub(self.cached_input_tokens)
            .saturating_sub(self.cache_write_tokens)
    }

    /// Input plus output.
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

/// The usage a non-streaming response body reports, if it reports one and
/// the call consumed tokens. Token-counting calls (`count_tokens`,
/// `countTokens`) answer with a count but use nothing: `None`.
pub fn response_usage(call: &ApiCall, body: &[u8]) -> Option<Usage> {
    if !call.api.metered() {
        return None;
    }
    let root: Value = serde_json::from_slice(body).ok()?;
    usage_of(call, &root)
}

/// The usage the parsed response `root` reports (see [`response_usage`]).
pub fn usage_of(call: &ApiCall, root: &Value) -> Option<Usage> {
    if !call.api.metered() {
        return None;
    }
    match call.api.wire_format(call.provider) {
        WireFormat::OpenAi => openai::response_usage(root),
        WireFormat::Anthropic => anthropic::usage(root.get("usage")?),
        WireFormat::Gemini => gemini::usage(root.get("usageMetadata")?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncached_input_excludes_reads_and_writes() {
        let usage = Usage {
            input_tokens: 1000,
            cached_input_tokens: 600,
            cache_write_tokens: 100,
            output_tokens: 50,
            reasoning_tokens: 0,
        };
        assert_eq!(usage.uncached_input_tokens(), 300);
        assert_eq!(usage.total_tokens(), 1050);
        let inconsistent = Usage {
            input_tokens: 10,
            cached_input_tokens: 20,
            ..Usage::default()
        };
        assert_eq!(inconsistent.uncached_input_tokens(), 0);
    }
}
