//! `Curl`: a builder around `/usr/bin/curl`, the reference HTTP client of these tests.
//!
//! curl is strict and well known: `--cacert` with only the Outpost CA succeeding proves
//! the chain, `--http2` proves ALPN, `-N` shows streaming. Every run is bounded by
//! `--max-time` and a process deadline, reads `~/.curlrc` never (`-q`), and sees no proxy
//! variables from the developer's shell. The body goes to a file and the final status and
//! HTTP version come from `--write-out`, so CONNECT's own `200` is never mistaken for the
//! answer.

use std::ffi::OsString;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::agent::Agent;
use super::process::{run_with_timeout, scrub_env, wait_deadline, CmdOutput};

pub const CURL: &str = "/usr/bin/curl";

/// Body bytes as they came off curl's stdout: each read, with when it returned.
pub type TimedPieces = Vec<(Instant, Vec<u8>)>;

/// A curl invocation being assembled.
pub struct Curl {
    url: String,
    args: Vec<OsString>,
    body: Option<Vec<u8>>,
    max_time: Duration,
    dir: tempfile::TempDir,
}

/// Result of a finished curl.
#[derive(Debug, Clone)]
pub struct CurlOutput {
    /// curl's exit code (0 = transfer ok; 35 = TLS handshake, 56 = CONNECT refused, 60 = cert).
    pub exit_code: Option<i32>,
    /// Status of the final response (not of the CONNECT); 0 if there was none.
    pub status: u16,
    /// `%{http_version}`: "1.1", "2", ...
    pub http_version: String,
    /// Headers of the final response, names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub stderr: String,
}

impl CurlOutput {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("curl body is not JSON ({e}):\n{}", self.describe()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn describe(&self) -> String {
        format!(
            "curl exit {:?}, status {}, http {}\n--- headers ---\n{:?}\n--- body ---\n{}\n--- stderr ---\n{}",
            self.exit_code,
            self.status,
            self.http_version,
            self.headers,
            self.text(),
            self.stderr
        )
    }
}

impl Curl {
    pub fn new(url: &str) -> Curl {
        let dir = tempfile::Builder::new()
            .prefix("outpost-curl-")
            .tempdir()
            .expect("tempdir");
        Curl {
            url: url.to_string(),
            args: Vec::new(),
            body: None,
            max_time: Duration::from_secs(60),
            dir,
        }
    }

    /// Sends the request through the agent's proxy listener.
    pub fn via(self, agent: &Agent) -> Curl {
        let url = agent.proxy_url();
        self.proxy(&url)
    }

    pub fn proxy(self, proxy_url: &str) -> Curl {
        self.arg("--proxy").arg(proxy_url)
    }

    /// Trusts exactly the certificates in `pem` (an empty `--capath` keeps any compiled-in
    /// CA directory out of it).
    pub fn cacert(self, pem: &Path) -> Curl {
        let empty = self.dir.path().join("empty-capath");
        std::fs::create_dir_all(&empty).expect("create empty capath");
        self.arg("--cacert").arg(pem).arg("--capath").arg(empty)
    }

    pub fn http2(self) -> Curl {
        self.arg("--http2")
    }

    pub fn http1_1(self) -> Curl {
        self.arg("--http1.1")
    }

    pub fn header(self, header: &str) -> Curl {
        self.arg("-H").arg(header)
    }

    /// POSTs `body` as JSON.
    pub fn post_json(mut self, body: &Value) -> Curl {
        self.body = Some(body.to_string().into_bytes());
        self.arg("-X")
            .arg("POST")
            .header("content-type: application/json")
    }

    pub fn max_time(mut self, limit: Duration) -> Curl {
        self.max_time = limit;
        self
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Curl {
        self.args.push(arg.into());
        self
    }

    fn command(&self, body_to_stdout: bool) -> Command {
        let mut cmd = Command::new(CURL);
        scrub_env(&mut cmd);
        cmd.arg("-q")
            .arg("-sS")
            .arg("--max-time")
            .arg(self.max_time.as_secs().max(1).to_string());
        cmd.arg("-D").arg(self.dir.path().join("headers"));
        if body_to_stdout {
            cmd.arg("-N");
        } else {
            cmd.arg("-o").arg(self.dir.path().join("body"));
            cmd.arg("-w").arg("%{http_code} %{http_version}");
        }
        if let Some(body) = &self.body {
            let path = self.dir.path().join("request-body");
            std::fs::write(&path, body).expect("write request body");
            let mut arg = OsString::from("@");
            arg.push(&path);
            cmd.arg("--data-binary").arg(arg);
        }
        cmd.args(&self.args).arg(&self.url);
        cmd
    }

    fn final_headers(&self) -> (u16, String, Vec<(String, String)>) {
        let raw = std::fs::read_to_string(self.dir.path().join("headers")).unwrap_or_default();
        parse_last_head(&raw)
    }

    pub fn run(self) -> CurlOutput {
        let out: CmdOutput = run_with_timeout(
            &mut self.command(false),
            self.max_time + Duration::from_secs(15),
        );
        let written = out.stdout_text();
        let mut parts = written.split_whitespace();
        let status = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        let http_version = parts.next().unwrap_or("").to_string();
        let (_, _, headers) = self.final_headers();
        CurlOutput {
            exit_code: out.code,
            status,
            http_version,
            headers,
            body: std::fs::read(self.dir.path().join("body")).unwrap_or_default(),
            stderr: out.stderr,
        }
    }

    /// Starts curl with the body streamed to a pipe (`-N`); [`StreamingCurl`] records when
    /// each piece arrived.
    pub fn spawn_streaming(self) -> StreamingCurl {
        let mut cmd = self.command(true);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn curl");
        let pieces: Arc<Mutex<TimedPieces>> = Arc::default();
        let mut stdout = child.stdout.take().expect("piped stdout");
        let reader = {
            let pieces = pieces.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                loop {
                    match stdout.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => pieces
                            .lock()
                            .expect("lock")
                            .push((Instant::now(), buf[..n].to_vec())),
                    }
                }
            })
        };
        let stderr = super::process::drain(child.stderr.take());
        StreamingCurl {
            curl: self,
            child,
            pieces,
            reader: Some(reader),
            stderr: Some(stderr),
        }
    }
}

/// A curl whose response body is being read as it arrives.
pub struct StreamingCurl {
    curl: Curl,
    child: std::process::Child,
    pieces: Arc<Mutex<TimedPieces>>,
    reader: Option<std::thread::JoinHandle<()>>,
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
}

/// A streamed curl that has finished, with arrival times of each read.
pub struct StreamedOutput {
    pub output: CurlOutput,
    pub pieces: TimedPieces,
}

impl StreamingCurl {
    /// Body bytes received so far.
    pub fn received(&self) -> Vec<u8> {
        self.pieces
            .lock()
            .expect("lock")
            .iter()
            .flat_map(|(_, b)| b.clone())
            .collect()
    }

    /// Waits until the body received so far contains `needle` (panics after `timeout`).
    pub fn wait_for(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !String::from_utf8_lossy(&self.received()).contains(needle) {
            assert!(
                Instant::now() < deadline,
                "streamed body did not contain {needle:?} within {timeout:?}; got {:?}",
                String::from_utf8_lossy(&self.received())
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn finish(mut self) -> StreamedOutput {
        let (status, _) = wait_deadline(
            &mut self.child,
            self.curl.max_time + Duration::from_secs(15),
        );
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        let (status_code, http_version, headers) = self.curl.final_headers();
        let pieces = std::mem::take(&mut *self.pieces.lock().expect("lock"));
        StreamedOutput {
            output: CurlOutput {
                exit_code: status.and_then(|s| s.code()),
                status: status_code,
                http_version,
                headers,
                body: pieces.iter().flat_map(|(_, b)| b.clone()).collect(),
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
            },
            pieces,
        }
    }
}

impl Drop for StreamingCurl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Status, HTTP version and headers of the last response head in a `-D` dump (which also
/// holds the proxy's CONNECT reply and any 1xx heads).
fn parse_last_head(raw: &str) -> (u16, String, Vec<(String, String)>) {
    let mut result = (0, String::new(), Vec::new());
    for line in raw.lines().map(|l| l.trim_end_matches('\r')) {
        if line.starts_with("HTTP/") {
            let mut parts = line.split_whitespace();
            let version = parts
                .next()
                .unwrap_or("")
                .trim_start_matches("HTTP/")
                .to_string();
            let status = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            result = (status, version, Vec::new());
        } else if let Some((name, value)) = line.split_once(':') {
            result
                .2
                .push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    result
}
