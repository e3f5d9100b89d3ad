//! The official Python SDKs (`openai`, `anthropic`), configured only by
//! `HTTPS_PROXY` and `SSL_CERT_FILE`, work through the agent unchanged — including streams
//! that arrive piece by piece rather than all at the end. (The `websockets` package is
//! driven in `tests/websocket.rs`.)
//!
//! Needs Python 3 with `venv` and access to PyPI the first time (see `support::python`).

mod support;

use std::time::Duration;

use serde_json::Value;
use support::python::{ANTHROPIC_TEST_KEY, OPENAI_TEST_KEY};
use support::*;

/// Asserts a script's `chunks` (`[{t, text}]`) carry the fake's whole stream, spread over at
/// least 70% of the time the fake spread it (a buffering proxy would deliver it at once).
fn assert_incremental(result: &Value, fake: &FakeProvider) {
    let chunks = result["chunks"]
        .as_array()
        .unwrap_or_else(|| panic!("no chunks: {result}"));
    let text: String = chunks
        .iter()
        .map(|c| c["text"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(text, fake.stream_text(), "streamed text: {result}");
    assert!(
        chunks.len() >= fake.stream_events(),
        "expected >= {} chunks: {result}",
        fake.stream_events()
    );
    let first = chunks.first().and_then(|c| c["t"].as_f64()).expect("t");
    let last = chunks.last().and_then(|c| c["t"].as_f64()).expect("t");
    let configured = fake.stream_content_spread().as_secs_f64();
    assert!(
        last - first >= 0.7 * configured,
        "chunks arrived within {:.3}s but the fake spread them over {configured:.3}s: buffered stream\n{result}",
        last - first
    );
}

fn stream_stack() -> Stack {
    Stack::start_with(
        |f| f.stream_events(5).stream_delay(Duration::from_millis(150)),
        |a| a,
    )
}

#[test]
fn openai_sdk_chat_completion() {
    let stack = Stack::start();
    let result = PythonScript::new("openai_chat.py")
        .arg("plain")
        .through(&stack.agent)
        .run_json();
    assert_eq!(result["content"], FAKE_REPLY_TEXT, "{result}");
    assert_eq!(result["usage"]["total_tokens"], 15, "{result}");

    let seen = stack.fake.single_request();
    assert_eq!(seen.path(), "/v1/chat/completions");
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {OPENAI_TEST_KEY}").as_str())
    );
    assert_eq!(seen.body_json()["model"], "gpt-4o-mini");
    assert!(
        seen.header("user-agent")
            .is_some_and(|ua| ua.contains("OpenAI")),
        "{:?}",
        seen.headers
    );
}

#[test]
fn openai_sdk_stream_is_incremental() {
    let stack = stream_stack();
    let result = PythonScript::new("openai_chat.py")
        .arg("stream")
        .through(&stack.agent)
        .run_json();
    assert_incremental(&result, &stack.fake);
    assert_eq!(
        result["usage"]["completion_tokens"], 5,
        "usage chunk after the content: {result}"
    );
    assert_eq!(stack.fake.single_request().body_json()["stream"], true);
}

#[test]
fn anthropic_sdk_message() {
    let stack = Stack::start();
    let result = PythonScript::new("anthropic_messages.py")
        .arg("plain")
        .through(&stack.agent)
        .run_json();
    assert_eq!(result["content"], FAKE_REPLY_TEXT, "{result}");
    assert_eq!(result["stop_reason"], "end_turn", "{result}");

    let seen = stack.fake.single_request();
    assert_eq!(seen.path(), "/v1/messages");
    // anthropic < 2 sends `x-api-key`; 2.x sends the same key as `Authorization: Bearer`.
    let bearer = format!("Bearer {ANTHROPIC_TEST_KEY}");
    assert!(
        seen.header("x-api-key") == Some(ANTHROPIC_TEST_KEY)
            || seen.header("authorization") == Some(bearer.as_str()),
        "the API key must reach the provider unchanged: {:#?}",
        seen.headers
    );
    assert!(
        seen.header("anthropic-version").is_some(),
        "{:?}",
        seen.headers
    );
}

#[test]
fn anthropic_sdk_stream_is_incremental() {
    let stack = stream_stack();
    let result = PythonScript::new("anthropic_messages.py")
        .arg("stream")
        .through(&stack.agent)
        .run_json();
    assert_incremental(&result, &stack.fake);
    assert_eq!(result["final_text"], stack.fake.stream_text(), "{result}");
    assert_eq!(result["stop_reason"], "end_turn", "{result}");
    assert_eq!(stack.fake.single_request().body_json()["stream"], true);
}
