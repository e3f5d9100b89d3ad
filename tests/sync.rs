//! The managed layer, end to end: bundles made with `outpost bundle`,
//! served by a real nginx over TLS, pulled, checked and enforced by the
//! agent, and kept when the server misbehaves or goes away.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use support::nginx::Nginx;
use support::records::all_audit_records;
use support::*;

const HOST: &str = "policy.example.test";
const OPENAI_CHAT: &str = "https://api.openai.com/v1/chat/completions";

/// A publisher's workspace: a signing key and a policy directory.
struct Publisher {
    dir: tempfile::TempDir,
    public_key: String,
}

impl Publisher {
    fn new() -> Publisher {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let out = outpost_cli(
            &["bundle", "keygen", "--out", &keys.to_string_lossy()],
            None,
            Duration::from_secs(30),
        );
        assert_eq!(out.code, Some(0), "{}", out.describe());
        let public_key = std::fs::read_to_string(keys.join("bundle.pub"))
            .unwrap()
            .trim()
            .to_string();
        Publisher { dir, public_key }
    }

    /// A bundle of version `version` whose one policy file is `policy`.
    fn build(&self, version: u64, policy: &str, expires_in_secs: Option<u64>) -> Vec<u8> {
        let policy_dir = self.dir.path().join(format!("policy-v{version}"));
        std::fs::create_dir_all(&policy_dir).unwrap();
        std::fs::write(policy_dir.join("10-managed.toml"), policy).unwrap();
        let out_file = self.dir.path().join(format!("bundle-v{version}.json"));
        let mut args: Vec<String> = [
            "bundle",
            "build",
            "--policy",
            &policy_dir.to_string_lossy(),
            "--key",
            &self.dir.path().join("keys/bundle.key").to_string_lossy(),
            "--version",
            &version.to_string(),
            "--out",
            &out_file.to_string_lossy(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(secs) = expires_in_secs {
            args.extend(["--expires-in-secs".to_string(), secs.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = outpost_cli(&args, None, Duration::from_secs(30));
        assert_eq!(out.code, Some(0), "{}", out.describe());
        std::fs::read(out_file).unwrap()
    }
}

fn deny(model: &str) -> String {
    format!("[models]\ndeny = [\"{model}\"]\nmessage = \"Not this model (managed).\"\n")
}

fn agent(fake: &FakeProvider, ca: &TestCa, nginx: &Nginx, key: &str, state: &Path) -> Agent {
    Agent::builder()
        .fake_upstream(fake)
        .resolve(HOST, nginx.addr())
        .state_dir(state)
        .section(
            "sync",
            &[
                &format!("url = \"https://{HOST}/bundle.json\""),
                &format!("public_keys = [\"{key}\"]"),
                "interval_secs = 1",
                "timeout_secs = 5",
                &format!("ca_file = {:?}", ca.pem_path().to_string_lossy()),
            ],
        )
        .start()
}

fn managed(agent: &Agent) -> Value {
    let status = Curl::new(&format!("http://{}/status", agent.admin_addr())).run();
    status.json()["managed"].clone()
}

fn wait_for(agent: &Agent, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    wait_until(what, WAIT_LIMIT, || {
        last = managed(agent);
        done(&last)
    });
    last
}

/// The status of a chat call with `model` through the agent.
fn call(agent: &Agent, model: &str) -> CurlOutput {
    Curl::new(OPENAI_CHAT)
        .via(agent)
        .cacert(&agent.ca_pem_path())
        .post_json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
        .run()
}

fn sync_records(state: &Path) -> Vec<Value> {
    all_audit_records(state)
        .into_iter()
        .filter(|r| r["kind"] == "sync")
        .collect()
}

#[test]
fn bundles_from_nginx_are_enforced_checked_and_kept() {
    let ca = TestCa::new();
    let fake = FakeProvider::tls(&ca).start();
    let mut nginx = Nginx::start(&ca, HOST);
    let publisher = Publisher::new();
    let state_holder = tempfile::tempdir().unwrap();
    let state: PathBuf = state_holder.path().join("state");

    let first = agent(&fake, &ca, &nginx, &publisher.public_key, &state);
    // Never synced: baseline and local files, and it says so.
    let never = wait_for(&first, "a first failed poll", |m| {
        m["failures"].as_u64() >= Some(1)
    });
    assert!(never["version"].is_null(), "{never:#}");
    assert!(
        never["state"]
            .as_str()
            .unwrap_or_default()
            .starts_with("never synced"),
        "{never:#}"
    );
    assert!(
        never["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("404"),
        "{never:#}"
    );
    assert_eq!(call(&first, "o1-mini").status, 200);

    // v1 is enforced within an interval or two.
    nginx.publish("bundle.json", &publisher.build(1, &deny("o1*"), None));
    wait_for(&first, "v1 in force", |m| m["version"] == 1);
    let refused = call(&first, "o1-mini");
    assert_eq!(refused.status, 400, "{}", refused.describe());
    assert!(
        refused.text().contains("Not this model (managed)."),
        "{}",
        refused.describe()
    );

    // v2 replaces it. (Its size differs from v1's: nginx's ETag is the
    // file's mtime in seconds and its size, and v1 was published within
    // the same second.)
    let v2 = publisher.build(2, &deny("o3-mini*"), None);
    nginx.publish("bundle.json", &v2);
    let status = wait_for(&first, "v2 in force", |m| m["version"] == 2);
    assert_eq!(
        status["key_id"].as_str().map(str::len),
        Some(16),
        "{status:#}"
    );
    assert!(status["age_secs"].as_i64().is_some(), "{status:#}");
    assert_eq!(call(&first, "o1-mini").status, 200);
    assert_eq!(call(&first, "o3-mini").status, 400);
    let shown = first.cli(&["policy", "show", "--json"]);
    let shown: Value = serde_json::from_str(&shown.stdout_text()).expect("policy show JSON");
    let rule = shown["rules"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["id"] == "o3-mini*"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(rule["layer"], "managed v2", "{shown:#}");
    assert!(rule["at"]
        .as_str()
        .unwrap_or_default()
        .starts_with("managed v2/10-managed.toml:2:"));

    // Unchanged on the server: the next poll is a 304.
    wait_until("a 304 from nginx", WAIT_LIMIT, || {
        nginx.statuses("/bundle.json").contains(&304)
    });

    // An old bundle served again is a rollback: refused, v2 stays.
    nginx.publish("bundle.json", &publisher.build(1, &deny("o1*"), None));
    let refused = wait_for(&first, "the rollback refused", |m| {
        m["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("rollback"))
    });
    assert_eq!(refused["version"], 2, "{refused:#}");
    assert_eq!(refused["last_result"], "refused");

    // One flipped byte in the signed payload: refused.
    let mut flipped = publisher.build(3, &deny("gpt-4o"), None);
    let text = String::from_utf8(flipped.clone()).unwrap();
    let at = text.find("\"payload\": \"").unwrap() + 30;
    flipped[at] = if flipped[at] == b'A' { b'B' } else { b'A' };
    nginx.publish("bundle.json", &flipped);
    let refused = wait_for(&first, "the flipped byte refused", |m| {
        m["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("bad signature") || e.contains("not a valid bundle"))
    });
    assert_eq!(refused["version"], 2, "{refused:#}");
    assert_eq!(call(&first, "gpt-4o").status, 200);

    // A bundle that has expired by the time it is fetched: refused.
    let expiring = publisher.build(4, &deny("gpt-4o"), Some(1));
    std::thread::sleep(Duration::from_millis(2100));
    nginx.publish("bundle.json", &expiring);
    let refused = wait_for(&first, "the expired bundle refused", |m| {
        m["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("expired"))
    });
    assert_eq!(refused["version"], 2, "{refused:#}");

    // Every failure is on the audit record, with its reason.
    let records = sync_records(&state);
    let errors: Vec<&str> = records
        .iter()
        .filter(|r| r["decision"] == "error")
        .filter_map(|r| r["error"].as_str())
        .collect();
    for reason in ["404", "rollback", "expired"] {
        assert!(
            errors.iter().any(|e| e.contains(reason)),
            "{reason}: {errors:?}"
        );
    }
    let applied: Vec<&Value> = records
        .iter()
        .filter(|r| r["decision"] == "allow")
        .collect();
    assert_eq!(applied.len(), 2, "{records:#?}");
    assert_eq!(applied[1]["policy_version"], "managed v2");
    assert_eq!(applied[1]["host"], HOST);

    // With the server gone, a restarted agent still enforces v2.
    nginx.stop();
    drop(first);
    let second = agent(&fake, &ca, &nginx, &publisher.public_key, &state);
    let status = wait_for(&second, "a failed poll after restart", |m| {
        m["failures"].as_u64() >= Some(1)
    });
    assert_eq!(status["version"], 2, "{status:#}");
    assert!(
        status["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot reach"),
        "{status:#}"
    );
    assert_eq!(call(&second, "o3-mini").status, 400);
    assert_eq!(call(&second, "o1-mini").status, 200);

    // A stored bundle changed on disk is not enforced, and status says why.
    drop(second);
    let stored = state.join("managed/bundle.json");
    let mut bytes = std::fs::read(&stored).unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    let at = text.find("\"payload\": \"").unwrap() + 30;
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    std::fs::write(&stored, bytes).unwrap();
    let third = agent(&fake, &ca, &nginx, &publisher.public_key, &state);
    let status = managed(&third);
    assert!(status["version"].is_null(), "{status:#}");
    assert!(
        status["stored_error"]
            .as_str()
            .unwrap_or_default()
            .contains("not usable"),
        "{status:#}"
    );
    assert_eq!(call(&third, "o3-mini").status, 200);
}

#[test]
fn a_bundle_is_built_only_from_a_valid_policy_and_a_local_file_cannot_undo_it() {
    let publisher = Publisher::new();
    // `bundle build` checks the policy it packs.
    let bad = publisher.dir.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("10-bad.toml"), "[models]\ndeny = [\"\"]\n").unwrap();
    let out = outpost_cli(
        &[
            "bundle",
            "build",
            "--policy",
            &bad.to_string_lossy(),
            "--key",
            &publisher
                .dir
                .path()
                .join("keys/bundle.key")
                .to_string_lossy(),
            "--version",
            "1",
            "--out",
            &publisher.dir.path().join("never.json").to_string_lossy(),
        ],
        None,
        Duration::from_secs(30),
    );
    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(
        out.stdout_text().contains("10-bad.toml:2:"),
        "{}",
        out.describe()
    );
    assert!(!publisher.dir.path().join("never.json").exists());

    // A managed bundle that locks the baseline, and a local file trying to
    // turn it off and re-allow a managed deny.
    let ca = TestCa::new();
    let fake = FakeProvider::tls(&ca).start();
    let nginx = Nginx::start(&ca, HOST);
    let managed_policy = format!("lock_baseline = true\n{}", deny("o1*"));
    nginx.publish(
        "bundle.json",
        &publisher.build(5, &managed_policy, Some(3600)),
    );
    let state_holder = tempfile::tempdir().unwrap();
    let agent = agent(
        &fake,
        &ca,
        &nginx,
        &publisher.public_key,
        &state_holder.path().join("s"),
    );
    wait_for(&agent, "v5 in force", |m| m["version"] == 5);
    std::fs::write(
        agent.policy_dir().join("90-mine.toml"),
        "baseline = false\n[models]\nallow = [\"o1-mini\"]\n",
    )
    .unwrap();
    wait_until("the local file refused", WAIT_LIMIT, || {
        let status = Curl::new(&format!("http://{}/status", agent.admin_addr())).run();
        status.json()["policy"]["errors"]
            .as_array()
            .is_some_and(|e| {
                e.iter().any(|e| {
                    e.as_str()
                        .unwrap_or_default()
                        .contains("locks the baseline")
                })
            })
    });
    assert_eq!(call(&agent, "o1-mini").status, 400);
    let secret = call(&agent, "gpt-4o");
    assert_eq!(secret.status, 200, "{}", secret.describe());
}
