//! The LiteLLM proxy (PyPI `litellm[proxy]`, in its own venv under the
//! test tree) as the company's AI gateway, in front of a fake provider.
//! Its master key stands in for the device credential: its virtual keys
//! would need a database.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::process::{build_once, run_with_timeout, scrub_env};

const VENV_DIR: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/litellm-venv");
const LOCK_DIR: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/litellm-venv.lock");
const MARKER: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/litellm-venv/.outpost-ready");
/// Installing downloads packages; give a slow network room.
const CREATE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// LiteLLM imports a lot before it listens.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A running LiteLLM proxy; killed on drop.
pub struct LiteLlm {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
    log: PathBuf,
}

impl LiteLlm {
    /// Serve `model` (OpenAI-compatible) from `upstream` (`http://ip:port`,
    /// called with `upstream_key`), accepting only `master_key`.
    pub fn start(model: &str, upstream: &str, upstream_key: &str, master_key: &str) -> LiteLlm {
        build_once(MARKER, LOCK_DIR, CREATE_TIMEOUT, build_venv);
        let dir = tempfile::Builder::new()
            .prefix("outpost-litellm-")
            .tempdir()
            .expect("tempdir");
        let config = dir.path().join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "model_list:\n  - model_name: {model}\n    litellm_params:\n      model: openai/{model}\n      \
                 api_base: {upstream}/v1\n      api_key: {upstream_key}\n\
                 general_settings:\n  master_key: {master_key}\n\
                 litellm_settings:\n  telemetry: false\n"
            ),
        )
        .expect("write litellm config");
        let port = free_port();
        let log = dir.path().join("litellm.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(Path::new(VENV_DIR).join("bin/litellm"));
        scrub_env(&mut cmd);
        let child = cmd
            .args(["--config"])
            .arg(&config)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--num_workers",
                "1",
            ])
            .env("LITELLM_TELEMETRY", "False")
            .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            .env("NO_PROXY", "*")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file)
            .spawn()
            .expect("start litellm");
        let mut proxy = LiteLlm {
            child,
            port,
            _dir: dir,
            log,
        };
        proxy.wait_ready();
        proxy
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("litellm exited ({status}):\n{}", self.log());
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "litellm did not listen within {START_TIMEOUT:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// What it printed.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for LiteLlm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn build_venv() {
    let _ = std::fs::remove_dir_all(VENV_DIR);
    let python = std::env::var("OUTPOST_TEST_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let out = run_with_timeout(
        Command::new(&python).args(["-m", "venv", VENV_DIR]),
        Duration::from_secs(120),
    );
    assert_eq!(
        out.code,
        Some(0),
        "create the LiteLLM venv:\n{}",
        out.describe()
    );
    let out = run_with_timeout(
        Command::new(Path::new(VENV_DIR).join("bin/python")).args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--quiet",
            "litellm[proxy]",
        ]),
        CREATE_TIMEOUT,
    );
    assert_eq!(
        out.code,
        Some(0),
        "pip install litellm[proxy] (needs PyPI):\n{}",
        out.describe()
    );
    std::fs::write(MARKER, "").expect("marker");
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}
