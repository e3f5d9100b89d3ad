//! A bad config stops the agent before it binds anything, with exit code 2 and a
//! `FILE:LINE:COL: message` that names the key, so an admin can fix it from the message.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::process::CmdOutput;
use support::*;

/// Writes `toml` to a fresh config file and runs `outpost run --config FILE` on it.
fn run_with_config(toml: &str) -> (tempfile::TempDir, PathBuf, CmdOutput) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("outpost.toml");
    let state = dir.path().join("state");
    let policy = dir.path().join("policy");
    std::fs::create_dir_all(&policy).expect("policy dir");
    let toml = toml
        .replace("STATE_DIR", &state.to_string_lossy())
        .replace("POLICY_DIR", &policy.to_string_lossy());
    std::fs::write(&path, toml).expect("write config");
    // A config the agent wrongly accepts would run forever; the deadline turns that into a failure.
    let out = outpost_cli(&["run"], Some(&path), Duration::from_secs(20));
    (dir, path, out)
}

fn assert_config_error(out: &CmdOutput, path: &Path, line: usize, key: &str) {
    assert!(
        !out.timed_out,
        "outpost accepted the config and kept running:\n{}",
        out.describe()
    );
    assert_eq!(out.code, Some(2), "{}", out.describe());
    let location = format!("{}:{line}:", path.display());
    assert!(
        out.stderr.contains(&location),
        "stderr should point at {location}COL:\n{}",
        out.describe()
    );
    assert!(
        out.stderr.contains(key),
        "stderr should name the key `{key}`:\n{}",
        out.describe()
    );
    assert!(
        !out.stderr.contains("listening on"),
        "nothing may bind on a bad config:\n{}",
        out.describe()
    );
}

#[test]
fn unknown_top_level_key_is_exit_2_with_location() {
    let (_dir, path, out) = run_with_config(
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nlisten_porrt = 8080\nstate_dir = \"STATE_DIR\"\n",
    );
    assert_config_error(&out, &path, 3, "listen_porrt");
}

#[test]
fn unknown_key_in_upstream_table_is_exit_2_with_location() {
    let (_dir, path, out) = run_with_config(
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nstate_dir = \"STATE_DIR\"\n\n[upstream]\nconnect_timeout_secs = 5\nconect_timeout = 5\n",
    );
    assert_config_error(&out, &path, 7, "conect_timeout");
}

#[test]
fn bad_listen_value_is_exit_2() {
    let (_dir, path, out) = run_with_config(
        "state_dir = \"STATE_DIR\"\nadmin_listen = \"127.0.0.1:0\"\nlisten = \"nope\"\n",
    );
    assert_config_error(&out, &path, 3, "listen");
}

#[test]
fn bad_value_type_is_exit_2() {
    let (_dir, path, out) = run_with_config(
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nstate_dir = \"STATE_DIR\"\nshutdown_grace_secs = \"ten\"\n",
    );
    assert_config_error(&out, &path, 4, "shutdown_grace_secs");
}

#[test]
fn non_loopback_listen_needs_opt_in() {
    let (_dir, path, out) = run_with_config(
        "listen = \"0.0.0.0:0\"\nadmin_listen = \"127.0.0.1:0\"\nstate_dir = \"STATE_DIR\"\npolicy_dir = \"POLICY_DIR\"\n",
    );
    assert!(
        !out.timed_out,
        "outpost listened on 0.0.0.0 without danger_allow_non_loopback:\n{}",
        out.describe()
    );
    assert_eq!(out.code, Some(2), "{}", out.describe());
    assert!(
        out.stderr.contains("listen"),
        "stderr should name `listen`:\n{}",
        out.describe()
    );
    assert!(
        out.stderr.contains(&*path.to_string_lossy()),
        "stderr should name the file:\n{}",
        out.describe()
    );
    assert!(
        !out.stderr.contains("listening on"),
        "nothing may bind:\n{}",
        out.describe()
    );
}

#[test]
fn missing_config_file_is_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("does-not-exist.toml");
    let out = outpost_cli(&["run"], Some(&missing), Duration::from_secs(20));
    assert!(!out.timed_out, "{}", out.describe());
    assert_eq!(
        out.code,
        Some(2),
        "an explicit --config that does not exist is a config error:\n{}",
        out.describe()
    );
    assert!(
        out.stderr.contains("does-not-exist.toml"),
        "stderr should name the file:\n{}",
        out.describe()
    );
}

#[test]
fn unknown_subcommand_is_usage_error() {
    let out = outpost_cli(&["frobnicate"], None, Duration::from_secs(20));
    assert_eq!(out.code, Some(2), "{}", out.describe());
}
