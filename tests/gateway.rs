//! The gateway route: calls policy routes `"gateway"` reach the company's
//! AI gateway with the device credential from `outpost login`, after the
//! same guardrails and audit as direct calls, streaming alike.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use support::python::{ANTHROPIC_TEST_KEY, OPENAI_TEST_KEY};
use support::records::audit_records;
use support::*;

const DEVICE_KEY: &str = "sk-device-gateway-7f3a";
const CARD: &str = "4111 1111 1111 1111";

fn sdk(agent: &Agent, spec: Value) -> Value {
    PythonScript::new("policy_call.py")
        .arg(&spec.to_string())
        .through(agent)
        .run_json()
}

/// `outpost login --gateway-key` with `key` on stdin.
fn login(agent: &Agent, key: &str) -> String {
    let mut child = Command::new(support::agent::OUTPOST_BIN)
        .args(["login", "--gateway-key", "--config"])
        .arg(agent.config_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run outpost login");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{key}\n").as_bytes())
        .expect("write key");
    let out = child.wait_with_output().expect("outpost login");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn gateway_section(addr: &str, extra: &[&str]) -> Vec<String> {
    let mut lines = vec![
        format!("url = \"http://{addr}\""),
        "[gateway.prefixes]".to_string(),
        "openai = \"\"".to_string(),
        "anthropic = \"/anthropic\"".to_string(),
    ];
    for line in extra {
        lines.insert(1, line.to_string());
    }
    lines
}

#[test]
fn routed_calls_reach_the_gateway_with_the_device_credential_only() {
    let ca = TestCa::new();
    let provider = FakeProvider::tls(&ca).start();
    let gateway = FakeProvider::plain_http(&["gateway.local"])
        .stream_delay(Duration::ZERO)
        .start();
    let section = gateway_section(&gateway.addr().to_string(), &[]);
    let section: Vec<&str> = section.iter().map(String::as_str).collect();
    let agent = Agent::builder()
        .fake_upstream(&provider)
        .policy_file("20-route.toml", "[routes]\nopenai = \"gateway\"\n")
        .section("gateway", &section)
        .start();

    // Without a credential the call is refused, naming the remedy.
    let refused = sdk(
        &agent,
        json!({"sdk": "openai", "stream": false, "model": "gpt-4o-mini", "content": "hi"}),
    );
    assert_eq!(refused["ok"], false, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or_default()
            .contains("outpost login --gateway-key"),
        "{refused}"
    );

    let stored = login(&agent, DEVICE_KEY);
    let file = agent.state_dir().join("gateway/gateway.key");
    assert!(stored.contains(&file.display().to_string()), "{stored}");
    let config = std::fs::read_to_string(agent.config_path()).unwrap();
    assert!(!config.contains(DEVICE_KEY));

    // The agent picks the login up within seconds; then a plain and a
    // streamed call go through the gateway, redacted as direct calls are.
    let plain = json!({"sdk": "openai", "stream": false, "model": "gpt-4o-mini",
                       "content": format!("charge {CARD} please")});
    let mut result = Value::Null;
    wait_until("the gateway credential", WAIT_LIMIT, || {
        result = sdk(&agent, plain.clone());
        result["ok"] == true
    });
    let streamed = sdk(
        &agent,
        json!({"sdk": "openai", "stream": true, "model": "gpt-4o-mini", "content": "stream it"}),
    );
    assert_eq!(streamed["ok"], true, "{streamed}");
    assert!(streamed["chunks"].as_u64() > Some(1), "{streamed}");

    let seen = gateway.requests_to("/v1/chat/completions");
    assert!(seen.len() >= 2, "{} requests", seen.len());
    for request in &seen {
        let auth = request.header("authorization").unwrap_or_default();
        assert_eq!(auth, format!("Bearer {DEVICE_KEY}"));
        assert!(!String::from_utf8_lossy(&request.body).contains("4111"));
        let raw = format!("{:?}", request.headers);
        assert!(
            !raw.contains(OPENAI_TEST_KEY),
            "provider key forwarded: {raw}"
        );
    }
    let first: Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(
        first["messages"][0]["content"],
        "charge [REDACTED:card-numbers] please"
    );
    assert!(provider.requests_to("/v1/chat/completions").is_empty());

    // Anthropic is not routed: it goes direct, with its own key.
    let direct = sdk(
        &agent,
        json!({"sdk": "anthropic", "stream": false, "model": "claude-sonnet-4-5", "content": "hi"}),
    );
    assert_eq!(direct["ok"], true, "{direct}");
    let to_provider = provider.requests_to("/v1/messages");
    assert_eq!(to_provider.len(), 1);
    // anthropic < 2 sends `x-api-key`; 2.x sends the key as `Authorization: Bearer`.
    let seen = &to_provider[0];
    assert!(
        seen.header("x-api-key") == Some(ANTHROPIC_TEST_KEY)
            || seen.header("authorization")
                == Some(format!("Bearer {ANTHROPIC_TEST_KEY}").as_str()),
        "{:?}",
        seen.headers
    );

    let records = audit_records(&agent.state_dir());
    let routes: Vec<(&str, &str)> = records
        .iter()
        .filter(|r| r["status"] == 200)
        .map(|r| {
            (
                r["provider"].as_str().unwrap_or_default(),
                r["route"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert!(routes.contains(&("openai", "gateway")), "{routes:?}");
    assert!(routes.contains(&("anthropic", "direct")), "{routes:?}");

    // Logged out: refused again, no call leaves.
    let out = agent.cli(&["logout"]);
    assert!(out.stdout_text().contains("removed"), "{}", out.describe());
    assert!(!file.exists());
    let hi = json!({"sdk": "openai", "stream": false, "model": "gpt-4o-mini", "content": "hi"});
    wait_until("the logout", WAIT_LIMIT, || {
        sdk(&agent, hi.clone())["ok"] == false
    });
    let before = gateway.requests().len();
    let refused = sdk(&agent, hi);
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or_default()
            .contains("no gateway credential"),
        "{refused}"
    );
    assert_eq!(gateway.requests().len(), before);
}

#[test]
fn an_unreachable_gateway_is_named_or_falls_back_as_configured() {
    let ca = TestCa::new();
    let provider = FakeProvider::tls(&ca).start();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    let start = |extra: &[&str]| {
        let section = gateway_section(&dead_addr, extra);
        let section: Vec<&str> = section.iter().map(String::as_str).collect();
        let agent = Agent::builder()
            .fake_upstream(&provider)
            .policy_file("20-route.toml", "[routes]\n\"*\" = \"gateway\"\n")
            .section("gateway", &section)
            .start();
        login(&agent, DEVICE_KEY);
        agent
    };
    let call = json!({"sdk": "openai", "stream": false, "model": "gpt-4o-mini", "content": "hi"});

    // The agent reads the credential `outpost login` stored within seconds.
    let after_login = |agent: &Agent| {
        let mut result = Value::Null;
        wait_until("the gateway credential", WAIT_LIMIT, || {
            result = sdk(agent, call.clone());
            !result["message"]
                .as_str()
                .unwrap_or_default()
                .contains("no gateway credential")
        });
        result
    };
    let refusing = start(&[]);
    let result = after_login(&refusing);
    assert_eq!(result["ok"], false, "{result}");
    let message = result["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("the AI gateway {dead_addr}")),
        "{result}"
    );
    assert!(provider.requests().is_empty());

    let falling_back = start(&["fallback = \"direct\""]);
    let result = after_login(&falling_back);
    assert_eq!(result["ok"], true, "{result}");
    let seen = provider.requests_to("/v1/chat/completions");
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {OPENAI_TEST_KEY}").as_str())
    );
    let records = audit_records(&falling_back.state_dir());
    let answered: Vec<&Value> = records.iter().filter(|r| r["status"] == 200).collect();
    assert_eq!(answered.len(), 1, "{records:#?}");
    assert_eq!(
        answered[0]["route"], "direct (gateway unreachable)",
        "{:#}",
        answered[0]
    );
}

#[test]
fn the_litellm_proxy_as_gateway_gets_the_device_key_and_redacted_prompts() {
    const MASTER: &str = "sk-litellm-master-device";
    const UPSTREAM_KEY: &str = "sk-litellm-to-provider";
    let provider = FakeProvider::plain_http(&["upstream.local"])
        .stream_delay(Duration::ZERO)
        .start();
    let litellm = support::litellm::LiteLlm::start(
        "gpt-4o-mini",
        &format!("http://{}", provider.addr()),
        UPSTREAM_KEY,
        MASTER,
    );
    let section = gateway_section(&litellm.addr(), &["provider_keys = \"strip\""]);
    let section: Vec<&str> = section.iter().map(String::as_str).collect();
    let agent = Agent::builder()
        .policy_file("20-route.toml", "[routes]\nopenai = \"gateway\"\n")
        .section("gateway", &section)
        .start();
    login(&agent, MASTER);

    let call = json!({"sdk": "openai", "stream": false, "model": "gpt-4o-mini",
                      "content": format!("refund card {CARD}")});
    let mut result = Value::Null;
    wait_until("a call through LiteLLM", Duration::from_secs(60), || {
        result = sdk(&agent, call.clone());
        result["ok"] == true
    });
    let streamed = sdk(
        &agent,
        json!({"sdk": "openai", "stream": true, "model": "gpt-4o-mini", "content": "stream"}),
    );
    assert_eq!(streamed["ok"], true, "{streamed}\n{}", litellm.log());

    // LiteLLM took the device credential (its master key; anything else is
    // a 401) and called the provider with its own key, never the client's.
    let seen = provider.requests_to("/v1/chat/completions");
    assert!(seen.len() >= 2, "{}", litellm.log());
    for request in &seen {
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {UPSTREAM_KEY}").as_str())
        );
        let raw = format!(
            "{:?} {}",
            request.headers,
            String::from_utf8_lossy(&request.body)
        );
        assert!(!raw.contains(OPENAI_TEST_KEY), "{raw}");
        assert!(!raw.contains(MASTER), "{raw}");
    }
    // The guardrails redacted before the gateway saw it.
    let first: Value = serde_json::from_slice(&seen[0].body).unwrap();
    let content = first["messages"][0]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(content, "refund card [REDACTED:card-numbers]");
    let records = audit_records(&agent.state_dir());
    let answered: Vec<&Value> = records.iter().filter(|r| r["status"] == 200).collect();
    assert!(answered.len() >= 2, "{records:#?}");
    assert!(
        answered.iter().all(|r| r["route"] == "gateway"),
        "{answered:#?}"
    );
}
