//! `Agent`: the `outpost` binary under test, started from a generated config.
//!
//! [`Agent::builder`] writes a config into a fresh temp dir (ports 0, state and policy dirs
//! inside the temp dir, `[upstream.resolve]` pointing provider hosts at fakes, the test CA
//! in `extra_ca_files`), runs `outpost run --config FILE`, and waits for the two
//! `... listening on ADDR` lines on stderr. stderr is drained on a background thread for
//! the agent's whole life (a full pipe would freeze it) and kept: it is printed when a test
//! panics while the agent is alive, and included in start-up failures. The child is killed
//! on drop.
//!
//! [`outpost_cli`] runs one-shot subcommands (`ca export`, `ca show`, bad configs).

use std::fmt::Display;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::ca::TestCa;
use super::fake::FakeProvider;
use super::process::{run_with_timeout, scrub_env, wait_deadline, CmdOutput};

/// The binary cargo built for this package.
pub const OUTPOST_BIN: &str = env!("CARGO_BIN_EXE_outpost");

/// How long start-up may take before the test gives up (a loaded 2-core CI box is slow).
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// Where the system CA bundle lives on Debian-like systems; prepended to client bundles.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Builder for a running [`Agent`].
pub struct AgentBuilder {
    resolve: Vec<(String, String)>,
    extra_ca_files: Vec<PathBuf>,
    top_level: Vec<String>,
    upstream: Vec<String>,
    log_level: String,
    shutdown_grace_secs: Option<u64>,
    state_dir: Option<PathBuf>,
    policy_files: Vec<(String, String)>,
    policy_links: Vec<(String, PathBuf)>,
    audit: Vec<String>,
    fd_limit: Option<u32>,
    sections: Vec<(String, Vec<String>)>,
}

impl AgentBuilder {
    /// A file in the agent's `policy_dir`, written before it starts.
    pub fn policy_file(mut self, name: &str, toml: &str) -> Self {
        self.policy_files.push((name.to_string(), toml.to_string()));
        self
    }

    /// Start the agent under `ulimit -n limit` (soft and hard), as a service
    /// manager with a low `LimitNOFILE` would.
    pub fn fd_limit(mut self, limit: u32) -> Self {
        self.fd_limit = Some(limit);
        self
    }

    /// A symlink `name` in the agent's `policy_dir`, pointing at `target`.
    pub fn policy_link(mut self, name: &str, target: &Path) -> Self {
        self.policy_links
            .push((name.to_string(), target.to_path_buf()));
        self
    }

    /// `[upstream.resolve] host = addr`: dial `addr` for `host`, verify as `host`.
    pub fn resolve(mut self, host: &str, addr: impl Display) -> Self {
        self.resolve.push((host.to_string(), addr.to_string()));
        self
    }

    /// Resolves every name `fake` stands in for to its address (trust is separate).
    pub fn resolve_to(mut self, fake: &FakeProvider) -> Self {
        for name in fake.names() {
            self = self.resolve(name, fake.addr());
        }
        self
    }

    /// Adds `ca` to `[upstream] extra_ca_files`.
    pub fn trust(mut self, ca: &TestCa) -> Self {
        self.extra_ca_files.push(ca.pem_path());
        self
    }

    /// The usual set-up: resolve all of `fake`'s names to it and trust its CA.
    pub fn fake_upstream(mut self, fake: &FakeProvider) -> Self {
        if let Some(ca) = fake.ca_pem_path() {
            self.extra_ca_files.push(ca.clone());
        }
        self.resolve_to(fake)
    }

    /// A raw top-level TOML line, e.g. `danger_allow_non_loopback = true`.
    pub fn top_level(mut self, line: &str) -> Self {
        self.top_level.push(line.to_string());
        self
    }

    /// A raw line in the `[upstream]` table, e.g. `response_timeout_secs = 1`.
    pub fn upstream_setting(mut self, line: &str) -> Self {
        self.upstream.push(line.to_string());
        self
    }

    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.to_string();
        self
    }

    pub fn shutdown_grace_secs(mut self, secs: u64) -> Self {
        self.shutdown_grace_secs = Some(secs);
        self
    }

    /// A whole table, e.g. `[sync]` with its lines.
    pub fn section(mut self, name: &str, lines: &[&str]) -> Self {
        self.sections.push((
            name.to_string(),
            lines.iter().map(|l| l.to_string()).collect(),
        ));
        self
    }

    /// A raw line in the `[audit]` table, e.g. `checkpoint_every = 4`.
    pub fn audit_setting(mut self, line: &str) -> Self {
        self.audit.push(line.to_string());
        self
    }

    /// Uses this state dir instead of one inside the agent's temp dir (restart tests).
    pub fn state_dir(mut self, dir: &Path) -> Self {
        self.state_dir = Some(dir.to_path_buf());
        self
    }

    /// The config text this builder would write, given the temp dir it lives in.
    pub fn config_toml(&self, dir: &Path) -> String {
        let q = |s: &str| serde_json::to_string(s).expect("string to TOML basic string");
        let path = |p: &Path| q(&p.to_string_lossy());
        let mut toml = String::new();
        toml += "listen = \"127.0.0.1:0\"\n";
        toml += "admin_listen = \"127.0.0.1:0\"\n";
        let state_dir = self.state_dir.clone().unwrap_or_else(|| dir.join("state"));
        toml += &format!("state_dir = {}\n", path(&state_dir));
        toml += &format!("policy_dir = {}\n", path(&dir.join("policy")));
        toml += &format!("log_level = {}\n", q(&self.log_level));
        if let Some(secs) = self.shutdown_grace_secs {
            toml += &format!("shutdown_grace_secs = {secs}\n");
        }
        for line in &self.top_level {
            toml += line;
            toml += "\n";
        }
        toml += "\n[upstream]\n";
        let files: Vec<String> = self.extra_ca_files.iter().map(|p| path(p)).collect();
        toml += &format!("extra_ca_files = [{}]\n", files.join(", "));
        toml += "connect_timeout_secs = 5\n";
        for line in &self.upstream {
            toml += line;
            toml += "\n";
        }
        toml += "\n[upstream.resolve]\n";
        for (host, addr) in &self.resolve {
            toml += &format!("{} = {}\n", q(host), q(addr));
        }
        if !self.audit.is_empty() {
            toml += "\n[audit]\n";
            for line in &self.audit {
                toml += line;
                toml += "\n";
            }
        }
        for (name, lines) in &self.sections {
            toml += &format!("\n[{name}]\n");
            for line in lines {
                toml += line;
                toml += "\n";
            }
        }
        toml
    }

    /// Writes the config into a new temp dir without starting anything (for CLI tests).
    pub fn write_config(&self) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::Builder::new()
            .prefix("outpost-agent-")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir_all(dir.path().join("policy")).expect("create policy dir");
        let config_path = dir.path().join("outpost.toml");
        std::fs::write(&config_path, self.config_toml(dir.path())).expect("write config");
        if !self.policy_files.is_empty() {
            let policy_dir = dir.path().join("policy");
            std::fs::create_dir_all(&policy_dir).expect("create policy dir");
            for (name, text) in &self.policy_files {
                std::fs::write(policy_dir.join(name), text).expect("write policy file");
            }
        }
        for (name, target) in &self.policy_links {
            std::os::unix::fs::symlink(target, dir.path().join("policy").join(name))
                .expect("link policy file");
        }
        (dir, config_path)
    }

    pub fn start(self) -> Agent {
        let (dir, config_path) = self.write_config();
        let mut cmd = match self.fd_limit {
            None => Command::new(OUTPOST_BIN),
            Some(limit) => {
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
                    .arg(OUTPOST_BIN);
                sh
            }
        };
        scrub_env(&mut cmd);
        cmd.arg("run")
            .arg("--config")
            .arg(&config_path)
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {OUTPOST_BIN}: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let (lines_tx, lines_rx) = mpsc::channel();
        keep_reading(child.stderr.take(), log.clone(), "", Some(lines_tx));
        keep_reading(child.stdout.take(), log.clone(), "[stdout] ", None);

        let mut agent = Agent {
            child,
            state_dir: self
                .state_dir
                .clone()
                .unwrap_or_else(|| dir.path().join("state")),
            dir,
            config_path,
            log,
            proxy_addr: None,
            admin_addr: None,
            ca_pem_path: OnceLock::new(),
            exit_status: None,
        };
        agent.wait_until_listening(lines_rx);
        agent
    }
}

/// Appends every line of `pipe` to `log` (and forwards it to `lines`, if given) until EOF;
/// sends `None` at EOF.
fn keep_reading(
    pipe: Option<impl std::io::Read + Send + 'static>,
    log: Arc<Mutex<String>>,
    prefix: &'static str,
    lines: Option<mpsc::Sender<Option<String>>>,
) {
    let Some(pipe) = pipe else { return };
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = strip_ansi(&String::from_utf8_lossy(&line));
                    let text = text.trim_end_matches(['\n', '\r']).to_string();
                    {
                        let mut log = log.lock().expect("log lock");
                        log.push_str(prefix);
                        log.push_str(&text);
                        log.push('\n');
                    }
                    if let Some(tx) = &lines {
                        let _ = tx.send(Some(text));
                    }
                }
            }
        }
        if let Some(tx) = &lines {
            let _ = tx.send(None);
        }
    });
}

/// Removes ANSI escape sequences (`ESC [ ... letter`), in case the agent colours its logs.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The address after `marker` in a log line (`proxy listening on 127.0.0.1:4242`), if any.
pub fn address_after(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let token: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']'))
        .collect();
    token.parse().ok()
}

/// A running `outpost run`.
pub struct Agent {
    child: Child,
    dir: tempfile::TempDir,
    state_dir: PathBuf,
    config_path: PathBuf,
    log: Arc<Mutex<String>>,
    proxy_addr: Option<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    ca_pem_path: OnceLock<PathBuf>,
    exit_status: Option<ExitStatus>,
}

impl Agent {
    pub fn builder() -> AgentBuilder {
        AgentBuilder {
            resolve: Vec::new(),
            extra_ca_files: Vec::new(),
            top_level: Vec::new(),
            upstream: Vec::new(),
            log_level: std::env::var("OUTPOST_TEST_LOG_LEVEL")
                .unwrap_or_else(|_| "debug".to_string()),
            shutdown_grace_secs: None,
            state_dir: None,
            policy_files: Vec::new(),
            policy_links: Vec::new(),
            fd_limit: None,
            audit: Vec::new(),
            sections: Vec::new(),
        }
    }

    fn wait_until_listening(&mut self, lines: mpsc::Receiver<Option<String>>) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while self.proxy_addr.is_none() || self.admin_addr.is_none() {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(remaining) {
                Ok(Some(line)) => {
                    if let Some(addr) = address_after(&line, "proxy listening on") {
                        self.proxy_addr = Some(addr);
                    }
                    if let Some(addr) = address_after(&line, "admin listening on") {
                        self.admin_addr = Some(addr);
                    }
                }
                Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let (status, _) = wait_deadline(&mut self.child, Duration::from_secs(5));
                    // Let the stdout thread finish appending.
                    std::thread::sleep(Duration::from_millis(100));
                    panic!(
                        "outpost exited before listening (status {status:?})\n--- config {} ---\n{}\n--- output ---\n{}",
                        self.config_path.display(),
                        std::fs::read_to_string(&self.config_path).unwrap_or_default(),
                        self.log()
                    );
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    panic!(
                        "outpost did not print both `proxy listening on ADDR` and `admin listening on ADDR` \
                         within {STARTUP_TIMEOUT:?}\n--- output ---\n{}",
                        self.log()
                    );
                }
            }
        }
    }

    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy_addr.expect("set by start")
    }

    /// `http://127.0.0.1:PORT`, for `HTTPS_PROXY` and `curl --proxy`.
    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.proxy_addr())
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr.expect("set by start")
    }

    /// The agent's temp dir (config, state, policy, exported files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn state_dir(&self) -> PathBuf {
        self.state_dir.clone()
    }

    /// `state_dir/ca/ca.pem`, where the contract says the CA certificate lives.
    pub fn ca_cert_file(&self) -> PathBuf {
        self.state_dir.join("ca").join("ca.pem")
    }

    /// `state_dir/ca/ca.key` (PKCS#8 PEM, mode 0600 on Linux).
    pub fn ca_key_file(&self) -> PathBuf {
        self.state_dir.join("ca").join("ca.key")
    }

    pub fn policy_dir(&self) -> PathBuf {
        self.dir.path().join("policy")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the agent has written so far (stderr, and stdout lines prefixed `[stdout]`).
    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    /// Runs `outpost ARGS --config <this agent's config>`.
    pub fn cli(&self, args: &[&str]) -> CmdOutput {
        outpost_cli(args, Some(&self.config_path), Duration::from_secs(30))
    }

    /// The Outpost CA certificate, exported once with `outpost ca export` into a file.
    pub fn ca_pem_path(&self) -> PathBuf {
        self.ca_pem_path
            .get_or_init(|| {
                let out = self.cli(&["ca", "export"]);
                assert_eq!(
                    out.code,
                    Some(0),
                    "`outpost ca export` failed:\n{}",
                    out.describe()
                );
                let pem = out.stdout_text();
                assert!(
                    pem.contains("-----BEGIN CERTIFICATE-----"),
                    "`outpost ca export` printed no PEM certificate:\n{}",
                    out.describe()
                );
                let path = self.dir.path().join("outpost-ca-export.pem");
                std::fs::write(&path, pem).expect("write exported CA");
                path
            })
            .clone()
    }

    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.ca_pem_path()).expect("read exported CA")
    }

    /// A client trust bundle: the system bundle (if present) plus the Outpost CA, as a
    /// managed install would configure `SSL_CERT_FILE` (which *replaces* the bundle).
    pub fn client_bundle_path(&self) -> PathBuf {
        let path = self.dir.path().join("client-bundle.pem");
        if !path.exists() {
            let mut bundle = std::fs::read_to_string(SYSTEM_CA_BUNDLE).unwrap_or_default();
            if !bundle.is_empty() && !bundle.ends_with('\n') {
                bundle.push('\n');
            }
            bundle += &self.ca_pem();
            std::fs::write(&path, bundle).expect("write client bundle");
        }
        path
    }

    /// Sends SIGTERM (via `/usr/bin/kill`, to keep `unsafe` out of the tests).
    /// `kill -9`: no chance to flush anything.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        if let Ok(status) = self.child.wait() {
            self.exit_status = Some(status);
        }
    }

    pub fn sigterm(&self) {
        let out = run_with_timeout(
            Command::new("kill")
                .arg("-TERM")
                .arg(self.pid().to_string()),
            Duration::from_secs(10),
        );
        assert_eq!(
            out.code,
            Some(0),
            "kill -TERM {} failed:\n{}",
            self.pid(),
            out.describe()
        );
    }

    /// Waits for the agent to exit (panics with its log after `timeout`).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(status) = self.exit_status {
            return status;
        }
        let (status, timed_out) = wait_deadline(&mut self.child, timeout);
        assert!(
            !timed_out,
            "outpost did not exit within {timeout:?}\n--- output ---\n{}",
            self.log()
        );
        let status = status.expect("exit status");
        self.exit_status = Some(status);
        status
    }

    /// `None` while running; the exit status once it has exited.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "===== outpost output (pid {}) =====\n{}=====",
                self.child.id(),
                self.log()
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `outpost ARGS [--config CONFIG]` to completion (killed after `timeout`).
pub fn outpost_cli(args: &[&str], config: Option<&Path>, timeout: Duration) -> CmdOutput {
    let mut cmd = Command::new(OUTPOST_BIN);
    scrub_env(&mut cmd);
    cmd.args(args).env("NO_COLOR", "1");
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    let mut out = run_with_timeout(&mut cmd, timeout);
    out.stderr = strip_ansi(&out.stderr);
    out
}
