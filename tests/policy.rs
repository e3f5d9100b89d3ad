//! Policy through the proxy, seen by real clients: guardrails redact and block
//! with the SDKs' own error types, model rules refuse, response guardrails
//! rewrite whole bodies and streams, and policy files hot-reload without
//! failing a request in flight.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

const OPENAI_CHAT: &str = "https://api.openai.com/v1/chat/completions";
/// A GitHub token shape (`ghp_` + 36 alphanumerics) that the secrets rules find.
const GITHUB_TOKEN: &str = "ghp_R7d9Kq2LmX4vB8nT1wZ6yH3cF5jP0sAeUiOg";
const CARD: &str = "4111 1111 1111 1111";

fn call(stack_agent: &Agent, sdk: &str, stream: bool, model: &str, content: &str) -> Value {
    let spec = json!({"sdk": sdk, "stream": stream, "model": model, "content": content});
    PythonScript::new("policy_call.py")
        .arg(&spec.to_string())
        .through(stack_agent)
        .run_json()
}

#[test]
fn card_number_is_redacted_before_it_reaches_the_provider() {
    let stack = Stack::start();
    let result = call(
        &stack.agent,
        "openai",
        false,
        "gpt-4o-mini",
        &format!("Charge {CARD} please"),
    );
    assert_eq!(result["ok"], true, "{result}");
    let seen = stack.fake.single_request();
    let content = seen.body_json()["messages"][0]["content"].clone();
    assert_eq!(
        content, "Charge [REDACTED:card-numbers] please",
        "{content}"
    );
    assert!(!String::from_utf8_lossy(&seen.body).contains("4111"));
    assert_eq!(
        seen.header("content-length"),
        Some(seen.body.len().to_string().as_str())
    );
}

#[test]
fn secret_is_blocked_with_the_sdks_own_error() {
    let stack = Stack::start();
    let openai = call(
        &stack.agent,
        "openai",
        false,
        "gpt-4o-mini",
        &format!("my token is {GITHUB_TOKEN}"),
    );
    assert_eq!(openai["ok"], false, "{openai}");
    assert_eq!(openai["error_class"], "BadRequestError", "{openai}");
    assert_eq!(openai["status"], 400, "{openai}");
    let message = openai["message"].as_str().unwrap_or_default();
    assert!(message.contains("no-secrets"), "{message}");
    assert!(
        message.contains("must not be sent to AI providers"),
        "{message}"
    );
    assert!(!message.contains(GITHUB_TOKEN), "{message}");

    let anthropic = call(
        &stack.agent,
        "anthropic",
        true,
        "claude-sonnet-4-5",
        &format!("deploy with {GITHUB_TOKEN}"),
    );
    assert_eq!(anthropic["ok"], false, "{anthropic}");
    assert_eq!(anthropic["error_class"], "BadRequestError", "{anthropic}");
    assert!(anthropic["message"]
        .as_str()
        .unwrap_or_default()
        .contains("no-secrets"));

    assert!(
        stack.fake.requests().is_empty(),
        "a blocked call reached the provider"
    );
    assert!(
        !stack.agent.log().contains(GITHUB_TOKEN),
        "the secret is in the log"
    );
}

#[test]
fn blocked_request_is_not_retried_by_curl_or_sdks() {
    let stack = Stack::start();
    let out = Curl::new(OPENAI_CHAT)
        .via(&stack.agent)
        .cacert(&stack.agent.ca_pem_path())
        .post_json(
            &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": GITHUB_TOKEN}]}),
        )
        .run();
    assert_eq!(out.status, 400, "{}", out.describe());
    assert_eq!(out.header("x-should-retry"), Some("false"));
    assert_eq!(out.header("x-outpost-rule"), Some("no-secrets"));
    assert_eq!(
        out.json()["error"]["code"],
        "policy_blocked",
        "{}",
        out.describe()
    );
}

#[test]
fn denied_model_is_refused() {
    let stack = Stack::start_with(
        |f| f,
        |a| {
            a.policy_file(
                "10-models.toml",
                "[models]\ndeny = [\"*-preview\"]\nmessage = \"Previews are not approved.\"\n",
            )
        },
    );
    let denied = call(&stack.agent, "openai", false, "gpt-4.5-preview", "hi");
    assert_eq!(denied["ok"], false, "{denied}");
    assert_eq!(denied["status"], 400, "{denied}");
    let message = denied["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("gpt-4.5-preview") && message.contains("*-preview"),
        "{message}"
    );
    assert!(message.contains("Previews are not approved."), "{message}");
    let allowed = call(&stack.agent, "openai", false, "gpt-4o", "hi");
    assert_eq!(allowed["ok"], true, "{allowed}");
    assert_eq!(stack.fake.requests().len(), 1);
}

fn chat_chunk(text: &str) -> String {
    let data = json!({
        "id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]
    });
    format!("data: {data}\n\n")
}

fn leaky_provider(fake: fake::FakeProviderBuilder<'_>) -> fake::FakeProviderBuilder<'_> {
    fake.route("POST", "/v1/chat/completions", |req| {
        if req.body_json()["stream"] == true {
            // The token is split across two events, 50 ms apart.
            let (a, b) = GITHUB_TOKEN.split_at(12);
            FakeResponse::sse(vec![
                (Duration::ZERO, chat_chunk("Here is the token: ")),
                (Duration::from_millis(50), chat_chunk(a)),
                (Duration::from_millis(50), chat_chunk(b)),
                (Duration::from_millis(50), chat_chunk(" and card ")),
                (Duration::from_millis(50), chat_chunk(CARD)),
                (Duration::from_millis(50), chat_chunk(". Done.")),
                (Duration::ZERO, "data: [DONE]\n\n".to_string()),
            ])
        } else {
            FakeResponse::json(
                200,
                &json!({
                    "id": "chatcmpl-y", "object": "chat.completion", "created": 1, "model": "gpt-4o",
                    "choices": [{"index": 0, "finish_reason": "stop",
                        "message": {"role": "assistant", "content": format!("Here is the token: {GITHUB_TOKEN}. Done.")}}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14}
                }),
            )
        }
    })
}

#[test]
fn secret_in_a_response_is_redacted() {
    let stack = Stack::start_with(leaky_provider, |a| a);
    let result = call(&stack.agent, "openai", false, "gpt-4o", "tell me a token");
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(
        result["text"], "Here is the token: [REDACTED:secrets-in-output]. Done.",
        "{result}"
    );
}

#[test]
fn secret_split_across_stream_events_is_redacted() {
    let stack = Stack::start_with(leaky_provider, |a| a);
    let result = call(&stack.agent, "openai", true, "gpt-4o", "tell me a token");
    assert_eq!(result["ok"], true, "{result}");
    let text = result["text"].as_str().unwrap_or_default();
    assert_eq!(
        text,
        "Here is the token: [REDACTED:secrets-in-output] and card [REDACTED:card-numbers]. Done.",
        "{result}"
    );
    assert!(!text.contains("ghp_") && !text.contains("4111"), "{text}");
}

#[test]
fn gemini_calls_are_inspected_and_the_key_never_logged() {
    let ca = TestCa::new();
    let fake = FakeProvider::tls(&ca)
        .extra_name("generativelanguage.googleapis.com")
        .route(
            "POST",
            "/v1beta/models/gemini-2.0-flash:generateContent",
            |_| {
                FakeResponse::json(
                    200,
                    &json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "ok"}]}, "finishReason": "STOP"}],
                            "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1, "totalTokenCount": 4}}),
                )
            },
        )
        .start();
    let agent = Agent::builder().fake_upstream(&fake).start();
    let key = "AIzaSyD-outpost-test-key-000000000000000";
    let out = Curl::new(&format!(
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent?key={key}"
    ))
    .via(&agent)
    .cacert(&agent.ca_pem_path())
    .post_json(&json!({"contents": [{"role": "user", "parts": [{"text": format!("card {CARD}")}]}]}))
    .run();
    assert_eq!(out.status, 200, "{}", out.describe());
    let seen = fake.single_request();
    assert_eq!(
        seen.body_json()["contents"][0]["parts"][0]["text"],
        "card [REDACTED:card-numbers]"
    );
    assert!(
        seen.path_and_query.contains(key),
        "the key must still reach Google"
    );
    assert!(!agent.log().contains(key), "the ?key= reached the log");
}

#[test]
fn unparseable_body_is_blocked_with_a_clear_error() {
    let stack = Stack::start();
    let out = Curl::new(OPENAI_CHAT)
        .via(&stack.agent)
        .cacert(&stack.agent.ca_pem_path())
        .header("content-type: application/json")
        .arg("--data-binary")
        .arg("{\"model\": \"gpt-4o\", \"messages\": 7}")
        .run();
    assert_eq!(out.status, 400, "{}", out.describe());
    let message = out.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("messages"), "{message}");
    assert!(stack.fake.requests().is_empty());
}

#[test]
fn policy_check_reports_file_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("10-good.toml");
    std::fs::write(
        &good,
        "[[guardrails]]\nid = \"k\"\nkeywords = [\"x\"]\naction = \"warn\"\n",
    )
    .unwrap();
    let ok = outpost_cli(
        &["policy", "check", &good.to_string_lossy()],
        None,
        CLIENT_TIMEOUT,
    );
    assert_eq!(ok.code, Some(0), "{}", ok.describe());
    let bad = dir.path().join("20-bad.toml");
    std::fs::write(
        &bad,
        "[[guardrails]]\nid = \"r\"\npattern = \"([a-z]\"\naction = \"block\"\n\n[[guardrails]]\nid = \"d\"\ndetect = \"dna\"\naction = \"log\"\n",
    )
    .unwrap();
    let out = outpost_cli(
        &["policy", "check", &dir.path().to_string_lossy()],
        None,
        CLIENT_TIMEOUT,
    );
    assert_eq!(out.code, Some(1), "{}", out.describe());
    let text = out.stdout_text();
    let bad_name = bad.to_string_lossy();
    assert!(
        text.contains(&format!("{bad_name}:3:11: guardrail `r`: bad regex")),
        "{text}"
    );
    assert!(
        text.contains(&format!("{bad_name}:8:10: guardrail `d`: unknown detector")),
        "{text}"
    );
}

/// One call of a [`Load`]: when it started and ended, and how it was answered.
#[derive(Debug, Clone)]
struct Answered {
    started: Instant,
    finished: Instant,
    status: u16,
    rule: String,
}

/// Sends chat calls in a loop from several threads and records each answer.
struct Load {
    stop: Arc<AtomicBool>,
    results: Arc<Mutex<Vec<Answered>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(agent: &Agent, content: &str, threads: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let results = Arc::new(Mutex::new(Vec::new()));
        let proxy = agent.proxy_url();
        let ca = agent.ca_pem_path();
        let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": content}]});
        let threads = (0..threads)
            .map(|_| {
                let (stop, results, proxy, ca, body) = (
                    stop.clone(),
                    results.clone(),
                    proxy.clone(),
                    ca.clone(),
                    body.clone(),
                );
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        let started = Instant::now();
                        let out = Curl::new(OPENAI_CHAT)
                            .proxy(&proxy)
                            .cacert(&ca)
                            .post_json(&body)
                            .run();
                        let rule = out.header("x-outpost-rule").unwrap_or("").to_string();
                        results.lock().expect("results").push(Answered {
                            started,
                            finished: Instant::now(),
                            status: out.status,
                            rule,
                        });
                    }
                })
            })
            .collect();
        Load {
            stop,
            results,
            threads,
        }
    }

    /// Calls answered so far.
    fn answered(&self) -> usize {
        self.results.lock().expect("results").len()
    }

    /// Calls answered so far that started after `t`.
    fn started_after(&self, t: Instant) -> usize {
        let results = self.results.lock().expect("results");
        results.iter().filter(|r| r.started > t).count()
    }

    fn finish(self) -> Vec<Answered> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().expect("load thread");
        }
        let results = self.results.lock().expect("results").clone();
        results
    }
}

/// The agent's `/status` `policy` object.
fn policy_status(agent: &Agent) -> Value {
    let status = Curl::new(&format!("http://{}/status", agent.admin_addr())).run();
    status.json()["policy"].clone()
}

#[test]
fn hot_reload_takes_effect_and_fails_nothing() {
    let stack = Stack::start();
    let policy_dir = stack.agent.policy_dir();
    std::fs::create_dir_all(&policy_dir).unwrap();
    let load = Load::start(&stack.agent, "status of project bluebird?", 3);
    wait_until("calls before the change", WAIT_LIMIT, || {
        load.answered() >= 6
    });

    // Write-then-rename, as editors do.
    let rule = "[[guardrails]]\nid = \"codenames\"\nkeywords = [\"bluebird\"]\naction = \"block\"\nmessage = \"Codenames stay inside.\"\n";
    let tmp = policy_dir.join(".10-codenames.toml.swp");
    std::fs::write(&tmp, rule).unwrap();
    std::fs::rename(&tmp, policy_dir.join("10-codenames.toml")).unwrap();
    let changed_at = Instant::now();
    // In force once `/status` lists the file: the handle puts a policy in
    // force before its status says so, so a call started after this sees it.
    wait_until("the reload to show in /status", WAIT_LIMIT, || {
        policy_status(&stack.agent)["sources"]
            .to_string()
            .contains("10-codenames.toml")
    });
    let reloaded_at = Instant::now();
    wait_until("calls after the reload", WAIT_LIMIT, || {
        load.started_after(reloaded_at) >= 6
    });

    // An invalid edit: the last good policy must stay in force. Proven by
    // calls that started after the agent reported rejecting it.
    std::fs::write(
        policy_dir.join("10-codenames.toml"),
        "[[guardrails]]\nid = \"codenames\"\nkeywords = [\"bluebird\"]\naction = \"blokc\"\n",
    )
    .unwrap();
    wait_until("the invalid edit to show in /status", WAIT_LIMIT, || {
        policy_status(&stack.agent)["errors"]
            .to_string()
            .contains("10-codenames.toml:4:")
    });
    let rejected_at = Instant::now();
    wait_until("calls after the rejection", WAIT_LIMIT, || {
        load.started_after(rejected_at) >= 6
    });
    let results = load.finish();

    for r in &results {
        assert!(
            r.status == 200 || (r.status == 400 && r.rule == "codenames"),
            "a request failed during reload: status {} rule {:?} at {:?} after the change",
            r.status,
            r.rule,
            r.started.checked_duration_since(changed_at)
        );
    }
    let before: Vec<_> = results.iter().filter(|r| r.finished < changed_at).collect();
    assert!(
        !before.is_empty() && before.iter().all(|r| r.status == 200),
        "calls before the change must pass"
    );
    let after: Vec<_> = results.iter().filter(|r| r.started > reloaded_at).collect();
    assert!(
        after.iter().all(|r| r.status == 400),
        "a call after the reload (and after the invalid edit) was not blocked: {:?}",
        after.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert!(results.iter().any(|r| r.started > rejected_at));
    assert!(
        stack.agent.log().contains("10-codenames.toml:4:"),
        "the invalid edit was not logged"
    );
}

#[test]
fn warn_rule_forwards_and_adds_a_header() {
    let stack = Stack::start_with(
        |f| f,
        |a| {
            a.policy_file("10-warn.toml", "[[guardrails]]\nid = \"ticket-ids\"\npattern = 'ACME-[0-9]{6}'\naction = \"warn\"\non = [\"request\"]\n")
        },
    );
    let out = Curl::new(OPENAI_CHAT)
        .via(&stack.agent)
        .cacert(&stack.agent.ca_pem_path())
        .post_json(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "see ACME-123456"}]}))
        .run();
    assert_eq!(out.status, 200, "{}", out.describe());
    assert_eq!(
        out.header("x-outpost-warning"),
        Some("ticket-ids"),
        "{}",
        out.describe()
    );
    assert_eq!(
        stack.fake.single_request().body_json()["messages"][0]["content"],
        "see ACME-123456"
    );
}

#[test]
fn on_unparseable_forward_passes_bodies_uninspected() {
    let stack = Stack::start_with(
        |f| f,
        |a| {
            a.policy_file(
                "10-fail-open.toml",
                // Failing open loosens the baseline: only without it.
                "baseline = false\non_unparseable = \"forward\"\nmax_body_bytes = 2048\n",
            )
        },
    );
    let send = |body: String| {
        Curl::new(OPENAI_CHAT)
            .via(&stack.agent)
            .cacert(&stack.agent.ca_pem_path())
            .header("content-type: application/json")
            .arg("--data-binary")
            .arg(body)
            .run()
    };
    // Malformed: forwarded as is (the fake answers it).
    let out = send("{\"model\": \"gpt-4o\", \"messages\": 7}".to_string());
    assert_ne!(out.status, 400, "{}", out.describe());
    // Over max_body_bytes: forwarded whole, uninspected.
    let big =
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x".repeat(5000)}]});
    let out = send(big.to_string());
    assert_eq!(out.status, 200, "{}", out.describe());
    let seen = stack.fake.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].body.len(), big.to_string().len());
}

#[test]
fn over_size_body_is_blocked_by_default() {
    let stack = Stack::start_with(
        |f| f,
        |a| a.policy_file("10-small.toml", "max_body_bytes = 1024\n"),
    );
    let big =
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x".repeat(5000)}]});
    let out = Curl::new(OPENAI_CHAT)
        .via(&stack.agent)
        .cacert(&stack.agent.ca_pem_path())
        .post_json(&big)
        .run();
    assert_eq!(out.status, 400, "{}", out.describe());
    assert!(out.text().contains("max_body_bytes"), "{}", out.describe());
    assert!(stack.fake.requests().is_empty());
}

#[test]
fn a_budget_file_keeps_the_baseline_and_policy_show_says_where_each_rule_is_from() {
    let budget =
        "[[budgets]]\nid = \"team-day\"\nper = \"user\"\nlimit_usd = 50.0\nwindow = \"day\"\n";
    let stack = Stack::start_with(|f| f, |a| a.policy_file("50-budget.toml", budget));
    // The baseline's secret block still applies next to the new file.
    let result = call(
        &stack.agent,
        "openai",
        false,
        "gpt-4o-mini",
        &format!("my token is {GITHUB_TOKEN}"),
    );
    assert_eq!(result["ok"], false, "{result}");
    assert!(
        result["message"]
            .as_str()
            .unwrap_or_default()
            .contains("no-secrets"),
        "{result}"
    );
    assert!(stack.fake.requests().is_empty());
    assert_eq!(policy_status(&stack.agent)["baseline"], "on");

    let shown = stack.agent.cli(&["policy", "show", "--json"]);
    assert_eq!(shown.code, Some(0), "{}", shown.describe());
    let shown: Value = serde_json::from_str(&shown.stdout_text()).expect("JSON");
    let rule = |id: &str| {
        shown["rules"]
            .as_array()
            .and_then(|rules| rules.iter().find(|r| r["id"] == id))
            .cloned()
            .unwrap_or_else(|| panic!("{id} not shown: {shown:#}"))
    };
    assert_eq!(rule("no-secrets")["layer"], "baseline");
    let team = rule("team-day");
    assert_eq!(team["layer"], "local");
    let at = team["at"].as_str().unwrap_or_default();
    assert!(at.ends_with("50-budget.toml:2:6"), "{at}");
    assert_eq!(shown["baseline"], "on");

    // Turning the baseline off is explicit, and shows.
    let policy_dir = stack.agent.policy_dir();
    std::fs::write(
        policy_dir.join("50-budget.toml"),
        format!("baseline = false\n{budget}"),
    )
    .unwrap();
    wait_until("the reload", WAIT_LIMIT, || {
        policy_status(&stack.agent)["baseline"]
            .as_str()
            .is_some_and(|b| b.starts_with("off (baseline = false at"))
    });
    let text = stack.agent.cli(&["policy", "show"]);
    assert!(
        text.stdout_text().contains("baseline: off"),
        "{}",
        text.describe()
    );
    assert!(
        !text.stdout_text().contains("no-secrets"),
        "{}",
        text.describe()
    );
}
