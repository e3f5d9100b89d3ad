//! Shipping the audit log over OTLP/HTTP, against a collector that goes away.
//!
//! The collector here is a small hyper server on loopback that records the
//! `outpost.seq` of every log record it acknowledges. It can be *down*
//! (nothing listens on its port) or *unavailable* (it answers 503), which is
//! what a collector restart or an overloaded gateway looks like from the
//! agent. The spool is written the way the writer writes it: day files of
//! chained records (`AuditRecord::chain`), next to files that are not day
//! files and must be left alone.
//!
//! What is checked is the shipping contract: every record arrives, the
//! first arrivals are in `seq` order with none missing, duplicates happen
//! only as at-least-once re-sends (bounded by one batch on restart), and a
//! restart resumes at the persisted cursor.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use outpost::audit::record::{AuditEvent, AuditRecord, Decision, Kind, RuleCount, GENESIS};
use outpost::audit::ship::{self, ShipConfig, ShipStatsHandle, Shipper, CURSOR_FILE};
use outpost::clock::Clock;
use outpost::config::UpstreamConfig;
use outpost::upstream::Connector;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const BATCH: usize = 40;

/// What the collector saw.
#[derive(Debug, Default)]
struct Received {
    /// `outpost.seq` of every acknowledged log record, in arrival order.
    seqs: Vec<u64>,
    /// Requests answered 503.
    refused: usize,
    /// Anything about a request that breaks the OTLP/HTTP contract.
    problems: Vec<String>,
}

/// A local OTLP/HTTP logs receiver on a fixed loopback port.
struct Collector {
    port: u16,
    unavailable: Arc<AtomicBool>,
    received: Arc<Mutex<Received>>,
    running: Option<(CancellationToken, JoinHandle<()>)>,
}

impl Collector {
    /// A collector for `port` that is not listening yet.
    fn down(port: u16) -> Collector {
        Collector {
            port,
            unavailable: Arc::new(AtomicBool::new(false)),
            received: Arc::default(),
            running: None,
        }
    }

    /// Start listening.
    async fn start(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("collector port still free");
        let stop = CancellationToken::new();
        let (unavailable, received) = (self.unavailable.clone(), self.received.clone());
        let token = stop.clone();
        let accept = tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    _ = token.cancelled() => return,
                    accepted = listener.accept() => accepted.expect("accept"),
                };
                let (unavailable, received, token) =
                    (unavailable.clone(), received.clone(), token.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let (unavailable, received) = (unavailable.clone(), received.clone());
                        async move { Ok::<_, Infallible>(answer(req, &unavailable, &received).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service);
                    // Dropping the connection closes it: "down" means down.
                    tokio::select! {
                        _ = conn => {}
                        _ = token.cancelled() => {}
                    }
                });
            }
        });
        self.running = Some((stop, accept));
    }

    /// Stop listening and drop every connection.
    async fn stop(&mut self) {
        if let Some((stop, accept)) = self.running.take() {
            stop.cancel();
            let _ = accept.await;
        }
    }

    fn set_unavailable(&self, on: bool) {
        self.unavailable.store(on, Ordering::SeqCst);
    }

    fn seqs(&self) -> Vec<u64> {
        self.received.lock().unwrap().seqs.clone()
    }

    fn refused(&self) -> usize {
        self.received.lock().unwrap().refused
    }

    fn problems(&self) -> Vec<String> {
        self.received.lock().unwrap().problems.clone()
    }

    fn has_all(&self, last: u64) -> bool {
        let seen: HashSet<u64> = self.seqs().into_iter().collect();
        (1..=last).all(|s| seen.contains(&s))
    }
}

/// One request: 503 when unavailable, else check and record it, then 200.
async fn answer(
    req: Request<Incoming>,
    unavailable: &AtomicBool,
    received: &Mutex<Received>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if unavailable.load(Ordering::SeqCst) {
        received.lock().unwrap().refused += 1;
        return Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .body(Full::new(Bytes::from_static(b"overloaded")))
            .unwrap();
    }
    let mut problems = Vec::new();
    if parts.method != http::Method::POST || parts.uri.path() != "/v1/logs" {
        problems.push(format!("{} {}", parts.method, parts.uri));
    }
    if parts.headers.get("content-type").map(|v| v.as_bytes()) != Some(b"application/json") {
        problems.push(format!(
            "content-type {:?}",
            parts.headers.get("content-type")
        ));
    }
    if parts.headers.get("x-collector-key").map(|v| v.as_bytes()) != Some(b"sesame") {
        problems.push("configured header missing".into());
    }
    let seqs = match serde_json::from_slice::<Value>(&body) {
        Ok(request) => log_records(&request, &mut problems),
        Err(e) => {
            problems.push(format!("body is not JSON: {e}"));
            Vec::new()
        }
    };
    let mut received = received.lock().unwrap();
    received.seqs.extend(seqs);
    received.problems.extend(problems);
    Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap()
}

/// The `outpost.seq` of each log record, checking what every record must carry.
fn log_records(request: &Value, problems: &mut Vec<String>) -> Vec<u64> {
    let mut seqs = Vec::new();
    for resource in request["resourceLogs"].as_array().into_iter().flatten() {
        let res_attrs = attributes(&resource["resource"]);
        if res_attrs.get("service.name") != Some(&Value::from("outpost"))
            || res_attrs.get("host.id") != Some(&Value::from("laptop-7"))
        {
            problems.push(format!("resource attributes {res_attrs:?}"));
        }
        for scope in resource["scopeLogs"].as_array().into_iter().flatten() {
            for log in scope["logRecords"].as_array().into_iter().flatten() {
                let attrs = attributes(log);
                let seq = attrs
                    .get("outpost.seq")
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse::<u64>().ok());
                let Some(seq) = seq else {
                    problems.push(format!("log record without outpost.seq: {log}"));
                    continue;
                };
                let record: Option<AuditRecord> = log["body"]["stringValue"]
                    .as_str()
                    .and_then(|b| serde_json::from_str(b).ok());
                match record {
                    Some(r)
                        if r.seq == seq
                            && attrs.get("log.record.uid")
                                == Some(&Value::from(r.hash.clone())) => {}
                    _ => problems.push(format!("seq {seq}: body or log.record.uid does not match")),
                }
                if !log["timeUnixNano"].is_string() || !attrs.contains_key("gen_ai.request.model") {
                    problems.push(format!("seq {seq}: time or model missing"));
                }
                seqs.push(seq);
            }
        }
    }
    seqs
}

/// Attribute key → the value's single field (`stringValue`, `intValue`, …).
fn attributes(holder: &Value) -> HashMap<String, Value> {
    holder["attributes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| {
            let value = a["value"].as_object()?.values().next()?.clone();
            Some((a["key"].as_str()?.to_string(), value))
        })
        .collect()
}

/// Writes day files as the audit writer does: chained records, one line each.
struct Spool {
    dir: PathBuf,
    seq: u64,
    prev: String,
}

impl Spool {
    fn new(dir: &Path) -> Spool {
        std::fs::create_dir_all(dir.join("torn")).unwrap();
        // Not day files: the shipper must neither read nor trip over them.
        std::fs::write(dir.join("hmac.key"), b"not a record\n").unwrap();
        std::fs::write(dir.join("torn/2026-11-22.jsonl.10.bin"), b"{\"seq\":").unwrap();
        Spool {
            dir: dir.to_path_buf(),
            seq: 0,
            prev: GENESIS.to_string(),
        }
    }

    fn next_line(&mut self) -> Vec<u8> {
        self.seq += 1;
        let record = AuditRecord::chain(self.seq, event(self.seq), None, &self.prev);
        self.prev.clone_from(&record.hash);
        let mut line = record.to_line();
        line.push(b'\n');
        line
    }

    fn append(&mut self, day: &str, n: usize) {
        let mut bytes = Vec::new();
        for _ in 0..n {
            bytes.extend(self.next_line());
        }
        self.write(day, &bytes);
    }

    fn write(&self, day: &str, bytes: &[u8]) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{day}.jsonl")))
            .unwrap();
        file.write_all(bytes).unwrap();
    }
}

fn event(seq: u64) -> AuditEvent {
    AuditEvent {
        kind: Kind::Request,
        ts: format!(
            "2026-11-24T10:{:02}:{:02}.{:06}Z",
            (seq / 60) % 60,
            seq % 60,
            seq
        ),
        device: "laptop-7".into(),
        user: "alice".into(),
        provider: Some("openai".into()),
        host: Some("api.openai.com".into()),
        method: Some("POST".into()),
        path: Some("/v1/chat/completions".into()),
        api: Some("chat_completions".into()),
        model: Some("gpt-4o-mini".into()),
        stream: seq.is_multiple_of(3),
        decision: if seq.is_multiple_of(7) {
            Decision::Block
        } else {
            Decision::Allow
        },
        rules: if seq.is_multiple_of(7) {
            vec![RuleCount {
                id: "no-secrets".into(),
                action: "block".into(),
                count: 1,
            }]
        } else {
            Vec::new()
        },
        status: if seq.is_multiple_of(7) { 403 } else { 200 },
        input_tokens: Some(seq),
        output_tokens: Some(2 * seq),
        cost_usd: None,
        estimated: false,
        latency_ms: 5,
        upstream_ms: Some(4),
        bytes_in: 100,
        bytes_out: 200,
        request_sha256: None,
        error: None,
        policy_version: Some("v1".into()),
        content: None,
        uninspected: None,
        batch: None,
        transport: None,
        route: None,
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr").port()
}

fn shipper(dir: &Path, port: u16) -> Shipper {
    let upstream = UpstreamConfig {
        extra_ca_files: Vec::new(),
        resolve: HashMap::new(),
        connect_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(30),
        response_timeout: Duration::from_secs(10),
        body_idle_timeout: Duration::from_secs(10),
        allow_local: Vec::new(),
    };
    let connector = Connector::with_roots(&upstream, rustls::RootCertStore::empty());
    let config = ShipConfig {
        endpoint: format!("http://127.0.0.1:{port}").parse().unwrap(),
        batch_size: BATCH,
        headers: vec![("x-collector-key".into(), "sesame".into())],
        device: "laptop-7".into(),
    };
    Shipper::new(dir.to_path_buf(), config, connector).expect("valid shipping config")
}

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every seq in `1..=last` arrived, and the first arrivals are in order.
fn assert_complete_in_order(seqs: &[u64], last: u64) {
    let mut seen = HashSet::new();
    let first_arrivals: Vec<u64> = seqs.iter().copied().filter(|s| seen.insert(*s)).collect();
    let expected: Vec<u64> = (1..=last).collect();
    assert_eq!(
        first_arrivals, expected,
        "first arrivals must be 1..={last} in order"
    );
}

fn stats_line(stats: &ShipStatsHandle) -> String {
    format!("{:?}", stats.snapshot())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_arrives_in_order_through_outages_and_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let mut spool = Spool::new(&dir);
    spool.append("2026-11-23", 150);
    spool.append("2026-11-24", 150);

    // The collector is down at first: nothing is lost, failures are visible.
    let port = free_port();
    let mut collector = Collector::down(port);
    let shutdown = CancellationToken::new();
    let first = shipper(&dir, port);
    let (stats, notify) = (first.stats(), first.notifier());
    let task = first.spawn(shutdown.clone());
    wait_for("a connect failure", Duration::from_secs(10), || {
        stats.snapshot().last_error.is_some()
    })
    .await;
    // It keeps retrying, and counts what is waiting.
    let first_failure = stats.snapshot().last_error_at;
    wait_for(
        "a retry, and the backlog counted",
        Duration::from_secs(10),
        || {
            let s = stats.snapshot();
            s.last_error_at != first_failure && s.backlog == 300
        },
    )
    .await;
    let s = stats.snapshot();
    assert_eq!(s.shipped, 0, "{s:?}");
    assert_eq!(s.backlog, 300, "{s:?}");
    assert!(s.backoff > Duration::ZERO && !s.stalled, "{s:?}");
    assert!(
        !dir.join(CURSOR_FILE).exists(),
        "no cursor before an acknowledgement"
    );

    // Up: the backlog drains across the day boundary, in order.
    collector.start().await;
    wait_for("the first 300 records", Duration::from_secs(30), || {
        collector.has_all(300)
    })
    .await;
    assert_complete_in_order(&collector.seqs(), 300);
    wait_for("the shipper to settle", Duration::from_secs(5), || {
        let s = stats.snapshot();
        s.backlog == 0 && s.backoff == Duration::ZERO && s.last_seq == Some(300)
    })
    .await;

    // A line the writer has not finished is not shipped; once complete, it is.
    let line = spool.next_line();
    let (head, tail) = line.split_at(line.len() / 2);
    spool.write("2026-11-24", head);
    notify.notify_one();
    // Proving a negative: nothing to wait for but time. Several polls
    // (POLL_INTERVAL is 250 ms) in which shipping it would be the bug; on a
    // slow machine fewer polls make the check weaker, never flaky.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        !collector.seqs().contains(&301),
        "a partial line was shipped"
    );
    spool.write("2026-11-24", tail);
    spool.append("2026-11-24", 9);
    // Rollover while running.
    spool.append("2026-11-25", 50);
    notify.notify_one();
    wait_for(
        "records appended while running",
        Duration::from_secs(15),
        || collector.has_all(360),
    )
    .await;
    assert_complete_in_order(&collector.seqs(), 360);
    wait_for("the cursor to reach 360", Duration::from_secs(5), || {
        stats.snapshot().last_seq == Some(360)
    })
    .await;

    // Restart: a new task on the same spool resumes at the cursor.
    shutdown.cancel();
    task.await.unwrap();
    let sent_before_restart = collector.seqs().len();
    spool.append("2026-11-25", 25);
    let shutdown = CancellationToken::new();
    let second = shipper(&dir, port);
    let stats = second.stats();
    let task = second.spawn(shutdown.clone());
    wait_for(
        "records written while stopped",
        Duration::from_secs(15),
        || collector.has_all(385),
    )
    .await;
    let resent: Vec<u64> = collector.seqs()[sent_before_restart..]
        .iter()
        .copied()
        .filter(|s| *s <= 360)
        .collect();
    assert!(
        resent.len() <= BATCH,
        "restart re-sent more than one batch: {resent:?}"
    );

    // 503s: retried until the collector takes them, nothing lost.
    collector.set_unavailable(true);
    spool.append("2026-11-25", 30);
    wait_for("refused exports", Duration::from_secs(10), || {
        collector.refused() >= 3
    })
    .await;
    assert!(
        !collector.seqs().contains(&386),
        "acknowledged nothing while refusing"
    );
    let s = stats.snapshot();
    assert!(
        s.last_error.as_deref().is_some_and(|e| e.contains("503")),
        "{s:?}"
    );
    assert!(s.backlog > 0 || s.backoff > Duration::ZERO, "{s:?}");
    collector.set_unavailable(false);
    wait_for("records refused earlier", Duration::from_secs(15), || {
        collector.has_all(415)
    })
    .await;

    // Down again mid-run (connections dropped, port closed), then back.
    let before_outage = stats.snapshot().last_error_at;
    collector.stop().await;
    spool.append("2026-11-25", 20);
    wait_for(
        "a failed export while down",
        Duration::from_secs(10),
        || {
            let s = stats.snapshot();
            s.last_error_at != before_outage
                && s.last_error.as_deref().is_some_and(|e| !e.contains("503"))
        },
    )
    .await;
    collector.start().await;
    wait_for(
        "records written while down",
        Duration::from_secs(20),
        || collector.has_all(435),
    )
    .await;

    let seqs = collector.seqs();
    assert_complete_in_order(&seqs, 435);
    assert!(seqs.iter().all(|s| *s <= 435));
    assert_eq!(collector.problems(), Vec::<String>::new());
    wait_for("the cursor to reach 435", Duration::from_secs(5), || {
        stats.snapshot().last_seq == Some(435)
    })
    .await;
    assert_eq!(
        ship::shipped_through(&dir).map(|d| d.to_string()),
        Some("2026-11-25".into()),
        "{}",
        stats_line(&stats)
    );
    let cursor = ship::load_cursor(&dir).unwrap().unwrap();
    assert_eq!(
        (cursor.file.as_str(), cursor.seq),
        ("2026-11-25.jsonl", 435)
    );
    shutdown.cancel();
    task.await.unwrap();
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_collector_stalls_shipping_visibly_without_dropping() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let mut spool = Spool::new(&dir);
    spool.append("2026-11-24", 5);
    // Anything that is not an OTLP receiver: every path is 404.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, Infallible>(
                        Response::builder()
                            .status(StatusCode::NOT_FOUND)
                            .body(Full::new(Bytes::from_static(b"no such route")))
                            .unwrap(),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    let shutdown = CancellationToken::new();
    // Errors are dated by the shipper's clock.
    let at: jiff::Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
    let shipper = shipper(&dir, port).with_clock(Clock::fixed(at));
    let stats = shipper.stats();
    let task = shipper.spawn(shutdown.clone());
    wait_for("the stall to show", Duration::from_secs(10), || {
        stats.snapshot().stalled
    })
    .await;
    let s = stats.snapshot();
    assert_eq!(s.shipped, 0);
    assert_eq!(s.last_error_at, Some(at), "{s:?}");
    assert!(
        s.last_error.as_deref().is_some_and(|e| e.contains("404")),
        "{s:?}"
    );
    assert!(s.backoff >= Duration::from_secs(15), "{s:?}");
    assert!(
        !dir.join(CURSOR_FILE).exists(),
        "nothing may count as shipped"
    );
    assert_eq!(
        ship::shipped_through(&dir).map(|d| d.to_string()),
        Some("2026-11-24".into())
    );
    // Shutdown does not wait out the long backoff.
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("shipper stops promptly")
        .unwrap();
    server.abort();
}
