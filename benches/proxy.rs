//! Proxy overhead, measured side by side: the same requests direct to a fake
//! provider and through the `outpost` binary, in one run on one machine.
//!
//! For each of {non-stream, stream} × {concurrency 1, 8}: keep-alive HTTP/1.1
//! over TLS, a 1 KB prompt, each worker on its own connection sending one
//! request after another for a fixed time. Reports p50/p99 latency of both
//! paths, the added latency, and the throughput ratio; also the same agent
//! with three budgets and a rate limit applying to every call. Also: the agent's idle
//! and peak RSS (`/proc/PID/status` VmRSS / VmHWM), and the time to mint one
//! leaf certificate for a new host. Also the nearest peer, side by side: a no-op MITM proxy
//! on hudsucker (`benches/peer`, its own crate), built and started by this bench.
//!
//! Every path runs once per round and rounds are interleaved; each figure
//! shown is the median over the rounds, so a noisy moment of a shared
//! machine lands on one round of every path rather than on one path.
//!
//! Each proxy's CPU time per call (user + system, all its threads, from
//! `/proc/PID/stat`) is shown beside its latency: the latency of a shared
//! 2-core machine is mostly CPU.
//!
//! Run: `cargo bench --bench proxy` (release build). `OUTPOST_BENCH_SECS`
//! sets seconds per cell (default 2), `OUTPOST_BENCH_ROUNDS` the rounds
//! (default 3), `OUTPOST_BENCH_PATHS` which paths run besides direct (a
//! comma-separated list of the names in the table; default all), e.g. to
//! profile one of them.

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use outpost::config::KeyStoreChoice;
use outpost::policy::intercept::InterceptList;
use outpost::tls::ca::LocalCa;
use rustls::pki_types::ServerName;
use support::{certs_from_pem_file, Agent, FakeProvider, TestCa};
use tokio::net::TcpStream;

const HOST: &str = "api.openai.com";

#[derive(Clone, Copy, PartialEq)]
enum Path {
    Direct,
    /// Through the agent with `[audit] enabled = false`.
    ProxyNoAudit,
    /// Through the agent with the audit log on (content = "hash").
    Proxy,
    /// As `Proxy`, plus three budgets and a rate limit that all apply.
    ProxyLimits,
    /// The nearest peer: a no-op MITM proxy on hudsucker (`benches/peer`).
    Peer,
}

/// The default policy plus three budgets (per user, per device, all) and a
/// rate limit, all applying to every call and none ever reached.
fn limits_policy() -> String {
    format!(
        "{}\n\
         [[budgets]]\nid = \"user-day\"\nper = \"user\"\nlimit_usd = 1000000.0\nwindow = \"day\"\nwarn_at = 0.9\n\
         [[budgets]]\nid = \"device-month\"\nper = \"device\"\nlimit_usd = 1000000.0\nwindow = \"month\"\n\
         [[budgets]]\nid = \"all-week\"\nper = \"all\"\nlimit_usd = 1000000.0\nwindow = \"week\"\ntime_zone = \"Europe/Berlin\"\n\
         [[rate_limits]]\nid = \"user-rpm\"\nper = \"user\"\nrequests = 100000000\ntokens = 100000000000\nwindow = \"minute\"\n",
        include_str!("../policy/default.toml")
    )
}

struct Endpoints {
    fake: std::net::SocketAddr,
    proxy: std::net::SocketAddr,
    proxy_no_audit: std::net::SocketAddr,
    proxy_limits: std::net::SocketAddr,
    peer: std::net::SocketAddr,
    peer_tls: Arc<rustls::ClientConfig>,
    direct_tls: Arc<rustls::ClientConfig>,
    proxy_tls: Arc<rustls::ClientConfig>,
    proxy_no_audit_tls: Arc<rustls::ClientConfig>,
    proxy_limits_tls: Arc<rustls::ClientConfig>,
}

fn main() {
    let secs: u64 = std::env::var("OUTPOST_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let cell = Duration::from_secs(secs);

    let ca = TestCa::new();
    let fake = FakeProvider::tls(&ca)
        .stream_events(8)
        .stream_delay(Duration::ZERO)
        .record(false)
        .start();
    let agent = Agent::builder()
        .fake_upstream(&fake)
        .log_level("warn")
        .start();
    let agent_no_audit = Agent::builder()
        .fake_upstream(&fake)
        .log_level("warn")
        .audit_setting("enabled = false")
        .start();
    let agent_limits = Agent::builder()
        .fake_upstream(&fake)
        .log_level("warn")
        .policy_file("50-limits.toml", &limits_policy())
        .start();
    let peer = Peer::start(&fake, &ca);
    std::thread::sleep(Duration::from_millis(300));
    let idle_rss = rss_kb(agent.pid(), "VmRSS:");
    let idle_rss_peer = rss_kb(peer.child.id(), "VmRSS:");
    let idle_rss_limits = rss_kb(agent_limits.pid(), "VmRSS:");

    let endpoints = Arc::new(Endpoints {
        fake: fake.addr(),
        proxy: agent.proxy_addr(),
        proxy_no_audit: agent_no_audit.proxy_addr(),
        proxy_limits: agent_limits.proxy_addr(),
        peer: peer.addr,
        peer_tls: tls_config(&certs_from_pem_file(&peer.ca_pem)),
        direct_tls: tls_config(&certs_from_pem_file(&ca.pem_path())),
        proxy_tls: tls_config(&certs_from_pem_file(&agent.ca_pem_path())),
        proxy_no_audit_tls: tls_config(&certs_from_pem_file(&agent_no_audit.ca_pem_path())),
        proxy_limits_tls: tls_config(&certs_from_pem_file(&agent_limits.ca_pem_path())),
    });

    let rounds: usize = std::env::var("OUTPOST_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    println!(
        "outpost proxy bench: {secs}s per cell, {rounds} interleaved rounds (medians shown), \
         keep-alive HTTP/1.1 over TLS, 1 KB prompt"
    );
    println!("machine: {}", common::machine());
    println!();
    println!("direct = to the fake provider; MITM = no-op hudsucker 0.25 proxy; core = Outpost, [audit] enabled = false;");
    println!("policy = default policy + audit log (content = hash); budgets = policy + 3 budgets + 1 rate limit, all applying.");
    println!("added = p50 minus direct's; first = time to the first body byte (stream: the first event).");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    const PATHS: [(Path, &str); 5] = [
        (Path::Direct, "direct"),
        (Path::Peer, "MITM"),
        (Path::ProxyNoAudit, "core"),
        (Path::Proxy, "policy"),
        (Path::ProxyLimits, "budgets"),
    ];
    let only: Option<Vec<String>> = std::env::var("OUTPOST_BENCH_PATHS")
        .ok()
        .map(|v| v.split(',').map(|p| p.trim().to_string()).collect());
    let runs =
        |name: &str| name == "direct" || only.as_ref().is_none_or(|o| o.iter().any(|p| p == name));
    let pid = |path: Path| match path {
        Path::Direct => None,
        Path::Peer => Some(peer.child.id()),
        Path::ProxyNoAudit => Some(agent_no_audit.pid()),
        Path::Proxy => Some(agent.pid()),
        Path::ProxyLimits => Some(agent_limits.pid()),
    };
    for stream in [false, true] {
        for concurrency in [1usize, 8] {
            // Every path once per round, rounds interleaved, so that a noisy
            // moment of the machine lands on one round of every path.
            let mut cells: Vec<Vec<CellResult>> = PATHS.iter().map(|_| Vec::new()).collect();
            for _ in 0..rounds {
                for (i, (path, name)) in PATHS.iter().enumerate() {
                    let result = if runs(name) {
                        runtime.block_on(run_cell(
                            &endpoints,
                            *path,
                            pid(*path),
                            stream,
                            concurrency,
                            cell,
                        ))
                    } else {
                        CellResult::default()
                    };
                    cells[i].push(result);
                }
            }
            let medians: Vec<CellResult> = cells.iter().map(|c| CellResult::median(c)).collect();
            let direct = &medians[0];
            println!();
            println!(
                "{} at concurrency {concurrency}:",
                if stream {
                    "stream (8 events)"
                } else {
                    "non-stream"
                }
            );
            println!(
                "  {:<8} {:>9} {:>9} {:>9} {:>9} {:>8} {:>11} {:>9}",
                "path", "p50", "p99", "added", "first", "req/s", "vs direct", "cpu/call"
            );
            for ((_, name), m) in PATHS.iter().zip(&medians) {
                if !runs(name) {
                    continue;
                }
                println!(
                    "  {:<8} {:>9} {:>9} {:>9} {:>9} {:>8.0} {:>11.2} {:>9}",
                    name,
                    us(m.p50),
                    us(m.p99),
                    signed_us(m.p50, direct.p50),
                    us(m.first),
                    m.rps,
                    m.rps / direct.rps,
                    m.cpu_per_call.map_or("-".to_string(), us),
                );
            }
            if only.is_some() {
                continue;
            }
            let (peer, policy, budgets) = (&medians[1], &medians[3], &medians[4]);
            println!(
                "  policy vs MITM: added p50 {} vs {}, throughput ratio {:.2}, first byte {} vs {}; budgets add {} p50",
                signed_us(policy.p50, direct.p50),
                signed_us(peer.p50, direct.p50),
                policy.rps / peer.rps,
                us(policy.first),
                us(peer.first),
                signed_us(budgets.p50, policy.p50),
            );
        }
    }
    let peak_rss = rss_kb(agent.pid(), "VmHWM:");
    println!();
    println!(
        "agent RSS: idle {:.1} MB, peak {:.1} MB; with budgets and a rate limit: idle {:.1} MB, peak {:.1} MB",
        idle_rss as f64 / 1024.0,
        peak_rss as f64 / 1024.0,
        idle_rss_limits as f64 / 1024.0,
        rss_kb(agent_limits.pid(), "VmHWM:") as f64 / 1024.0
    );
    println!(
        "no-op MITM RSS: idle {:.1} MB, peak {:.1} MB",
        idle_rss_peer as f64 / 1024.0,
        rss_kb(peer.child.id(), "VmHWM:") as f64 / 1024.0
    );
    let (mint_p50, mint_p99) = leaf_mint_times();
    println!(
        "leaf mint for a new host (ECDSA P-256 key + signature): p50 {} µs, p99 {} µs",
        mint_p50.as_micros(),
        mint_p99.as_micros()
    );
}

#[derive(Default)]
struct CellResult {
    p50: Duration,
    p99: Duration,
    /// p50 time to the first body byte.
    first: Duration,
    rps: f64,
    /// The proxy's CPU time (user + system) per call; `None` for direct.
    cpu_per_call: Option<Duration>,
}

impl CellResult {
    /// Each figure's median over `cells` (rounds of one path).
    fn median(cells: &[CellResult]) -> CellResult {
        fn mid<T: Copy + PartialOrd>(mut v: Vec<T>) -> T {
            v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
            v[v.len() / 2]
        }
        CellResult {
            p50: mid(cells.iter().map(|c| c.p50).collect()),
            p99: mid(cells.iter().map(|c| c.p99).collect()),
            first: mid(cells.iter().map(|c| c.first).collect()),
            rps: mid(cells.iter().map(|c| c.rps).collect()),
            cpu_per_call: mid(cells.iter().map(|c| c.cpu_per_call).collect()),
        }
    }
}

async fn run_cell(
    endpoints: &Arc<Endpoints>,
    path: Path,
    pid: Option<u32>,
    stream: bool,
    concurrency: usize,
    duration: Duration,
) -> CellResult {
    let body = Bytes::from(request_body(stream));
    let warmup = Duration::from_millis(300);
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let endpoints = endpoints.clone();
        let body = body.clone();
        workers.push(tokio::spawn(async move {
            worker(&endpoints, path, body, measure_from, end).await
        }));
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let cpu_from = pid.map(cpu_time);
    let mut samples = Vec::new();
    let mut firsts = Vec::new();
    for w in workers {
        let (total, first) = w.await.expect("worker");
        samples.extend(total);
        firsts.extend(first);
    }
    samples.sort();
    firsts.sort();
    let pct = |v: &[Duration], p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    CellResult {
        p50: pct(&samples, 0.50),
        p99: pct(&samples, 0.99),
        first: pct(&firsts, 0.50),
        rps: samples.len() as f64 / duration.as_secs_f64(),
        cpu_per_call: pid
            .zip(cpu_from)
            .map(|(pid, from)| (cpu_time(pid).saturating_sub(from)) / samples.len().max(1) as u32),
    }
}

/// CPU time (user + system, every thread) of process `pid` so far, from
/// `/proc/PID/stat` (in ticks of 1/100 s, Linux's `USER_HZ`).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start at
    // field 3, the state; utime and stime are fields 14 and 15.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    Duration::from_millis(ticks * 10)
}

async fn worker(
    endpoints: &Endpoints,
    path: Path,
    body: Bytes,
    measure_from: Instant,
    end: Instant,
) -> (Vec<Duration>, Vec<Duration>) {
    let tls = connect(endpoints, path).await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("http1 handshake");
    tokio::spawn(conn);
    let mut samples = Vec::new();
    let mut firsts = Vec::new();
    loop {
        let t0 = Instant::now();
        if t0 >= end {
            break;
        }
        let request = Request::post("/v1/chat/completions")
            .header("host", HOST)
            .header("content-type", "application/json")
            .header("authorization", "Bearer sk-bench")
            .body(Full::new(body.clone()))
            .expect("request");
        let response = sender.send_request(request).await.expect("send");
        assert!(
            response.status().is_success(),
            "status {}",
            response.status()
        );
        let mut body = response.into_body();
        let mut first = None;
        let mut bytes = 0;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.expect("body").into_data() {
                if !data.is_empty() {
                    first.get_or_insert_with(|| t0.elapsed());
                    bytes += data.len();
                }
            }
        }
        assert!(bytes > 0);
        if t0 >= measure_from {
            samples.push(t0.elapsed());
            firsts.extend(first);
        }
    }
    (samples, firsts)
}

async fn connect(endpoints: &Endpoints, path: Path) -> tokio_rustls::client::TlsStream<TcpStream> {
    let (tcp, config) = match path {
        Path::Direct => {
            let tcp = TcpStream::connect(endpoints.fake)
                .await
                .expect("connect fake");
            tcp.set_nodelay(true).expect("nodelay");
            (tcp, endpoints.direct_tls.clone())
        }
        Path::Proxy | Path::ProxyNoAudit | Path::ProxyLimits | Path::Peer => {
            let (addr, tls) = match path {
                Path::Proxy => (endpoints.proxy, endpoints.proxy_tls.clone()),
                Path::Peer => (endpoints.peer, endpoints.peer_tls.clone()),
                Path::ProxyNoAudit => (
                    endpoints.proxy_no_audit,
                    endpoints.proxy_no_audit_tls.clone(),
                ),
                _ => (endpoints.proxy_limits, endpoints.proxy_limits_tls.clone()),
            };
            let reply = support::tunnel::send_connect(addr, &format!("{HOST}:443"))
                .await
                .expect("CONNECT");
            assert_eq!(reply.status, 200, "{}", reply.head);
            (reply.stream, tls)
        }
    };
    tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from(HOST).expect("name"), tcp)
        .await
        .expect("TLS")
}

/// The no-op MITM peer, built from `benches/peer` and running as a child.
struct Peer {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    ca_pem: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Peer {
    /// Build the peer (release) and start it in front of `fake`.
    fn start(fake: &FakeProvider, ca: &TestCa) -> Peer {
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/peer/Cargo.toml");
        let built = std::process::Command::new(env!("CARGO"))
            .args(["build", "--release", "--quiet", "--manifest-path", manifest])
            .status()
            .expect("cargo build the peer");
        assert!(built.success(), "the no-op MITM peer did not build");
        let binary = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/benches/peer/target/release/outpost-bench-peer"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = std::process::Command::new(binary)
            .arg(fake.addr().to_string())
            .arg(ca.pem_path())
            .arg(dir.path())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the peer");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("the peer's address");
        let addr = line
            .trim()
            .trim_start_matches("listening on ")
            .parse()
            .expect("an address");
        Peer {
            child,
            addr,
            ca_pem: dir.path().join("ca.pem"),
            _dir: dir,
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tls_config(roots: &[rustls::pki_types::CertificateDer<'static>]) -> Arc<rustls::ClientConfig> {
    support::tunnel::client_config(roots, &["http/1.1"])
}

fn request_body(stream: bool) -> Vec<u8> {
    let prompt: String = "The quick brown fox jumps over the lazy dog. "
        .chars()
        .cycle()
        .take(1024)
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": prompt}],
        "stream": stream,
    }))
    .expect("json")
}

fn leaf_mint_times() -> (Duration, Duration) {
    let dir = tempfile::tempdir().expect("tempdir");
    let hosts = InterceptList::embedded_default().expect("default policy");
    let clock = outpost::clock::Clock::system();
    let ca =
        LocalCa::create(dir.path(), hosts.hosts(), KeyStoreChoice::File, clock.now()).expect("CA");
    let mut samples: Vec<Duration> = (0..300)
        .map(|_| {
            let t0 = Instant::now();
            let leaf = ca.mint_leaf(HOST, clock.now()).expect("mint");
            std::hint::black_box(leaf);
            t0.elapsed()
        })
        .collect();
    samples.sort();
    (samples[150], samples[296])
}

fn rss_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn us(d: Duration) -> String {
    format!("{} µs", d.as_micros())
}

fn signed_us(a: Duration, b: Duration) -> String {
    let diff = a.as_micros() as i128 - b.as_micros() as i128;
    format!("{diff:+} µs")
}
