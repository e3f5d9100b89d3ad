//! `outpost audit verify | tail | export` against day files the real writer
//! made.
//!
//! Each test writes a config with the agent builder, opens the audit log of
//! that config's state dir in-process (the library's writer, with a clock
//! the test moves so the records span two UTC days), writes a few records,
//! shuts the writer down, and then runs the `outpost` binary on the same
//! config, as an operator would.

mod support;

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use outpost::audit::record::{AuditEvent, Decision, Kind, RuleCount};
use outpost::audit::writer::start_with_clock;
use outpost::clock::{rfc3339_micros, ManualClock};
use outpost::config::KeyStoreChoice;
use support::*;

const DAY1: &str = "2026-11-24";
const DAY2: &str = "2026-11-25";

/// A config file plus an audit log written into its state dir.
struct Logged {
    _dir: tempfile::TempDir,
    config: PathBuf,
    audit_dir: PathBuf,
}

impl Logged {
    fn cli(&self, args: &[&str]) -> support::process::CmdOutput {
        outpost_cli(args, Some(&self.config), std::time::Duration::from_secs(30))
    }

    fn day_file(&self, day: &str) -> PathBuf {
        self.audit_dir.join(format!("{day}.jsonl"))
    }
}

fn at(day: i8, hour: i8) -> Timestamp {
    jiff::civil::date(2026, 11, day)
        .at(hour, 0, 0, 0)
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .expect("a UTC time")
        .timestamp()
}

fn event(i: usize, ts: Timestamp) -> AuditEvent {
    let blocked = i % 3 == 2;
    AuditEvent {
        kind: Kind::Request,
        ts: rfc3339_micros(ts),
        device: "laptop-7".into(),
        user: "alice".into(),
        provider: Some(
            if i.is_multiple_of(2) {
                "openai"
            } else {
                "anthropic"
            }
            .into(),
        ),
        host: Some("api.openai.com".into()),
        method: Some("POST".into()),
        path: Some("/v1/chat/completions".into()),
        api: Some("chat_completions".into()),
        model: Some(format!("model-{i}")),
        stream: i % 2 == 1,
        decision: if blocked {
            Decision::Block
        } else {
            Decision::Allow
        },
        rules: if blocked {
            vec![RuleCount {
                id: "no-secrets".into(),
                action: "block".into(),
                count: 2,
            }]
        } else {
            Vec::new()
        },
        status: if blocked { 403 } else { 200 },
        input_tokens: Some(100 + i as u64),
        output_tokens: Some(20),
        cost_usd: None,
        estimated: false,
        latency_ms: 40 + i as u64,
        upstream_ms: Some(30),
        bytes_in: 512,
        bytes_out: 1024,
        request_sha256: None,
        error: blocked.then(|| format!("blocked by \"no-secrets\", request {i}")),
        policy_version: Some("v1".into()),
        content: None,
        uninspected: None,
        batch: None,
        transport: None,
        route: None,
    }
}

/// Six requests on DAY1 and five on DAY2, checkpoints every 4 records.
fn logged() -> Logged {
    let builder = Agent::builder().audit_setting("checkpoint_every = 4");
    let (dir, config_path) = builder.write_config();
    let config = outpost::config::load(Some(&config_path)).expect("load config");
    let now = ManualClock::new(at(24, 10));
    block_on(async {
        let (log, writer) = start_with_clock(
            &config.state_dir,
            &config.audit,
            KeyStoreChoice::File,
            now.clock(),
        )
        .await
        .expect("start audit writer");
        for i in 0..11 {
            let ts = if i < 6 {
                at(24, 10 + i as i8)
            } else {
                at(25, i as i8)
            };
            now.set(ts);
            let permit = log.try_reserve().expect("queue slot");
            permit.submit(event(i, ts)).await.expect("record written");
        }
        writer.shutdown().await;
    });
    let audit_dir = config.state_dir.join("audit");
    Logged {
        _dir: dir,
        config: config_path,
        audit_dir,
    }
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read day file")
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn verify_passes_on_an_untouched_log() {
    let log = logged();
    // 11 requests, a checkpoint after every 4th, and one at shutdown:
    // day 1 is seq 1..=7 (a checkpoint at 5), day 2 seq 8..=14 (at 10, 14).
    assert_eq!(lines_of(&log.day_file(DAY1)).len(), 7);
    assert_eq!(lines_of(&log.day_file(DAY2)).len(), 7);
    let out = log.cli(&["audit", "verify"]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let text = out.stdout_text();
    assert!(text.contains("14 records"), "{text}");
    assert!(text.contains("2 files"), "{text}");
    assert!(text.contains("11 requests, 3 checkpoints"), "{text}");

    let out = log.cli(&["audit", "verify", "--from", DAY2, "--to", DAY2]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(
        out.stdout_text().contains("enters the range at seq 8"),
        "{}",
        out.describe()
    );
}

#[test]
fn verify_names_the_record_with_a_flipped_byte() {
    let log = logged();
    let path = log.day_file(DAY2);
    // Line 2 of day 2 is seq 9 (`model-7`); change one byte of it.
    let text = std::fs::read_to_string(&path).expect("read");
    let flipped = text.replacen("\"model-7\"", "\"model-6\"", 1);
    assert_ne!(flipped, text);
    std::fs::write(&path, flipped).expect("write");

    let out = log.cli(&["audit", "verify"]);
    assert_eq!(out.code, Some(1), "{}", out.describe());
    let all = format!("{}{}", out.stdout_text(), out.stderr);
    let place = format!("{}:2", path.display());
    assert!(
        all.contains(&place),
        "{place} not named:\n{}",
        out.describe()
    );
    assert!(all.contains("seq 9"), "{}", out.describe());
}

#[test]
fn verify_detects_a_deleted_line() {
    let log = logged();
    let path = log.day_file(DAY1);
    let mut lines = lines_of(&path);
    lines.remove(1);
    std::fs::write(&path, lines.join("\n") + "\n").expect("write");
    let out = log.cli(&["audit", "verify"]);
    assert_eq!(out.code, Some(1), "{}", out.describe());
    let all = format!("{}{}", out.stdout_text(), out.stderr);
    assert!(
        all.contains(&format!("{}:2", path.display())),
        "{}",
        out.describe()
    );
    assert!(
        all.contains("seq 3") && all.contains("missing"),
        "{}",
        out.describe()
    );
}

#[test]
fn verify_without_records_is_ok_and_bad_days_are_usage_errors() {
    let (_dir, config) = Agent::builder().write_config();
    let out = outpost_cli(
        &["audit", "verify"],
        Some(&config),
        std::time::Duration::from_secs(30),
    );
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(
        out.stdout_text().contains("no audit records"),
        "{}",
        out.describe()
    );
    let out = outpost_cli(
        &["audit", "verify", "--from", "24/11/2026"],
        Some(&config),
        std::time::Duration::from_secs(30),
    );
    assert_eq!(out.code, Some(2), "{}", out.describe());
    assert!(out.stderr.contains("YYYY-MM-DD"), "{}", out.describe());
}

#[test]
fn tail_prints_the_last_records_readably() {
    let log = logged();
    let out = log.cli(&["audit", "tail", "-n", "3"]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let text = out.stdout_text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    // seq 12 = request 9, seq 13 = request 10, seq 14 = the shutdown checkpoint.
    assert!(
        lines[0].starts_with("2026-11-25T09:00:00.000000Z  #12  alice"),
        "{text}"
    );
    for part in [
        "anthropic/model-9",
        "allow",
        "200",
        "tokens 109/20",
        "49 ms",
    ] {
        assert!(lines[0].contains(part), "{part} missing: {text}");
    }
    assert!(
        lines[1].contains("#13") && lines[1].contains("openai/model-10"),
        "{text}"
    );
    assert!(
        lines[2].contains("#14") && lines[2].contains("checkpoint"),
        "{text}"
    );

    // More than the newest file holds: reaches back into the day before.
    let out = log.cli(&["audit", "tail", "-n", "8"]);
    let text = out.stdout_text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 8, "{text}");
    assert!(
        lines[0].contains("#7") && lines[0].contains("block"),
        "{text}"
    );
    assert!(lines[0].contains("rules no-secrets(block)x2"), "{text}");
}

#[test]
fn export_csv_has_a_header_and_quoted_rows_since_the_time_given() {
    let log = logged();
    let out = log.cli(&[
        "audit",
        "export",
        "--since",
        "2026-11-25T00:00:00Z",
        "--format",
        "csv",
    ]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let text = out.stdout_text();
    let rows: Vec<&str> = text.split("\r\n").filter(|r| !r.is_empty()).collect();
    assert!(
        rows[0].starts_with("seq,ts,kind,device,user,provider,"),
        "{text}"
    );
    // Day 2: requests 6..=10 (seq 8, 9, 11, 12, 13) and the checkpoints at
    // seq 10 and 14.
    assert_eq!(rows.len(), 1 + 7, "{text}");
    assert!(
        rows[1].starts_with("8,2026-11-25T06:00:00.000000Z,request,laptop-7,alice,openai,"),
        "{text}"
    );
    // Request 8 was blocked: its error holds a comma and quotes.
    let blocked = rows
        .iter()
        .find(|r| r.starts_with("11,"))
        .expect("seq 11 row");
    assert!(
        blocked.contains(",block,no-secrets:block:2,403,"),
        "{blocked}"
    );
    assert!(
        blocked.contains(",\"blocked by \"\"no-secrets\"\", request 8\","),
        "{blocked}"
    );

    let out = log.cli(&["audit", "export", "--since", "2026-11-25T08:00:00+00:00"]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    // JSON Lines exactly as stored: the last four lines of day 2.
    let stored = lines_of(&log.day_file(DAY2));
    let exported: Vec<String> = out.stdout_text().lines().map(str::to_string).collect();
    assert_eq!(exported, stored[stored.len() - 4..].to_vec());

    let out = log.cli(&["audit", "export", "--since", "yesterday"]);
    assert_eq!(out.code, Some(2), "{}", out.describe());
}
