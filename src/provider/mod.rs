//! LLM providers as the proxy sees them: which one a host is, and how that
//! provider shapes an error so the caller's SDK shows Outpost's message as it
//! would the provider's own.
//!
//! Pure code: no I/O, no tokio, no hyper.

use serde_json::json;

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
}

impl ErrorKind {
    /// HTTP status for this kind.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::UpstreamUnavailable => 502,
            ErrorKind::UpstreamTimeout => 504,
            ErrorKind::BadRequest => 400,
        }
    }

    /// Stable machine-readable code (OpenAI `code`, header `x-outpost-error`).
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::UpstreamUnavailable => "upstream_unavailable",
            ErrorKind::UpstreamTimeout => "upstream_timeout",
            ErrorKind::BadRequest => "bad_request",
        }
    }
}

/// JSON error body in `provider`'s native shape.
pub fn error_body(provider: Provider, kind: ErrorKind, message: &str) -> Vec<u8> {
    let status = kind.status();
    let value = match provider {
        Provider::Anthropic => json!({
            "type": "error",
            "error": {
                "type": match kind {
                    ErrorKind::BadRequest => "invalid_request_error",
                    ErrorKind::UpstreamTimeout => "timeout_error",
                    ErrorKind::UpstreamUnavailable => "api_error",
                },
                "message": message,
            }
        }),
        Provider::Gemini => json!({
            "error": {
                "code": status,
                "message": message,
                "status": match kind {
                    ErrorKind::BadRequest => "INVALID_ARGUMENT",
                    ErrorKind::UpstreamTimeout => "DEADLINE_EXCEEDED",
                    ErrorKind::UpstreamUnavailable => "UNAVAILABLE",
                },
            }
        }),
        Provider::OpenAi | Provider::Azure | Provider::OpenAiCompatible => json!({
            "error": {
                "message": message,
                "type": match kind {
                    ErrorKind::BadRequest => "invalid_request_error",
                    ErrorKind::UpstreamTimeout | ErrorKind::UpstreamUnavailable => "server_error",
                },
                "param": null,
                "code": kind.code(),
            }
        }),
    };
    // Serializing a `Value` cannot fail.
    serde_json::to_vec(&value).unwrap_or_default()
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
        assert_eq!(Provider::for_host("api.groq.com"), Provider::OpenAiCompatible);
    }

    #[test]
    fn error_shapes_match_each_provider() {
        let msg = "Outpost could not reach api.x: refused";
        let openai: Value =
            serde_json::from_slice(&error_body(Provider::OpenAi, ErrorKind::UpstreamUnavailable, msg))
                .unwrap();
        assert_eq!(openai["error"]["message"], msg);
        assert_eq!(openai["error"]["code"], "upstream_unavailable");
        assert!(openai["error"]["param"].is_null());

        let anthropic: Value = serde_json::from_slice(&error_body(
            Provider::Anthropic,
            ErrorKind::UpstreamUnavailable,
            msg,
        ))
        .unwrap();
        assert_eq!(anthropic["type"], "error");
        assert_eq!(anthropic["error"]["type"], "api_error");
        assert_eq!(anthropic["error"]["message"], msg);

        let gemini: Value =
            serde_json::from_slice(&error_body(Provider::Gemini, ErrorKind::UpstreamTimeout, msg))
                .unwrap();
        assert_eq!(gemini["error"]["code"], 504);
        assert_eq!(gemini["error"]["status"], "DEADLINE_EXCEEDED");
    }
}
