//! Running child processes (curl, python, `outpost` subcommands) with a deadline.
//!
//! `std::process::Command::output` waits forever; a hung client would hang the whole test
//! binary. `run_with_timeout` drains stdout and stderr on their own threads (so a chatty
//! child never blocks on a full pipe), kills the child at the deadline and says so.
//! [`build_once`] builds a shared test tool (the Python venv, the coding agents) once across
//! threads and test binaries.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// What a finished (or killed) child left behind.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    /// `None` when the child was killed by a signal (including our own timeout kill).
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
    /// True when we killed the child because it outlived the deadline.
    pub timed_out: bool,
}

impl CmdOutput {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// A block for panic messages: exit code, stdout and stderr.
    pub fn describe(&self) -> String {
        format!(
            "exit code: {:?}{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code,
            if self.timed_out {
                " (killed: timed out)"
            } else {
                ""
            },
            self.stdout_text(),
            self.stderr
        )
    }
}

/// Spawns `cmd` with piped stdout/stderr and null stdin, waits at most `timeout`.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> CmdOutput {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("failed to spawn {cmd:?}: {e}"));
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let (status, timed_out) = wait_deadline(&mut child, timeout);
    CmdOutput {
        code: status.and_then(|s| s.code()),
        stdout: stdout.join().unwrap_or_default(),
        stderr: String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned(),
        timed_out,
    }
}

/// Waits for `child` until `timeout`; kills it if it is still running then.
/// Returns the exit status (None if it could not be collected) and whether we killed it.
pub fn wait_deadline(child: &mut Child, timeout: Duration) -> (Option<ExitStatus>, bool) {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return (Some(status), false),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                return (child.wait().ok(), true);
            }
            Err(_) => return (None, false),
        }
    }
}

/// Reads a pipe to its end on a background thread.
pub fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        buf
    })
}

/// Removes proxy and TLS variables a developer's shell may carry, so a child sees only what
/// the test sets. `NO_PROXY` in particular would silently bypass the agent.
pub fn scrub_env(cmd: &mut Command) -> &mut Command {
    for var in [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "OPENAI_BASE_URL",
        "OPENAI_API_BASE",
        "ANTHROPIC_BASE_URL",
        "OUTPOST_CONFIG",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs `build` once across threads and test processes: done when `marker` exists; `lock` is a
/// directory whose atomic creation elects the builder (its pid inside; a dead owner's lock is
/// taken over). `build` must write `marker` last.
pub fn build_once(marker: &str, lock: &str, timeout: Duration, build: fn()) {
    let deadline = Instant::now() + timeout;
    loop {
        if Path::new(marker).exists() {
            return;
        }
        match std::fs::create_dir(lock) {
            Ok(()) => {
                let _ = std::fs::write(Path::new(lock).join("pid"), std::process::id().to_string());
                let result = std::panic::catch_unwind(build);
                let _ = std::fs::remove_dir_all(lock);
                match result {
                    Ok(()) => return,
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if lock_is_stale(Path::new(lock)) {
                    let _ = std::fs::remove_dir_all(lock);
                    continue;
                }
                assert!(
                    Instant::now() < deadline,
                    "timed out waiting for another test process to finish {marker} (lock \
                     {lock}); remove the lock if no test is running"
                );
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => panic!("cannot create lock {lock}: {e}"),
        }
    }
}

/// A lock whose owner process is gone (crashed or killed test run).
fn lock_is_stale(lock: &Path) -> bool {
    match std::fs::read_to_string(lock.join("pid"))
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
    {
        Some(pid) => !Path::new("/proc").join(pid.to_string()).exists(),
        // The owner may be between create_dir and writing its pid; only an old lock is stale.
        None => std::fs::metadata(lock)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age > Duration::from_secs(60)),
    }
}
