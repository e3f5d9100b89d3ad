//! Shipping the audit log to the fleet's OpenTelemetry collector.
//!
//! The day files (`YYYY-MM-DD.jsonl` in the audit directory) are the spool:
//! nothing is queued in memory that is not also on disk. A background task
//! reads the records after the *cursor*, sends them in batches as OTLP/HTTP
//! JSON logs (`POST {endpoint}/v1/logs`), and moves the cursor only after
//! the collector answered 2xx. So a collector that is down costs nothing but
//! a growing backlog, and a restart resumes where the collector last
//! acknowledged.
//!
//! Words:
//! - the **cursor** (`ship-cursor.json`) names the day file and the byte
//!   offset of the first record not yet acknowledged, plus the `seq` and the
//!   record id of the last acknowledged record, so start-up can check that the
//!   offset still points where it did (see [`resume`]);
//! - the **record id** of a line is its chain `hash` (already unique and
//!   stable); a line that does not parse as a record gets the SHA-256 of its
//!   bytes instead. It is sent as `log.record.uid`, so a collector can drop
//!   the duplicates that at-least-once delivery allows: after a crash or a
//!   cancelled request, at most the batch in flight is sent again;
//! - a day file is **finished** once a later day file exists: the writer
//!   only ever appends to the newest one.
//!
//! Failure policy: connection errors, timeouts, 408, 429 and 5xx are retried
//! with exponential backoff and jitter (250 ms doubling to 30 s). A 413 halves
//! the batch. Any other status (400, 401, 403, 404, …) will not fix itself,
//! but dropping audit records is not ours to decide: the batch is retried
//! every 30 s, logged as an error, and [`ShipStats::stalled`] says so until
//! an operator fixes the collector or the credentials.
//!
//! When caught up the task polls every 250 ms; the writer can poke
//! [`Shipper::notifier`] after a flush to skip the wait. Shutdown abandons an
//! export in flight (its records go again next run) and never waits out a
//! backoff.

use std::collections::hash_map::RandomState;
use std::fs::{self, File};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use http::{HeaderMap, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use jiff::civil::Date;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::day;
use super::record::{sha256_hex, AuditRecord, Decision, Kind, GENESIS};
use crate::clock::Clock;
use crate::upstream::{error_chain, Connector};

/// The cursor's file name inside the audit directory.
pub const CURSOR_FILE: &str = "ship-cursor.json";
/// Where the next cursor is written before it is renamed into place.
const CURSOR_TMP: &str = "ship-cursor.json.tmp";
/// First retry delay; doubles per failure.
const BACKOFF_START: Duration = Duration::from_millis(250);
/// Retry delay ceiling, and the delay for refusals that will not fix themselves.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// The longest `Retry-After` we honour; beyond that the collector is guessing.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(300);
/// How often a caught-up shipper looks for new lines when nobody pokes it.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Bound on one export: connect, send, and read the answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Raw record bytes per request: collectors commonly refuse bodies over a
/// few MiB, and `content = "full"` records can be large.
const MAX_BATCH_BYTES: usize = 2 * 1024 * 1024;
/// How much of a collector's answer we read (partial-success details, errors).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// While busy, the backlog is recounted at most this often (it is a scan).
const BACKLOG_RECOUNT: Duration = Duration::from_secs(5);
/// OTLP `SeverityNumber` values.
const SEVERITY_INFO: u8 = 9;
const SEVERITY_WARN: u8 = 13;

/// What the shipper needs; the integrator builds it from `[audit.export]`.
#[derive(Clone)]
pub struct ShipConfig {
    /// OTLP/HTTP base endpoint, e.g. `http://collector:4318`; logs go to
    /// `{endpoint}/v1/logs` (an endpoint that already ends in `/v1/logs` is
    /// used as is).
    pub endpoint: Uri,
    /// Records per request (at least 1).
    pub batch_size: usize,
    /// Extra request headers (e.g. an API key for the collector).
    pub headers: Vec<(String, String)>,
    /// Device id, sent as the `host.id` and `host.name` resource attributes.
    pub device: String,
}

impl std::fmt::Debug for ShipConfig {
    // Header values are often collector credentials: never in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("ShipConfig")
            .field("endpoint", &self.endpoint)
            .field("batch_size", &self.batch_size)
            .field("headers (values hidden)", &names)
            .field("device", &self.device)
            .finish()
    }
}

/// Why a shipper could not be built: configuration errors.
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    /// The endpoint is not an absolute `http://` or `https://` URI.
    #[error(
        "`audit.export.otlp_endpoint` = `{0}`: must be an absolute http:// or https:// URI with a host"
    )]
    Endpoint(String),
    /// A header name or value cannot be sent.
    #[error("`audit.export` header `{name}`: {reason}")]
    Header {
        /// The header name as configured.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `batch_size` is zero.
    #[error("`audit.export` batch size must be at least 1")]
    BatchSize,
}

/// Why the spool could not be read (our side: disk, permissions).
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file or directory operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// `ship-cursor.json` is not a cursor (the shipper then starts over).
    #[error("{path}: not a shipping cursor: {source}")]
    BadCursor {
        /// The cursor file.
        path: PathBuf,
        /// Why it does not parse.
        source: serde_json::Error,
    },
    /// The blocking reader task panicked or was cancelled.
    #[error("spool reader task failed: {0}")]
    Task(String),
}

impl SpoolError {
    fn io(path: &Path, source: io::Error) -> SpoolError {
        SpoolError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Why one export did not get acknowledged. Every variant is the collector's
/// side (or the network's); none advances the cursor.
#[derive(Debug, thiserror::Error)]
enum ExportError {
    /// Connect, TLS, or the exchange failed; or a 408/429/5xx answer.
    #[error("{reason}")]
    Transient {
        /// What happened.
        reason: String,
        /// The collector's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// 413: the batch is too large for the collector.
    #[error("collector answered 413 Payload Too Large")]
    TooLarge,
    /// A status that retrying the same request will not change.
    #[error("collector refused the batch with {status}: {detail}")]
    Refused {
        /// The status.
        status: StatusCode,
        /// The start of the answer's body.
        detail: String,
    },
}

/// A snapshot of the shipper's progress, for `/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShipStats {
    /// Records the collector acknowledged since this shipper started.
    pub shipped: u64,
    /// `seq` of the last acknowledged record.
    pub last_seq: Option<u64>,
    /// Complete records after the cursor (recounted every few seconds while
    /// busy, so it can lag a little).
    pub backlog: u64,
    /// Delay before the next retry; zero while exports succeed.
    pub backoff: Duration,
    /// The most recent failure (kept after recovery; see `last_error_at`).
    pub last_error: Option<String>,
    /// When `last_error` happened (by the shipper's clock).
    pub last_error_at: Option<Timestamp>,
    /// The collector refuses the current batch with a status that retrying
    /// will not fix (auth, bad request): shipping is stuck until someone acts.
    pub stalled: bool,
    /// Records the collector acknowledged but reported as rejected (OTLP
    /// partial success); they are not sent again.
    pub rejected: u64,
}

/// Shared view of [`ShipStats`]; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ShipStatsHandle(Arc<Mutex<ShipStats>>);

impl ShipStatsHandle {
    /// The current numbers.
    pub fn snapshot(&self) -> ShipStats {
        // A panic while holding the lock leaves plain counters, still usable.
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut ShipStats)) {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn failed(&self, at: Timestamp, error: &str, backoff: Duration, stalled: bool) {
        self.update(|s| {
            s.last_error = Some(error.to_string());
            s.last_error_at = Some(at);
            s.backoff = backoff;
            s.stalled = stalled;
        });
    }
}

/// Where shipping stands: the first unacknowledged byte, and the last
/// acknowledged record. Persisted as `ship-cursor.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Day file name (`YYYY-MM-DD.jsonl`) the next record is read from.
    pub file: String,
    /// Byte offset in `file` of the first record not yet acknowledged.
    pub offset: u64,
    /// `seq` of the last acknowledged record (0 before the first).
    pub seq: u64,
    /// Record id of the last acknowledged record ([`GENESIS`] before the first).
    pub hash: String,
}

impl Cursor {
    /// Before anything was shipped: the oldest day file, from its start.
    fn start() -> Cursor {
        Cursor {
            file: String::new(),
            offset: 0,
            seq: 0,
            hash: GENESIS.to_string(),
        }
    }
}

/// Read the persisted cursor. `Ok(None)`: nothing was ever acknowledged.
pub fn load_cursor(dir: &Path) -> Result<Option<Cursor>, SpoolError> {
    let path = dir.join(CURSOR_FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(SpoolError::io(&path, e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| SpoolError::BadCursor { path, source })
}

/// Persist `cursor`: temp file, fsync, rename, fsync the directory, so a
/// crash leaves either the old cursor or the new one, never a torn one.
pub fn store_cursor(dir: &Path, cursor: &Cursor) -> Result<(), SpoolError> {
    let tmp = dir.join(CURSOR_TMP);
    let path = dir.join(CURSOR_FILE);
    // Display of a `Value` cannot fail, unlike `to_vec`'s signature suggests.
    let text = json!(cursor).to_string();
    let write = || -> io::Result<()> {
        let mut file = File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    };
    write().map_err(|e| SpoolError::io(&tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| SpoolError::io(&path, e))?;
    sync_dir(dir);
    Ok(())
}

/// Make the rename durable. Best effort: not every platform can open a
/// directory, and the old cursor is still a correct (earlier) position.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        tracing::debug!("fsync {}: {e}", dir.display());
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// The first day whose file is not yet fully shipped: the retention sweep
/// must keep that file and every later one (`retention::sweep`'s
/// `protect_from`). `None` when no existing day file needs keeping for
/// shipping (there are none, or all are older than the cursor). Without a
/// readable cursor nothing counts as shipped, so the oldest day is returned.
/// The cursor is taken as stored; the shipper re-checks it against the
/// records at start (see [`resume`]).
pub fn shipped_through(dir: &Path) -> Option<Date> {
    let files = day_files(dir).ok()?;
    let oldest = files.first()?;
    let day_of = |name: &str| day::parse_file_name(name);
    let cursor = match load_cursor(dir) {
        Ok(Some(cursor)) => cursor,
        _ => return day_of(oldest),
    };
    let index = files.iter().position(|f| *f >= cursor.file)?;
    let file = &files[index];
    if *file == cursor.file {
        let len = fs::metadata(dir.join(file)).map(|m| m.len()).ok();
        // The cursor's file is done once every byte is shipped and the writer
        // has moved on to a later day.
        if len.is_some_and(|len| cursor.offset >= len) {
            if let Some(next) = files.get(index + 1) {
                return day_of(next);
            }
        }
    }
    day_of(file)
}

fn is_day_file(name: &str) -> bool {
    day::parse_file_name(name).is_some()
}

/// Day file names, oldest first (strict `YYYY-MM-DD.jsonl` names sort by
/// day, so cursors compare names). A missing directory is an empty spool.
fn day_files(dir: &Path) -> Result<Vec<String>, SpoolError> {
    let files = day::list(dir).map_err(|e| SpoolError::io(dir, e))?;
    Ok(files.into_iter().map(|f| day::file_name(f.day)).collect())
}

/// One complete line of a day file.
#[derive(Debug, Clone)]
struct SpoolLine {
    /// The line without its newline (lossy UTF-8: a damaged line is still shipped).
    text: String,
    /// The parsed record; `None` if the line is not one.
    record: Option<AuditRecord>,
    /// Record id (see the module docs).
    uid: String,
}

impl SpoolLine {
    fn parse(bytes: &[u8]) -> SpoolLine {
        let record: Option<AuditRecord> = serde_json::from_slice(bytes).ok();
        let uid = match &record {
            Some(r) => r.hash.clone(),
            None => sha256_hex(bytes),
        };
        SpoolLine {
            text: String::from_utf8_lossy(bytes).into_owned(),
            record,
            uid,
        }
    }
}

/// Records read after a cursor, and the cursor once they are acknowledged.
#[derive(Debug)]
struct Batch {
    lines: Vec<SpoolLine>,
    end: Cursor,
}

/// What the spool holds after a cursor.
#[derive(Debug)]
enum Step {
    /// Complete lines to send (possibly none, when only blank lines were
    /// passed over: then just move the cursor).
    Batch(Batch),
    /// The cursor's file is finished: continue with this one.
    Advance(Cursor),
    /// Nothing complete after the cursor yet.
    CaughtUp,
    /// The file no longer matches the cursor (it shrank): look again.
    Lost(String),
}

/// Read up to `max_records` complete lines (and about `max_bytes`) after `pos`.
fn read_next(
    dir: &Path,
    pos: &Cursor,
    max_records: usize,
    max_bytes: usize,
) -> Result<Step, SpoolError> {
    let files = day_files(dir)?;
    if !files.contains(&pos.file) {
        return Ok(match files.iter().find(|f| **f > pos.file) {
            Some(next) => {
                if !pos.file.is_empty() {
                    tracing::warn!(
                        "audit shipping: day file {} disappeared before it was fully shipped; continuing with {next}",
                        pos.file
                    );
                }
                Step::Advance(Cursor {
                    file: next.clone(),
                    offset: 0,
                    ..pos.clone()
                })
            }
            None => Step::CaughtUp,
        });
    }
    // Looked at before reading, so that "a later file exists" implies the
    // read below sees everything the writer will ever put in this file.
    let successor = files.iter().find(|f| **f > pos.file).cloned();
    let path = dir.join(&pos.file);
    let mut file = match File::open(&path) {
        Ok(file) => file,
        // Deleted between listing and opening: the next round sees that.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Step::CaughtUp),
        Err(e) => return Err(SpoolError::io(&path, e)),
    };
    let len = file.metadata().map_err(|e| SpoolError::io(&path, e))?.len();
    if len < pos.offset {
        return Ok(Step::Lost(format!(
            "{} is {len} bytes, shorter than the cursor offset {}",
            pos.file, pos.offset
        )));
    }
    file.seek(SeekFrom::Start(pos.offset))
        .map_err(|e| SpoolError::io(&path, e))?;
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut end = pos.clone();
    let mut lines = Vec::new();
    let mut bytes = 0usize;
    let mut buf = Vec::new();
    let mut partial = false;
    while lines.len() < max_records && bytes < max_bytes {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| SpoolError::io(&path, e))?;
        if n == 0 {
            break;
        }
        if buf.last() != Some(&b'\n') {
            // The writer is mid-line: ship it once it is complete.
            partial = true;
            break;
        }
        end.offset += n as u64;
        let content = &buf[..n - 1];
        if content.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let line = SpoolLine::parse(content);
        if let Some(record) = &line.record {
            end.seq = record.seq;
        }
        end.hash.clone_from(&line.uid);
        bytes += content.len();
        lines.push(line);
    }
    if end.offset > pos.offset {
        return Ok(Step::Batch(Batch { lines, end }));
    }
    match successor {
        Some(next) => {
            if partial {
                // Only a crash leaves a torn line, and the writer repairs only
                // the newest file; this one will never be completed.
                tracing::warn!(
                    "audit shipping: {} ends in an incomplete line at byte {}; not shipped",
                    pos.file,
                    pos.offset
                );
            }
            Ok(Step::Advance(Cursor {
                file: next,
                offset: 0,
                ..pos.clone()
            }))
        }
        None => Ok(Step::CaughtUp),
    }
}

/// Complete lines after `pos`, across the remaining day files.
fn count_backlog(dir: &Path, pos: &Cursor) -> Result<u64, SpoolError> {
    let mut total = 0u64;
    for name in day_files(dir)?.iter().filter(|f| **f >= pos.file) {
        let path = dir.join(name);
        let start = if *name == pos.file { pos.offset } else { 0 };
        let count = || -> io::Result<u64> {
            let mut file = File::open(&path)?;
            file.seek(SeekFrom::Start(start))?;
            let mut buf = vec![0u8; 64 * 1024];
            let mut n = 0u64;
            loop {
                let read = file.read(&mut buf)?;
                if read == 0 {
                    return Ok(n);
                }
                n += memchr::memchr_iter(b'\n', &buf[..read]).count() as u64;
            }
        };
        match count() {
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(SpoolError::io(&path, e)),
        }
    }
    Ok(total)
}

/// Where to start reading: the persisted `cursor` checked against the
/// files, or, if it no longer fits, the position it meant (logged). No
/// cursor (nothing ever acknowledged): the oldest file, from its start.
///
/// A cursor fits when the line ending at its offset has its record id, or,
/// at offset 0, when the file's first record chains onto it (`prev`). A
/// cursor that does not fit (its file was deleted by retention, replaced,
/// or rewritten) is looked up by scanning every day file for the record
/// itself or for its successor in the chain. If neither is found, the chain
/// it belonged to is gone: everything present is sent again, because
/// duplicates are recoverable (`log.record.uid`) and gaps are not.
pub fn resume(dir: &Path, cursor: Option<Cursor>) -> Result<Cursor, SpoolError> {
    let Some(cursor) = cursor else {
        return Ok(Cursor::start());
    };
    if cursor_fits(dir, &cursor)? {
        return Ok(cursor);
    }
    if let Some(found) = scan_for(dir, &cursor)? {
        tracing::warn!(
            "audit shipping: cursor {}@{} (seq {}) no longer matches; resuming at {}@{}",
            cursor.file,
            cursor.offset,
            cursor.seq,
            found.file,
            found.offset
        );
        return Ok(found);
    }
    tracing::warn!(
        "audit shipping: record seq {} ({}) from the cursor is not in any day file; shipping every file again from the oldest",
        cursor.seq,
        cursor.hash
    );
    Ok(Cursor::start())
}

fn cursor_fits(dir: &Path, cursor: &Cursor) -> Result<bool, SpoolError> {
    if !is_day_file(&cursor.file) {
        return Ok(false);
    }
    let path = dir.join(&cursor.file);
    let mut file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(SpoolError::io(&path, e)),
    };
    let len = file.metadata().map_err(|e| SpoolError::io(&path, e))?.len();
    if cursor.offset > len {
        return Ok(false);
    }
    if cursor.offset == 0 {
        let mut first = Vec::new();
        BufReader::new(file)
            .read_until(b'\n', &mut first)
            .map_err(|e| SpoolError::io(&path, e))?;
        if first.last() != Some(&b'\n') {
            // Nothing complete yet to compare with.
            return Ok(true);
        }
        let line = SpoolLine::parse(&first[..first.len() - 1]);
        return Ok(line.record.is_some_and(|r| r.prev == cursor.hash));
    }
    let line = line_ending_at(&mut file, cursor.offset).map_err(|e| SpoolError::io(&path, e))?;
    Ok(line.is_some_and(|l| SpoolLine::parse(&l).uid == cursor.hash))
}

/// The complete line that ends (with its newline) just before `end`.
fn line_ending_at(file: &mut File, end: u64) -> io::Result<Option<Vec<u8>>> {
    let mut window = 16 * 1024u64;
    loop {
        let start = end.saturating_sub(window);
        let mut buf = vec![0u8; (end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf)?;
        let Some((&b'\n', body)) = buf.split_last() else {
            return Ok(None);
        };
        if let Some(i) = memchr::memrchr(b'\n', body) {
            return Ok(Some(body[i + 1..].to_vec()));
        }
        if start == 0 {
            return Ok(Some(body.to_vec()));
        }
        window *= 4;
    }
}

/// Look for the cursor's record (resume after it) or its successor in the
/// chain (resume at it), oldest file first.
fn scan_for(dir: &Path, cursor: &Cursor) -> Result<Option<Cursor>, SpoolError> {
    for name in day_files(dir)? {
        let path = dir.join(&name);
        let file = File::open(&path).map_err(|e| SpoolError::io(&path, e))?;
        let mut reader = BufReader::new(file);
        let mut offset = 0u64;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(|e| SpoolError::io(&path, e))?;
            if n == 0 || buf.last() != Some(&b'\n') {
                break;
            }
            let line = SpoolLine::parse(&buf[..n - 1]);
            let at = |offset| Cursor {
                file: name.clone(),
                offset,
                ..cursor.clone()
            };
            if line.uid == cursor.hash {
                return Ok(Some(at(offset + n as u64)));
            }
            if line.record.is_some_and(|r| r.prev == cursor.hash) {
                return Ok(Some(at(offset)));
            }
            offset += n as u64;
        }
    }
    Ok(None)
}

// ---- OTLP/HTTP JSON encoding ----------------------------------------------

/// An `ExportLogsServiceRequest` in OTLP JSON for `lines`: one resource
/// (this device), one scope (`outpost.audit`), one log record per line.
fn encode_request(lines: &[SpoolLine], device: &str, observed_unix_nanos: u64) -> String {
    let mut resource = vec![str_attr("service.name", "outpost")];
    resource.push(str_attr("service.version", env!("CARGO_PKG_VERSION")));
    if !device.is_empty() {
        resource.push(str_attr("host.id", device));
        resource.push(str_attr("host.name", device));
    }
    let records: Vec<Value> = lines
        .iter()
        .map(|line| log_record(line, observed_unix_nanos))
        .collect();
    json!({
        "resourceLogs": [{
            "resource": { "attributes": resource },
            "scopeLogs": [{
                "scope": { "name": "outpost.audit", "version": env!("CARGO_PKG_VERSION") },
                "logRecords": records,
            }],
        }],
    })
    .to_string()
}

/// One OTLP `LogRecord`. The body carries the whole line, so nothing is lost
/// in the mapping; attributes are for querying. Absent values are omitted.
fn log_record(line: &SpoolLine, observed_unix_nanos: u64) -> Value {
    let mut attrs = Vec::new();
    let mut warn = true;
    let mut time = None;
    match &line.record {
        Some(record) => {
            let e = &record.event;
            time = unix_nanos(&e.ts);
            warn =
                matches!(e.decision, Decision::Block | Decision::Error) || e.kind == Kind::Repair;
            if let Some(provider) = e.provider.as_deref() {
                attrs.push(str_attr("gen_ai.system", semconv_system(provider)));
                attrs.push(str_attr("gen_ai.provider.name", semconv_system(provider)));
            }
            if let Some(model) = e.model.as_deref() {
                attrs.push(str_attr("gen_ai.request.model", model));
            }
            if let Some(api) = e.api.as_deref() {
                if let Some(op) = semconv_operation(api) {
                    attrs.push(str_attr("gen_ai.operation.name", op));
                }
                attrs.push(str_attr("outpost.api", api));
            }
            if let Some(n) = e.input_tokens {
                attrs.push(int_attr("gen_ai.usage.input_tokens", n));
            }
            if let Some(n) = e.output_tokens {
                attrs.push(int_attr("gen_ai.usage.output_tokens", n));
            }
            if let Some(method) = e.method.as_deref() {
                attrs.push(str_attr("http.request.method", method));
            }
            if let Some(path) = e.path.as_deref() {
                attrs.push(str_attr("url.path", path));
            }
            if let Some(host) = e.host.as_deref() {
                attrs.push(str_attr("server.address", host));
            }
            // 0 means no response was sent.
            if e.status != 0 {
                attrs.push(int_attr("http.response.status_code", u64::from(e.status)));
            }
            if !e.user.is_empty() {
                attrs.push(str_attr("user.id", &e.user));
            }
            attrs.push(str_attr("outpost.kind", kind_name(e.kind)));
            attrs.push(str_attr("outpost.decision", decision_name(e.decision)));
            if !e.rules.is_empty() {
                let ids: Vec<Value> = e
                    .rules
                    .iter()
                    .map(|r| json!({ "stringValue": r.id }))
                    .collect();
                attrs.push(
                    json!({ "key": "outpost.rules", "value": { "arrayValue": { "values": ids } } }),
                );
            }
            attrs.push(int_attr("outpost.seq", record.seq));
            attrs.push(str_attr("outpost.record_hash", &record.hash));
            if let Some(version) = e.policy_version.as_deref() {
                attrs.push(str_attr("outpost.policy_version", version));
            }
        }
        None => attrs.push(json!({ "key": "outpost.malformed", "value": { "boolValue": true } })),
    }
    attrs.push(str_attr("log.record.uid", &line.uid));
    let (number, text) = if warn {
        (SEVERITY_WARN, "WARN")
    } else {
        (SEVERITY_INFO, "INFO")
    };
    let mut out = json!({
        "observedTimeUnixNano": observed_unix_nanos.to_string(),
        "severityNumber": number,
        "severityText": text,
        "body": { "stringValue": line.text },
        "attributes": attrs,
    });
    if let (Some(t), Some(obj)) = (time, out.as_object_mut()) {
        obj.insert("timeUnixNano".into(), Value::String(t.to_string()));
    }
    out
}

fn str_attr(key: &str, value: &str) -> Value {
    json!({ "key": key, "value": { "stringValue": value } })
}

/// OTLP JSON carries 64-bit integers as decimal strings.
fn int_attr(key: &str, value: u64) -> Value {
    json!({ "key": key, "value": { "intValue": value.to_string() } })
}

/// `gen_ai.system` well-known values where the semantic conventions name
/// one; other providers pass through as Outpost names them.
fn semconv_system(provider: &str) -> &str {
    match provider {
        "gemini" => "gcp.gemini",
        "azure" => "azure.ai.openai",
        other => other,
    }
}

/// `gen_ai.operation.name` for an Outpost API name; token counting, model
/// listings and unknown calls have no GenAI operation.
fn semconv_operation(api: &str) -> Option<&'static str> {
    Some(match api {
        "chat_completions" | "responses" | "anthropic_messages" => "chat",
        "completions" => "text_completion",
        "embeddings" | "gemini_embed" => "embeddings",
        "gemini_generate_content" | "gemini_stream_generate_content" => "generate_content",
        _ => return None,
    })
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Request => "request",
        Kind::Checkpoint => "checkpoint",
        Kind::Repair => "repair",
        Kind::Sync => "sync",
    }
}

fn decision_name(decision: Decision) -> &'static str {
    match decision {
        Decision::Allow => "allow",
        Decision::Block => "block",
        Decision::Redact => "redact",
        Decision::Warn => "warn",
        Decision::Error => "error",
    }
}

/// Nanoseconds since the Unix epoch for an RFC 3339 `ts`; `None` if it
/// does not parse or is before 1970 (OTLP then treats the time as unknown).
fn unix_nanos(ts: &str) -> Option<u64> {
    otlp_nanos(ts.parse().ok()?)
}

/// `t` as OTLP's `fixed64` Unix nanoseconds; `None` before 1970.
fn otlp_nanos(t: Timestamp) -> Option<u64> {
    u64::try_from(t.as_nanosecond()).ok()
}

// ---- the task ---------------------------------------------------------------

/// Exponential backoff with jitter: each delay is drawn from the upper half
/// of the current step, so agents that lost the same collector at the same
/// moment do not come back in lockstep.
struct Backoff {
    step: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff {
            step: BACKOFF_START,
        }
    }

    fn reset(&mut self) {
        self.step = BACKOFF_START;
    }

    fn next(&mut self) -> Duration {
        let delay = jittered(self.step);
        self.step = (self.step * 2).min(BACKOFF_MAX);
        delay
    }

    /// For refusals that will not fix themselves: the slowest pace.
    fn max(&mut self) -> Duration {
        self.step = BACKOFF_MAX;
        jittered(BACKOFF_MAX)
    }
}

/// A delay in `[step/2, step]`. `RandomState` is randomly keyed per
/// instance, which is all the randomness jitter needs.
fn jittered(step: Duration) -> Duration {
    let random = RandomState::new().build_hasher().finish();
    let half = step / 2;
    let millis = u64::try_from(half.as_millis()).unwrap_or(u64::MAX).max(1);
    half + Duration::from_millis(random % millis)
}

/// A 2xx answer, with the OTLP partial-success count.
struct Ack {
    rejected: u64,
    message: String,
}

/// A configured shipper, before its task runs. Use [`spawn`] when neither
/// the stats nor the notifier are needed.
pub struct Shipper {
    dir: PathBuf,
    logs_uri: Uri,
    headers: HeaderMap,
    batch_size: usize,
    device: String,
    client: Client<Connector, Full<Bytes>>,
    stats: ShipStatsHandle,
    notify: Arc<Notify>,
    clock: Clock,
}

impl Shipper {
    /// Validate `config` and build the pooled client; `dir` is the audit
    /// directory (`state_dir/audit`).
    pub fn new(
        dir: PathBuf,
        config: ShipConfig,
        connector: Connector,
    ) -> Result<Shipper, ShipError> {
        if config.batch_size == 0 {
            return Err(ShipError::BatchSize);
        }
        let logs_uri = logs_uri(&config.endpoint)?;
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let header = |reason: String| ShipError::Header {
                name: name.clone(),
                reason,
            };
            let n = HeaderName::try_from(name.as_str()).map_err(|e| header(e.to_string()))?;
            let mut v = HeaderValue::try_from(value.as_str()).map_err(|e| header(e.to_string()))?;
            // Collector credentials must not show up in debug output.
            v.set_sensitive(true);
            headers.append(n, v);
        }
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(2)
            // The collector is the config's own choice, on this machine or not.
            .build(connector.for_configured_endpoint());
        Ok(Shipper {
            dir,
            logs_uri,
            headers,
            batch_size: config.batch_size,
            device: config.device,
            client,
            stats: ShipStatsHandle::default(),
            notify: Arc::new(Notify::new()),
            clock: Clock::system(),
        })
    }

    /// Read wall time from `clock` (each record's observed time, when
    /// errors happened) instead of the system clock.
    pub fn with_clock(mut self, clock: Clock) -> Shipper {
        self.clock = clock;
        self
    }

    /// Progress numbers, shared with the running task.
    pub fn stats(&self) -> ShipStatsHandle {
        self.stats.clone()
    }

    /// The writer calls `notify_one()` on this after appending, so a
    /// caught-up shipper sends at once instead of at its next poll.
    pub fn notifier(&self) -> Arc<Notify> {
        self.notify.clone()
    }

    /// Run until `shutdown`. An export in flight at shutdown is abandoned;
    /// its records are sent again by the next run (at-least-once).
    pub fn spawn(self, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move { self.run(shutdown).await })
    }

    async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new();
        let Some(pos) = self.locate_start(&mut backoff, &shutdown).await else {
            return;
        };
        tracing::debug!(
            "audit shipping from {}@{} to {}",
            pos.file,
            pos.offset,
            self.logs_uri
        );
        let mut p = Progress {
            pos,
            backoff,
            limit: self.batch_size,
            counted: None,
        };
        while !shutdown.is_cancelled() {
            self.recount_backlog_if_due(&mut p).await;
            let (dir, at, limit) = (self.dir.clone(), p.pos.clone(), p.limit);
            let step = blocking(move || read_next(&dir, &at, limit, MAX_BATCH_BYTES)).await;
            let running = match step {
                Err(e) => self.retry_later(&e, &mut p.backoff, &shutdown).await,
                Ok(Step::CaughtUp) => self.wait_for_lines(&mut p, &shutdown).await,
                Ok(Step::Advance(next)) => {
                    self.advance(&mut p, next).await;
                    true
                }
                Ok(Step::Lost(reason)) => self.relocate(&mut p, &reason, &shutdown).await,
                Ok(Step::Batch(batch)) => self.ship(&mut p, batch, &shutdown).await,
            };
            if !running {
                return;
            }
        }
    }

    /// The persisted cursor, checked against the files (see [`resume`]);
    /// `None` on shutdown.
    async fn locate_start(
        &self,
        backoff: &mut Backoff,
        shutdown: &CancellationToken,
    ) -> Option<Cursor> {
        loop {
            let dir = self.dir.clone();
            let located = blocking(move || {
                let cursor = load_cursor(&dir).unwrap_or_else(|e| {
                    tracing::warn!(
                        "audit shipping: unreadable cursor ({e}); shipping every file from the oldest"
                    );
                    None
                });
                resume(&dir, cursor)
            });
            match located.await {
                Ok(pos) => return Some(pos),
                Err(e) => {
                    if !self.retry_later(&e, backoff, shutdown).await {
                        return None;
                    }
                }
            }
        }
    }

    /// Caught up: sleep until the writer pokes us or the poll interval ends.
    async fn wait_for_lines(&self, p: &mut Progress, shutdown: &CancellationToken) -> bool {
        self.stats.update(|s| s.backlog = 0);
        p.counted = Some(Instant::now());
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = self.notify.notified() => true,
            _ = tokio::time::sleep(POLL_INTERVAL) => true,
        }
    }

    /// Move on to the next day file.
    async fn advance(&self, p: &mut Progress, next: Cursor) {
        // Leaving a finished file is progress worth keeping; finding the
        // first file is not (no cursor already means "from the start").
        let left_a_file = !p.pos.file.is_empty();
        p.pos = next;
        if left_a_file {
            self.persist(&p.pos).await;
        }
    }

    /// The file changed under the cursor: find our place again.
    async fn relocate(&self, p: &mut Progress, reason: &str, shutdown: &CancellationToken) -> bool {
        tracing::warn!("audit shipping: {reason}; locating the cursor again");
        let (dir, at) = (self.dir.clone(), p.pos.clone());
        match blocking(move || resume(&dir, Some(at))).await {
            Ok(found) => {
                p.pos = found;
                true
            }
            Err(e) => self.retry_later(&e, &mut p.backoff, shutdown).await,
        }
    }

    /// Send `batch` until acknowledged, then move and persist the cursor.
    async fn ship(&self, p: &mut Progress, batch: Batch, shutdown: &CancellationToken) -> bool {
        let mut ack = None;
        if !batch.lines.is_empty() {
            // 0 is OTLP's "unknown" for a clock set before 1970.
            let observed = otlp_nanos(self.clock.now()).unwrap_or(0);
            let body = encode_request(&batch.lines, &self.device, observed);
            match self
                .export_until_acked(Bytes::from(body), batch.lines.len() > 1, p, shutdown)
                .await
            {
                Delivery::Acked(answer) => ack = Some(answer),
                Delivery::TooLarge => {
                    p.limit = (p.limit / 2).max(1);
                    tracing::warn!(
                        "audit shipping: the collector refused a batch as too large; now {} records per request",
                        p.limit
                    );
                    return true;
                }
                Delivery::Shutdown => return false,
            }
        }
        p.pos = batch.end;
        self.persist(&p.pos).await;
        // After the store, so `/status` never reports more than a restart keeps.
        if let Some(ack) = ack {
            self.acknowledged(batch.lines.len() as u64, p.pos.seq, &ack);
        }
        true
    }

    fn acknowledged(&self, count: u64, last_seq: u64, ack: &Ack) {
        if ack.rejected > 0 {
            tracing::warn!(
                "audit shipping: the collector acknowledged a batch but rejected {} records: {}",
                ack.rejected,
                ack.message
            );
        }
        self.stats.update(|s| {
            s.shipped += count;
            s.rejected += ack.rejected;
            s.backlog = s.backlog.saturating_sub(count);
            s.last_seq = Some(last_seq);
            s.backoff = Duration::ZERO;
            s.stalled = false;
        });
    }

    /// Send `body` until the collector acknowledges it, backing off between
    /// tries. Returns early only for a 413 when the batch can be split, or
    /// for shutdown.
    async fn export_until_acked(
        &self,
        body: Bytes,
        splittable: bool,
        p: &mut Progress,
        shutdown: &CancellationToken,
    ) -> Delivery {
        loop {
            let result = tokio::select! {
                _ = shutdown.cancelled() => return Delivery::Shutdown,
                result = self.export(body.clone()) => result,
            };
            let error = match result {
                Ok(ack) => {
                    p.backoff.reset();
                    return Delivery::Acked(ack);
                }
                Err(ExportError::TooLarge) if splittable => return Delivery::TooLarge,
                Err(e) => e,
            };
            let (delay, stalled) = match &error {
                ExportError::Transient { retry_after, .. } => {
                    let delay = p.backoff.next();
                    let asked = retry_after.map(|r| r.min(RETRY_AFTER_MAX));
                    (asked.map_or(delay, |r| delay.max(r)), false)
                }
                ExportError::TooLarge | ExportError::Refused { .. } => (p.backoff.max(), true),
            };
            let message = error.to_string();
            if stalled {
                tracing::error!(
                    "audit shipping to {} is stalled: {message}; retrying every {BACKOFF_MAX:?}",
                    self.logs_uri
                );
            } else {
                tracing::debug!("audit shipping: {message}; retrying in {delay:?}");
            }
            self.stats
                .failed(self.clock.now(), &message, delay, stalled);
            // The backlog is what an outage is measured by: keep it current.
            self.recount_backlog_if_due(p).await;
            tokio::select! {
                _ = shutdown.cancelled() => return Delivery::Shutdown,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// One POST of an `ExportLogsServiceRequest`.
    async fn export(&self, body: Bytes) -> Result<Ack, ExportError> {
        let transient = |reason: String| ExportError::Transient {
            reason,
            retry_after: None,
        };
        let mut request = Request::post(self.logs_uri.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, concat!("outpost/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(body))
            .map_err(|e| transient(e.to_string()))?;
        for (name, value) in &self.headers {
            request.headers_mut().append(name.clone(), value.clone());
        }
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| transient(format!("{}: {}", self.logs_uri, error_chain(&e))))?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            // The answer is small; a body that fails to arrive does not undo a 2xx.
            let answer = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok::<_, ExportError>((status, retry_after, answer))
        };
        let (status, retry_after, answer) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| {
                transient(format!(
                    "{}: no answer within {REQUEST_TIMEOUT:?}",
                    self.logs_uri
                ))
            })??;
        classify(status, retry_after, &answer)
    }

    async fn persist(&self, pos: &Cursor) {
        let (dir, at) = (self.dir.clone(), pos.clone());
        // On failure the position still advances in memory: a later store
        // catches up, and a crash before that only re-sends (at-least-once).
        if let Err(e) = blocking(move || store_cursor(&dir, &at)).await {
            tracing::error!("audit shipping: cannot store the cursor: {e}");
            self.stats.update(|s| {
                s.last_error = Some(format!("cannot store the cursor: {e}"));
                s.last_error_at = Some(self.clock.now());
            });
        }
    }

    /// Count the backlog if the last count is older than [`BACKLOG_RECOUNT`].
    async fn recount_backlog_if_due(&self, p: &mut Progress) {
        if p.counted.is_some_and(|at| at.elapsed() < BACKLOG_RECOUNT) {
            return;
        }
        p.counted = Some(Instant::now());
        let (dir, at) = (self.dir.clone(), p.pos.clone());
        if let Ok(n) = blocking(move || count_backlog(&dir, &at)).await {
            self.stats.update(|s| s.backlog = n);
        }
    }

    /// Record a spool error and sleep; `false` if shut down meanwhile.
    async fn retry_later(
        &self,
        error: &SpoolError,
        backoff: &mut Backoff,
        shutdown: &CancellationToken,
    ) -> bool {
        let delay = backoff.next();
        tracing::warn!("audit shipping: {error}; retrying in {delay:?}");
        self.stats
            .failed(self.clock.now(), &error.to_string(), delay, false);
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }
}

/// The running task's state between steps.
struct Progress {
    /// Where the next read starts.
    pos: Cursor,
    backoff: Backoff,
    /// Records per request: `batch_size`, halved by each 413 for the rest
    /// of the run.
    limit: usize,
    /// When the backlog was last counted.
    counted: Option<Instant>,
}

/// How [`Shipper::export_until_acked`] ended.
enum Delivery {
    Acked(Ack),
    TooLarge,
    Shutdown,
}

/// Spawn a shipper for the audit directory `dir` (see the module docs).
/// Configuration errors are logged and end the task at once; call
/// [`Shipper::new`] to report them at start-up instead.
pub fn spawn(
    dir: PathBuf,
    config: ShipConfig,
    connector: Connector,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    match Shipper::new(dir, config, connector) {
        Ok(shipper) => shipper.spawn(shutdown),
        Err(e) => {
            tracing::error!("audit shipping disabled: {e}");
            tokio::spawn(async {})
        }
    }
}

/// `{endpoint}/v1/logs`, per the OTLP exporter convention for a base URL.
fn logs_uri(endpoint: &Uri) -> Result<Uri, ShipError> {
    let bad = || ShipError::Endpoint(endpoint.to_string());
    let scheme = endpoint.scheme_str().ok_or_else(bad)?;
    if !matches!(scheme, "http" | "https") || endpoint.host().is_none() {
        return Err(bad());
    }
    let authority = endpoint.authority().ok_or_else(bad)?;
    let path = endpoint.path().trim_end_matches('/');
    let path = if path.ends_with("/v1/logs") {
        path.to_string()
    } else {
        format!("{path}/v1/logs")
    };
    Uri::builder()
        .scheme(scheme)
        .authority(authority.clone())
        .path_and_query(path)
        .build()
        .map_err(|_| bad())
}

/// Sort an answer into acknowledged, retry, or refused. OTLP/HTTP retries
/// only 429/502/503/504; we also retry 408 and every 5xx, since a collector
/// restarting behind a proxy answers all kinds of them.
fn classify(
    status: StatusCode,
    retry_after: Option<Duration>,
    answer: &[u8],
) -> Result<Ack, ExportError> {
    if status.is_success() {
        return Ok(partial_success(answer));
    }
    let detail: String = String::from_utf8_lossy(answer).chars().take(200).collect();
    if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
    {
        return Err(ExportError::Transient {
            reason: format!("collector answered {status}: {detail}"),
            retry_after,
        });
    }
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return Err(ExportError::TooLarge);
    }
    Err(ExportError::Refused { status, detail })
}

/// `ExportLogsServiceResponse.partialSuccess`, if the collector sent one.
fn partial_success(answer: &[u8]) -> Ack {
    let value: Value = serde_json::from_slice(answer).unwrap_or(Value::Null);
    let partial = &value["partialSuccess"];
    let rejected = match &partial["rejectedLogRecords"] {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_u64().unwrap_or(0),
        _ => 0,
    };
    Ack {
        rejected,
        message: partial["errorMessage"].as_str().unwrap_or("").to_string(),
    }
}

/// Run blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SpoolError> + Send + 'static,
) -> Result<T, SpoolError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SpoolError::Task(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::{sample_event, RuleCount};

    fn chain(first_seq: u64, n: u64, prev: &str) -> Vec<AuditRecord> {
        let mut prev = prev.to_string();
        (first_seq..first_seq + n)
            .map(|seq| {
                let r = AuditRecord::chain(seq, sample_event(), None, &prev);
                prev.clone_from(&r.hash);
                r
            })
            .collect()
    }

    fn write_day(dir: &Path, day: &str, records: &[AuditRecord]) {
        let mut text = Vec::new();
        for r in records {
            text.extend_from_slice(&r.to_line());
            text.push(b'\n');
        }
        fs::write(dir.join(format!("{day}.jsonl")), text).unwrap();
    }

    fn attr<'a>(record: &'a Value, key: &str) -> Option<&'a Value> {
        record["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == key)
            .map(|a| &a["value"])
    }

    #[test]
    fn one_record_maps_to_otlp_json() {
        let mut event = sample_event();
        event.decision = Decision::Block;
        event.rules.push(RuleCount {
            id: "no-keys".into(),
            action: "block".into(),
            count: 2,
        });
        let record = AuditRecord::chain(42, event, None, GENESIS);
        let line = SpoolLine::parse(&record.to_line());
        let body: Value =
            serde_json::from_str(&encode_request(&[line], "dev-1", 1_700_000_000_000_000_123))
                .unwrap();

        let resource = &body["resourceLogs"][0]["resource"]["attributes"];
        let res = |k: &str| {
            resource
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["key"] == k)
                .map(|a| a["value"]["stringValue"].clone())
        };
        assert_eq!(res("service.name"), Some(json!("outpost")));
        assert_eq!(res("host.id"), Some(json!("dev-1")));
        assert_eq!(res("host.name"), Some(json!("dev-1")));
        assert_eq!(
            body["resourceLogs"][0]["scopeLogs"][0]["scope"]["name"],
            "outpost.audit"
        );

        let log = &body["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
        // 2026-11-24T10:00:00.000001Z
        assert_eq!(log["timeUnixNano"], "1795514400000001000");
        assert_eq!(log["observedTimeUnixNano"], "1700000000000000123");
        assert_eq!(log["severityNumber"], 13);
        assert_eq!(log["severityText"], "WARN");
        let text = log["body"]["stringValue"].as_str().unwrap();
        assert_eq!(serde_json::from_str::<AuditRecord>(text).unwrap(), record);

        let s = |k: &str| attr(log, k).map(|v| v["stringValue"].clone());
        let i = |k: &str| attr(log, k).map(|v| v["intValue"].clone());
        assert_eq!(s("gen_ai.system"), Some(json!("openai")));
        assert_eq!(s("gen_ai.request.model"), Some(json!("gpt-4o")));
        assert_eq!(s("gen_ai.operation.name"), Some(json!("chat")));
        assert_eq!(i("gen_ai.usage.input_tokens"), Some(json!("10")));
        assert_eq!(i("gen_ai.usage.output_tokens"), Some(json!("5")));
        assert_eq!(s("http.request.method"), Some(json!("POST")));
        assert_eq!(s("url.path"), Some(json!("/v1/chat/completions")));
        assert_eq!(s("server.address"), Some(json!("api.openai.com")));
        assert_eq!(i("http.response.status_code"), Some(json!("200")));
        assert_eq!(s("user.id"), Some(json!("alice")));
        assert_eq!(s("outpost.decision"), Some(json!("block")));
        assert_eq!(s("outpost.kind"), Some(json!("request")));
        assert_eq!(
            attr(log, "outpost.rules").unwrap()["arrayValue"]["values"],
            json!([{ "stringValue": "cards" }, { "stringValue": "no-keys" }])
        );
        assert_eq!(i("outpost.seq"), Some(json!("42")));
        assert_eq!(s("outpost.record_hash"), Some(json!(record.hash)));
        assert_eq!(s("log.record.uid"), Some(json!(record.hash)));
        assert_eq!(s("outpost.policy_version"), Some(json!("abc123")));
    }

    #[test]
    fn absent_values_are_omitted_and_allow_is_info() {
        let mut event = sample_event();
        event.decision = Decision::Allow;
        event.model = None;
        event.input_tokens = None;
        event.status = 0;
        event.rules.clear();
        event.policy_version = None;
        event.api = Some("no_prompt".into());
        let record = AuditRecord::chain(1, event, None, GENESIS);
        let log = log_record(&SpoolLine::parse(&record.to_line()), 1);
        assert_eq!(log["severityText"], "INFO");
        assert_eq!(log["severityNumber"], 9);
        for key in [
            "gen_ai.request.model",
            "gen_ai.usage.input_tokens",
            "http.response.status_code",
            "outpost.rules",
            "outpost.policy_version",
            "gen_ai.operation.name",
        ] {
            assert!(attr(&log, key).is_none(), "{key} should be absent");
        }
        assert!(attr(&log, "gen_ai.usage.output_tokens").is_some());
    }

    #[test]
    fn malformed_line_is_shipped_with_a_content_id() {
        let line = SpoolLine::parse(b"{\"seq\": oops");
        assert!(line.record.is_none());
        assert_eq!(line.uid, sha256_hex(b"{\"seq\": oops"));
        let log = log_record(&line, 1);
        assert_eq!(log["body"]["stringValue"], "{\"seq\": oops");
        assert_eq!(attr(&log, "outpost.malformed").unwrap()["boolValue"], true);
        assert_eq!(
            attr(&log, "log.record.uid").unwrap()["stringValue"],
            line.uid
        );
        assert!(log.get("timeUnixNano").is_none());
        assert_eq!(log["severityText"], "WARN");
    }

    #[test]
    fn rfc3339_timestamps() {
        assert_eq!(unix_nanos("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(unix_nanos("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
        assert_eq!(
            unix_nanos("2000-03-01T00:00:00Z"),
            Some(951_868_800_000_000_000)
        );
        assert_eq!(
            unix_nanos("2026-11-24T11:00:00.000001+01:00"),
            unix_nanos("2026-11-24T10:00:00.000001Z")
        );
        assert_eq!(
            unix_nanos("2026-11-24T10:00:00.123456789Z"),
            Some(1_795_514_400_123_456_789)
        );
        // Finer than nanoseconds is not a time Outpost wrote: unknown.
        assert_eq!(unix_nanos("2026-11-24T10:00:00.1234567891Z"), None);
        // What the writer writes.
        assert_eq!(
            unix_nanos("2026-11-24T10:00:00.000001Z"),
            Some(1_795_514_400_000_001_000)
        );
        assert_eq!(unix_nanos("2026-13-24T10:00:00Z"), None);
        assert_eq!(unix_nanos("2026-11-24T10:00:00"), None);
        assert_eq!(unix_nanos("1969-12-31T23:59:59Z"), None);
        assert_eq!(unix_nanos("garbage"), None);
    }

    #[test]
    fn endpoint_gets_the_logs_path() {
        let uri = |s: &str| logs_uri(&s.parse().unwrap()).map(|u| u.to_string());
        assert_eq!(
            uri("http://collector:4318").unwrap(),
            "http://collector:4318/v1/logs"
        );
        assert_eq!(
            uri("https://c.example/otlp/").unwrap(),
            "https://c.example/otlp/v1/logs"
        );
        assert_eq!(
            uri("http://c:4318/v1/logs").unwrap(),
            "http://c:4318/v1/logs"
        );
        assert!(uri("collector:4318").is_err());
        assert!(uri("ftp://c/").is_err());
    }

    #[test]
    fn answers_are_classified() {
        assert!(classify(StatusCode::OK, None, b"{}").is_ok());
        let ack = classify(
            StatusCode::OK,
            None,
            br#"{"partialSuccess":{"rejectedLogRecords":"3","errorMessage":"bad"}}"#,
        )
        .unwrap();
        assert_eq!((ack.rejected, ack.message.as_str()), (3, "bad"));
        for status in [503, 500, 429, 408] {
            let s = StatusCode::from_u16(status).unwrap();
            assert!(
                matches!(classify(s, None, b""), Err(ExportError::Transient { .. })),
                "{status}"
            );
        }
        assert!(matches!(
            classify(StatusCode::PAYLOAD_TOO_LARGE, None, b""),
            Err(ExportError::TooLarge)
        ));
        for status in [400, 401, 403, 404] {
            let s = StatusCode::from_u16(status).unwrap();
            assert!(
                matches!(classify(s, None, b""), Err(ExportError::Refused { .. })),
                "{status}"
            );
        }
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter() {
        let mut b = Backoff::new();
        let first = b.next();
        assert!(
            first >= BACKOFF_START / 2 && first <= BACKOFF_START,
            "{first:?}"
        );
        for _ in 0..20 {
            assert!(b.next() <= BACKOFF_MAX);
        }
        assert_eq!(b.step, BACKOFF_MAX);
        b.reset();
        assert_eq!(b.step, BACKOFF_START);
    }

    #[test]
    fn cursor_round_trips_atomically() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_cursor(dir.path()).unwrap(), None);
        let cursor = Cursor {
            file: "2026-11-24.jsonl".into(),
            offset: 1234,
            seq: 42,
            hash: "ab".repeat(32),
        };
        store_cursor(dir.path(), &cursor).unwrap();
        assert_eq!(load_cursor(dir.path()).unwrap(), Some(cursor.clone()));
        let moved = Cursor {
            offset: 2000,
            seq: 43,
            ..cursor
        };
        store_cursor(dir.path(), &moved).unwrap();
        assert_eq!(load_cursor(dir.path()).unwrap(), Some(moved));
        assert!(!dir.path().join(CURSOR_TMP).exists());
        fs::write(dir.path().join(CURSOR_FILE), b"{not json").unwrap();
        assert!(matches!(
            load_cursor(dir.path()),
            Err(SpoolError::BadCursor { .. })
        ));
    }

    #[test]
    fn shipped_through_names_the_first_unfinished_day() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let shipped_through = |d: &Path| shipped_through(d).map(day::format_day);
        assert_eq!(shipped_through(d), None);
        let day1 = chain(1, 3, GENESIS);
        let day2 = chain(4, 3, &day1[2].hash);
        write_day(d, "2026-11-23", &day1);
        write_day(d, "2026-11-24", &day2);
        fs::write(d.join("hmac.key"), b"k").unwrap();
        fs::create_dir(d.join("torn")).unwrap();
        // Nothing shipped yet.
        assert_eq!(shipped_through(d).as_deref(), Some("2026-11-23"));
        let len1 = fs::metadata(d.join("2026-11-23.jsonl")).unwrap().len();
        let mut cursor = Cursor {
            file: "2026-11-23.jsonl".into(),
            offset: 10,
            seq: 1,
            hash: day1[0].hash.clone(),
        };
        store_cursor(d, &cursor).unwrap();
        assert_eq!(shipped_through(d).as_deref(), Some("2026-11-23"));
        // Every byte of day 1 shipped and day 2 exists: day 1 may go.
        cursor.offset = len1;
        store_cursor(d, &cursor).unwrap();
        assert_eq!(shipped_through(d).as_deref(), Some("2026-11-24"));
        // The newest file is never finished.
        cursor.file = "2026-11-24.jsonl".into();
        cursor.offset = fs::metadata(d.join("2026-11-24.jsonl")).unwrap().len();
        store_cursor(d, &cursor).unwrap();
        assert_eq!(shipped_through(d).as_deref(), Some("2026-11-24"));
        // The cursor's file was removed: the next one is the first to keep.
        cursor.file = "2026-11-22.jsonl".into();
        store_cursor(d, &cursor).unwrap();
        assert_eq!(shipped_through(d).as_deref(), Some("2026-11-23"));
        cursor.file = "2026-11-25.jsonl".into();
        store_cursor(d, &cursor).unwrap();
        assert_eq!(shipped_through(d), None);
    }

    #[test]
    fn reader_waits_for_complete_lines_and_rolls_over() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let records = chain(1, 5, GENESIS);
        write_day(d, "2026-11-23", &records[..3]);
        fs::write(d.join("hmac.key"), b"k").unwrap();
        let mut day2 = records[3].to_line();
        day2.push(b'\n');
        let partial = records[4].to_line();
        day2.extend_from_slice(&partial[..partial.len() / 2]);
        fs::write(d.join("2026-11-24.jsonl"), &day2).unwrap();

        let mut pos = Cursor::start();
        let mut seqs = Vec::new();
        for _ in 0..10 {
            match read_next(d, &pos, 2, MAX_BATCH_BYTES).unwrap() {
                Step::Batch(b) => {
                    assert!(b.lines.len() <= 2);
                    seqs.extend(b.lines.iter().map(|l| l.record.as_ref().unwrap().seq));
                    pos = b.end;
                }
                Step::Advance(next) => pos = next,
                Step::CaughtUp => break,
                Step::Lost(reason) => panic!("{reason}"),
            }
        }
        assert_eq!(seqs, [1, 2, 3, 4]);
        assert_eq!(
            (pos.file.as_str(), pos.seq, pos.hash.as_str()),
            ("2026-11-24.jsonl", 4, records[3].hash.as_str())
        );
        assert_eq!(count_backlog(d, &pos).unwrap(), 0);

        // The writer finishes the line.
        let mut rest = partial[partial.len() / 2..].to_vec();
        rest.push(b'\n');
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(d.join("2026-11-24.jsonl"))
            .unwrap();
        file.write_all(&rest).unwrap();
        assert_eq!(count_backlog(d, &pos).unwrap(), 1);
        let Step::Batch(b) = read_next(d, &pos, 10, MAX_BATCH_BYTES).unwrap() else {
            panic!("expected a batch");
        };
        assert_eq!(b.lines.len(), 1);
        assert_eq!(b.end.seq, 5);
    }

    #[test]
    fn resume_checks_the_cursor_and_falls_back_to_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let day1 = chain(1, 4, GENESIS);
        let day2 = chain(5, 4, &day1[3].hash);
        write_day(d, "2026-11-23", &day1);
        write_day(d, "2026-11-24", &day2);
        let line_len = |r: &AuditRecord| r.to_line().len() as u64 + 1;
        let after_two = line_len(&day1[0]) + line_len(&day1[1]);

        // A cursor that fits is kept.
        let good = Cursor {
            file: "2026-11-23.jsonl".into(),
            offset: after_two,
            seq: 2,
            hash: day1[1].hash.clone(),
        };
        assert_eq!(resume(d, Some(good.clone())).unwrap(), good);
        let at_start_of_day2 = Cursor {
            file: "2026-11-24.jsonl".into(),
            offset: 0,
            seq: 4,
            hash: day1[3].hash.clone(),
        };
        assert_eq!(
            resume(d, Some(at_start_of_day2.clone())).unwrap(),
            at_start_of_day2
        );

        // Wrong offset: found by scanning for the record.
        let shifted = Cursor {
            offset: after_two - 5,
            ..good.clone()
        };
        assert_eq!(resume(d, Some(shifted)).unwrap(), good);

        // Its file was deleted: resume at the record that chains onto it.
        let at_end_of_day1 = Cursor {
            offset: fs::metadata(d.join("2026-11-23.jsonl")).unwrap().len(),
            seq: 4,
            hash: day1[3].hash.clone(),
            ..good.clone()
        };
        fs::remove_file(d.join("2026-11-23.jsonl")).unwrap();
        assert_eq!(resume(d, Some(at_end_of_day1)).unwrap(), at_start_of_day2);

        // A record from a chain that is gone: everything again.
        let unknown = Cursor {
            hash: "ff".repeat(32),
            ..good
        };
        assert_eq!(resume(d, Some(unknown)).unwrap(), Cursor::start());
        assert_eq!(resume(d, None).unwrap(), Cursor::start());
    }

    #[test]
    fn only_day_files_count() {
        assert!(is_day_file("2026-11-24.jsonl"));
        for name in [
            "ship-cursor.json",
            "hmac.key",
            "torn",
            "2026-11-24.jsonl.tmp",
            "2026-1-24.jsonl",
            "x026-11-24.jsonl",
        ] {
            assert!(!is_day_file(name), "{name}");
        }
    }
}
