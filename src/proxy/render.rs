//! The one place a [`Refusal`] becomes an HTTP response.
//!
//! The body is the provider's own error shape for the API the caller used
//! (`provider::error_body`), so the caller's SDK shows the message; the
//! status and the body's code come from the same `ErrorKind`, never set
//! apart. Headers:
//! - `x-should-retry`: whether the SDK should retry on its own (the openai
//!   and anthropic SDKs honour it);
//! - `retry-after`: when a retry can pass, if it can;
//! - `x-outpost-error`: the error code; `x-outpost-rule`: the rule, if one
//!   refused the call. Informational for people and scripts: Outpost never
//!   reads them back.

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response, StatusCode};

use super::{full_body, ProxyBody};
use crate::provider::{self, Api, Provider};
use crate::refusal::Refusal;

/// Response header naming the refusing rule.
pub const RULE_HEADER: &str = "x-outpost-rule";

/// Response header carrying the error code.
pub const ERROR_HEADER: &str = "x-outpost-error";

/// `refusal` in the shape of `api` on a `provider` host.
pub fn refusal(refusal: &Refusal, provider: Provider, api: Api) -> Response<ProxyBody> {
    let body = provider::error_body(provider, api, refusal.kind, &refusal.message);
    let mut response = Response::new(full_body(body));
    // Every ErrorKind status is a valid status code; 500 is unreachable.
    *response.status_mut() =
        StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let retry = if refusal.retry { "true" } else { "false" };
    headers.insert("x-should-retry", HeaderValue::from_static(retry));
    headers.insert(ERROR_HEADER, HeaderValue::from_static(refusal.kind.code()));
    if let Some(secs) = refusal.retry_after_secs {
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if let Some(rule) = refusal.rule.as_deref() {
        if let Ok(rule) = HeaderValue::from_str(rule) {
            headers.insert(RULE_HEADER, rule);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::ErrorKind;
    use http_body_util::BodyExt;

    async fn body_json(response: Response<ProxyBody>) -> serde_json::Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn status_body_code_and_headers_agree() {
        let backlog = Refusal::agent("Outpost's audit log is behind.".into(), Some(1));
        let response = refusal(&backlog, Provider::Gemini, Api::GeminiGenerateContent);
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "1");
        assert_eq!(response.headers()["x-should-retry"], "true");
        assert_eq!(response.headers()[ERROR_HEADER], "outpost_unavailable");
        assert!(response.headers().get(RULE_HEADER).is_none());
        let body = body_json(response).await;
        assert_eq!(body["error"]["code"], 503);

        let blocked = Refusal::policy("no-secrets", "Blocked by `no-secrets`.".into());
        let response = refusal(&blocked, Provider::Anthropic, Api::AnthropicMessages);
        assert_eq!(response.status(), 400);
        assert_eq!(response.headers()[RULE_HEADER], "no-secrets");
        assert_eq!(response.headers()["x-should-retry"], "false");
        let body = body_json(response).await;
        assert_eq!(body["error"]["message"], "Blocked by `no-secrets`.");

        let timeout = Refusal::upstream(ErrorKind::UpstreamTimeout, "slow".into());
        let response = refusal(&timeout, Provider::OpenAi, Api::ChatCompletions);
        assert_eq!(response.status(), 504);
        assert_eq!(
            body_json(response).await["error"]["code"],
            "upstream_timeout"
        );
    }
}
