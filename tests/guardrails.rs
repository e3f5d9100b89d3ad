//! Secret and PII guardrails through the proxy, against the rule sets
//! security teams already keep: a gitleaks-format rule file named by a
//! policy's `[[secret_sources]]` is enforced as it is, what Outpost's engine
//! cannot use is reported at its place while the rest loads, and the benign
//! corpus of `tests/corpus/benign/` goes through the shipped default policy
//! untouched.

mod support;

use serde_json::{json, Value};
use support::*;

const OPENAI_CHAT: &str = "https://api.openai.com/v1/chat/completions";

/// A gitleaks config written for this test: one rule Outpost runs, one
/// whose regex only Go's engine accepts, one path-only rule, and a global
/// allowlist.
const GITLEAKS: &str = r#"title = "acme"

[extend]
useDefault = true

[[rules]]
id = "acme-deploy-key"
description = "ACME deploy key"
regex = '''\b(acmd_[A-Za-z0-9]{30})\b'''
secretGroup = 1
entropy = 3.5
keywords = ["acmd_"]

[[rules]]
id = "acme-go-only"
regex = '''acme_\Q.\E[0-9]{4}'''
keywords = ["acme_"]

[[rules]]
id = "acme-keystore"
path = '''(?i)\.jks$'''

[allowlist]
description = "ACME's published test key"
stopwords = ["acmdtest"]
"#;

/// The policy file's own guardrail (a policy file replaces the embedded
/// default).
fn chat(content: &str) -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]})
}

#[test]
fn a_gitleaks_rule_file_is_enforced_and_what_cannot_load_is_reported() {
    let rules_dir = tempfile::tempdir().unwrap();
    let rules = rules_dir.path().join("gitleaks.toml");
    std::fs::write(&rules, GITLEAKS).unwrap();
    let stack = Stack::start_with(
        |fake| fake,
        |agent| {
            agent.policy_file(
                "20-gitleaks.toml",
                // The baseline's `no-secrets` guardrail enforces the file's rules.
                &format!(
                    "[[secret_sources]]\ngitleaks = {:?}\n",
                    rules.display().to_string()
                ),
            )
        },
    );
    let send = |content: &str| {
        Curl::new(OPENAI_CHAT)
            .via(&stack.agent)
            .cacert(&stack.agent.ca_pem_path())
            .post_json(&chat(content))
            .run()
    };

    let key = "acmd_Q7fK2pX9vR4mT8wL3nB6yH1cJ5dG0s";
    let blocked = send(&format!("deploy with {key} please"));
    assert_eq!(blocked.status, 400, "{}", blocked.describe());
    assert_eq!(blocked.header("x-outpost-rule"), Some("no-secrets"));
    let message = blocked.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("gitleaks:acme-deploy-key"), "{message}");
    assert!(!message.contains(key), "{message}");

    // The file's allowlist, and the shipped default's rules, still apply.
    let allowed = send("the docs use acmd_acmdtestQ7fK2pX9vR4mT8wL3nB6yH1");
    assert_eq!(allowed.status, 200, "{}", allowed.describe());
    let github = send(concat!("and gh", "p_R7d9Kq2LmX4vB8nT1wZ6yH3cF5jP0sAeUiOg"));
    assert_eq!(github.status, 400, "{}", github.describe());
    assert_eq!(
        stack.fake.requests().len(),
        1,
        "only the allowed call reached the provider"
    );

    // The rules that cannot load are named, at their place, in status.
    let status = Curl::new(&format!("http://{}/status", stack.agent.admin_addr())).run();
    let notes: Vec<String> = status.json()["policy"]["notes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect();
    let file = rules.display().to_string();
    assert_eq!(notes.len(), 2, "{notes:#?}");
    assert!(
        notes[0].starts_with(&format!("{file}:16:9: gitleaks: rule `acme-go-only`")),
        "{notes:#?}"
    );
    assert!(notes[0].contains("does not compile"), "{notes:#?}");
    assert!(
        notes[1].contains("`acme-keystore` has no regex"),
        "{notes:#?}"
    );
    assert!(
        stack.agent.log().contains("acme-go-only"),
        "the note is logged"
    );
}

#[test]
fn a_gitleaks_file_that_cannot_be_read_is_an_error_of_the_policy_naming_it() {
    let stack = Stack::start_with(
        |fake| fake,
        |agent| {
            agent.policy_file(
                "20-gitleaks.toml",
                "[[secret_sources]]\ngitleaks = \"missing.toml\"\n",
            )
        },
    );
    // Invalid at start-up: the embedded default is in force, and says why.
    let status = Curl::new(&format!("http://{}/status", stack.agent.admin_addr())).run();
    let log = stack.agent.log();
    assert!(
        log.contains("20-gitleaks.toml:2:12: [[secret_sources]] gitleaks:"),
        "{log}"
    );
    assert!(log.contains("missing.toml"), "{log}");
    assert_eq!(status.status, 200);
    let blocked = Curl::new(OPENAI_CHAT)
        .via(&stack.agent)
        .cacert(&stack.agent.ca_pem_path())
        .post_json(&chat(concat!(
            "gh",
            "p_R7d9Kq2LmX4vB8nT1wZ6yH3cF5jP0sAeUiOg"
        )))
        .run();
    assert_eq!(
        blocked.status,
        400,
        "the default still blocks: {}",
        blocked.describe()
    );
}

#[test]
fn the_benign_corpus_passes_the_default_policy_untouched() {
    let stack = Stack::start();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/benign");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    assert!(names.len() >= 8);
    for path in &names {
        let text = std::fs::read_to_string(path).unwrap();
        let out = Curl::new(OPENAI_CHAT)
            .via(&stack.agent)
            .cacert(&stack.agent.ca_pem_path())
            .post_json(&chat(&text))
            .run();
        assert_eq!(out.status, 200, "{}: {}", path.display(), out.describe());
        assert_eq!(out.header("x-outpost-rule"), None, "{}", path.display());
    }
    let requests = stack.fake.requests();
    assert_eq!(requests.len(), names.len());
    for (path, seen) in names.iter().zip(&requests) {
        let sent = seen.body_json()["messages"][0]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert_eq!(
            sent,
            std::fs::read_to_string(path).unwrap(),
            "{} was changed",
            path.display()
        );
    }
}

/// The first example of each shipped rule `ids` names, from
/// `policy/secrets.toml`.
fn shipped_examples(ids: &[&str]) -> Vec<(String, String)> {
    let file: toml::Value = toml::from_str(include_str!("../policy/secrets.toml")).unwrap();
    let rules = file["rules"].as_array().unwrap();
    ids.iter()
        .map(|id| {
            let rule = rules
                .iter()
                .find(|r| r["id"].as_str() == Some(id))
                .unwrap_or_else(|| panic!("no shipped rule `{id}`"));
            let example = rule["examples"][0].as_str().unwrap().to_string();
            (id.to_string(), example)
        })
        .collect()
}

#[test]
fn the_official_sdks_show_a_block_naming_the_rule_for_ten_secret_families() {
    let stack = Stack::start();
    let families = shipped_examples(&[
        "gitlab-pat",
        "huggingface-access-token",
        "npm-access-token",
        "pypi-upload-token",
        "databricks-api-token",
        "hashicorp-tf-api-token",
        "shopify-access-token",
        "twilio-api-key",
        "1password-secret-key",
        "digitalocean-pat",
    ]);
    for (n, (id, example)) in families.iter().enumerate() {
        let (sdk, model) = if n % 2 == 0 {
            ("openai", "gpt-4o-mini")
        } else {
            ("anthropic", "claude-sonnet-4-5")
        };
        let spec = json!({"sdk": sdk, "stream": n % 3 == 0, "model": model, "content": example});
        let result = PythonScript::new("policy_call.py")
            .arg(&spec.to_string())
            .through(&stack.agent)
            .run_json();
        assert_eq!(result["ok"], false, "{id} via {sdk}: {result}");
        assert_eq!(
            result["error_class"], "BadRequestError",
            "{id} via {sdk}: {result}"
        );
        let message = result["message"].as_str().unwrap_or_default();
        assert!(message.contains("no-secrets"), "{id} via {sdk}: {message}");
        assert!(message.contains(id.as_str()), "{id} via {sdk}: {message}");
    }
    assert!(
        stack.fake.requests().is_empty(),
        "a secret reached the provider"
    );
}

fn chat_chunk(text: &str) -> String {
    let chunk = json!({"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1,
        "model": "gpt-4o", "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]});
    format!("data: {chunk}\n\n")
}

#[test]
fn a_new_family_secret_split_across_stream_events_is_redacted() {
    use std::time::Duration;
    // A Hugging Face token (hf_ + 34 letters), cut into three events.
    const TOKEN: &str = concat!("hf", "_QwErTyUiOpAsDfGhJkLzXcVbNmQwErTyUi");
    let stack = Stack::start_with(
        |fake| {
            fake.route("POST", "/v1/chat/completions", |_| {
                let (a, rest) = TOKEN.split_at(5);
                let (b, c) = rest.split_at(15);
                fake::FakeResponse::sse(vec![
                    (Duration::ZERO, chat_chunk("Use ")),
                    (Duration::from_millis(30), chat_chunk(a)),
                    (Duration::from_millis(30), chat_chunk(b)),
                    (Duration::from_millis(30), chat_chunk(c)),
                    (Duration::from_millis(30), chat_chunk(" to download.")),
                    (Duration::ZERO, "data: [DONE]\n\n".to_string()),
                ])
            })
        },
        |agent| agent,
    );
    let spec =
        json!({"sdk": "openai", "stream": true, "model": "gpt-4o", "content": "which token?"});
    let result = PythonScript::new("policy_call.py")
        .arg(&spec.to_string())
        .through(&stack.agent)
        .run_json();
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(
        result["text"], "Use [REDACTED:secrets-in-output] to download.",
        "{result}"
    );
}
