//! Reading the agent's audit log from its state dir, as a test sees it.

use serde_json::Value;
use std::path::Path;

/// Every request record (kind = request) in the audit day files of `state`.
/// A complete line that is not JSON fails the test.
pub fn audit_records(state: &Path) -> Vec<Value> {
    all_audit_records(state)
        .into_iter()
        .filter(|r| r["kind"] == "request")
        .collect()
}

/// Every record, of every kind, in the audit day files of `state`.
pub fn all_audit_records(state: &Path) -> Vec<Value> {
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
            // Every complete line must be a record; only an unterminated
            // last line (a writer killed mid-line) is not read yet.
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .split_inclusive('\n')
                .filter(|l| l.ends_with('\n'))
                .map(|l| {
                    serde_json::from_str::<Value>(l)
                        .unwrap_or_else(|e| panic!("{}: not a record ({e}): {l}", p.display()))
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Waits until the audit log holds `n` request records.
pub fn wait_for_records(state: &Path, n: usize) -> Vec<Value> {
    super::wait_until(&format!("{n} audit records"), super::WAIT_LIMIT, || {
        audit_records(state).len() >= n
    });
    audit_records(state)
}
