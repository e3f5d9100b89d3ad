//! Reading the agent's audit log from its state dir, as a test sees it.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Every request record (kind = request) in the audit day files of `state`.
pub fn audit_records(state: &Path) -> Vec<Value> {
    let mut files: Vec<_> = std::fs::read_dir(state.join("audit"))
        .map(|dir| {
            dir.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .collect::<Vec<_>>()
        })
        .filter(|r| r["kind"] == "request")
        .collect()
}

/// Waits (up to 10 s) until the audit log holds `n` request records.
pub fn wait_for_records(state: &Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let records = audit_records(state);
        if records.len() >= n {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "{} audit records, expected {n}: {records:#?}",
            records.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
