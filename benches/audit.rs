//! The audit writer alone: sustained records per second with its fsync
//! batching (at least every 100 ms), and how long the request path waits
//! for its record to be written (submit → `Written`, which is write(2), not
//! fsync), at 1, 64 and 512 requests in flight.
//!
//! Run: `cargo bench --bench audit`. `OUTPOST_BENCH_SECS` sets seconds per
//! cell (default 3). The proxy's added latency with auditing on vs off is in
//! `cargo bench --bench proxy`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use outpost::audit::record::{sha256_hex, AuditEvent, Content, Decision, Kind, RuleCount};
use outpost::config::{AuditConfig, KeyStoreChoice};

fn event(i: u64) -> AuditEvent {
    let redacted = i.is_multiple_of(10);
    AuditEvent {
        provider: Some("openai".into()),
        host: Some("api.openai.com".into()),
        method: Some("POST".into()),
        path: Some("/v1/chat/completions".into()),
        api: Some("chat_completions".into()),
        model: Some("gpt-4o-mini".into()),
        stream: i.is_multiple_of(3),
        rules: if redacted {
            vec![RuleCount {
                id: "card-numbers".into(),
                action: "redact".into(),
                count: 1,
            }]
        } else {
            Vec::new()
        },
        status: 200,
        input_tokens: Some(312),
        output_tokens: Some(87),
        latency_ms: 412,
        upstream_ms: Some(380),
        bytes_in: 1400,
        bytes_out: 2100,
        request_sha256: Some(sha256_hex(&i.to_le_bytes())),
        policy_version: Some("0a1b2c3d4e5f".into()),
        content: Some(Content {
            prompt_sha256: Some(sha256_hex(b"prompt")),
            completion_sha256: Some(sha256_hex(b"completion")),
            ..Content::default()
        }),
        ..AuditEvent::new(
            Kind::Request,
            "2026-11-24T10:00:00.000001Z".into(),
            "bench-user",
            "bench-device",
            if redacted {
                Decision::Redact
            } else {
                Decision::Allow
            },
        )
    }
}

fn main() {
    let secs: u64 = std::env::var("OUTPOST_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!("audit writer bench: {secs}s per cell, fsync at least every 100 ms");
    println!(
        "{:>9} | {:>12} | {:>14} {:>14}",
        "in flight", "records/s", "write ack p50", "p99"
    );
    for in_flight in [1usize, 64, 512] {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = AuditConfig {
            queue_capacity: 8192,
            ..AuditConfig::default()
        };
        let (records, acks) = runtime.block_on(async {
            let (log, writer) =
                outpost::audit::writer::start(dir.path(), &config, KeyStoreChoice::File)
                    .await
                    .expect("audit writer");
            let end = Instant::now() + Duration::from_secs(secs);
            let log = Arc::new(log);
            let tasks: Vec<_> = (0..in_flight)
                .map(|lane| {
                    let log = log.clone();
                    tokio::spawn(async move {
                        let mut acks = Vec::new();
                        let mut i = lane as u64;
                        while Instant::now() < end {
                            let Some(permit) = log.try_reserve() else {
                                tokio::task::yield_now().await;
                                continue;
                            };
                            let t0 = Instant::now();
                            permit.submit(event(i)).await.expect("written");
                            acks.push(t0.elapsed());
                            i += in_flight as u64;
                        }
                        acks
                    })
                })
                .collect();
            let mut acks = Vec::new();
            for t in tasks {
                acks.extend(t.await.expect("lane"));
            }
            writer.shutdown().await;
            (acks.len(), acks)
        });
        let mut acks = acks;
        acks.sort();
        let pct = |p: f64| acks[((acks.len() as f64 - 1.0) * p) as usize];
        println!(
            "{:>9} | {:>12.0} | {:>11} µs {:>11} µs",
            in_flight,
            records as f64 / secs as f64,
            pct(0.5).as_micros(),
            pct(0.99).as_micros()
        );
    }
}
