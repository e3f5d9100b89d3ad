//! The two real coding agents, Claude Code and Codex, as black-box clients of the agent.
//!
//! Both come from npm (pinned below) and are installed once into
//! `$CARGO_TARGET_TMPDIR/coding-agents`, the way [`super::python`] builds its venv: a
//! `OnceLock` serialises threads of one test binary, a lock *directory* (`create_dir` is
//! atomic) serialises test binaries, and the install counts only once its marker file exists
//! (an interrupted install is redone). A failed install panics with npm's output: a missing
//! coding agent fails the test, never skips it. First install: ~15 s on a fast registry link
//! (two ~100 MB native binaries); afterwards free.
//!
//! Both npm packages are thin wrappers around a native executable in a per-platform optional
//! dependency; we run that executable directly (no Node process, no postinstall script):
//! - Claude Code: `node_modules/@anthropic-ai/claude-code-linux-x64/claude` (a self-contained
//!   binary; `bin/claude.exe` of the main package is only a copy made by its postinstall).
//!   The main package declares `engines.node >= 22`; npm on Node 20 only warns, and the
//!   native binary does not use the machine's Node at all.
//! - Codex: `node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex`
//!   (what `bin/codex.js` execs).
//!
//! Every run gets a fresh `HOME` (a temp dir, also Codex's `CODEX_HOME=$HOME/.codex`), its cwd
//! is `$HOME/work`, and the environment is cleared and holds only what a managed install
//! would give the tool:
//! - `HTTPS_PROXY`/`HTTP_PROXY` (both cases) = the agent, `NO_PROXY` empty;
//! - trust: a bundle of the system roots plus the given CA PEM. Claude Code (Bun-based,
//!   Node-compatible TLS) honours `NODE_EXTRA_CA_CERTS` (extra CAs on top of its roots) and
//!   also `SSL_CERT_FILE`; Codex (Rust, rustls) reads `CODEX_CA_CERTIFICATE`, else
//!   `SSL_CERT_FILE`, and *adds* those certificates to the native roots. Each was checked to
//!   refuse a leaf its trust does not cover.
//! - keys: Claude Code uses `ANTHROPIC_API_KEY` as is in `-p` (print) mode. Codex
//!   ignores `OPENAI_API_KEY` for the built-in `openai` provider (it then sends *no*
//!   `Authorization` at all); `codex exec` uses `CODEX_API_KEY` as a bearer API key, no login
//!   step needed. We set both (`OPENAI_API_KEY` serves providers with `env_key`, see
//!   [`CODEX_HTTPS_ONLY`]).
//! - quiet: Claude Code gets `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`,
//!   `DISABLE_AUTOUPDATER=1`, `DISABLE_TELEMETRY=1`, `DISABLE_ERROR_REPORTING=1`: with them
//!   its only requests are `GET /api/claude_code/settings`, `GET /api/claude_code/policy_limits`
//!   (a 404 to both is fine) and `POST /v1/messages?beta=true`; without them it also calls
//!   `/api/eval/…`, `/api/claude_cli/bootstrap`, `/api/event_logging/v2/batch` and more.
//!   Codex gets [`CODEX_QUIET`] config (`-c` flags): without it it also dials github.com,
//!   api.github.com (`/repos/openai/plugins`), chatgpt.com (`/backend-api/codex/models` *with
//!   the API key*, `/backend-api/plugins/export/curated`) and ab.chatgpt.com.
//!
//! Retries are the tools' own defaults, which can be slow: Claude Code retries a 429 or 5xx
//! up to 10 times with backoff (~3 minutes) unless the response says `x-should-retry: false`
//! (pass `CLAUDE_CODE_MAX_RETRIES` through [`claude_run`] to bound it); Codex retries a
//! 401/403/404/429/5xx 5 times (~6 s) and falls back from WebSocket to HTTPS after a failed
//! upgrade.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use super::agent::SYSTEM_CA_BUNDLE;
use super::process::{build_once, run_with_timeout, scrub_env, CmdOutput};
use super::python::{ANTHROPIC_TEST_KEY, OPENAI_TEST_KEY};

pub const CLAUDE_CODE_VERSION: &str = "2.1.332";
pub const CODEX_VERSION: &str = "0.171.0";

pub const AGENTS_DIR: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/coding-agents");
const LOCK_DIR: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/coding-agents.lock");
const MARKER: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/coding-agents/.outpost-ready");
/// Installing downloads two large native binaries; give a slow network room.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// One run of either tool. Claude Code's default retries of a 5xx/429 take ~3 minutes.
pub const CODING_AGENT_TIMEOUT: Duration = Duration::from_secs(300);

/// `-c` overrides that keep `codex exec` off every host but its model provider (no plugin
/// sync with GitHub/chatgpt.com, no model discovery, no analytics, no update check).
pub const CODEX_QUIET: &[&str] = &[
    "features.api_key_model_discovery=false",
    "features.plugins=false",
    "features.remote_plugin=false",
    "features.apps=false",
    "analytics.enabled=false",
    "check_for_update_on_startup=false",
];

/// `-c` overrides for a provider that talks to `https://api.openai.com/v1` over HTTPS only
/// (POST /v1/responses with SSE, never the WebSocket), with `OPENAI_API_KEY` as bearer and no
/// retries. Pass as `extra_config` to [`codex_exec`]. Without it Codex uses its built-in
/// `openai` provider: a WebSocket `GET /v1/responses` first, HTTPS as fallback.
pub const CODEX_HTTPS_ONLY: &[&str] = &[
    "model_provider=\"outpost_https\"",
    "model_providers.outpost_https={name=\"outpost_https\",base_url=\"https://api.openai.com/v1\",\
     wire_api=\"responses\",env_key=\"OPENAI_API_KEY\",supports_websockets=false,\
     request_max_retries=0,stream_max_retries=0}",
];

/// The two native executables, installing them on first use.
struct Installed {
    claude: PathBuf,
    codex: PathBuf,
}

fn installed() -> &'static Installed {
    static INSTALLED: OnceLock<Installed> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        build_once(MARKER, LOCK_DIR, INSTALL_TIMEOUT, install);
        Installed {
            claude: claude_path(),
            codex: codex_path(),
        }
    })
}

/// Path of Claude Code's native executable (installs on first use).
pub fn claude_bin() -> PathBuf {
    installed().claude.clone()
}

/// Path of Codex's native executable (installs on first use).
pub fn codex_bin() -> PathBuf {
    installed().codex.clone()
}

/// `claude --version` and `codex --version` as recorded at install, for reports.
pub fn installed_versions() -> String {
    installed();
    std::fs::read_to_string(MARKER).unwrap_or_default()
}

fn node_modules() -> PathBuf {
    Path::new(AGENTS_DIR).join("node_modules")
}

/// npm's platform suffix and Codex's target triple for this machine.
fn platform() -> (&'static str, &'static str) {
    match std::env::consts::ARCH {
        "x86_64" => ("x64", "x86_64-unknown-linux-musl"),
        "aarch64" => ("arm64", "aarch64-unknown-linux-musl"),
        other => panic!("the coding-agent tests support Linux x86_64/aarch64, not {other}"),
    }
}

fn claude_path() -> PathBuf {
    let (arch, _) = platform();
    let scope = node_modules().join("@anthropic-ai");
    // npm picks the glibc or the musl package by the machine's libc.
    [
        format!("claude-code-linux-{arch}"),
        format!("claude-code-linux-{arch}-musl"),
    ]
    .iter()
    .map(|pkg| scope.join(pkg).join("claude"))
    .find(|p| p.exists())
    .unwrap_or_else(|| panic!("no Claude Code native binary under {}", scope.display()))
}

fn codex_path() -> PathBuf {
    let (arch, triple) = platform();
    node_modules()
        .join("@openai")
        .join(format!("codex-linux-{arch}"))
        .join("vendor")
        .join(triple)
        .join("bin")
        .join("codex")
}

fn install() {
    let _ = std::fs::remove_dir_all(AGENTS_DIR);
    std::fs::create_dir_all(AGENTS_DIR).expect("create coding-agents dir");
    let mut npm = Command::new("npm");
    npm.args([
        "install",
        "--prefix",
        AGENTS_DIR,
        "--no-audit",
        "--no-fund",
        "--no-save",
        "--include=optional",
        // The packages' scripts only copy the native binary we run in place anyway.
        "--ignore-scripts",
        "--loglevel=error",
        &format!("@anthropic-ai/claude-code@{CLAUDE_CODE_VERSION}"),
        &format!("@openai/codex@{CODEX_VERSION}"),
    ]);
    must_succeed(&mut npm, "npm install the coding agents", INSTALL_TIMEOUT);

    let mut versions = String::new();
    for bin in [claude_path(), codex_path()] {
        assert!(bin.exists(), "npm installed no {}", bin.display());
        let out = must_succeed(
            Command::new(&bin).arg("--version"),
            "run the coding agent's --version",
            Duration::from_secs(60),
        );
        versions += out.stdout_text().trim();
        versions.push('\n');
    }
    std::fs::write(MARKER, versions).expect("write coding-agents marker");
}

fn must_succeed(cmd: &mut Command, what: &str, timeout: Duration) -> CmdOutput {
    let out = run_with_timeout(cmd, timeout);
    assert_eq!(
        out.code,
        Some(0),
        "could not {what} ({cmd:?}); the coding-agent tests need npm and access to the npm \
         registry\n{}",
        out.describe()
    );
    out
}

/// A throwaway `HOME` with a `work` dir (the cwd) and `ca-bundle.pem` (system roots + CA).
struct RunHome {
    dir: tempfile::TempDir,
}

impl RunHome {
    fn new(ca_pem: &Path) -> RunHome {
        let dir = tempfile::Builder::new()
            .prefix("outpost-coding-agent-")
            .tempdir()
            .expect("temp HOME");
        std::fs::create_dir_all(dir.path().join("work")).expect("create work dir");
        std::fs::create_dir_all(dir.path().join(".codex")).expect("create CODEX_HOME");
        let mut bundle = std::fs::read_to_string(SYSTEM_CA_BUNDLE).unwrap_or_default();
        if !bundle.is_empty() && !bundle.ends_with('\n') {
            bundle.push('\n');
        }
        bundle += &std::fs::read_to_string(ca_pem)
            .unwrap_or_else(|e| panic!("read CA {}: {e}", ca_pem.display()));
        std::fs::write(dir.path().join("ca-bundle.pem"), bundle).expect("write CA bundle");
        RunHome { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn bundle(&self) -> PathBuf {
        self.path().join("ca-bundle.pem")
    }

    /// A command with a cleared environment: proxy, trust and `HOME` only.
    fn command(&self, bin: &Path, proxy_url: &str, ca_pem: &Path) -> Command {
        let mut cmd = Command::new(bin);
        scrub_env(&mut cmd);
        cmd.env_clear()
            .current_dir(self.path().join("work"))
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", self.path())
            .env("LANG", "C.UTF-8")
            .env("TERM", "dumb")
            .env("NO_COLOR", "1");
        for var in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"] {
            cmd.env(var, proxy_url);
        }
        cmd.env("NO_PROXY", "")
            .env("no_proxy", "")
            .env("SSL_CERT_FILE", self.bundle())
            .env("NODE_EXTRA_CA_CERTS", ca_pem);
        cmd
    }
}

/// Runs the Claude Code executable with `args`, the environment described at the top of this
/// file plus `extra_env` (e.g. `("CLAUDE_CODE_MAX_RETRIES", "0")`).
pub fn claude_run(
    proxy_url: &str,
    ca_pem: &Path,
    args: &[&str],
    extra_env: &[(&str, &str)],
) -> CmdOutput {
    let bin = claude_bin();
    let home = RunHome::new(ca_pem);
    let mut cmd = home.command(&bin, proxy_url, ca_pem);
    cmd.env("ANTHROPIC_API_KEY", ANTHROPIC_TEST_KEY)
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_ERROR_REPORTING", "1");
    finish_and_run(&mut cmd, args, extra_env)
}

/// `claude -p PROMPT`: one non-interactive turn; the answer (or `API Error: …`) on stdout.
pub fn claude_print(proxy_url: &str, ca_pem: &Path, prompt: &str) -> CmdOutput {
    claude_run(proxy_url, ca_pem, &["-p", prompt], &[])
}

/// Runs the Codex executable with `args`, the environment described at the top of this file
/// plus `extra_env`.
pub fn codex_run(
    proxy_url: &str,
    ca_pem: &Path,
    args: &[&str],
    extra_env: &[(&str, &str)],
) -> CmdOutput {
    let bin = codex_bin();
    let home = RunHome::new(ca_pem);
    let mut cmd = home.command(&bin, proxy_url, ca_pem);
    cmd.env("CODEX_HOME", home.path().join(".codex"))
        .env("CODEX_CA_CERTIFICATE", home.bundle())
        .env("CODEX_API_KEY", OPENAI_TEST_KEY)
        .env("OPENAI_API_KEY", OPENAI_TEST_KEY);
    finish_and_run(&mut cmd, args, extra_env)
}

/// Adds the caller's arguments and environment last (so they win) and runs the tool.
fn finish_and_run(cmd: &mut Command, args: &[&str], extra_env: &[(&str, &str)]) -> CmdOutput {
    cmd.args(args);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    run_with_timeout(cmd, CODING_AGENT_TIMEOUT)
}

/// `codex exec PROMPT` with [`CODEX_QUIET`] and then each of `extra_config` as `-c` overrides
/// (e.g. [`CODEX_HTTPS_ONLY`], `"model=\"gpt-5\""`). The answer goes to stdout; the banner,
/// warnings and `ERROR: …` lines to stderr.
pub fn codex_exec(
    proxy_url: &str,
    ca_pem: &Path,
    prompt: &str,
    extra_config: &[&str],
) -> CmdOutput {
    let mut args = vec!["exec", "--skip-git-repo-check"];
    for config in CODEX_QUIET.iter().chain(extra_config) {
        args.extend(["-c", config]);
    }
    args.push(prompt);
    codex_run(proxy_url, ca_pem, &args, &[])
}
