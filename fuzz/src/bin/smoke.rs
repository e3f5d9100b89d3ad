//! The fuzz targets on stable Rust: a deterministic mutation loop over the
//! seed inputs, for machines without nightly or libFuzzer.
//!
//! It is not coverage-guided, so it finds less than `cargo fuzz`; it exists
//! so every machine (and CI) exercises the same target bodies and their
//! property checks. Runs are reproducible: the same `--seed` and
//! `--iterations` give the same inputs. A failing input is written to
//! `artifacts/<target>/crash-<n>` (replay it with `cargo fuzz run <target>
//! <file>` or `smoke --replay <target> <file>`), and the exit status is 1.
//!
//! ```text
//! smoke [--seconds N] [--iterations N] [--seed N] [TARGET...]
//! smoke --write-corpus DIR        seeds as a libFuzzer corpus: DIR/<target>/seed-<n>
//! smoke --replay TARGET FILE      run one input
//! ```

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A target: its name, body and seed inputs.
struct Target {
    name: &'static str,
    run: fn(&[u8]),
    seeds: fn() -> Vec<Vec<u8>>,
}

const TARGETS: [Target; 5] = [
    Target {
        name: "parse_request",
        run: outpost_fuzz::parse_request,
        seeds: outpost_fuzz::seeds::parse_request,
    },
    Target {
        name: "scanned_is_sent",
        run: outpost_fuzz::scanned_is_sent,
        seeds: outpost_fuzz::seeds::scanned_is_sent,
    },
    Target {
        name: "sse_parser",
        run: outpost_fuzz::sse_parser,
        seeds: outpost_fuzz::seeds::sse_parser,
    },
    Target {
        name: "socket_messages",
        run: outpost_fuzz::socket_messages,
        seeds: outpost_fuzz::seeds::socket_messages,
    },
    Target {
        name: "stream_state",
        run: outpost_fuzz::stream_state,
        seeds: outpost_fuzz::seeds::stream_state,
    },
];

/// SplitMix64: tiny, fast, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Fragments that matter to JSON and SSE parsers.
const TOKENS: &[&[u8]] = &[
    b"\"",
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"null",
    b"true",
    b"-1",
    b"1e999",
    b"0.5",
    b"\\u0000",
    b"\\ud800",
    b"\r",
    b"\n",
    b"\r\n",
    b"\n\n",
    b"data:",
    b"data: ",
    b"event: ",
    b"id: \0",
    b"retry: 9",
    b": ",
    b"\xEF\xBB\xBF",
    b"\xC3",
    b"\xF0\x9F\x98",
    b"\"text\":",
    b"\"content\":",
    b"\"type\":\"text\"",
    b"\"messages\":",
    b"\"parts\":",
    b"\"choices\":[]",
    b"\"usage\":{}",
    b"\"delta\":",
    b"[DONE]",
    b"%3A",
    b"//",
];

/// One to eight random edits of `input`, sometimes splicing in `other`.
fn mutate(rng: &mut Rng, input: &mut Vec<u8>, other: &[u8]) {
    for _ in 0..=rng.below(8) {
        let len = input.len();
        match rng.below(9) {
            0 if len > 0 => {
                let at = rng.below(len);
                input[at] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let at = rng.below(len);
                input[at] = rng.next() as u8;
            }
            2 => {
                let token = TOKENS[rng.below(TOKENS.len())];
                let at = rng.below(len + 1);
                input.splice(at..at, token.iter().copied());
            }
            3 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(16)).min(len);
                input.drain(at..end);
            }
            4 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(64)).min(len);
                let copy = input[at..end].to_vec();
                let to = rng.below(len + 1);
                input.splice(to..to, copy);
            }
            5 if !other.is_empty() => {
                let from = rng.below(other.len());
                let end = (from + 1 + rng.below(128)).min(other.len());
                let at = rng.below(len + 1);
                input.splice(at..at, other[from..end].iter().copied());
            }
            6 if len > 3 => input.truncate(3 + rng.below(len - 3)),
            7 if len > 0 => {
                // Selector bytes steer the targets; change them often.
                let at = rng.below(len.min(3));
                input[at] = rng.next() as u8;
            }
            _ => {
                let at = rng.below(len + 1);
                let bytes: Vec<u8> = (0..rng.below(8)).map(|_| rng.next() as u8).collect();
                input.splice(at..at, bytes);
            }
        }
    }
}

/// Member names the adapters look for: inserting them makes new shapes.
const KEYS: &[&str] = &[
    "messages",
    "content",
    "text",
    "type",
    "role",
    "parts",
    "contents",
    "system",
    "systemInstruction",
    "system_instruction",
    "tools",
    "function",
    "functions",
    "description",
    "parameters",
    "input",
    "instructions",
    "prompt",
    "tool_calls",
    "arguments",
    "model",
    "stream",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "generationConfig",
    "maxOutputTokens",
    "source",
    "data",
    "output",
    "summary",
    "functionCall",
    "args",
    "functionResponse",
    "response",
    "refusal",
    "requests",
    "generateContentRequest",
    "stream_options",
    "include_usage",
    "prediction",
    "variables",
    "suffix",
];

/// Words the adapters branch on.
const WORDS: &[&str] = &[
    "",
    "x",
    "text",
    "user",
    "model",
    "assistant",
    "system",
    "developer",
    "tool",
    "function",
    "message",
    "function_call",
    "function_call_output",
    "input_text",
    "output_text",
    "refusal",
    "reasoning",
    "tool_use",
    "tool_result",
    "document",
    "thinking",
    "content",
    "[DONE]",
];

fn random_value(rng: &mut Rng) -> Value {
    match rng.below(12) {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 0),
        2 => json!(-1),
        3 => json!(1.5),
        4 => json!(u64::MAX),
        5 => json!(1e20),
        6 | 7 => Value::from(WORDS[rng.below(WORDS.len())]),
        8 => json!([]),
        9 => json!({}),
        10 => json!([{"type": "text", "text": "t"}]),
        _ => json!({"role": "user", "content": "c", "parts": [{"text": "p"}]}),
    }
}

/// Replaces, inserts or removes one node somewhere in `value`.
fn mutate_value(rng: &mut Rng, value: &mut Value) {
    match value {
        Value::Object(members) if !members.is_empty() && rng.below(4) != 0 => {
            let i = rng.below(members.len());
            match rng.below(8) {
                0 => {
                    let key = members.keys().nth(i).cloned().unwrap_or_default();
                    members.remove(&key);
                }
                1 => {
                    members.insert(KEYS[rng.below(KEYS.len())].to_owned(), random_value(rng));
                }
                _ => {
                    if let Some(child) = members.values_mut().nth(i) {
                        mutate_value(rng, child);
                    }
                }
            }
        }
        Value::Array(items) if !items.is_empty() && rng.below(4) != 0 => {
            let i = rng.below(items.len());
            match rng.below(8) {
                0 => {
                    items.remove(i);
                }
                1 => {
                    let copy = items[i].clone();
                    items.insert(i, copy);
                }
                _ => mutate_value(rng, &mut items[i]),
            }
        }
        Value::Object(members) if rng.below(2) == 0 => {
            members.insert(KEYS[rng.below(KEYS.len())].to_owned(), random_value(rng));
        }
        _ => *value = random_value(rng),
    }
}

/// Structure-aware edits of a request input's JSON body (after the three
/// selector bytes): byte edits mostly break JSON, these keep it valid and
/// reach the shape checks. `false` if the body is not JSON.
fn mutate_json_body(rng: &mut Rng, input: &mut Vec<u8>, at: usize) -> bool {
    let Some(body) = input.get(at..) else {
        return false;
    };
    let Ok(mut value) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    for _ in 0..=rng.below(4) {
        mutate_value(rng, &mut value);
    }
    let Ok(bytes) = serde_json::to_vec(&value) else {
        return false;
    };
    input.truncate(at);
    input.extend_from_slice(&bytes);
    true
}

/// Runs `input`; on a panic, saves it and returns the file.
fn run_one(target: &Target, input: &[u8], crashes: &mut usize) -> Option<PathBuf> {
    if panic::catch_unwind(AssertUnwindSafe(|| (target.run)(input))).is_ok() {
        return None;
    }
    let dir = Path::new("artifacts").join(target.name);
    let file = dir.join(format!("crash-{}", *crashes));
    *crashes += 1;
    let saved = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&file, input));
    if let Err(err) = saved {
        eprintln!(
            "could not save the failing input to {}: {err}",
            file.display()
        );
    }
    Some(file)
}

struct Options {
    seconds: u64,
    iterations: Option<u64>,
    seed: u64,
    targets: Vec<String>,
}

fn fuzz(options: &Options) -> ExitCode {
    let mut failed = false;
    for target in TARGETS
        .iter()
        .filter(|t| options.targets.is_empty() || options.targets.iter().any(|n| n == t.name))
    {
        let seeds = (target.seeds)();
        let mut rng = Rng(options.seed ^ target.name.len() as u64);
        let budget = Duration::from_secs(options.seconds);
        let started = Instant::now();
        let mut runs = 0u64;
        let mut crashes = 0usize;
        for seed in &seeds {
            if let Some(file) = run_one(target, seed, &mut crashes) {
                eprintln!("{}: a seed input fails: {}", target.name, file.display());
            }
        }
        loop {
            let done = match options.iterations {
                Some(limit) => runs >= limit,
                None => started.elapsed() >= budget,
            };
            if done || crashes >= 5 {
                break;
            }
            let mut input = if rng.below(16) == 0 {
                (0..rng.below(512)).map(|_| rng.next() as u8).collect()
            } else {
                seeds[rng.below(seeds.len())].clone()
            };
            let other = &seeds[rng.below(seeds.len())];
            // Where the JSON body starts, after the selector bytes.
            let body_at = match target.name {
                "parse_request" => Some(3),
                "scanned_is_sent" => Some(4),
                "socket_messages" => Some(1),
                _ => None,
            };
            let structured = body_at.is_some_and(|at| {
                rng.below(2) == 0 && mutate_json_body(&mut rng, &mut input, at)
            });
            if !structured {
                mutate(&mut rng, &mut input, other);
            }
            if let Some(file) = run_one(target, &input, &mut crashes) {
                eprintln!("{}: failing input saved to {}", target.name, file.display());
            }
            runs += 1;
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{:<14} {runs:>9} runs in {secs:>5.1}s ({:>8.0}/s), {} seeds, {crashes} failures",
            target.name,
            runs as f64 / secs.max(1e-9),
            seeds.len()
        );
        failed |= crashes > 0;
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn write_corpus(dir: &Path) -> ExitCode {
    for target in &TARGETS {
        let target_dir = dir.join(target.name);
        for (i, seed) in (target.seeds)().iter().enumerate() {
            let file = target_dir.join(format!("seed-{i}"));
            if let Err(err) =
                std::fs::create_dir_all(&target_dir).and_then(|()| std::fs::write(&file, seed))
            {
                eprintln!("cannot write {}: {err}", file.display());
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

fn replay(name: &str, file: &Path) -> ExitCode {
    let Some(target) = TARGETS.iter().find(|t| t.name == name) else {
        eprintln!("unknown target {name}");
        return ExitCode::from(2);
    };
    match std::fs::read(file) {
        Ok(input) => {
            (target.run)(&input);
            println!("{name}: {} passes", file.display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("cannot read {}: {err}", file.display());
            ExitCode::from(2)
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: smoke [--seconds N] [--iterations N] [--seed N] [TARGET...]");
    eprintln!("       smoke --write-corpus DIR | --replay TARGET FILE");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut options = Options {
        seconds: 10,
        iterations: None,
        seed: 0x5EED,
        targets: Vec::new(),
    };
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1);
        match (args[i].as_str(), value) {
            ("--write-corpus", Some(dir)) => return write_corpus(Path::new(dir)),
            ("--replay", Some(name)) => match args.get(i + 2) {
                Some(file) => return replay(name, Path::new(file)),
                None => return usage(),
            },
            ("--seconds", Some(n)) => match n.parse() {
                Ok(n) => options.seconds = n,
                Err(_) => return usage(),
            },
            ("--iterations", Some(n)) => match n.parse() {
                Ok(n) => options.iterations = Some(n),
                Err(_) => return usage(),
            },
            ("--seed", Some(n)) => match n.parse() {
                Ok(n) => options.seed = n,
                Err(_) => return usage(),
            },
            (name, _) if !name.starts_with('-') => {
                if !TARGETS.iter().any(|t| t.name == name) {
                    eprintln!("unknown target {name}");
                    return usage();
                }
                options.targets.push(name.to_owned());
                i += 1;
                continue;
            }
            _ => return usage(),
        }
        i += 2;
    }
    fuzz(&options)
}
