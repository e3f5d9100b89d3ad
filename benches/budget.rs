//! Budget enforcement cost: what reserving and settling adds to each
//! request, and how fast the ledger makes charges durable and commits them.
//!
//! Words:
//! - *request path*: `Ledger::reserve` then `Ledger::settle`, not awaiting
//!   the returned `Committed`: the in-memory work plus queueing the charge
//!   rows for the writer. Every request counts toward 3 budgets (per
//!   user/day, per device/month, everyone/month), so it holds 3 counters and
//!   settles 3 rows. Measured on 1 thread and on 2 threads contending for
//!   the same counters; `Reservations::reserve` + `settle` alone (no queue)
//!   is measured beside it for comparison.
//! - *durable ack*: settle → its `Committed` resolved, i.e. the rows are
//!   in the charge journal (one `write(2)`; see `budget::journal`).
//!   Measured with 1, 64 and 512 requests in flight, each settling again as
//!   soon as its previous charge is acknowledged.
//! - *in SQLite/s*: how fast the writer thread commits the same rows into
//!   the database behind the journal (WAL, `synchronous = NORMAL`, fsync by
//!   checkpoint): the settles of the cell over the time until the last one
//!   is committed.
//!
//! Request-path requests run in bursts of [`BURST`] per thread with a
//! `Ledger::flush` between bursts (untimed), so the writer's queue never
//! fills and a settle never waits for the disk: the figures are the cost
//! of the request path itself, not of a saturated writer. The writer's
//! limit is the second table.
//!
//! Run: `cargo bench --bench budget`. `OUTPOST_BENCH_SECS` sets seconds per
//! cell (default 3; 7 cells). The ledger lives in a temporary directory:
//! set `TMPDIR` to put it on the disk you care about (on tmpfs an fsync is
//! free).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use jiff::tz::TimeZone;
use jiff::Timestamp;
use outpost::budget::ledger::{Ledger, Settlement};
use outpost::budget::reserve::{Charge, CounterKey, Reservations};
use outpost::budget::rules::BudgetWindow;
use outpost::budget::window::window_of;

/// Requests per thread between two flushes: with 2 threads, well under the
/// writer's queue of 4096 jobs, so `settle` never blocks on a full queue.
const BURST: usize = 1024;

/// A limit no run reaches, so no reservation is refused: 1e9 USD is 1e18
/// nano-dollars, inside `u64`.
const NEVER_REACHED_USD: f64 = 1e9;

/// Held per request (a worst case) and charged on settle (the real cost).
const RESERVED_USD: f64 = 0.05;
const SETTLED_USD: f64 = 0.012;

fn main() {
    let secs: u64 = std::env::var("OUTPOST_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let cell = Duration::from_secs(secs);
    let now = Timestamp::now();
    let charges = charges(now);

    println!("machine: {}", common::machine());
    println!(
        "budget bench: {secs}s per cell, {} counters per request, ledger under {}",
        charges.len(),
        std::env::temp_dir().display()
    );
    println!();
    println!("request path (in memory; µs per request)");
    println!(
        "{:<32} | {:>7} | {:>10} | {:>8} {:>8} {:>8}",
        "", "threads", "requests", "p50", "p99", "mean"
    );
    for threads in [1, 2] {
        let samples = ledger_request_path(&charges, now, threads, cell);
        print_request_row("Ledger::reserve + settle", threads, samples);
    }
    for threads in [1, 2] {
        let samples = reservations_request_path(&charges, threads, cell);
        print_request_row("Reservations::reserve + settle", threads, samples);
    }
    for threads in [1, 2] {
        let samples = admit_request_path(threads, cell);
        print_request_row("Budgets::admit + settle (proxy)", threads, samples);
    }

    println!();
    println!(
        "ledger writer (SQLite WAL, synchronous = NORMAL, fsync by checkpoint within 100 ms; {} rows per settle)",
        charges.len()
    );
    println!(
        "{:>9} | {:>10} | {:>12} | {:>16} {:>10} {:>10}",
        "in flight", "settles/s", "in SQLite/s", "durable ack p50", "p99", "mean"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    for in_flight in [1usize, 64, 512] {
        let (acks, in_sqlite) = ledger_commits(&runtime, &charges, now, in_flight, cell);
        let settles_per_sec = acks.len() as f64 / cell.as_secs_f64();
        let committed_per_sec = acks.len() as f64 / in_sqlite.as_secs_f64();
        let stats = Stats::of(acks);
        println!(
            "{:>9} | {:>10.0} | {:>12.0} | {:>13.1} µs {:>7.1} µs {:>7.1} µs",
            in_flight,
            settles_per_sec,
            committed_per_sec,
            micros(stats.p50),
            micros(stats.p99),
            micros(stats.mean)
        );
    }
}

/// The three counters one request of user `alice` on device `laptop-1`
/// counts toward.
fn charges(now: Timestamp) -> Vec<Charge> {
    let start = |window| {
        window_of(now, window, &TimeZone::UTC)
            .expect("UTC windows always resolve")
            .start
    };
    let charge = |budget_id: &str, scope_key: &str, window| Charge {
        key: CounterKey {
            budget_id: budget_id.into(),
            scope_key: scope_key.into(),
            window_start: start(window),
        },
        limit_usd: NEVER_REACHED_USD,
    };
    vec![
        charge("user-daily", "alice", BudgetWindow::Day),
        charge("device-monthly", "laptop-1", BudgetWindow::Month),
        charge("org-monthly", "*", BudgetWindow::Month),
    ]
}

fn settlement(i: u64, at: Timestamp) -> Settlement {
    Settlement {
        usd: SETTLED_USD,
        request_id: format!("req-{i:016x}"),
        at,
        estimated: false,
    }
}

/// `Ledger::reserve` + `Ledger::settle` on `threads` threads sharing one
/// ledger and the same counters.
fn ledger_request_path(
    charges: &[Charge],
    now: Timestamp,
    threads: usize,
    cell: Duration,
) -> Vec<Duration> {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, writer) = Ledger::open(dir.path(), now).expect("open ledger");
    let samples = run_bursts(
        threads,
        cell,
        |i| {
            // Built before the clock starts: the proxy has the id already.
            let settlement = settlement(i, now);
            let t0 = Instant::now();
            let hold = ledger
                .reserve(charges, RESERVED_USD)
                .expect("limit never reached");
            // Dropping `Committed` does not cancel the write; the flush
            // between bursts waits for it.
            drop(ledger.settle(hold, settlement));
            t0.elapsed()
        },
        || ledger.flush().wait().expect("ledger flush"),
    );
    writer.shutdown().expect("ledger shutdown");
    samples
}

/// What the proxy does per call: `Budgets::admit` (a rate limit with
/// requests and tokens; price lookup; three budgets, one in a time zone;
/// the reservation; `warn_at`) and `Metered::settle` from the usage.
fn admit_request_path(threads: usize, cell: Duration) -> Vec<Duration> {
    use outpost::config::Identity;
    use outpost::policy::load::{load_layers, Layer};
    use outpost::proxy::spend::Budgets;

    let policy = load_layers(&[Layer::local(
        "bench.toml",
        "[[budgets]]\nid = \"user-day\"\nper = \"user\"\nlimit_usd = 1e9\nwindow = \"day\"\nwarn_at = 0.9\n\
               [[budgets]]\nid = \"device-month\"\nper = \"device\"\nlimit_usd = 1e9\nwindow = \"month\"\n\
               [[budgets]]\nid = \"all-week\"\nper = \"all\"\nlimit_usd = 1e9\nwindow = \"week\"\ntime_zone = \"Europe/Berlin\"\n\
               [[rate_limits]]\nid = \"rpm\"\nper = \"user\"\nrequests = 1000000000\ntokens = 1000000000000\nwindow = \"minute\"\n",
    )])
    .expect("bench policy");
    let prompt = "The quick brown fox jumps over the lazy dog. ".repeat(23);
    let body = serde_json::json!({"model": "gpt-4o-mini", "max_tokens": 256,
        "messages": [{"role": "user", "content": prompt}]});
    let call = outpost::provider::parse_request(
        outpost::provider::Provider::OpenAi,
        "POST",
        "/v1/chat/completions",
        body.to_string().as_bytes(),
    )
    .expect("bench call");
    let usage = outpost::provider::Usage {
        input_tokens: 260,
        output_tokens: 120,
        ..Default::default()
    };
    let identity = Identity {
        user: "alice".into(),
        device: "laptop-1".into(),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let budgets = Budgets::new(dir.path().to_path_buf());
    budgets.prepare(&policy).expect("open ledger");
    let ledger = budgets.ledger().expect("ledger").clone();
    let prompt_bytes: usize = call.texts.iter().map(|t| t.text.len()).sum();
    let samples = run_bursts(
        threads,
        cell,
        |i| {
            let id = format!("bench-{i}");
            let t0 = Instant::now();
            let metered = budgets
                .admit(
                    &policy,
                    &identity,
                    "openai",
                    &call,
                    prompt_bytes,
                    Timestamp::now(),
                    Instant::now(),
                )
                .expect("never refused");
            drop(metered.settle(Some(usage), None, id));
            t0.elapsed()
        },
        || ledger.flush().wait().expect("ledger flush"),
    );
    budgets.shutdown().expect("ledger shutdown");
    samples
}

/// `Reservations::reserve` + `settle` alone, for comparison.
fn reservations_request_path(charges: &[Charge], threads: usize, cell: Duration) -> Vec<Duration> {
    let reservations = Reservations::new();
    run_bursts(
        threads,
        cell,
        |_| {
            let t0 = Instant::now();
            let id = reservations
                .reserve(charges, RESERVED_USD)
                .expect("limit never reached");
            reservations
                .settle(id, SETTLED_USD)
                .expect("reservation is live");
            t0.elapsed()
        },
        || {},
    )
}

/// Run `request` (which times itself) on `threads` threads in lockstep
/// bursts of [`BURST`], calling `between` once after each burst while every
/// thread waits, until `cell` has passed. Lockstep keeps the threads
/// contending: one thread never runs alone while another is paused.
fn run_bursts(
    threads: usize,
    cell: Duration,
    request: impl Fn(u64) -> Duration + Sync,
    between: impl Fn() + Sync,
) -> Vec<Duration> {
    let end = Instant::now() + cell;
    let barrier = Barrier::new(threads);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let lanes: Vec<_> = (0..threads as u64)
            .map(|lane| {
                let (request, between, barrier, stop) = (&request, &between, &barrier, &stop);
                scope.spawn(move || {
                    let mut samples = Vec::new();
                    let mut i = lane;
                    loop {
                        for _ in 0..BURST {
                            samples.push(request(i));
                            i += threads as u64;
                        }
                        if barrier.wait().is_leader() {
                            between();
                            stop.store(Instant::now() >= end, Ordering::Relaxed);
                        }
                        // Every lane reads the leader's verdict after this.
                        barrier.wait();
                        if stop.load(Ordering::Relaxed) {
                            return samples;
                        }
                    }
                })
            })
            .collect();
        lanes
            .into_iter()
            .flat_map(|lane| lane.join().expect("bench lane"))
            .collect()
    })
}

/// `in_flight` tasks, each settling one request after another and awaiting
/// its `Committed`; returns every settle → durable latency, and the time
/// from the start until the database has every charge.
fn ledger_commits(
    runtime: &tokio::runtime::Runtime,
    charges: &[Charge],
    now: Timestamp,
    in_flight: usize,
    cell: Duration,
) -> (Vec<Duration>, Duration) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, writer) = Ledger::open(dir.path(), now).expect("open ledger");
    let charges: Arc<[Charge]> = charges.into();
    let start = Instant::now();
    let acks = runtime.block_on(async {
        let end = Instant::now() + cell;
        let lanes: Vec<_> = (0..in_flight as u64)
            .map(|lane| {
                let (ledger, charges) = (ledger.clone(), charges.clone());
                tokio::spawn(async move {
                    let mut acks = Vec::new();
                    let mut i = lane;
                    while Instant::now() < end {
                        let hold = ledger
                            .reserve(&charges, RESERVED_USD)
                            .expect("limit never reached");
                        let settlement = settlement(i, now);
                        let t0 = Instant::now();
                        // One job in flight per lane, at most 512 in all:
                        // the queue (4096) never fills, so `settle` does not
                        // block this worker thread.
                        ledger
                            .settle(hold, settlement)
                            .await
                            .expect("charge committed");
                        acks.push(t0.elapsed());
                        i += in_flight as u64;
                    }
                    acks
                })
            })
            .collect();
        let mut acks = Vec::new();
        for lane in lanes {
            acks.extend(lane.await.expect("bench lane"));
        }
        ledger.flush().await.expect("flush");
        acks
    });
    let in_sqlite = start.elapsed();
    // Blocking, so outside the runtime.
    writer.shutdown().expect("ledger shutdown");
    (acks, in_sqlite)
}

struct Stats {
    p50: Duration,
    p99: Duration,
    mean: Duration,
}

impl Stats {
    fn of(mut samples: Vec<Duration>) -> Stats {
        assert!(!samples.is_empty(), "a cell ran no requests");
        samples.sort_unstable();
        let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p) as usize];
        let total: Duration = samples.iter().sum();
        Stats {
            p50: pct(0.5),
            p99: pct(0.99),
            mean: total.div_f64(samples.len() as f64),
        }
    }
}

fn print_request_row(what: &str, threads: usize, samples: Vec<Duration>) {
    let requests = samples.len();
    let stats = Stats::of(samples);
    println!(
        "{:<32} | {:>7} | {:>10} | {:>8.2} {:>8.2} {:>8.2}",
        what,
        threads,
        requests,
        micros(stats.p50),
        micros(stats.p99),
        micros(stats.mean)
    );
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
