//! Precision of the shipped default policy: a corpus of benign prompts
//! (prose and code with git hashes, UUIDs, SHA-256 sums, base64 blobs,
//! public certificates, version strings, order numbers, and configs whose
//! values are placeholders, in `tests/corpus/benign/`) must get no block and
//! no redaction, from either direction's guardrails. A rule that trips here
//! would refuse an employee's ordinary work.
//!
//! This is the library-level check, run on every text at once; the proxy
//! test in `tests/guardrails.rs` sends the same corpus through the agent.

use std::path::PathBuf;

use outpost::policy::load;
use outpost::policy::rules::{Action, Scan};

fn corpus() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/benign");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&path).unwrap())
        })
        .collect();
    files.sort();
    assert!(files.len() >= 8, "the corpus is in {}", dir.display());
    files
}

/// Every finding of `scan` in `text` whose guardrail blocks or redacts.
fn refusals(policy: &outpost::policy::Policy, scan: &Scan, text: &str) -> Vec<String> {
    scan.scanner
        .scan(text)
        .into_iter()
        .filter_map(|finding| {
            let guardrail = &policy.guardrails[scan.guardrail_of[finding.rule]];
            matches!(guardrail.action, Action::Block | Action::Redact).then(|| {
                format!(
                    "{} ({}, {}): {:?}",
                    guardrail.id,
                    guardrail.action.name(),
                    finding.kind,
                    &text[finding.start..finding.end]
                )
            })
        })
        .collect()
}

#[test]
fn the_default_policy_blocks_and_redacts_nothing_in_the_benign_corpus() {
    let policy = load::embedded_default().unwrap();
    let scans = [&policy.request_scan, &policy.response_scan];
    let mut failures = Vec::new();
    for (name, text) in corpus() {
        for scan in scans.into_iter().flatten() {
            for refusal in refusals(&policy, scan, &text) {
                failures.push(format!("{name}: {refusal}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_corpus_check_can_fail() {
    // The same check on a benign file with one real-shaped key added.
    let policy = load::embedded_default().unwrap();
    let scan = policy.request_scan.as_ref().unwrap();
    let (_, text) = corpus().remove(0);
    let tainted = format!(
        "{text}\nmy key: {}{}\n",
        "gh", "p_R4nd0mT0k3nV4lu3F0rT3st1ngPurp0s3s12"
    );
    let found = refusals(&policy, scan, &tainted);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("no-secrets (block, github-token)"),
        "{found:?}"
    );
}
