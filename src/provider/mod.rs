//! LLM providers as the proxy sees them: which one a host is, what an API
//! call says (model, streaming, output cap, every piece of user text and
//! where it lives), what a response or stream carries back (text, usage),
//! how to rewrite a string in either, and how each provider shapes an error
//! so the caller's SDK shows Outpost's message as it would the provider's own.
//!
//! Pure code: bytes in, structs out. No I/O, no tokio, no hyper.
//!
//! | file | what |
//! |---|---|
//! | [`call`] | [`Api`], [`ApiCall`], [`TextSpan`]; [`parse_request`] |
//! | [`route`] | method + path → API (and the model a path names) |
//! | [`openai`], [`anthropic`], [`gemini`], [`azure`] | one wire format each |
//! | [`json_path`], [`shape`], [`rewrite`] | locations in JSON, typed access with located errors, [`rewrite_texts`] |
//! | [`response`], [`usage`] | [`response_texts`], [`Usage`], [`response_usage`] |
//! | [`sse`], [`stream`] | [`SseParser`]; [`StreamState`], [`rewrite_event`], stream errors and usage |
//! | [`table`] | [`ProviderTable`]: hosts → providers, from `policy/providers.toml` |

use serde_json::{json, Value};

pub mod anthropic;
pub mod azure;
pub mod call;
pub mod gemini;
pub mod json_path;
pub mod openai;
pub mod response;
pub mod rewrite;
pub mod route;
pub mod shape;
pub mod socket;
pub mod sse;
pub mod stream;
pub mod table;
pub mod unclaimed;
pub mod usage;

#[cfg(test)]
mod test_support;

pub use call::{
    parse_request, read_request, read_routed, Api, ApiCall, Batch, ParsedRequest, TextRole,
    TextSpan,
};
pub use json_path::{JsonPath, PathSegment};
pub use response::{read_response, response_texts};
pub use rewrite::rewrite_texts;
pub use shape::ParseError;
pub use sse::{SseError, SseEvent, SseParser};
pub use stream::{
    ensure_stream_usage, is_usage_only_chunk, rewrite_event, rewrite_message, socket_error_event,
    stream_error_event, OutputKind, OutputSlot, StreamItem, StreamState, TextDelta,
};
pub use table::{ProviderEntry, ProviderTable, ProviderTableError};
pub use usage::{response_usage, Usage};

use call::WireFormat;

/// A provider API family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// OpenAI (`api.openai.com`).
    OpenAi,
    /// Anthropic (`api.anthropic.com`).
    Anthropic,
    /// Google Gemini API (`generativelanguage.googleapis.com`).
    Gemini,
    /// Azure OpenAI (`*.openai.azure.com`).
    Azure,
    /// Any other host: assumed to speak the OpenAI wire format.
    OpenAiCompatible,
}

impl Provider {
    /// The provider for a (normalized) host name.
    pub fn for_host(host: &str) -> Provider {
        match host {
            "api.openai.com" => Provider::OpenAi,
            "api.anthropic.com" => Provider::Anthropic,
            "generativelanguage.googleapis.com" => Provider::Gemini,
            h if h.ends_with(".openai.azure.com") => Provider::Azure,
            _ => Provider::OpenAiCompatible,
        }
    }

    /// Short stable name (logs, audit).
    pub fn name(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
            Provider::Gemini => "gemini",
            Provider::Azure => "azure",
            Provider::OpenAiCompatible => "openai-compatible",
        }
    }
}

/// What kind of refusal or failure an error body reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The upstream could not be reached or failed mid-request (502).
    UpstreamUnavailable,
    /// The upstream did not answer in time (504).
    UpstreamTimeout,
    /// The request itself is malformed (400).
    BadRequest,
    /// The client did not send its request body in time (408).
    RequestTimeout,
    /// Policy refuses the call or its output (400: the one status every
    /// client tested shows as a refusal with its message; Claude Code reads
    /// a 403 as "Failed to authenticate", Codex retries it).
    PolicyBlocked,
    /// A spending budget is used up (429).
    BudgetExhausted,
    /// A rate limit is reached (429).
    RateLimited,
    /// Outpost itself cannot serve the call right now: its audit log is
    /// behind, its budget ledger is unavailable (503). Not the provider's
    /// fault, nor the caller's.
    AgentUnavailable,
    /// `[websocket] mode = "refuse"` refuses an upgrade (426 Upgrade
    /// Required: the answer on which Codex falls back to HTTPS at once).
    WebSocketRefused,
}

impl ErrorKind {
    /// HTTP status for this kind.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::UpstreamUnavailable => 502,
            ErrorKind::UpstreamTimeout => 504,
            ErrorKind::BadRequest | ErrorKind::PolicyBlocked => 400,
            ErrorKind::RequestTimeout => 408,
            ErrorKind::WebSocketRefused => 426,
            ErrorKind::BudgetExhausted | ErrorKind::RateLimited => 429,
            ErrorKind::AgentUnavailable => 503,
        }
    }

    /// Stable machine-readable code (OpenAI `code`, header `x-outpost-error`).
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::UpstreamUnavailable => "upstream_unavailable",
            ErrorKind::UpstreamTimeout => "upstream_timeout",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::RequestTimeout => "request_timeout",
            ErrorKind::PolicyBlocked => "policy_blocked",
            ErrorKind::BudgetExhausted => "budget_exhausted",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::AgentUnavailable => "outpost_unavailable",
            ErrorKind::WebSocketRefused => "websocket_refused",
        }
    }
}

/// JSON error body in the shape of `api` on a `provider` host (Gemini's and
/// Anthropic's hosts also serve OpenAI-shaped endpoints, whose SDKs expect
/// OpenAI errors; an unknown API gets the host's native shape). Gemini's
/// body repeats the HTTP status: it is always `kind.status()`.
pub fn error_body(provider: Provider, api: Api, kind: ErrorKind, message: &str) -> Vec<u8> {
    rewrite::to_json(&error_json(api.wire_format(provider), kind, message))
}

/// The error object of one wire format.
pub(crate) fn error_json(format: WireFormat, kind: ErrorKind, message: &str) -> Value {
    match format {
        WireFormat::Anthropic => json!({
            "type": "error",
            "error": {
                "type": match kind {
                    ErrorKind::BadRequest
                    | ErrorKind::PolicyBlocked
                    | ErrorKind::RequestTimeout
                    | ErrorKind::WebSocketRefused => "invalid_request_error",
                    ErrorKind::UpstreamTimeout => "timeout_error",
                    ErrorKind::UpstreamUnavailable | ErrorKind::AgentUnavailable => "api_error",
                    ErrorKind::BudgetExhausted | ErrorKind::RateLimited => "rate_limit_error",
                },
                "message": message,
            }
        }),
        WireFormat::Gemini => json!({
            "error": {
                "code": kind.status(),
                "message": message,
                "status": match kind {
                    ErrorKind::BadRequest | ErrorKind::PolicyBlocked => "INVALID_ARGUMENT",
                    ErrorKind::WebSocketRefused => "FAILED_PRECONDITION",
                    ErrorKind::UpstreamTimeout | ErrorKind::RequestTimeout => "DEADLINE_EXCEEDED",
                    ErrorKind::UpstreamUnavailable | ErrorKind::AgentUnavailable => "UNAVAILABLE",
                    ErrorKind::BudgetExhausted | ErrorKind::RateLimited => "RESOURCE_EXHAUSTED",
                },
            }
        }),
        WireFormat::OpenAi => json!({
            "error": {
                "message": message,
                "type": match kind {
                    ErrorKind::BadRequest
                    | ErrorKind::PolicyBlocked
                    | ErrorKind::RequestTimeout
                    | ErrorKind::WebSocketRefused => "invalid_request_error",
                    ErrorKind::UpstreamTimeout
                    | ErrorKind::UpstreamUnavailable
                    | ErrorKind::AgentUnavailable => "server_error",
                    ErrorKind::BudgetExhausted => "insufficient_quota",
                    ErrorKind::RateLimited => "rate_limit_error",
                },
                "param": null,
                "code": kind.code(),
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn hosts_map_to_providers() {
        assert_eq!(Provider::for_host("api.openai.com"), Provider::OpenAi);
        assert_eq!(Provider::for_host("api.anthropic.com"), Provider::Anthropic);
        assert_eq!(
            Provider::for_host("generativelanguage.googleapis.com"),
            Provider::Gemini
        );
        assert_eq!(Provider::for_host("x.openai.azure.com"), Provider::Azure);
        assert_eq!(
            Provider::for_host("api.groq.com"),
            Provider::OpenAiCompatible
        );
    }

    #[test]
    fn error_shapes_match_each_provider() {
        let msg = "Outpost could not reach api.x: refused";
        let openai: Value = serde_json::from_slice(&error_body(
            Provider::OpenAi,
            Api::Unknown,
            ErrorKind::UpstreamUnavailable,
            msg,
        ))
        .unwrap();
        assert_eq!(openai["error"]["message"], msg);
        assert_eq!(openai["error"]["code"], "upstream_unavailable");
        assert!(openai["error"]["param"].is_null());

        let anthropic: Value = serde_json::from_slice(&error_body(
            Provider::Anthropic,
            Api::Unknown,
            ErrorKind::UpstreamUnavailable,
            msg,
        ))
        .unwrap();
        assert_eq!(anthropic["type"], "error");
        assert_eq!(anthropic["error"]["type"], "api_error");
        assert_eq!(anthropic["error"]["message"], msg);

        let gemini: Value = serde_json::from_slice(&error_body(
            Provider::Gemini,
            Api::Unknown,
            ErrorKind::UpstreamTimeout,
            msg,
        ))
        .unwrap();
        assert_eq!(gemini["error"]["code"], 504);
        assert_eq!(gemini["error"]["status"], "DEADLINE_EXCEEDED");
    }

    #[test]
    fn refusal_kinds_have_statuses_and_native_types() {
        assert_eq!(
            [
                ErrorKind::PolicyBlocked.status(),
                ErrorKind::BudgetExhausted.status(),
                ErrorKind::RateLimited.status()
            ],
            [400, 429, 429]
        );
        let anthropic: Value = serde_json::from_slice(&error_body(
            Provider::Anthropic,
            Api::Unknown,
            ErrorKind::PolicyBlocked,
            "no",
        ))
        .unwrap();
        assert_eq!(anthropic["error"]["type"], "invalid_request_error");
        let gemini: Value = serde_json::from_slice(&error_body(
            Provider::Gemini,
            Api::Unknown,
            ErrorKind::RateLimited,
            "slow down",
        ))
        .unwrap();
        assert_eq!(
            (
                gemini["error"]["code"].as_u64(),
                gemini["error"]["status"].as_str()
            ),
            (Some(429), Some("RESOURCE_EXHAUSTED"))
        );
    }

    #[test]
    fn agent_faults_are_503_in_every_shape_with_the_code_in_agreement() {
        for (provider, api) in [
            (Provider::OpenAi, Api::ChatCompletions),
            (Provider::Anthropic, Api::AnthropicMessages),
            (Provider::Gemini, Api::GeminiGenerateContent),
        ] {
            let body: Value = serde_json::from_slice(&error_body(
                provider,
                api,
                ErrorKind::AgentUnavailable,
                "behind",
            ))
            .unwrap();
            match provider {
                Provider::Gemini => {
                    assert_eq!(body["error"]["code"], 503);
                    assert_eq!(body["error"]["status"], "UNAVAILABLE");
                }
                Provider::Anthropic => assert_eq!(body["error"]["type"], "api_error"),
                _ => assert_eq!(body["error"]["code"], "outpost_unavailable"),
            }
        }
        assert_eq!(ErrorKind::AgentUnavailable.status(), 503);
    }

    #[test]
    fn errors_follow_the_api_a_call_used() {
        let call = parse_request(
            Provider::Gemini,
            "POST",
            "/v1beta/openai/chat/completions",
            br#"{"model":"gemini-2.0-flash","messages":[]}"#,
        )
        .unwrap();
        let body: Value = serde_json::from_slice(&error_body(
            call.provider,
            call.api,
            ErrorKind::BudgetExhausted,
            "spent",
        ))
        .unwrap();
        assert_eq!(body["error"]["code"], "budget_exhausted");
        assert_eq!(body["error"]["type"], "insufficient_quota");
        let native: Value = serde_json::from_slice(&error_body(
            Provider::Gemini,
            Api::Unknown,
            ErrorKind::BudgetExhausted,
            "spent",
        ))
        .unwrap();
        assert_eq!(native["error"]["status"], "RESOURCE_EXHAUSTED");
    }
}
