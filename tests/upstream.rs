//! When the provider cannot be reached, the client gets an answer its SDK understands: a
//! 502 (504 on timeout) in the provider's own error shape, naming the host. The agent keeps
//! serving, so the next request succeeds once the provider is back.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const OPENAI_CHAT: &str = "https://api.openai.com/v1/chat/completions";
const ANTHROPIC_MESSAGES: &str = "https://api.anthropic.com/v1/messages";

fn post(agent: &Agent, url: &str, body: &Value) -> CurlOutput {
    Curl::new(url)
        .via(agent)
        .cacert(&agent.ca_pem_path())
        .post_json(body)
        .run()
}

/// The OpenAI error shape `{"error":{"message":..,"type":..}}`; returns the message.
fn openai_error_message(out: &CurlOutput) -> String {
    let body = out.json();
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("not an OpenAI-shaped error: {}", out.describe()))
        .to_string();
    assert!(
        body["error"]["type"].is_string(),
        "error.type missing: {}",
        out.describe()
    );
    message
}

#[test]
fn openai_upstream_down_is_502_then_recovers() {
    let ca = TestCa::new();
    let port = free_port();
    let agent = Agent::builder()
        .trust(&ca)
        .resolve("api.openai.com", format!("127.0.0.1:{port}"))
        .start();

    let down = post(&agent, OPENAI_CHAT, &openai_chat_body(false));
    assert_eq!(down.status, 502, "{}", down.describe());
    let message = openai_error_message(&down);
    assert!(
        message.contains("api.openai.com"),
        "the message must name the host: {message}"
    );

    // The provider comes back on the same address; the agent needs no restart.
    let fake = FakeProvider::tls(&ca).port(port).start();
    let up = post(&agent, OPENAI_CHAT, &openai_chat_body(false));
    assert_eq!(up.status, 200, "{}", up.describe());
    assert_eq!(
        up.json()["choices"][0]["message"]["content"],
        FAKE_REPLY_TEXT
    );
    assert_eq!(fake.requests().len(), 1);
}

#[test]
fn anthropic_upstream_down_uses_anthropic_error_shape() {
    let ca = TestCa::new();
    let agent = Agent::builder()
        .trust(&ca)
        .resolve("api.anthropic.com", format!("127.0.0.1:{}", free_port()))
        .start();

    let out = post(&agent, ANTHROPIC_MESSAGES, &anthropic_messages_body(false));
    assert_eq!(out.status, 502, "{}", out.describe());
    let body = out.json();
    assert_eq!(body["type"], "error", "{}", out.describe());
    assert_eq!(body["error"]["type"], "api_error", "{}", out.describe());
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("api.anthropic.com"),
        "the message must name the host: {}",
        out.describe()
    );
}

#[test]
fn untrusted_upstream_certificate_is_502_naming_tls() {
    let ca = TestCa::new();
    let fake = FakeProvider::tls(&ca).start();
    // Resolved to the fake, but its CA is not in extra_ca_files.
    let agent = Agent::builder().resolve_to(&fake).start();

    let out = post(&agent, OPENAI_CHAT, &openai_chat_body(false));
    assert_eq!(out.status, 502, "{}", out.describe());
    let message = openai_error_message(&out);
    assert!(
        message.contains("api.openai.com"),
        "the message must name the host: {message}"
    );
    let lower = message.to_lowercase();
    assert!(
        lower.contains("tls") || lower.contains("certificate"),
        "the message should say the upstream TLS/certificate was the problem: {message}"
    );
    assert!(
        fake.requests().is_empty(),
        "no request may reach an unverified upstream: {:#?}",
        fake.requests()
    );
}

#[test]
fn slow_upstream_response_is_504() {
    let stack = Stack::start_with(
        |fake| {
            fake.route("POST", "/v1/chat/completions", |_| {
                FakeResponse::json(200, &json!({"too": "late"})).after(Duration::from_secs(8))
            })
        },
        |agent| agent.upstream_setting("response_timeout_secs = 1"),
    );
    let out = post(&stack.agent, OPENAI_CHAT, &openai_chat_body(false));
    assert_eq!(out.status, 504, "{}", out.describe());
    let message = openai_error_message(&out);
    assert!(
        message.contains("api.openai.com"),
        "the message must name the host: {message}"
    );
}
