//! Budgets through the proxy: calls are charged from the provider's usage
//! and refused with the SDK's own rate-limit error once a budget is spent.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::records::{audit_records, wait_for_records};
use support::*;

/// gpt-4o ($2.50 / $10 per M) answering with 20 prompt and 300 completion
/// tokens: $0.00305 a call. Asked with `max_tokens = 300` and "hello", the
/// reservation is 35 estimated prompt tokens + 300: $0.0030875.
const CALL_USD: f64 = 0.00305;

fn priced_provider(fake: fake::FakeProviderBuilder<'_>) -> fake::FakeProviderBuilder<'_> {
    fake.route("POST", "/v1/chat/completions", |_| {
        FakeResponse::json(
            200,
            &json!({
                "id": "chatcmpl-b", "object": "chat.completion", "created": 1, "model": "gpt-4o",
                "choices": [{"index": 0, "finish_reason": "length",
                    "message": {"role": "assistant", "content": "ok"}}],
                "usage": {"prompt_tokens": 20, "completion_tokens": 300, "total_tokens": 320}
            }),
        )
        .after(Duration::from_millis(20))
    })
}

/// The chat request `priced_provider` answers: "hello", `max_tokens = 300`.
fn priced_chat() -> Value {
    json!({"model": "gpt-4o", "max_tokens": 300,
        "messages": [{"role": "user", "content": "hello"}]})
}

/// `body` to the chat endpoint through `agent`, with curl.
fn curl_chat(agent: &Agent, body: &Value) -> CurlOutput {
    Curl::new("https://api.openai.com/v1/chat/completions")
        .via(agent)
        .cacert(&agent.ca_pem_path())
        .post_json(body)
        .run()
}

fn budget_policy(id: &str, per: &str, limit_usd: f64, extra: &str) -> String {
    format!(
        "[[budgets]]\nid = \"{id}\"\nper = \"{per}\"\nlimit_usd = {limit_usd}\nwindow = \"day\"\n{extra}"
    )
}

fn call_spec(extra: Value) -> String {
    let mut spec = json!({"sdk": "openai", "stream": false, "model": "gpt-4o",
        "content": "hello", "max_tokens": 300});
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        spec[k] = v;
    }
    spec.to_string()
}

fn call(agent: &Agent) -> Value {
    PythonScript::new("policy_call.py")
        .arg(&call_spec(json!({})))
        .through(agent)
        .run_json()
}

/// `outpost budget show --json`, as rows.
fn budget_show(agent: &Agent) -> Vec<Value> {
    let out = agent.cli(&["budget", "show", "--json"]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.describe()))
}

fn spent(rows: &[Value], budget: &str) -> f64 {
    rows.iter()
        .filter(|r| r["budget"] == budget)
        .map(|r| r["spent_usd"].as_f64().unwrap_or(0.0))
        .sum()
}

#[test]
fn a_one_cent_budget_is_exhausted_after_three_calls_and_refused_with_rate_limit_error() {
    let stack = Stack::start_with(priced_provider, |a| {
        a.policy_file(
            "10-budget.toml",
            &budget_policy("daily-cap", "user", 0.01, "warn_at = 0.5\n"),
        )
    });
    // $0.01 holds three calls ($0.00915); the fourth could cost up to
    // $0.0030875 more and is refused before it reaches the provider.
    for n in 1..=3 {
        let ok = call(&stack.agent);
        assert_eq!(ok["ok"], true, "call {n}: {ok}");
    }
    let refused = call(&stack.agent);
    assert_eq!(refused["ok"], false, "{refused}");
    assert_eq!(refused["error_class"], "RateLimitError", "{refused}");
    assert_eq!(refused["status"], 429, "{refused}");
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(message.contains("daily-cap"), "{message}");
    assert!(message.contains("spent $0.0092 of $0.01"), "{message}");
    assert_eq!(
        stack.fake.requests().len(),
        3,
        "the refused call reached the provider"
    );

    let out = curl_chat(&stack.agent, &priced_chat());
    assert_eq!(out.status, 429);
    assert_eq!(out.header("x-should-retry"), Some("false"));
    assert_eq!(out.header("x-outpost-rule"), Some("daily-cap"));
    let retry: u64 = out
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(retry > 0 && retry <= 86_400, "Retry-After {retry}");

    // Every charge is in the ledger, and the records carry the cost.
    let state = stack.agent.state_dir();
    let records = wait_for_records(&state, 5);
    let charged: Vec<f64> = records
        .iter()
        .filter_map(|r| r["cost_usd"].as_f64())
        .collect();
    assert_eq!(charged.len(), 3, "{records:#?}");
    for usd in &charged {
        assert!((usd - CALL_USD).abs() < 1e-9, "{usd}");
    }
    // Past warn_at (half the limit) from the second call on: a warning on
    // record.
    let warned = records
        .iter()
        .filter(|r| {
            r["rules"].as_array().is_some_and(|rules| {
                rules
                    .iter()
                    .any(|x| x["id"] == "daily-cap" && x["action"] == "warn")
            })
        })
        .count();
    assert_eq!(
        warned, 1,
        "only the third call started past $0.005: {records:#?}"
    );
    let rows = budget_show(&stack.agent);
    assert!(
        (spent(&rows, "daily-cap") - 3.0 * CALL_USD).abs() < 1e-9,
        "{rows:#?}"
    );
    assert_eq!(rows[0]["limit_usd"], 0.01, "{rows:#?}");

    // An administrator's reset lets calls through again.
    let reset = stack.agent.cli(&["budget", "reset", "daily-cap"]);
    assert_eq!(reset.code, Some(0), "{}", reset.describe());
    assert_eq!(call(&stack.agent)["ok"], true);
    let rows = budget_show(&stack.agent);
    assert!(
        (spent(&rows, "daily-cap") - CALL_USD).abs() < 1e-9,
        "{rows:#?}"
    );
    let unknown = stack.agent.cli(&["budget", "reset", "no-such-budget"]);
    assert_eq!(unknown.code, Some(1), "{}", unknown.describe());
    assert!(
        unknown.stderr.contains("daily-cap"),
        "{}",
        unknown.describe()
    );
}

#[test]
fn warn_at_adds_a_warning_header_naming_the_budget() {
    let stack = Stack::start_with(priced_provider, |a| {
        a.policy_file(
            "10-budget.toml",
            &budget_policy("team", "all", 1.0, "warn_at = 0.002\n"),
        )
    });
    let request = || curl_chat(&stack.agent, &priced_chat());
    let first = request();
    assert_eq!(first.status, 200, "{}", first.describe());
    assert_eq!(first.header("x-outpost-warning"), None);
    let second = request();
    assert_eq!(second.status, 200, "{}", second.describe());
    let warning = second.header("x-outpost-warning").unwrap_or_default();
    assert!(warning.contains("team"), "{warning}");
    assert!(warning.contains("of $1.00 spent"), "{warning}");
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
    let out = curl_chat(&stack.agent, &openai_chat_body(true));
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
    let records = wait_for_records(&stack.agent.state_dir(), 1);
    let record = &records[0];
    assert_eq!(record["input_tokens"], 9, "{record}");
    assert_eq!(record["estimated"], false, "{record}");
    assert!(record["cost_usd"].as_f64().unwrap_or(0.0) > 0.0, "{record}");
}

#[test]
fn fifty_concurrent_calls_against_a_budget_that_fits_ten_overshoot_nothing() {
    // Ten reservations of $0.0030875 fit in $0.031, an eleventh does not,
    // and settled calls ($0.00305) never free room for one: exactly ten.
    let limit = 0.031;
    let stack = Stack::start_with(priced_provider, |a| {
        a.policy_file("10-budget.toml", &budget_policy("shared", "all", limit, ""))
    });
    let results = PythonScript::new("policy_call.py")
        .arg(&call_spec(json!({"concurrency": 50})))
        .through(&stack.agent)
        .run_json();
    let results = results.as_array().expect("a list of results");
    assert_eq!(results.len(), 50);
    let ok = results.iter().filter(|r| r["ok"] == true).count();
    let refused: Vec<&Value> = results.iter().filter(|r| r["ok"] == false).collect();
    assert_eq!(ok, 10, "{results:#?}");
    for r in &refused {
        assert_eq!(r["error_class"], "RateLimitError", "{r}");
    }
    assert_eq!(stack.fake.requests().len(), 10);
    let rows = budget_show(&stack.agent);
    let spent = spent(&rows, "shared");
    assert!(spent <= limit, "overshoot: spent {spent} of {limit}");
    assert!((spent - 10.0 * CALL_USD).abs() < 1e-9, "{rows:#?}");
}

#[test]
fn a_stream_the_client_drops_halfway_is_charged_an_estimate() {
    let stack = Stack::start_with(
        |f| f.stream_events(40).stream_delay(Duration::from_millis(40)),
        |a| a.policy_file("10-budget.toml", &budget_policy("all", "all", 10.0, "")),
    );
    let out = PythonScript::new("policy_call.py")
        .arg(&call_spec(json!({"stream": true, "drop_after": 3})))
        .through(&stack.agent)
        .run_json();
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(out["chunks"], 3, "{out}");
    let state = stack.agent.state_dir();
    let records = wait_for_records(&state, 1);
    let record = &records[0];
    assert_eq!(record["decision"], "error", "{record}");
    assert_eq!(record["estimated"], true, "{record}");
    let usd = record["cost_usd"].as_f64().expect("charged");
    // At least the 35 prompt tokens and the three pieces seen; far below
    // the 40-piece answer's real usage.
    assert!(usd >= 35.0 * 2.5e-6, "{record}");
    assert!(
        record["output_tokens"].as_u64().unwrap_or(0) >= 1,
        "{record}"
    );
    let rows = budget_show(&stack.agent);
    assert!((spent(&rows, "all") - usd).abs() < 1e-9, "{rows:#?}");
}

#[test]
fn rate_limits_refuse_with_retry_after_and_sdks_wait_out_short_ones() {
    let stack = Stack::start_with(priced_provider, |a| {
        a.policy_file(
            "10-limits.toml",
            "[[rate_limits]]\nid = \"per-user-rpm\"\nper = \"user\"\nrequests = 2\nwindow = \"minute\"\n",
        )
    });
    assert_eq!(call(&stack.agent)["ok"], true);
    assert_eq!(call(&stack.agent)["ok"], true);
    let refused = call(&stack.agent);
    assert_eq!(refused["error_class"], "RateLimitError", "{refused}");
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(message.contains("per-user-rpm"), "{message}");
    assert!(message.contains("2 requests per minute"), "{message}");
    let out = curl_chat(
        &stack.agent,
        &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(out.status, 429);
    assert_eq!(out.header("x-outpost-rule"), Some("per-user-rpm"));
    // One request frees every 30 s: worth an SDK's wait.
    let retry: u64 = out
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!((1..=30).contains(&retry), "Retry-After {retry}");
    assert_eq!(out.header("x-should-retry"), Some("true"));
    assert_eq!(stack.fake.requests().len(), 2);
}

#[test]
fn an_sdk_with_retries_gets_through_a_per_second_limit() {
    let stack = Stack::start_with(priced_provider, |a| {
        a.policy_file(
            "10-limits.toml",
            "[[rate_limits]]\nid = \"burst\"\nper = \"all\"\nrequests = 1\nwindow = \"second\"\n",
        )
    });
    // Three calls at once, one allowed a second: the SDK's own retries
    // (honouring Retry-After) carry the other two through.
    let results = PythonScript::new("policy_call.py")
        .arg(&call_spec(json!({"concurrency": 3, "max_retries": 4})))
        .through(&stack.agent)
        .run_json();
    for r in results.as_array().expect("list") {
        assert_eq!(r["ok"], true, "{results:#}");
    }
    assert_eq!(stack.fake.requests().len(), 3);
}

#[test]
fn unpriced_models_follow_policy_and_price_overrides_apply() {
    fn echo_model(f: fake::FakeProviderBuilder<'_>) -> fake::FakeProviderBuilder<'_> {
        f.route("POST", "/v1/chat/completions", |req| {
            let model = req.body_json()["model"].as_str().unwrap_or("").to_string();
            FakeResponse::json(
                200,
                &json!({
                    "id": "x", "object": "chat.completion", "created": 1, "model": model,
                    "choices": [{"index": 0, "finish_reason": "stop",
                        "message": {"role": "assistant", "content": "ok"}}],
                    "usage": {"prompt_tokens": 1000000, "completion_tokens": 0, "total_tokens": 1000000}
                }),
            )
        })
    }
    let stack = Stack::start_with(echo_model, |a| {
        a.policy_file(
            "10-budget.toml",
            &format!(
                "unpriced = \"block\"\n\n[[prices]]\nproviders = [\"openai\"]\nmodels = [\"house-model*\"]\ninput = 0.5\noutput = 1.0\n\n{}",
                budget_policy("all", "all", 100.0, "")
            ),
        )
    });
    let spec = |model: &str| call_spec(json!({"model": model, "max_tokens": 10}));
    let blocked = PythonScript::new("policy_call.py")
        .arg(&spec("mystery-model"))
        .through(&stack.agent)
        .run_json();
    assert_eq!(blocked["error_class"], "BadRequestError", "{blocked}");
    let message = blocked["message"].as_str().unwrap_or_default();
    assert!(message.contains("mystery-model"), "{message}");
    assert!(message.contains("unpriced"), "{message}");
    // A dated name matches the admin's glob: a million input tokens at $0.50.
    let priced = PythonScript::new("policy_call.py")
        .arg(&spec("house-model-2026-01-01"))
        .through(&stack.agent)
        .run_json();
    assert_eq!(priced["ok"], true, "{priced}");
    let records = wait_for_records(&stack.agent.state_dir(), 2);
    let charged: Vec<f64> = records
        .iter()
        .filter_map(|r| r["cost_usd"].as_f64())
        .collect();
    assert_eq!(charged, vec![0.5], "{records:#?}");
    assert_eq!(stack.fake.requests().len(), 1);
}

#[test]
fn an_unpriced_model_is_charged_the_conservative_default_and_warned() {
    let stack = Stack::start_with(
        |f| f,
        |a| a.policy_file("10-budget.toml", &budget_policy("all", "all", 100.0, "")),
    );
    let out = curl_chat(
        &stack.agent,
        &json!({"model": "mystery-model", "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(out.status, 200, "{}", out.describe());
    let warning = out.header("x-outpost-warning").unwrap_or_default();
    assert!(warning.contains("mystery-model"), "{warning}");
    // The fake reports 9 + 6 tokens: at $75/M that is $0.001125, not free.
    let records = wait_for_records(&stack.agent.state_dir(), 1);
    let usd = records[0]["cost_usd"].as_f64().expect("charged");
    assert!((usd - 15.0 * 75.0 / 1e6).abs() < 1e-12, "{records:#?}");
}

#[test]
fn kill_9_under_load_loses_no_charge_the_audit_log_recorded() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    let mut stack = Stack::start_with(priced_provider, |a| {
        a.policy_file("10-budget.toml", &budget_policy("all", "all", 1000.0, ""))
    });
    let state = stack.agent.state_dir();
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let (proxy, ca) = (stack.agent.proxy_url(), stack.agent.ca_pem_path());
    let lanes: Vec<_> = (0..6)
        .map(|_| {
            let (stop, answered, proxy, ca) =
                (stop.clone(), answered.clone(), proxy.clone(), ca.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let out = Curl::new("https://api.openai.com/v1/chat/completions")
                        .proxy(&proxy)
                        .cacert(&ca)
                        .post_json(&priced_chat())
                        .run();
                    // Answered = the client saw the whole answer; a 200 whose
                    // body the kill cut short was never promised a record.
                    if out.status == 200 && out.exit_code == Some(0) {
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    // Kill while the lanes are still sending, once enough has been answered.
    wait_until("10 answered calls", WAIT_LIMIT, || {
        answered.load(Ordering::SeqCst) >= 10
    });
    stack.agent.kill_hard();
    stop.store(true, Ordering::SeqCst);
    for lane in lanes {
        lane.join().expect("lane");
    }
    let answered = answered.load(Ordering::SeqCst);
    assert!(
        answered >= 10,
        "only {answered} calls answered before the kill"
    );

    let restarted = Agent::builder()
        .fake_upstream(&stack.fake)
        .state_dir(&state)
        .policy_file("10-budget.toml", &budget_policy("all", "all", 1000.0, ""))
        .start();
    let recorded: Vec<Value> = audit_records(&state)
        .into_iter()
        .filter(|r| r["cost_usd"].is_number())
        .collect();
    assert!(
        recorded.len() >= answered,
        "{} records for {answered} answered calls",
        recorded.len()
    );
    // Each recorded charge is a row in the ledger…
    let ledger =
        rusqlite::Connection::open(state.join("budget").join("ledger.db")).expect("ledger");
    let mut find = ledger
        .prepare("SELECT COUNT(*) FROM charges WHERE request_id = ?1")
        .expect("query");
    for r in &recorded {
        let id = format!(
            "{}:{}",
            r["ts"].as_str().unwrap(),
            r["request_sha256"].as_str().unwrap()
        );
        let rows: i64 = find.query_row([&id], |row| row.get(0)).expect("count");
        // Identical bodies in the same microsecond share an id.
        assert!(rows >= 1, "charge of {id} is not in the ledger");
    }
    // …and the restarted agent counts all of them.
    eprintln!(
        "{answered} answered, {} charged records before the kill",
        recorded.len()
    );
    let audited: f64 = recorded
        .iter()
        .map(|r| r["cost_usd"].as_f64().unwrap())
        .sum();
    let shown = spent(&budget_show(&restarted), "all");
    assert!(
        shown + 1e-9 >= audited,
        "budget show has ${shown}, the audit log recorded ${audited}"
    );
}

#[test]
fn calls_refused_or_failed_before_the_provider_answered_cost_nothing() {
    let stack = Stack::start_with(
        |f| {
            priced_provider(f).route("POST", "/v1/completions", |_| {
                FakeResponse::json(
                    500,
                    &json!({"error": {"message": "boom", "type": "server_error"}}),
                )
            })
        },
        |a| {
            a.policy_file(
                "10-budget.toml",
                &format!(
                    "[[guardrails]]\nid = \"no-kestrel\"\nkeywords = [\"kestrel\"]\naction = \"block\"\n\n{}",
                    budget_policy("all", "all", 1.0, "")
                ),
            )
        },
    );
    let blocked = PythonScript::new("policy_call.py")
        .arg(&call_spec(json!({"content": "project kestrel"})))
        .through(&stack.agent)
        .run_json();
    assert_eq!(blocked["error_class"], "BadRequestError", "{blocked}");
    let failed = Curl::new("https://api.openai.com/v1/completions")
        .via(&stack.agent)
        .cacert(&stack.agent.ca_pem_path())
        .post_json(&json!({"model": "gpt-4o", "prompt": "hi", "max_tokens": 5}))
        .run();
    assert_eq!(failed.status, 500, "{}", failed.describe());
    assert_eq!(call(&stack.agent)["ok"], true);
    let records = wait_for_records(&stack.agent.state_dir(), 3);
    let charged: Vec<f64> = records
        .iter()
        .filter_map(|r| r["cost_usd"].as_f64())
        .collect();
    assert_eq!(charged.len(), 1, "{records:#?}");
    let rows = budget_show(&stack.agent);
    assert!((spent(&rows, "all") - CALL_USD).abs() < 1e-9, "{rows:#?}");
    assert_eq!(rows[0]["reserved_usd"], 0.0, "a hold leaked: {rows:#?}");
}

#[test]
fn budgets_hold_with_the_audit_log_off() {
    let stack = Stack::start_with(priced_provider, |a| {
        a.audit_setting("enabled = false")
            .policy_file("10-budget.toml", &budget_policy("cap", "user", 0.01, ""))
    });
    let statuses: Vec<u16> = (0..4)
        .map(|_| curl_chat(&stack.agent, &priced_chat()).status)
        .collect();
    assert_eq!(statuses, vec![200, 200, 200, 429]);
    let rows = budget_show(&stack.agent);
    assert!(
        (spent(&rows, "cap") - 3.0 * CALL_USD).abs() < 1e-9,
        "{rows:#?}"
    );
}

#[test]
fn anthropic_and_gemini_calls_are_charged_from_their_own_usage() {
    let stack = Stack::start_with(
        |f| {
            f.stream_delay(Duration::from_millis(5))
                .extra_name("generativelanguage.googleapis.com")
                .route(
                    "POST",
                    "/v1beta/models/gemini-2.5-flash:generateContent",
                    |_| {
                        FakeResponse::json(
                            200,
                            &json!({
                                "candidates": [{"content": {"role": "model", "parts": [{"text": "ok"}]},
                                    "finishReason": "STOP"}],
                                "usageMetadata": {"promptTokenCount": 1000, "candidatesTokenCount": 200,
                                    "totalTokenCount": 1200}
                            }),
                        )
                    },
                )
        },
        |a| a.policy_file("10-budget.toml", &budget_policy("all", "all", 10.0, "")),
    );
    for stream in [false, true] {
        let spec = json!({"sdk": "anthropic", "stream": stream,
            "model": "claude-sonnet-4-5", "content": "hello"});
        let out = PythonScript::new("policy_call.py")
            .arg(&spec.to_string())
            .through(&stack.agent)
            .run_json();
        assert_eq!(out["ok"], true, "{out}");
    }
    let gemini = Curl::new(
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent?key=test-key",
    )
    .via(&stack.agent)
    .cacert(&stack.agent.ca_pem_path())
    .post_json(&json!({"contents": [{"role": "user", "parts": [{"text": "hello"}]}],
        "generationConfig": {"maxOutputTokens": 256}}))
    .run();
    assert_eq!(gemini.status, 200, "{}", gemini.describe());

    let records = wait_for_records(&stack.agent.state_dir(), 3);
    let cost = |api: &str, stream: bool| {
        records
            .iter()
            .find(|r| r["api"] == api && r["stream"] == stream)
            .and_then(|r| {
                assert_eq!(r["estimated"], false, "{r}");
                r["cost_usd"].as_f64()
            })
            .unwrap_or_else(|| panic!("no charged {api} record: {records:#?}"))
    };
    // claude-sonnet-4-5 at $3 / $15: 12 input and 6 output tokens…
    assert!((cost("anthropic_messages", false) - (12.0 * 3.0 + 6.0 * 15.0) / 1e6).abs() < 1e-12);
    // …and streamed: 12 from message_start, 5 from the last message_delta.
    assert!((cost("anthropic_messages", true) - (12.0 * 3.0 + 5.0 * 15.0) / 1e6).abs() < 1e-12);
    // gemini-2.5-flash at $0.30 / $2.50 from usageMetadata.
    assert!(
        (cost("gemini_generate_content", false) - (1000.0 * 0.30 + 200.0 * 2.50) / 1e6).abs()
            < 1e-12
    );
    let rows = budget_show(&stack.agent);
    let total = (36.0 + 90.0 + 36.0 + 75.0 + 300.0 + 500.0) / 1e6;
    assert!((spent(&rows, "all") - total).abs() < 1e-9, "{rows:#?}");
}

#[test]
fn a_budget_added_by_hot_reload_is_enforced() {
    let stack = Stack::start_with(priced_provider, |a| {
        a.policy_file("10-models.toml", "[models]\ndeny = [\"*-preview\"]\n")
    });
    let request = || curl_chat(&stack.agent, &priced_chat());
    assert_eq!(request().status, 200);
    // No budget yet: nothing to show, and no ledger opened for it.
    assert!(budget_show(&stack.agent).is_empty());
    assert!(!stack.agent.state_dir().join("budget").exists());

    // One call's reservation ($0.0030875) fits, a second does not.
    std::fs::write(
        stack.agent.policy_dir().join("20-budget.toml"),
        budget_policy("cap", "all", 0.0031, ""),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut statuses = Vec::new();
    while !statuses.contains(&429) {
        assert!(Instant::now() < deadline, "never refused: {statuses:?}");
        statuses.push(request().status);
        std::thread::sleep(Duration::from_millis(100));
    }
    let rows = budget_show(&stack.agent);
    assert!((spent(&rows, "cap") - CALL_USD).abs() < 1e-9, "{rows:#?}");
}

#[test]
fn token_counting_is_never_charged_nor_refused_by_a_spent_budget() {
    let stack = Stack::start_with(
        |fake| {
            fake.route("POST", "/v1/messages/count_tokens", |_| {
                FakeResponse::json(200, &json!({"input_tokens": 12}))
            })
        },
        // Too small for any call that generates: one would be refused.
        |agent| agent.policy_file("budget.toml", &budget_policy("tiny", "user", 0.000001, "")),
    );
    let body = json!({"model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": "hello"}]});
    for _ in 0..2 {
        let out = Curl::new("https://api.anthropic.com/v1/messages/count_tokens?beta=true")
            .via(&stack.agent)
            .cacert(&stack.agent.ca_pem_path())
            .post_json(&body)
            .run();
        assert_eq!(out.status, 200, "{}", out.describe());
    }
    let records = wait_for_records(&stack.agent.state_dir(), 2);
    for record in &records {
        assert_eq!(record["api"], "anthropic_count_tokens", "{record:#}");
        assert_eq!(record["decision"], "allow", "{record:#}");
        assert!(record["cost_usd"].is_null(), "{record:#}");
    }
}
