//! Running child processes (curl, python, `outpost` subcommands) with a deadline.
//!
//! `std::process::Command::output` waits forever; a hung client would hang the whole test
//! binary. `run_with_timeout` drains stdout and stderr on their own threads (so a chatty
//! child never blocks on a full pipe), kills the child at the deadline and says so.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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
