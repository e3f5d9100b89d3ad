//! Budgets through the proxy: calls are charged from the provider's usage
//! and refused with the SDK's own rate-limit error once a budget is spent.

mod support;

use serde_json::{json, Value};
use support::*;

fn expensive_provider(fake: fake::FakeProviderBuilder<'_>) -> fake::FakeProviderBuilder<'_> {
    fake.route("POST", "/v1/chat/completions", |_| {
        FakeResponse::json(
            200,
            &json!({
                "id": "chatcmpl-b", "object": "chat.completion", "created": 1, "model": "gpt-4o",
                "choices": [{"index": 0, "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "ok"}}],
                "usage": {"prompt_tokens": 10000, "completion_tokens": 5000, "total_tokens": 15000}
            }),
        )
    })
}

fn call(agent: &Agent) -> Value {
    let spec = json!({"sdk": "openai", "stream": false, "model": "gpt-4o", "content": "hello"});
    PythonScript::new("policy_call.py")
        .arg(&spec.to_string())
        .through(agent)
        .run_json()
}

#[test]
fn budget_is_exhausted_and_refused_with_rate_limit_error() {
    let stack = Stack::start_with(expensive_provider, |a| {
        a.policy_file(
            "10-budget.toml",
            "[[budgets]]\nid = \"daily-cap\"\nper = \"user\"\nlimit_usd = 0.2\nwindow = \"day\"\n",
        )
    });
    // gpt-4o at $2.50/$10 per M: each call costs $0.075; the reservation for
    // a call without max_tokens is about $0.082 (8192 output tokens).
    assert_eq!(call(&stack.agent)["ok"], true);
    assert_eq!(call(&stack.agent)["ok"], true);
    let refused = call(&stack.agent);
    assert_eq!(refused["ok"], false, "{refused}");
    assert_eq!(refused["error_class"], "RateLimitError", "{refused}");
    assert_eq!(refused["status"], 429, "{refused}");
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(message.contains("daily-cap"), "{message}");
    assert!(message.contains("0.20"), "{message}");
    assert_eq!(
        stack.fake.requests().len(),
        2,
        "the refused call reached the provider"
    );

    let out = Curl::new("https://api.openai.com/v1/chat/completions")
        .via(&stack.agent)
        .cacert(&stack.agent.ca_pem_path())
        .post_json(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}))
        .run();
    assert_eq!(out.status, 429);
    assert_eq!(out.header("x-should-retry"), Some("false"));
    let retry: u64 = out
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(retry > 0 && retry <= 86_400, "Retry-After {retry}");
}
