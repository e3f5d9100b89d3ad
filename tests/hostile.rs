//! Hostile peers on the same machine: the agent stays bounded and answers
//! everyone else. Admin requests that stall are closed, a DNS-rebinding page
//! reads nothing, destinations that are the machine itself are refused.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::raw::{closed_within, RawPeers};
use support::*;

#[test]
fn the_admin_endpoint_refuses_a_foreign_host_header() {
    let agent = Agent::builder().start();
    let url = format!("http://{}/status", agent.admin_addr());
    let rebound = Curl::new(&url).header("host: rebind.attacker.test").run();
    assert_eq!(rebound.status, 421, "{}", rebound.describe());
    let body = rebound.text();
    assert!(!body.contains("intercept"), "{body}");
    let own = Curl::new(&url).run();
    assert_eq!(own.status, 200, "{}", own.describe());
}

#[test]
fn stalled_admin_requests_are_closed_and_health_still_answers() {
    let agent = Agent::builder().start();
    let mut stalled = RawPeers::to(agent.admin_addr())
        .count(100)
        .sending(b"GET /status HTTP/1.1\r\nHost: 127")
        .open();
    assert_eq!(stalled.len(), 100);
    let started = Instant::now();
    // The header timeout is 5 s: every one is gone well within 10.
    for stream in &mut stalled {
        let left = Duration::from_secs(10).saturating_sub(started.elapsed());
        assert!(
            closed_within(stream, left),
            "a stalled admin request stayed open"
        );
    }
    let health = Curl::new(&format!("http://{}/healthz", agent.admin_addr())).run();
    assert_eq!(health.status, 200, "{}", health.describe());
}

#[test]
fn a_symlinked_policy_file_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("secret.toml");
    std::fs::write(&target, "[models]\ndeny = [\"*\"]\n").unwrap();
    let link = dir.path().join("10-link.toml");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let out = outpost_cli(
        &["policy", "check", &dir.path().to_string_lossy()],
        None,
        Duration::from_secs(20),
    );
    assert_eq!(out.code, Some(1), "{}", out.describe());
    let text = out.stdout_text();
    assert!(
        text.contains(&format!("{}:1:1: is a symlink", link.display())),
        "{text}"
    );
    // The agent does not load it either: it reports the error and runs on the default.
    let agent = Agent::builder()
        .policy_link("10-link.toml", &target)
        .start();
    let status = Curl::new(&format!("http://{}/status", agent.admin_addr())).run();
    let errors = status.json()["policy"]["errors"].to_string();
    assert!(errors.contains("is a symlink"), "{errors}");
}

#[test]
fn destinations_on_this_machine_are_refused_unless_listed() {
    let listed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listed_port = listed.local_addr().unwrap().port();
    let agent = Agent::builder()
        .upstream_setting(&format!(
            "danger_allow_destinations = [\"127.0.0.1:{listed_port}\"]"
        ))
        .start();
    let admin = agent.admin_addr().to_string();
    let own_proxy = agent.proxy_addr().to_string();
    for target in [
        admin.as_str(),
        own_proxy.as_str(),
        "127.0.0.1:22",
        "localhost:22",
        "169.254.169.254:80",
        "[::1]:22",
    ] {
        let reply =
            block_on(support::tunnel::send_connect(agent.proxy_addr(), target)).expect("CONNECT");
        assert_eq!(reply.status, 403, "{target}: {}", reply.head);
    }
    // Through plain-HTTP forwarding too (the metadata service's classic URL).
    let metadata = Curl::new("http://169.254.169.254/latest/meta-data/")
        .via(&agent)
        .run();
    assert_eq!(metadata.status, 400, "{}", metadata.describe());
    assert!(
        metadata.text().contains("danger_allow_destinations"),
        "{}",
        metadata.describe()
    );
    // What the config lists is reached.
    let reply = block_on(support::tunnel::send_connect(
        agent.proxy_addr(),
        &format!("127.0.0.1:{listed_port}"),
    ))
    .expect("CONNECT");
    assert_eq!(reply.status, 200, "{}", reply.head);
}

#[test]
fn a_flood_of_silent_tls_connections_does_not_keep_out_a_real_call() {
    // 400 connections against 256 descriptors: without a cap and eviction the agent runs
    // out of descriptors and answers nobody.
    let stack = Stack::start_with(
        |fake| fake,
        |agent| {
            agent
                .fd_limit(256)
                .top_level("[limits]\nidle_timeout_secs = 3")
        },
    );
    let proxy = stack.agent.proxy_addr();
    let ca = stack.agent.ca_pem_path();
    let runtime = client_runtime();
    let silent: Vec<_> = runtime.block_on(async {
        let mut handles = Vec::new();
        for _ in 0..400 {
            let ca = ca.clone();
            handles.push(tokio::spawn(async move {
                support::tunnel::tls_through_proxy(proxy, "api.openai.com", 443, &ca, &["h2"])
                    .await
                    .ok()
            }));
        }
        let mut open = Vec::new();
        for handle in handles {
            if let Some(tls) = handle.await.unwrap() {
                open.push(tls);
            }
        }
        open
    });
    assert!(
        silent.len() >= 90,
        "only {} connections completed TLS",
        silent.len()
    );

    let started = Instant::now();
    let out = Curl::new("https://api.openai.com/v1/chat/completions")
        .via(&stack.agent)
        .cacert(&ca)
        .post_json(&openai_chat_body(false))
        .run();
    assert_eq!(out.status, 200, "{}", out.describe());
    let health = Curl::new(&format!("http://{}/healthz", stack.agent.admin_addr())).run();
    assert_eq!(health.status, 200, "{}", health.describe());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered only after {:?}",
        started.elapsed()
    );
    assert!(
        !stack.agent.log().contains("Too many open files"),
        "the agent ran out of descriptors"
    );

    // The silent ones are closed once idle for the configured 3 s.
    let closed = runtime.block_on(async move {
        use tokio::io::AsyncReadExt;
        let mut closed = 0;
        for mut tls in silent {
            let mut byte = [0u8; 1];
            let read = tokio::time::timeout(Duration::from_secs(8), tls.read(&mut byte)).await;
            if matches!(read, Ok(Ok(0)) | Ok(Err(_))) {
                closed += 1;
            }
        }
        closed
    });
    assert!(closed >= 90, "only {closed} idle connections were closed");
}

#[test]
fn a_body_that_never_ends_gets_a_408_and_a_record() {
    let stack = Stack::start_with(
        |fake| fake,
        |agent| agent.top_level("[limits]\nbody_timeout_secs = 2"),
    );
    let reply = block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tls = support::tunnel::tls_through_proxy(
            stack.agent.proxy_addr(),
            "api.openai.com",
            443,
            &stack.agent.ca_pem_path(),
            &["http/1.1"],
        )
        .await
        .expect("TLS");
        tls.write_all(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\n\
              content-type: application/json\r\ncontent-length: 100000\r\n\r\n{\"model\":",
        )
        .await
        .unwrap();
        let mut reply = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut reply)).await;
        String::from_utf8_lossy(&reply).into_owned()
    });
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("limits.body_timeout_secs"), "{reply}");
    assert!(reply.contains("request_timeout"), "{reply}");
    assert!(
        stack.fake.requests().is_empty(),
        "nothing reached the provider"
    );
    let records = support::records::wait_for_records(&stack.agent.state_dir(), 1);
    assert_eq!(records[0]["status"], 408, "{:#}", records[0]);
}

#[test]
fn a_refusal_of_a_large_upload_arrives_over_http2() {
    let policy = include_str!("../policy/default.toml")
        .replace("max_body_bytes = 33554432", "max_body_bytes = 1048576");
    let stack = Stack::start_with(
        |fake| fake,
        |agent| agent.policy_file("10-small.toml", &policy),
    );
    let dir = tempfile::tempdir().unwrap();
    let upload = dir.path().join("big.json");
    let mut big =
        String::from("{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"");
    big.push_str(&"x".repeat(40 * 1024 * 1024));
    big.push_str("\"}]}");
    std::fs::write(&upload, big).unwrap();
    for _ in 0..3 {
        let out = Curl::new("https://api.openai.com/v1/chat/completions")
            .via(&stack.agent)
            .cacert(&stack.agent.ca_pem_path())
            .arg("--http2")
            .header("content-type: application/json")
            .arg("--data-binary")
            .arg(format!("@{}", upload.display()))
            .run();
        assert_eq!(out.exit_code, Some(0), "{}", out.describe());
        assert_eq!(out.http_version, "2", "{}", out.describe());
        assert_eq!(out.status, 400, "{}", out.describe());
        assert!(out.text().contains("max_body_bytes"), "{}", out.describe());
    }
    assert!(stack.fake.requests().is_empty());
}

#[test]
fn a_stalled_upstream_body_ends_the_call_for_json_and_streams() {
    let stack = Stack::start_with(
        |fake| {
            fake.route("POST", "/v1/chat/completions", |request| {
                if request.body_json()["stream"] == true {
                    FakeResponse::sse(vec![
                        (
                            Duration::ZERO,
                            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello. \"}}]}\n\n"
                                .into(),
                        ),
                        (Duration::from_secs(30), "data: [DONE]\n\n".into()),
                    ])
                } else {
                    FakeResponse::new(200)
                        .header("content-type", "application/json")
                        .chunk(Duration::ZERO, "{\"id\":\"x\",")
                        .chunk(Duration::from_secs(30), "\"choices\":[]}")
                }
            })
        },
        |agent| agent.upstream_setting("body_idle_timeout_secs = 1"),
    );
    let call = |stream: bool| {
        let started = Instant::now();
        let out = Curl::new("https://api.openai.com/v1/chat/completions")
            .via(&stack.agent)
            .cacert(&stack.agent.ca_pem_path())
            .post_json(&openai_chat_body(stream))
            .run();
        (out, started.elapsed())
    };
    let (json, took) = call(false);
    assert!(
        took < Duration::from_secs(10),
        "JSON call hung for {took:?}"
    );
    assert_eq!(json.status, 502, "{}", json.describe());
    assert!(
        json.text().contains("body_idle_timeout_secs"),
        "{}",
        json.describe()
    );
    let (stream, took) = call(true);
    assert!(took < Duration::from_secs(10), "stream hung for {took:?}");
    // Text that can end no secret ("Hello. ") is not held back: it arrives.
    assert!(stream.text().contains("Hello."), "{}", stream.describe());
    assert_ne!(
        stream.exit_code,
        Some(0),
        "a cut stream is not a complete one: {}",
        stream.describe()
    );
    let records = support::records::wait_for_records(&stack.agent.state_dir(), 2);
    for record in &records {
        assert_eq!(record["decision"], "error", "{record:#}");
    }
}

#[test]
fn concurrent_large_bodies_take_turns_within_a_memory_bound() {
    let stack = Stack::start();
    let dir = tempfile::tempdir().unwrap();
    let upload = dir.path().join("30mb.json");
    let mut big =
        String::from("{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"");
    big.push_str(&"lorem ipsum ".repeat(30 * 1024 * 1024 / 12));
    big.push_str("\"}]}");
    std::fs::write(&upload, big).unwrap();
    let idle_kb = status_kb(stack.agent.pid(), "VmRSS:");
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let agent_url = stack.agent.proxy_url();
            let ca = stack.agent.ca_pem_path();
            let upload = upload.clone();
            std::thread::spawn(move || {
                std::process::Command::new("curl")
                    .args([
                        "-sS",
                        "-o",
                        "/dev/null",
                        "-w",
                        "%{http_code}",
                        "--max-time",
                        "120",
                    ])
                    .arg("--proxy")
                    .arg(agent_url)
                    .arg("--cacert")
                    .arg(ca)
                    .args(["-H", "content-type: application/json", "--data-binary"])
                    .arg(format!("@{}", upload.display()))
                    .arg("https://api.openai.com/v1/chat/completions")
                    .output()
                    .expect("curl")
            })
        })
        .collect();
    for call in calls {
        let out = call.join().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{out:?}");
    }
    let peak_kb = status_kb(stack.agent.pid(), "VmHWM:");
    eprintln!(
        "peak RSS with 8 concurrent 30 MB calls: {} MB ({} MB idle)",
        peak_kb / 1024,
        idle_kb / 1024
    );
    // limits.max_buffered_bytes = 256 MiB by default, a body counted three
    // times its length: two such bodies at once, not eight.
    assert!(
        peak_kb < idle_kb + (256 + 64) * 1024,
        "peak RSS {} MB",
        peak_kb / 1024
    );
}

/// A `kB` line of `/proc/PID/status`.
fn status_kb(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap()
}

#[test]
fn http2_pings_alone_do_not_keep_an_intercepted_connection_open() {
    use http_body_util::BodyExt;
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let stack = Stack::start_with(
        |fake| fake,
        |agent| agent.top_level("[limits]\nidle_timeout_secs = 3"),
    );
    let proxy = stack.agent.proxy_addr();
    let ca = stack.agent.ca_pem_path();
    let runtime = client_runtime();
    let (status, idle_for) = runtime.block_on(async move {
        let tls = support::tunnel::tls_through_proxy(proxy, "api.openai.com", 443, &ca, &["h2"])
            .await
            .expect("TLS through the agent");
        // A client that pings twice a second, with or without streams open.
        let (mut send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_millis(500))
            .keep_alive_while_idle(true)
            .handshake(TokioIo::new(tls))
            .await
            .expect("h2 handshake");
        let conn = tokio::spawn(conn);
        let request = http::Request::post("https://api.openai.com/v1/chat/completions")
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(
                openai_chat_body(false).to_string(),
            )))
            .unwrap();
        let response = send.send_request(request).await.expect("a call");
        let status = response.status().as_u16();
        let _ = response.into_body().collect().await;
        let ended = Instant::now();
        let _ = tokio::time::timeout(Duration::from_secs(15), conn).await;
        (status, ended.elapsed())
    });
    assert_eq!(status, 200);
    assert!(
        idle_for >= Duration::from_millis(2500) && idle_for < Duration::from_secs(10),
        "closed {idle_for:?} after its last request (idle_timeout_secs = 3)"
    );
}

/// The runtime the raw clients of a test run on.
fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn an_http2_client_that_stops_answering_pings_is_closed_mid_stream() {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let stack = Stack::start_with(
        |fake| {
            fake.stream_events(30)
                .stream_delay(Duration::from_millis(500))
        },
        |agent| agent.top_level("[limits]\nh2_keepalive_secs = 1"),
    );
    let proxy = stack.agent.proxy_addr();
    let ca = stack.agent.ca_pem_path();
    let runtime = client_runtime();
    let frozen = Arc::new(AtomicBool::new(false));
    let freeze = frozen.clone();
    let started = Instant::now();
    let _client = runtime.block_on(async move {
        let tls = support::tunnel::tls_through_proxy(proxy, "api.openai.com", 443, &ca, &["h2"])
            .await
            .expect("TLS through the agent");
        let io = Freezable { inner: tls, frozen };
        let (mut send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(io))
            .await
            .expect("h2 handshake");
        tokio::spawn(conn);
        let request = http::Request::post("https://api.openai.com/v1/chat/completions")
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(
                openai_chat_body(true).to_string(),
            )))
            .unwrap();
        let response = send.send_request(request).await.expect("a streaming call");
        assert_eq!(response.status(), 200);
        // From here the client neither reads nor writes, as a laptop gone
        // to sleep: the agent's pings go unanswered. The stream would run 15 s.
        freeze.store(true, Ordering::SeqCst);
        (send, response)
    });
    let records = support::records::wait_for_records(&stack.agent.state_dir(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the call was recorded only after {:?}: the agent held the silent client's stream",
        started.elapsed()
    );
    assert_ne!(records[0]["decision"], "allow", "{:#}", records[0]);
}

/// A stream that stops reading and writing (both stay pending) once
/// `frozen` is set.
struct Freezable<S> {
    inner: S,
    frozen: Arc<AtomicBool>,
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Freezable<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.frozen.load(Ordering::SeqCst) {
            return std::task::Poll::Pending;
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Freezable<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.frozen.load(Ordering::SeqCst) {
            return std::task::Poll::Pending;
        }
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.frozen.load(Ordering::SeqCst) {
            return std::task::Poll::Pending;
        }
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
