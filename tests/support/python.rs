//! Real SDK clients: a shared Python venv with `openai`, `anthropic` and `websockets`, and
//! [`PythonScript`] to run the scripts in `tests/python/` through the agent.
//!
//! The venv lives at `$CARGO_TARGET_TMPDIR/pyvenv` and is created once: a `OnceLock`
//! serialises threads of one test binary, and a lock *directory* (`create_dir` is atomic)
//! serialises test binaries, which cargo may run at the same time. The venv is usable only
//! once its marker file exists, so a half-built venv (interrupted run) is rebuilt. Creation
//! failures panic with pip's output: a missing SDK must fail the test, never skip it.
//!
//! Scripts see only what a managed install would give them: `HTTPS_PROXY`, an
//! `SSL_CERT_FILE` bundle (system roots + Outpost CA) and dummy API keys. They print one
//! JSON object on stdout.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use super::agent::Agent;
use super::process::{build_once, run_with_timeout, scrub_env, CmdOutput};

pub const VENV_DIR: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/pyvenv");
const LOCK_DIR: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/pyvenv.lock");
/// Named after the package list: a list that grows makes a new venv.
const MARKER: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/pyvenv/.outpost-ready-2");
const PACKAGES: &[&str] = &["openai", "anthropic", "websockets", "pacparser"];
/// Creating the venv downloads packages; give a slow network room.
const CREATE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

pub const OPENAI_TEST_KEY: &str = "sk-outpost-test-openai";
pub const ANTHROPIC_TEST_KEY: &str = "sk-ant-outpost-test";

/// Path of the venv's python, creating the venv on first use.
pub fn venv_python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(create_venv_once).clone()
}

/// Versions installed in the venv (`pip freeze` at creation), for reports.
pub fn venv_versions() -> String {
    venv_python();
    std::fs::read_to_string(MARKER).unwrap_or_default()
}

fn python_bin() -> PathBuf {
    Path::new(VENV_DIR).join("bin").join("python")
}

fn create_venv_once() -> PathBuf {
    build_once(MARKER, LOCK_DIR, CREATE_TIMEOUT, build_venv);
    python_bin()
}

fn build_venv() {
    let _ = std::fs::remove_dir_all(VENV_DIR);
    let base_python =
        std::env::var("OUTPOST_TEST_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let mut venv = Command::new(&base_python);
    venv.args(["-m", "venv", VENV_DIR]);
    must_succeed(
        &mut venv,
        "create the Python venv",
        Duration::from_secs(120),
    );

    let mut pip = Command::new(python_bin());
    pip.args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--quiet",
        "--upgrade",
    ])
    .args(PACKAGES);
    must_succeed(&mut pip, "pip install the SDKs", CREATE_TIMEOUT);

    let mut freeze = Command::new(python_bin());
    freeze.args(["-m", "pip", "freeze", "--disable-pip-version-check"]);
    let versions = must_succeed(&mut freeze, "pip freeze", Duration::from_secs(60)).stdout_text();
    std::fs::write(MARKER, versions).expect("write venv marker");
}

fn must_succeed(cmd: &mut Command, what: &str, timeout: Duration) -> CmdOutput {
    let out = run_with_timeout(cmd, timeout);
    assert_eq!(
        out.code,
        Some(0),
        "could not {what} ({cmd:?}); the SDK tests need Python 3 with venv and network access \
         to PyPI (set OUTPOST_TEST_PYTHON to pick an interpreter)\n{}",
        out.describe()
    );
    out
}

/// A script from `tests/python/`, run with the venv's python.
pub struct PythonScript {
    script: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    timeout: Duration,
}

impl PythonScript {
    pub fn new(name: &str) -> PythonScript {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests")
            .join("python")
            .join(name);
        assert!(script.exists(), "no such script: {}", script.display());
        PythonScript {
            script,
            args: Vec::new(),
            env: Vec::new(),
            timeout: Duration::from_secs(120),
        }
    }

    pub fn arg(mut self, arg: &str) -> PythonScript {
        self.args.push(arg.to_string());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> PythonScript {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Points the script at the agent the way an install would: proxy and trust via env only.
    pub fn through(self, agent: &Agent) -> PythonScript {
        let proxy = agent.proxy_url();
        let bundle = agent.client_bundle_path();
        let bundle = bundle.to_string_lossy();
        self.env("HTTPS_PROXY", &proxy)
            .env("https_proxy", &proxy)
            .env("SSL_CERT_FILE", &bundle)
            .env("OPENAI_API_KEY", OPENAI_TEST_KEY)
            .env("ANTHROPIC_API_KEY", ANTHROPIC_TEST_KEY)
    }

    /// Runs the script and parses the JSON object it printed last.
    pub fn run_json(self) -> Value {
        let out = self.run();
        assert_eq!(
            out.code,
            Some(0),
            "{} failed:\n{}",
            self.script.display(),
            out.describe()
        );
        let text = out.stdout_text();
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        serde_json::from_str(last).unwrap_or_else(|e| {
            panic!(
                "{} printed no JSON ({e}):\n{}",
                self.script.display(),
                out.describe()
            )
        })
    }

    pub fn run(&self) -> CmdOutput {
        let mut cmd = Command::new(venv_python());
        scrub_env(&mut cmd);
        cmd.arg(&self.script)
            .args(&self.args)
            .env("PYTHONUNBUFFERED", "1");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        run_with_timeout(&mut cmd, self.timeout)
    }
}
