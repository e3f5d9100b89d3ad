//! No way around policy: requests that once carried a secret past the shipped default
//! policy (which blocks secrets in prompts) are refused or redacted, the provider never
//! receives the key, and each leaves an audit record. Also the other exits: an upstream
//! header cannot set the record, uninspected forwards still meet budgets, and faults are
//! reported as whose they are.

mod support;

use std::net::TcpListener;
use std::time::Duration;

use serde_json::{json, Value};
use support::records::{audit_records, wait_for_records};
use support::*;

/// An AWS access key id the default `no-secrets` rule blocks.
const KEY: &str = "AKIAQWERTYUIOPASDFGH";
const OPENAI: &str = "https://api.openai.com";
const ANTHROPIC: &str = "https://api.anthropic.com";

fn curl(stack: &Stack, url: &str) -> Curl {
    Curl::new(url)
        .via(&stack.agent)
        .cacert(&stack.agent.ca_pem_path())
        .header("authorization: Bearer sk-test")
        .header("content-type: application/json")
}

fn send_raw(stack: &Stack, url: &str, body: &str) -> CurlOutput {
    curl(stack, url).arg("--data-binary").arg(body).run()
}

/// The fake never saw the key, in any request.
fn assert_key_never_arrived(stack: &Stack) {
    for seen in stack.fake.requests() {
        let body = String::from_utf8_lossy(&seen.body);
        assert!(
            !body.contains(KEY) && !seen.path_and_query.contains(KEY),
            "the key reached the provider: {} {body}",
            seen.path_and_query
        );
    }
}

/// The one record of a refused call: decision block, the rule on record.
fn assert_blocked_record(stack: &Stack, rule: &str) -> Value {
    let records = wait_for_records(&stack.agent.state_dir(), 1);
    let record = records.last().expect("one record").clone();
    assert_eq!(record["decision"], "block", "{record:#}");
    assert!(
        record["rules"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["id"] == rule)),
        "rule {rule} not on record: {record:#}"
    );
    assert!(!record.to_string().contains(KEY), "{record:#}");
    record
}

#[test]
fn a_duplicate_member_is_refused_naming_it() {
    let stack = Stack::start();
    let body = format!(
        r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"key {KEY}"}}],"messages":[{{"role":"user","content":"hi"}}]}}"#
    );
    let out = send_raw(&stack, &format!("{OPENAI}/v1/chat/completions"), &body);
    assert_eq!(out.status, 400, "{}", out.describe());
    let message = out.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(message.contains("\"messages\" twice"), "{message}");
    assert!(stack.fake.requests().is_empty());
    assert_blocked_record(&stack, "duplicate_keys");
}

#[test]
fn matrix_parameters_do_not_hide_the_endpoint() {
    let stack = Stack::start();
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": format!("key {KEY}")}]});
    let out = curl(&stack, &format!("{OPENAI}/v1/chat/completions;x"))
        .post_json(&body)
        .run();
    assert_eq!(out.status, 400, "{}", out.describe());
    assert_eq!(out.header("x-outpost-rule"), Some("no-secrets"));
    assert_key_never_arrived(&stack);
    let record = assert_blocked_record(&stack, "no-secrets");
    assert_eq!(record["api"], "chat_completions");
}

#[test]
fn endpoints_no_adapter_knows_have_every_string_scanned() {
    let stack = Stack::start();
    let threads = json!({"role": "user", "content": format!("here is the key {KEY}")});
    let out = curl(&stack, &format!("{OPENAI}/v1/threads/thread_1/messages"))
        .post_json(&threads)
        .run();
    assert_eq!(out.status, 400, "{}", out.describe());
    let record = assert_blocked_record(&stack, "no-secrets");
    assert_eq!(record["api"], "unknown");
    assert_eq!(record["path"], "/v1/threads/thread_1/messages");

    // A clean call to the same endpoint is forwarded, card numbers redacted, and recorded.
    let clean = json!({"role": "user", "content": "card 4111 1111 1111 1111"});
    let out = curl(&stack, &format!("{OPENAI}/v1/threads/thread_1/messages"))
        .post_json(&clean)
        .run();
    assert_eq!(
        out.status,
        404,
        "the fake has no such route: {}",
        out.describe()
    );
    let seen = stack.fake.single_request();
    assert_eq!(seen.body_json()["content"], "card [REDACTED:card-numbers]");
    let records = wait_for_records(&stack.agent.state_dir(), 2);
    assert_eq!(records[1]["decision"], "redact", "{:#}", records[1]);
    assert_key_never_arrived(&stack);
}

#[test]
fn anthropic_batches_are_scanned_request_by_request_and_recorded_as_one_call() {
    let stack = Stack::start();
    let request = |id: &str, text: &str| {
        json!({"custom_id": id, "params": {
            "model": "claude-sonnet-4-5", "max_tokens": 64,
            "messages": [{"role": "user", "content": text}]}})
    };
    let url = format!("{ANTHROPIC}/v1/messages/batches");
    let blocked = json!({"requests": [request("a", "hello"), request("b", &format!("key {KEY}"))]});
    let out = curl(&stack, &url).post_json(&blocked).run();
    assert_eq!(out.status, 400, "{}", out.describe());
    assert_eq!(
        out.json()["type"],
        "error",
        "Anthropic's shape: {}",
        out.describe()
    );
    let record = assert_blocked_record(&stack, "no-secrets");
    assert_eq!(
        (record["api"].as_str(), record["batch"].as_u64()),
        (Some("anthropic_batch"), Some(2))
    );

    // Legacy text completions: not an adapter's API, scanned as an unknown endpoint.
    let legacy = json!({"model": "claude-2.1", "max_tokens_to_sample": 10,
        "prompt": format!("\n\nHuman: {KEY}\n\nAssistant:")});
    let out = curl(&stack, &format!("{ANTHROPIC}/v1/complete"))
        .post_json(&legacy)
        .run();
    assert_eq!(out.status, 400, "{}", out.describe());
    assert!(stack.fake.requests().is_empty());
}

#[test]
fn metadata_and_user_fields_are_scanned() {
    let stack = Stack::start();
    for body in [
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
               "metadata": {"note": format!("deploy with {KEY}")}}),
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
               "user": KEY}),
    ] {
        let out = curl(&stack, &format!("{OPENAI}/v1/chat/completions"))
            .post_json(&body)
            .run();
        assert_eq!(out.status, 400, "{}", out.describe());
    }
    assert!(stack.fake.requests().is_empty());
    let records = wait_for_records(&stack.agent.state_dir(), 2);
    assert!(
        records.iter().all(|r| r["decision"] == "block"),
        "{records:#?}"
    );
}

#[test]
fn a_get_with_a_body_is_scanned() {
    let stack = Stack::start();
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": format!("key {KEY}")}]});
    let out = curl(&stack, &format!("{OPENAI}/v1/chat/completions"))
        .post_json(&body)
        .arg("-X")
        .arg("GET")
        .run();
    assert_eq!(out.status, 400, "{}", out.describe());
    assert!(stack.fake.requests().is_empty());
    let record = assert_blocked_record(&stack, "no-secrets");
    assert_eq!(record["method"], "GET");
}

#[test]
fn upgrade_headers_on_a_post_do_not_reach_the_websocket_bridge() {
    let stack = Stack::start();
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": format!("key {KEY}")}]});
    let out = curl(&stack, &format!("{OPENAI}/v1/chat/completions"))
        .http1_1()
        .header("connection: Upgrade")
        .header("upgrade: websocket")
        .header("sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-version: 13")
        .post_json(&body)
        .run();
    assert_eq!(out.status, 400, "{}", out.describe());
    assert_key_never_arrived(&stack);
    assert!(stack.fake.requests().is_empty());
    assert_blocked_record(&stack, "no-secrets");
}

#[test]
fn plain_http_to_an_intercepted_host_is_refused_and_never_sent() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let agent = Agent::builder()
        .resolve("api.openai.com", listener.local_addr().expect("addr"))
        .start();
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    let out = Curl::new("http://api.openai.com/v1/chat/completions")
        .proxy(&agent.proxy_url())
        .header("authorization: Bearer sk-should-not-travel")
        .post_json(&body)
        .run();
    assert_eq!(out.status, 400, "{}", out.describe());
    assert!(
        out.text().contains("https://api.openai.com/"),
        "{}",
        out.describe()
    );
    let records = wait_for_records(&agent.state_dir(), 1);
    assert_eq!(records[0]["decision"], "block");
    assert_eq!(records[0]["rules"][0]["id"], "plain_http");
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the agent connected to the provider in clear: {other:?}"),
    }
}

#[test]
fn an_upstream_error_header_does_not_set_the_record() {
    let stack = Stack::start_with(
        |f| {
            f.route("POST", "/v1/embeddings", |_| {
                FakeResponse::json(
                    200,
                    &json!({"object": "list", "data": [], "model": "text-embedding-3-small",
                            "usage": {"prompt_tokens": 3, "total_tokens": 3}}),
                )
                .header("x-outpost-error", "upstream_unavailable")
            })
        },
        |a| a,
    );
    let out = curl(&stack, &format!("{OPENAI}/v1/embeddings"))
        .post_json(&json!({"model": "text-embedding-3-small", "input": "hello"}))
        .run();
    assert_eq!(out.status, 200, "{}", out.describe());
    let records = wait_for_records(&stack.agent.state_dir(), 1);
    assert_eq!(records[0]["decision"], "allow", "{:#}", records[0]);
    assert!(records[0]["error"].is_null(), "{:#}", records[0]);
}

#[test]
fn uninspected_forwards_still_meet_the_budget_and_are_recorded() {
    // Each malformed body reserves, and is charged, its worst case: its 34 bytes as
    // 49 prompt tokens and 100 output tokens of a model it cannot name, at the
    // conservative unpriced rate (about $0.0112); $0.025 fits two.
    let stack = Stack::start_with(
        |f| {
            f.route("POST", "/v1/chat/completions", |_| {
                FakeResponse::json(200, &json!({"ok": true}))
            })
        },
        |a| {
            a.policy_file(
                "10-forward.toml",
                // Forwarding what cannot be parsed loosens the baseline's
                // `block`: only a policy without the baseline can.
                "baseline = false\non_unparseable = \"forward\"\ndefault_output_tokens = 100\n\
                 [[budgets]]\nid = \"tiny\"\nper = \"user\"\nlimit_usd = 0.025\nwindow = \"day\"\n",
            )
        },
    );
    let send = || {
        send_raw(
            &stack,
            &format!("{OPENAI}/v1/chat/completions"),
            r#"{"model": "gpt-4o", "messages": 7}"#,
        )
    };
    for _ in 0..2 {
        let out = send();
        assert_eq!(out.status, 200, "{}", out.describe());
    }
    let third = send();
    assert_eq!(third.status, 429, "{}", third.describe());
    assert_eq!(third.header("x-outpost-rule"), Some("tiny"));
    assert_eq!(stack.fake.requests().len(), 2);
    let records = wait_for_records(&stack.agent.state_dir(), 3);
    for record in &records[..2] {
        assert!(
            record["uninspected"]
                .as_str()
                .is_some_and(|w| w.contains("on_unparseable")),
            "{record:#}"
        );
        assert_eq!(record["estimated"], true, "{record:#}");
        assert!(
            record["cost_usd"].as_f64().is_some_and(|c| c > 0.001),
            "{record:#}"
        );
    }
    assert_eq!(records[2]["decision"], "block");
}

#[test]
fn a_full_audit_queue_is_503_in_each_providers_shape() {
    let stack = Stack::start_with(
        |f| f.stream_events(5).stream_delay(Duration::from_millis(400)),
        |a| a.audit_setting("queue_capacity = 16"),
    );
    let streams: Vec<_> = (0..16)
        .map(|_| {
            curl(&stack, &format!("{OPENAI}/v1/chat/completions"))
                .post_json(&openai_chat_body(true))
                .spawn_streaming()
        })
        .collect();
    stack.fake.wait_for_requests(16, Duration::from_secs(30));
    let calls = [
        (format!("{OPENAI}/v1/chat/completions"), openai_chat_body(false)),
        (format!("{ANTHROPIC}/v1/messages"), anthropic_messages_body(false)),
        (
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent"
                .to_string(),
            json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}),
        ),
    ];
    for (url, body) in &calls {
        let out = curl(&stack, url).post_json(body).run();
        assert_eq!(out.status, 503, "{url}: {}", out.describe());
        assert_eq!(out.header("retry-after"), Some("1"), "{}", out.describe());
        let error = out.json();
        if url.contains("anthropic") {
            assert_eq!(error["error"]["type"], "api_error", "{error}");
        } else if url.contains("generativelanguage") {
            assert_eq!(error["error"]["code"], 503, "{error}");
            assert_eq!(error["error"]["status"], "UNAVAILABLE", "{error}");
        } else {
            assert_eq!(error["error"]["code"], "outpost_unavailable", "{error}");
        }
    }
    for stream in streams {
        assert_eq!(stream.finish().output.status, 200);
    }
}

#[test]
fn a_ledger_that_cannot_open_is_the_agents_fault_not_a_spent_budget() {
    let stack = Stack::start();
    // Something that is not a database where the ledger goes.
    let ledger_dir = stack.agent.state_dir().join("budget");
    std::fs::create_dir_all(&ledger_dir).expect("budget dir");
    std::fs::create_dir_all(ledger_dir.join("ledger.db")).expect("a directory in its place");
    // A budget arrives by hot reload: the first budgeted call opens the ledger.
    std::fs::write(
        stack.agent.policy_dir().join("20-budget.toml"),
        "[[budgets]]\nid = \"daily\"\nper = \"user\"\nlimit_usd = 5.0\nwindow = \"day\"\n",
    )
    .expect("write policy");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let out = loop {
        let out = curl(&stack, &format!("{OPENAI}/v1/chat/completions"))
            .post_json(&openai_chat_body(false))
            .run();
        if out.status != 200 || std::time::Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(out.status, 503, "{}", out.describe());
    let message = out.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        message.contains("ledger") && message.contains("fault in the agent"),
        "{message}"
    );
    let records = audit_records(&stack.agent.state_dir());
    let last = records.last().expect("a record");
    assert_eq!(last["decision"], "error", "{last:#}");
}
