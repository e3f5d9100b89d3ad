//! The audit log, end to end: one record per intercepted request (allowed,
//! blocked, redacted, streamed, abandoned by the client), a chain that
//! `outpost audit verify` accepts and that detects a flipped byte or a
//! deleted line, no secret in the file, and no answered request without its
//! record across `kill -9`.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use support::records::audit_records;
use support::*;

const SECRET: &str = "ghp_R7d9Kq2LmX4vB8nT1wZ6yH3cF5jP0sAeUiOg";

fn day_files(state_dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(state_dir.join("audit"))
        .expect("audit dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    files
}

#[derive(Clone, Copy, Debug)]
enum Shape {
    Allow,
    Redact,
    Block,
    Stream,
    Disconnect,
}

fn body_for(shape: Shape, id: usize) -> Value {
    let content = match shape {
        Shape::Allow | Shape::Stream | Shape::Disconnect => format!("request {id}: hello"),
        Shape::Redact => format!("request {id}: card 4111 1111 1111 1111"),
        Shape::Block => format!("request {id}: token {SECRET}"),
    };
    json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": content}],
        "stream": matches!(shape, Shape::Stream | Shape::Disconnect),
    })
}

/// One client connection through the proxy sending `ids` in turn; returns
/// the ids whose response it read completely.
async fn client(
    agent_proxy: std::net::SocketAddr,
    ca: PathBuf,
    ids: Vec<(usize, Shape)>,
) -> Vec<usize> {
    let mut answered = Vec::new();
    let mut sender = None;
    for (id, shape) in ids {
        if sender.is_none() {
            let Ok(tls) =
                tunnel::tls_through_proxy(agent_proxy, "api.openai.com", 443, &ca, &["http/1.1"])
                    .await
            else {
                return answered;
            };
            let Ok((s, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await
            else {
                return answered;
            };
            tokio::spawn(conn);
            sender = Some(s);
        }
        let Some(s) = sender.as_mut() else { break };
        let request = Request::post("/v1/chat/completions")
            .header("host", "api.openai.com")
            .header("content-type", "application/json")
            .header("authorization", "Bearer sk-audit-test")
            .body(Full::new(Bytes::from(body_for(shape, id).to_string())))
            .expect("request");
        let Ok(response) = s.send_request(request).await else {
            sender = None;
            continue;
        };
        let mut body = response.into_body();
        if matches!(shape, Shape::Disconnect) {
            // Read one frame, then hang up mid-stream.
            let _ = body.frame().await;
            drop(body);
            sender = None;
            continue;
        }
        if body.collect().await.is_ok() {
            answered.push(id);
        } else {
            sender = None;
        }
    }
    answered
}

fn shapes(n: usize) -> Vec<(usize, Shape)> {
    (0..n)
        .map(|i| {
            let shape = match i % 10 {
                0..=3 => Shape::Allow,
                4 | 5 => Shape::Redact,
                6 => Shape::Block,
                7 | 8 => Shape::Stream,
                _ => Shape::Disconnect,
            };
            (i, shape)
        })
        .collect()
}

fn run_load(agent: &Agent, work: Vec<(usize, Shape)>, clients: usize) -> Vec<usize> {
    let proxy = agent.proxy_addr();
    let ca = agent.ca_pem_path();
    block_on(async move {
        let mut lanes: Vec<Vec<(usize, Shape)>> = vec![Vec::new(); clients];
        for (i, item) in work.into_iter().enumerate() {
            lanes[i % clients].push(item);
        }
        let tasks: Vec<_> = lanes
            .into_iter()
            .map(|lane| tokio::spawn(client(proxy, ca.clone(), lane)))
            .collect();
        let mut answered = Vec::new();
        for t in tasks {
            answered.extend(t.await.unwrap_or_default());
        }
        answered
    })
}

/// Streams of four events 25 ms apart: quick, yet long enough that a
/// client hanging up after the first event is noticed by the agent's next
/// writes (a write into a just-closed socket can still succeed once).
fn fast_stack(policy: Option<&str>) -> Stack {
    Stack::start_with(
        |f| f.stream_events(4).stream_delay(Duration::from_millis(25)),
        |a| match policy {
            Some(p) => a.policy_file("50-audit.toml", p).log_level("info"),
            None => a.log_level("info"),
        },
    )
}

/// The default policy, with full content so each record can be matched to
/// its request.
fn default_with_full_content() -> String {
    outpost::policy::DEFAULT_POLICY.replace("content = \"hash\"", "content = \"full\"")
}

#[test]
fn every_request_gets_exactly_one_record_and_the_chain_verifies() {
    let mut stack = fast_stack(None);
    let work = shapes(1000);
    let answered = run_load(&stack.agent, work.clone(), 8);
    stack.agent.sigterm();
    assert!(stack.agent.wait_exit(Duration::from_secs(30)).success());

    let state = stack.agent.state_dir();
    let recs = audit_records(&state);
    assert_eq!(recs.len(), 1000, "one record per request");
    let count = |decision: &str| recs.iter().filter(|r| r["decision"] == decision).count();
    assert_eq!(count("block"), 100, "blocked");
    assert_eq!(count("redact"), 200, "redacted");
    assert_eq!(count("error"), 100, "client disconnects");
    assert_eq!(count("allow"), 600, "allowed and streamed");
    assert!(answered.len() >= 800, "answered {}", answered.len());
    let disconnect = recs.iter().find(|r| r["decision"] == "error").unwrap();
    assert!(
        disconnect["error"]
            .as_str()
            .unwrap_or_default()
            .contains("disconnect"),
        "{disconnect}"
    );
    let blocked = recs.iter().find(|r| r["decision"] == "block").unwrap();
    assert_eq!(blocked["rules"][0]["id"], "no-secrets", "{blocked}");
    assert_eq!(blocked["status"], 400);
    let redacted = recs.iter().find(|r| r["decision"] == "redact").unwrap();
    assert_eq!(redacted["rules"][0]["id"], "card-numbers", "{redacted}");
    assert!(
        redacted["content"]["prompt_sha256"].is_string(),
        "{redacted}"
    );
    assert!(redacted["content"].get("prompt").is_none());
    let streamed = recs
        .iter()
        .find(|r| r["stream"] == true && r["decision"] == "allow")
        .unwrap();
    assert!(
        streamed["bytes_out"].as_u64().unwrap_or(0) > 0,
        "{streamed}"
    );
    for r in &recs {
        assert_eq!(r["host"], "api.openai.com");
        assert_eq!(r["provider"], "openai");
        assert!(r["hash"].as_str().is_some_and(|h| h.len() == 64));
    }

    let all = day_files(&state)
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect::<String>();
    assert!(!all.contains(SECRET), "the secret reached the audit log");
    assert!(!all.contains("4111 1111"), "the card reached the audit log");
    assert!(
        !all.contains("sk-audit-test"),
        "the API key reached the audit log"
    );

    let ok = stack.agent.cli(&["audit", "verify"]);
    assert_eq!(ok.code, Some(0), "{}", ok.describe());

    // Flip one byte inside a record in the middle of the file.
    let file = day_files(&state).last().cloned().unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let target = lines.len() / 2;
    let mut tampered: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    tampered[target] = tampered[target].replacen("\"status\":200", "\"status\":201", 1);
    if tampered[target] == lines[target] {
        tampered[target] = tampered[target].replacen("\"status\":400", "\"status\":402", 1);
    }
    assert_ne!(tampered[target], lines[target]);
    std::fs::write(&file, tampered.join("\n") + "\n").unwrap();
    let bad = stack.agent.cli(&["audit", "verify"]);
    assert_eq!(bad.code, Some(1), "{}", bad.describe());
    let name = file.file_name().unwrap().to_string_lossy().to_string();
    let report = format!("{}{}", bad.stdout_text(), bad.stderr);
    assert!(
        report.contains(&format!("{name}:{}", target + 1)),
        "{report}"
    );

    // Restore, then delete a line.
    let mut missing: Vec<&str> = lines.clone();
    missing.remove(target);
    std::fs::write(&file, missing.join("\n") + "\n").unwrap();
    let gap = stack.agent.cli(&["audit", "verify"]);
    assert_eq!(gap.code, Some(1), "{}", gap.describe());
}

#[test]
fn kill_9_under_load_loses_no_answered_request() {
    let policy = default_with_full_content();
    let mut stack = fast_stack(Some(&policy));
    let state = stack.agent.state_dir();
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(Mutex::new(Vec::new()));
    let next = Arc::new(AtomicUsize::new(0));
    let proxy = stack.agent.proxy_addr();
    let ca = stack.agent.ca_pem_path();
    let load = {
        let (stop, answered, next) = (stop.clone(), answered.clone(), next.clone());
        std::thread::spawn(move || {
            block_on(async move {
                let mut lanes = Vec::new();
                for _ in 0..6 {
                    let (stop, answered, next, ca) =
                        (stop.clone(), answered.clone(), next.clone(), ca.clone());
                    lanes.push(tokio::spawn(async move {
                        while !stop.load(Ordering::SeqCst) {
                            let batch: Vec<(usize, Shape)> = (0..20)
                                .map(|_| {
                                    let id = next.fetch_add(1, Ordering::SeqCst);
                                    let shape = if id % 5 == 0 {
                                        Shape::Stream
                                    } else {
                                        Shape::Allow
                                    };
                                    (id, shape)
                                })
                                .collect();
                            let done = client(proxy, ca.clone(), batch).await;
                            answered.lock().unwrap().extend(done);
                        }
                    }));
                }
                for lane in lanes {
                    let _ = lane.await;
                }
            })
        })
    };
    // Kill while the load is still running, once enough has been answered.
    wait_until("50 answered requests", WAIT_LIMIT, || {
        answered.lock().unwrap().len() > 50
    });
    stack.agent.kill_hard();
    stop.store(true, Ordering::SeqCst);
    load.join().expect("load thread");
    let answered = answered.lock().unwrap().clone();
    assert!(
        answered.len() > 50,
        "only {} answered before the kill",
        answered.len()
    );

    // Restart on the same state dir: repair (if torn), continue the chain.
    let restarted = Agent::builder()
        .fake_upstream(&stack.fake)
        .state_dir(&state)
        .log_level("info")
        .start();
    let verify = restarted.cli(&["audit", "verify"]);
    assert_eq!(verify.code, Some(0), "{}", verify.describe());
    let recs = audit_records(&state);
    let prompts: std::collections::HashSet<String> = recs
        .iter()
        .filter_map(|r| r["content"]["prompt"].as_str().map(str::to_string))
        .collect();
    for id in &answered {
        let prompt = format!("request {id}: hello");
        assert!(
            prompts.contains(&prompt),
            "request {id} was answered but has no record"
        );
    }
}

/// A minimal OTLP/HTTP logs receiver on `port`, recording `outpost.seq` of
/// every log record it accepts.
fn start_collector(port: u16, seen: Arc<Mutex<Vec<u64>>>) -> tokio::runtime::Runtime {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("collector runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
        .expect("bind collector");
    runtime.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let body = req.into_body().collect().await?.to_bytes();
                            let doc: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            let records = doc["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
                                .as_array()
                                .cloned()
                                .unwrap_or_default();
                            for record in records {
                                let attrs =
                                    record["attributes"].as_array().cloned().unwrap_or_default();
                                if let Some(seq) = attrs.iter().find(|a| a["key"] == "outpost.seq")
                                {
                                    let v = &seq["value"]["intValue"];
                                    let n = v.as_str().and_then(|s| s.parse().ok()).or(v.as_u64());
                                    if let Some(n) = n {
                                        seen.lock().unwrap().push(n);
                                    }
                                }
                            }
                            Ok::<_, hyper::Error>(http::Response::new(Full::new(
                                Bytes::from_static(b"{}"),
                            )))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    runtime
}

#[test]
fn records_reach_the_collector_after_it_was_down() {
    let port = free_port();
    let ca = TestCa::new();
    let fake = FakeProvider::tls(&ca).start();
    let mut agent = Agent::builder()
        .fake_upstream(&fake)
        // The shipper says at debug level when an export fails.
        .log_level("info,outpost::audit::ship=debug")
        .audit_setting(&format!(
            "export = {{ otlp_endpoint = \"http://127.0.0.1:{port}\", batch_size = 40 }}"
        ))
        .start();
    // Collector down: requests are served and spooled, and the shipper
    // finds the collector down before it comes up.
    let answered = run_load(&agent, (0..120).map(|i| (i, Shape::Allow)).collect(), 4);
    assert_eq!(answered.len(), 120);
    wait_until(
        "a failed export while the collector is down",
        WAIT_LIMIT,
        || {
            agent
                .log()
                .lines()
                .any(|l| l.contains("audit shipping: ") && l.contains("retrying in"))
        },
    );

    let seen = Arc::new(Mutex::new(Vec::new()));
    let _collector = start_collector(port, seen.clone());
    let state = agent.state_dir();
    let wanted: Vec<u64> = audit_records(&state)
        .iter()
        .filter_map(|r| r["seq"].as_u64())
        .collect();
    assert_eq!(wanted.len(), 120);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let got: std::collections::HashSet<u64> = seen.lock().unwrap().iter().copied().collect();
        if wanted.iter().all(|s| got.contains(s)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "collector got {} of {} records",
            got.len(),
            wanted.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // In order of first arrival.
    let arrivals = seen.lock().unwrap().clone();
    let mut first = Vec::new();
    for s in arrivals {
        if !first.contains(&s) {
            first.push(s);
        }
    }
    let mut sorted = first.clone();
    sorted.sort();
    assert_eq!(first, sorted, "records arrived out of order");
    agent.sigterm();
    assert!(agent.wait_exit(Duration::from_secs(30)).success());
}

#[test]
fn full_audit_queue_refuses_new_requests_with_a_clear_error() {
    let stack = Stack::start_with(
        |f| f.stream_events(5).stream_delay(Duration::from_millis(400)),
        |a| a.audit_setting("queue_capacity = 16"),
    );
    let url = "https://api.openai.com/v1/chat/completions";
    // Sixteen slow streams hold every audit slot.
    let streams: Vec<_> = (0..16)
        .map(|_| {
            Curl::new(url)
                .via(&stack.agent)
                .cacert(&stack.agent.ca_pem_path())
                .post_json(&openai_chat_body(true))
                .spawn_streaming()
        })
        .collect();
    stack.fake.wait_for_requests(16, Duration::from_secs(30));
    let refused = Curl::new(url)
        .via(&stack.agent)
        .cacert(&stack.agent.ca_pem_path())
        .post_json(&openai_chat_body(false))
        .run();
    assert_eq!(refused.status, 503, "{}", refused.describe());
    assert!(
        refused.text().contains("audit log is behind"),
        "{}",
        refused.describe()
    );
    let status = Curl::new(&format!("http://{}/status", stack.agent.admin_addr())).run();
    assert!(
        status.json()["audit"]["refused_backlog_full"]
            .as_u64()
            .unwrap_or(0)
            >= 1,
        "{}",
        status.text()
    );
    for stream in streams {
        let done = stream.finish();
        assert_eq!(done.output.status, 200, "{}", done.output.describe());
    }
    // Slots are free again.
    let after = Curl::new(url)
        .via(&stack.agent)
        .cacert(&stack.agent.ca_pem_path())
        .post_json(&openai_chat_body(false))
        .run();
    assert_eq!(after.status, 200, "{}", after.describe());
}
