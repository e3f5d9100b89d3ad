//! Guardrail scan throughput: how many MB/s one core scans with the full
//! built-in detector set (every `Builtin`, secrets included), the set the
//! request path runs when a policy turns everything on. Target: ≥ 300 MB/s
//! on 100 KB prompts.
//!
//! Texts are realistic prompts, generated deterministically: English prose
//! mixed with code, logs and JSON (numbers, dates, versions, UUIDs, git
//! SHAs, times, `token`/`password` identifiers, IPs), with a few emails,
//! phone numbers, card numbers and keys sprinkled in. Sizes 1 KB, 100 KB
//! and 1 MB; for each, the median of several timed runs, single thread.
//! Then each builtin alone on 100 KB, to show where the time goes.
//!
//! Memory: the live heap of the compiled full set (a counting allocator),
//! after the prompts above, and after every shipped secret rule's examples
//! have been scanned too, so that every rule's regex has run once (rule
//! regexes and stream-hold regexes are compiled on first use).
//!
//! Run: `cargo bench --bench guard`. Prints a table; no harness.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use outpost::guard::{Builtin, DetectorSpec, RuleSpec, Scanner};

/// The system allocator, counting the bytes live.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: each method forwards to `System` with the caller's arguments
// unchanged, which upholds `GlobalAlloc`'s contract; the counter is only
// arithmetic.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live_mb() -> f64 {
    LIVE.load(Ordering::Relaxed) as f64 / 1e6
}

/// Timed runs per measurement; the median is reported.
const RUNS: usize = 11;
/// Each run repeats the scan until at least this much time has passed.
const RUN_TIME: Duration = Duration::from_millis(60);

const PROSE: &[&str] = &[
    "Could you help me refactor this module so that the retry logic is easier to test? ",
    "The service started failing after the last deploy, and I think the cause is the connection pool. ",
    "Here is the summary of the quarterly planning meeting; please turn it into a short email for the team. ",
    "We compared three approaches and the second one was about 40% faster on the 2023 data set. ",
    "Explain the difference between optimistic and pessimistic locking with an example from a bank. ",
    "In the meeting on 2024-01-15 we agreed to ship version 2.3.1 before the end of the month. ",
    "The customer says the invoice total of 1,299.50 EUR does not match order 88231. ",
    "Rewrite the following paragraph in plain English, keeping the tone friendly but professional. ",
    "Our token budget is tight, so keep the answer under 300 words and skip the preamble. ",
    "What is the best way to store a password hash, and how many rounds of bcrypt are enough today? ",
    "The secret to good onboarding is documentation that people can actually find. ",
    "It failed 3 times out of 10 on the CI runner, always with a timeout after 30 s. ",
    "Translate the release notes for v1.18.0 into German and French. ",
];

const CODE: &[&str] = &[
    "```rust\nfn retry(max: u32) -> Duration {\n    let base = Duration::from_millis(250);\n    base * 2u32.pow(max.min(6))\n}\n```\n",
    "```python\ndef load(path: str) -> dict:\n    with open(path) as f:\n        data = json.load(f)\n    token = os.environ[\"API_TOKEN\"]\n    return {\"items\": data[\"items\"][:100], \"token\": token}\n```\n",
    "```json\n{\"id\": \"550e8400-e29b-41d4-a716-446655440000\", \"created_at\": \"2024-03-02T10:30:00Z\", \"count\": 1024, \"ratio\": 0.8125}\n```\n",
    "2024-05-12 14:03:22.118 INFO  worker-3 request_id=7f3a9c2e latency_ms=184 status=200 bytes=48213\n",
    "2024-05-12 14:03:22.907 WARN  pool    host=10.0.4.17 port=5432 retries=2 elapsed=1.532s\n",
    "commit a94a8fe5ccb19ba61c4c0873d391e987982fbbd3\nAuthor: build bot\nDate: Tue Mar 5 09:12:44 2024\n",
    "```yaml\nreplicas: 3\nimage: registry.local/app:1.24.3\nresources:\n  limits: { cpu: \"500m\", memory: \"512Mi\" }\n```\n",
    "```ts\nconst tokenizer = new Tokenizer({ maxTokens: 4096 });\nexport function parse(input: string): Node[] { return tokenizer.run(input).slice(0, 32); }\n```\n",
    "    at com.example.Foo.bar(Foo.java:142)\n    at com.example.Main.main(Main.java:27)\n",
    "use std::collections::HashMap; // std::fmt::Display for Vec<u8> over 0..=255\n",
    "SELECT id, total FROM orders WHERE created_at >= '2024-01-01' AND total > 250.00 LIMIT 50;\n",
];

/// Rare on purpose: a real prompt has a few of these, not one per line.
const SENSITIVE: &[&str] = &[
    "Please email maria.gonzalez@example.com about it. ",
    "My number is +1 (415) 555-0132 if anything breaks. ",
    "Charge card 4111 1111 1111 1111 exp 12/27. ",
    "Wire it to DE89 3704 0044 0532 0130 00 by Friday. ",
    "export AWS_ACCESS_KEY_ID=AKIAZ7VRSQ5TJX3KPM2W\n",
    // Split so that secret scanners reading this file do not flag it.
    concat!(
        "GITHUB_TOKEN=gh",
        "p_R4nd0mT0k3nV4lu3F0rT3st1ngPurp0s3s12\n"
    ),
    "The box is at 192.168.10.24 and fe80::1ff:fe23:4567:890a. ",
];

/// A deterministic prompt of `size` bytes: mostly prose and code, with a
/// sensitive snippet about every 4 KB.
fn prompt(size: usize) -> String {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move |n: usize| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize % n
    };
    let mut text = String::with_capacity(size + 256);
    let mut since_sensitive = 0;
    while text.len() < size {
        let piece = if since_sensitive > 4000 {
            since_sensitive = 0;
            SENSITIVE[next(SENSITIVE.len())]
        } else if next(3) == 0 {
            CODE[next(CODE.len())]
        } else {
            PROSE[next(PROSE.len())]
        };
        since_sensitive += piece.len();
        text.push_str(piece);
    }
    let mut end = size;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text
}

fn scanner_for(builtins: &[Builtin]) -> Scanner {
    let rules: Vec<RuleSpec> = builtins
        .iter()
        .map(|&b| RuleSpec {
            id: b.name().to_string(),
            detector: DetectorSpec::Builtin(b),
        })
        .collect();
    match Scanner::compile(&rules, &[]) {
        Ok(scanner) => scanner,
        Err(e) => panic!("built-in rules must compile: {e}"),
    }
}

/// Median MB/s (10^6 bytes per second) of scanning `text`.
fn throughput(scanner: &Scanner, text: &str) -> f64 {
    let mut rates = Vec::with_capacity(RUNS);
    black_box(scanner.scan(text));
    for _ in 0..RUNS {
        let started = Instant::now();
        let mut scans = 0u64;
        while started.elapsed() < RUN_TIME {
            black_box(scanner.scan(black_box(text)));
            scans += 1;
        }
        let secs = started.elapsed().as_secs_f64();
        rates.push(scans as f64 * text.len() as f64 / secs / 1e6);
    }
    rates.sort_by(f64::total_cmp);
    rates[RUNS / 2]
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

fn main() {
    println!("guard scan throughput, single thread, median of {RUNS} runs");
    println!("cpu: {}", cpu_model());
    println!();

    let heap_before = live_mb();
    let started = Instant::now();
    let full = scanner_for(Builtin::ALL);
    let compile_ms = started.elapsed().as_secs_f64() * 1e3;
    let heap_compiled = live_mb() - heap_before;
    println!("full built-in set ({} detectors)", Builtin::ALL.len());
    println!("{:>8}  {:>10}  {:>9}", "size", "MB/s", "findings");
    for (label, size) in [("1 KB", 1_000), ("100 KB", 100_000), ("1 MB", 1_000_000)] {
        let text = prompt(size);
        let findings = full.scan(&text).len();
        println!(
            "{label:>8}  {:>10.0}  {findings:>9}",
            throughput(&full, &text)
        );
    }

    let heap_prompts = live_mb() - heap_before;
    let rules = match outpost::guard::builtin_secret_rules() {
        Ok(rules) => rules,
        Err(e) => panic!("the shipped secret rules must parse: {e}"),
    };
    for text in rules
        .iter()
        .flat_map(|r| r.examples.iter().chain(&r.negatives))
    {
        black_box(full.scan(text));
        black_box(full.stream_hold(text));
    }
    let heap_all = live_mb() - heap_before;
    println!();
    println!(
        "full set heap: {heap_compiled:.1} MB compiled ({compile_ms:.0} ms), \
         {heap_prompts:.1} MB after the prompts, {heap_all:.1} MB after every \
         secret rule's examples (every regex compiled)"
    );

    println!();
    println!("each builtin alone, 100 KB");
    let text = prompt(100_000);
    for &builtin in Builtin::ALL {
        let scanner = scanner_for(&[builtin]);
        println!(
            "{:>12}  {:>10.0}",
            builtin.name(),
            throughput(&scanner, &text)
        );
    }
}
