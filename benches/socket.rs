//! WebSocket overhead, measured side by side: the same Responses-over-WebSocket calls on one
//! socket, direct to a fake provider and through the `outpost` binary (default policy, audit
//! log on: every message parsed and scanned, every response settled and recorded), in one
//! run on one machine.
//!
//! Each call: `response.create` with a 1 KB prompt; the fake answers with the Responses
//! events of a 32-delta reply (41 messages). Reports the time from sending the call to its
//! first `response.output_text.delta` (p50/p99), the time to `response.completed`, and
//! messages per second received on the one socket.
//!
//! Run: `cargo bench --bench socket` (release build). `OUTPOST_BENCH_SECS` sets seconds
//! per path (default 4).

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use support::fake_ws::FakeWs;
use support::{certs_from_pem_file, Agent, TestCa};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const URL: &str = "wss://api.openai.com/v1/responses";
const DELTAS: usize = 32;

/// Figures for one path.
struct Figures {
    first_delta: Vec<Duration>,
    completed: Vec<Duration>,
    messages: usize,
    elapsed: Duration,
}

fn main() {
    let secs: u64 = std::env::var("OUTPOST_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let ca = TestCa::new();
    let reply: String = "word ".repeat(DELTAS);
    let fake = FakeWs::tls(&ca).reply(&reply, DELTAS).start();
    let agent = fake
        .resolve_in(Agent::builder().trust(&ca).log_level("warn"))
        .start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cell = Duration::from_secs(secs);
    let direct_tls =
        support::tunnel::client_config(&certs_from_pem_file(&ca.pem_path()), &["http/1.1"]);
    let proxy_ca = agent.ca_pem_path();

    println!("outpost socket bench: Responses over WebSocket, one socket, {secs}s per path, 1 KB prompt, {DELTAS}-delta replies");
    println!("machine: {}", common::machine());
    let direct = runtime.block_on(async {
        let tcp = TcpStream::connect(fake.addr()).await.expect("connect fake");
        tcp.set_nodelay(true).expect("nodelay");
        let name = ServerName::try_from("api.openai.com").expect("name");
        let tls = tokio_rustls::TlsConnector::from(direct_tls)
            .connect(name, tcp)
            .await
            .expect("TLS to the fake");
        measure(tls, cell).await
    });
    let proxied = runtime.block_on(async {
        let tls = support::tunnel::tls_through_proxy(
            agent.proxy_addr(),
            "api.openai.com",
            443,
            &proxy_ca,
            &["http/1.1"],
        )
        .await
        .expect("TLS through the agent");
        measure(tls, cell).await
    });
    println!();
    println!(
        "{:<8} | {:>15} {:>10} | {:>13} {:>10} | {:>9} | {:>7}",
        "path", "first delta p50", "p99", "completed p50", "p99", "msgs/s", "calls"
    );
    for (name, figures) in [("direct", &direct), ("outpost", &proxied)] {
        println!(
            "{:<8} | {:>12} µs {:>7} µs | {:>10} µs {:>7} µs | {:>9.0} | {:>7}",
            name,
            micros(quantile(&figures.first_delta, 0.5)),
            micros(quantile(&figures.first_delta, 0.99)),
            micros(quantile(&figures.completed, 0.5)),
            micros(quantile(&figures.completed, 0.99)),
            figures.messages as f64 / figures.elapsed.as_secs_f64(),
            figures.first_delta.len()
        );
    }
    let added = |q| {
        micros(quantile(&proxied.first_delta, q)) as i64
            - micros(quantile(&direct.first_delta, q)) as i64
    };
    let rate = |f: &Figures| f.messages as f64 / f.elapsed.as_secs_f64();
    println!(
        "added first-delta latency: +{} µs p50, +{} µs p99; message rate ratio (outpost / direct): {:.2}",
        added(0.5),
        added(0.99),
        rate(&proxied) / rate(&direct)
    );
    let rss = std::fs::read_to_string(format!("/proc/{}/status", agent.pid()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.trim_start_matches("VmHWM:").trim().to_string())
        })
        .unwrap_or_default();
    println!("agent peak RSS: {rss}");
}

/// Calls one after another on one socket over `io` for `cell`.
async fn measure<S>(io: S, cell: Duration) -> Figures
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut request = URL.into_client_request().expect("request");
    request
        .headers_mut()
        .insert("authorization", "Bearer sk-bench".parse().expect("header"));
    let (mut ws, _) = tokio_tungstenite::client_async(request, io)
        .await
        .expect("WebSocket handshake");
    let prompt: String = "The quick brown fox jumps over the lazy dog. "
        .chars()
        .cycle()
        .take(1024)
        .collect();
    let call = serde_json::json!({"type": "response.create", "model": "gpt-4o-mini",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": prompt}]}]})
    .to_string();
    let mut figures = Figures {
        first_delta: Vec::new(),
        completed: Vec::new(),
        messages: 0,
        elapsed: Duration::ZERO,
    };
    // Warm up: the agent's leaf certificate, the audit file, the allocator.
    for _ in 0..20 {
        one_call(&mut ws, &call).await;
    }
    let started = Instant::now();
    while started.elapsed() < cell {
        let (first, done, messages) = one_call(&mut ws, &call).await;
        figures.first_delta.push(first);
        figures.completed.push(done);
        figures.messages += messages;
    }
    figures.elapsed = started.elapsed();
    let _ = ws.close(None).await;
    figures
}

/// One call: (time to first delta, time to completed, messages received).
async fn one_call<S>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
    call: &str,
) -> (Duration, Duration, usize)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let sent = Instant::now();
    ws.send(Message::text(call.to_owned())).await.expect("send");
    let mut first = None;
    let mut messages = 0;
    loop {
        let Some(Ok(Message::Text(text))) = ws.next().await else {
            panic!("the socket ended mid-call");
        };
        messages += 1;
        if first.is_none() && text.contains("\"response.output_text.delta\"") {
            first = Some(sent.elapsed());
        }
        if text.contains("\"response.completed\"") {
            return (first.unwrap_or_default(), sent.elapsed(), messages);
        }
        assert!(!text.contains("\"type\":\"error\""), "{text}");
    }
}

fn quantile(samples: &[Duration], q: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted
        .get(((sorted.len() as f64 - 1.0) * q).round() as usize)
        .copied()
        .unwrap_or_default()
}

fn micros(d: Duration) -> u128 {
    d.as_micros()
}
