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

#[test]
fn streams_are_charged_from_usage_the_client_did_not_ask_for() {
    let stack = Stack::start_with(
        |f| {
            f.stream_events(3)
                .stream_delay(std::time::Duration::from_millis(5))
        },
        |a| {
            a.policy_file(
                "10-budget.toml",
                "[[budgets]]\nid = \"all\"\nper = \"all\"\nlimit_usd = 100.0\nwindow = \"month\"\n",
            )
        },
    );
    let out = Curl::new("https://api.openai.com/v1/chat/completions")
        .via(&stack.agent)
        .cacert(&stack.agent.ca_pem_path())
        .post_json(&openai_chat_body(true))
        .run();
    assert_eq!(out.status, 200, "{}", out.describe());
    // Outpost asked upstream for the usage chunk…
    let seen = stack.fake.single_request();
    assert_eq!(
        seen.body_json()["stream_options"]["include_usage"],
        true,
        "{}",
        seen.body_json()
    );
    // …and took it out of what the client sees.
    let text = out.text();
    assert!(!text.contains("\"usage\""), "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    // The audit record carries the cost from the real usage.
    let audit = stack.agent.state_dir().join("audit");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let record = loop {
        let lines: Vec<Value> = std::fs::read_dir(&audit)
            .expect("audit dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .flat_map(|p| {
                std::fs::read_to_string(p)
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .collect::<Vec<_>>()
            })
            .filter(|r| r["kind"] == "request")
            .collect();
        if let Some(r) = lines.into_iter().next() {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "no audit record");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(record["input_tokens"], 9, "{record}");
    assert_eq!(record["estimated"], false, "{record}");
    assert!(record["cost_usd"].as_f64().unwrap_or(0.0) > 0.0, "{record}");
}
