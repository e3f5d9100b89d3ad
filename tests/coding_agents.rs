//! The real coding agents through the agent: Codex CLI (Responses over WebSocket, HTTPS as
//! fallback) and Claude Code (Anthropic Messages, streamed), installed from npm by the test
//! support, configured only by the proxy environment a managed install gives them. With the
//! shipped default policy a secret never reaches the provider on any transport and the tool
//! shows Outpost's message naming the rule as a refusal; a card number arrives redacted;
//! every model call has an audit record with its tokens, and the log verifies.

mod support;

use serde_json::Value;
use support::coding_agents::{claude_print, codex_exec};
use support::fake_ws::{FakeUsage, FakeWs};
use support::records::{audit_records, wait_for_records};
use support::*;

/// An AWS access key id the default `no-secrets` rule blocks.
const KEY: &str = "AKIAQWERTYUIOPASDFGH";
const CARD: &str = "4111 1111 1111 1111";
const REDACTED_CARD: &str = "[REDACTED:card-numbers]";

/// Everything the fake received, over sockets and HTTPS.
fn received(fake: &FakeWs) -> String {
    let mut all = String::new();
    for socket in fake.sockets() {
        for message in &socket.messages {
            if let Some(json) = message.json() {
                all += &json.to_string();
            }
        }
    }
    for request in fake.http_requests() {
        all += &String::from_utf8_lossy(&request.body);
    }
    all
}

/// Records of model calls (not the listings and settings tools fetch on the side).
fn model_calls(records: &[Value]) -> Vec<&Value> {
    records
        .iter()
        .filter(|r| r["api"] != "no_prompt" && r["decision"] != "block")
        .collect()
}

fn codex_agent(
    ca: &TestCa,
    fake: &FakeWs,
    extra: impl FnOnce(AgentBuilder) -> AgentBuilder,
) -> Agent {
    extra(fake.resolve_in(Agent::builder().trust(ca))).start()
}

#[test]
fn codex_over_websocket_never_sends_a_secret_and_shows_the_rule() {
    let ca = TestCa::new();
    let fake = FakeWs::tls(&ca).start();
    let agent = codex_agent(&ca, &fake, |a| a);
    let out = codex_exec(
        &agent.proxy_url(),
        &agent.ca_pem_path(),
        &format!("deploy this with access key {KEY}"),
        &[],
    );
    assert_ne!(out.code, Some(0), "{}", out.describe());
    let shown = format!("{}{}", out.stdout_text(), out.stderr);
    assert!(shown.contains("no-secrets"), "{}", out.describe());
    assert!(
        !received(&fake).contains(KEY),
        "the key reached the provider"
    );
    assert!(
        fake.sockets().iter().any(|s| s.path == "/v1/responses"),
        "Codex used its WebSocket"
    );
    let records = wait_for_records(&agent.state_dir(), 1);
    assert!(
        records
            .iter()
            .any(|r| r["decision"] == "block" && r["transport"] == "websocket"),
        "{records:#?}"
    );
}

#[test]
fn codex_card_numbers_arrive_redacted_and_every_call_is_recorded() {
    let ca = TestCa::new();
    let fake = FakeWs::tls(&ca)
        .usage(FakeUsage {
            input_tokens: 400,
            output_tokens: 30,
            ..FakeUsage::default()
        })
        .start();
    // A budget, so that every call is priced (Codex's default model is charged the
    // conservative default rate).
    let policy = default_policy_with_budget("day", 100.0);
    let agent = codex_agent(&ca, &fake, |a| a.policy_file("10-budget.toml", &policy));
    let out = codex_exec(
        &agent.proxy_url(),
        &agent.ca_pem_path(),
        &format!("my card is {CARD}; reply ok"),
        &[],
    );
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(
        out.stdout_text().contains(&fake.reply_text()),
        "{}",
        out.describe()
    );
    let sent = received(&fake);
    assert!(!sent.contains(CARD), "the card reached the provider");
    assert!(sent.contains(REDACTED_CARD), "{sent}");

    let records = audit_records(&agent.state_dir());
    let calls = model_calls(&records);
    assert!(!calls.is_empty(), "{records:#?}");
    for call in &calls {
        assert_eq!(call["transport"], "websocket", "{call:#}");
        assert!(call["input_tokens"].as_u64().is_some(), "{call:#}");
        assert!(call["cost_usd"].as_f64().is_some(), "{call:#}");
    }
    assert!(
        calls.iter().any(|c| c["decision"] == "redact"),
        "{calls:#?}"
    );
    let verify = agent.cli(&["audit", "verify"]);
    assert_eq!(verify.code, Some(0), "{}", verify.describe());
}

#[test]
fn a_budget_stops_the_third_codex_call_over_websocket_naming_the_budget() {
    let ca = TestCa::new();
    // Each Codex call costs 100,000 output tokens of gpt-4o-mini ($0.06) plus a little
    // input; its reservation while it runs is a few tenths of a cent. Two calls fit $0.10,
    // a third's reservation on top of $0.12 spent does not.
    let fake = FakeWs::tls(&ca)
        .usage(FakeUsage {
            input_tokens: 10,
            output_tokens: 100_000,
            ..FakeUsage::default()
        })
        .start();
    let policy = default_policy_with_budget("codex-day", 0.10);
    let agent = codex_agent(&ca, &fake, |a| a.policy_file("10-budget.toml", &policy));
    let run = || {
        codex_exec(
            &agent.proxy_url(),
            &agent.ca_pem_path(),
            "say hello",
            &["model=\"gpt-4o-mini\""],
        )
    };
    for n in 1..=2 {
        let out = run();
        assert_eq!(out.code, Some(0), "call {n}: {}", out.describe());
    }
    let third = run();
    assert_ne!(third.code, Some(0), "{}", third.describe());
    let shown = format!("{}{}", third.stdout_text(), third.stderr);
    assert!(shown.contains("codex-day"), "{}", third.describe());
    assert!(
        fake.http_requests().iter().all(|r| r.method != "POST"),
        "Codex stayed on its WebSocket"
    );
}

#[test]
fn refuse_mode_makes_codex_fall_back_to_https_where_the_call_is_governed() {
    let ca = TestCa::new();
    let fake = FakeWs::tls(&ca).start();
    let agent = codex_agent(&ca, &fake, |a| {
        a.top_level("[websocket]\nmode = \"refuse\"")
    });
    let out = codex_exec(
        &agent.proxy_url(),
        &agent.ca_pem_path(),
        &format!("my card is {CARD}; reply ok"),
        &[],
    );
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(fake.sockets().is_empty(), "no socket reached the provider");
    let posts: Vec<_> = fake
        .http_requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path() == "/v1/responses")
        .collect();
    assert!(!posts.is_empty(), "Codex fell back to HTTPS");
    let sent = received(&fake);
    assert!(
        !sent.contains(CARD) && sent.contains(REDACTED_CARD),
        "{sent}"
    );
    let records = wait_for_records(&agent.state_dir(), 2);
    assert!(
        records
            .iter()
            .any(|r| r["transport"].is_null() && r["api"] == "responses"),
        "{records:#?}"
    );
}

#[test]
fn claude_code_shows_a_block_as_a_refusal_and_gets_cards_redacted() {
    let stack = Stack::start();
    let blocked = claude_print(
        &stack.agent.proxy_url(),
        &stack.agent.ca_pem_path(),
        &format!("deploy with {KEY}"),
    );
    assert_ne!(blocked.code, Some(0), "{}", blocked.describe());
    let shown = format!("{}{}", blocked.stdout_text(), blocked.stderr);
    assert!(shown.contains("no-secrets"), "{}", blocked.describe());
    assert!(
        !shown.contains("Failed to authenticate"),
        "a policy block must not read as a credential problem: {shown}"
    );

    let redacted = claude_print(
        &stack.agent.proxy_url(),
        &stack.agent.ca_pem_path(),
        &format!("my card is {CARD}; reply ok"),
    );
    assert_eq!(redacted.code, Some(0), "{}", redacted.describe());
    let messages = stack.fake.requests_to("/v1/messages");
    assert!(!messages.is_empty());
    for request in stack.fake.requests() {
        let body = String::from_utf8_lossy(&request.body);
        assert!(!body.contains(KEY), "the key reached the provider");
        assert!(!body.contains(CARD), "the card reached the provider");
    }
    assert!(messages
        .iter()
        .any(|r| String::from_utf8_lossy(&r.body).contains(REDACTED_CARD)));

    let records = wait_for_records(&stack.agent.state_dir(), 3);
    let calls = model_calls(&records);
    assert!(
        calls
            .iter()
            .any(|c| c["api"] == "anthropic_messages" && c["output_tokens"].as_u64().is_some()),
        "{records:#?}"
    );
    // The settings Claude Code fetches are forwarded and recorded, never charged.
    for side in records.iter().filter(|r| r["api"] == "no_prompt") {
        assert!(side["cost_usd"].is_null(), "{side:#}");
    }
    let verify = stack.agent.cli(&["audit", "verify"]);
    assert_eq!(verify.code, Some(0), "{}", verify.describe());
}
