//! The audit writer: a bounded queue the request path submits records to,
//! and one thread that appends them to the day files.
//!
//! Words:
//! - a *permit* ([`AuditPermit`]) is a reserved queue slot. The request path
//!   takes one when a request arrives ([`AuditLog::try_reserve`]) and holds
//!   it until the request ends, so `queue_capacity` bounds requests in
//!   flight plus records queued; when none is free the *backlog is full*
//!   and policy (`on_audit_backlog`) decides whether to refuse the request;
//! - *submitting* an event ([`AuditPermit::submit`]) queues it and returns
//!   [`Written`], which resolves once the record's bytes were handed to the
//!   kernel with write(2). That is the durability promise to the request
//!   path: a `kill -9` loses nothing acknowledged (a power cut can lose up
//!   to the last 100 ms, which fsync bounds);
//! - a *batch* is whatever is queued when the writer wakes: chained, encoded
//!   and appended with one write, then acknowledged;
//! - a *checkpoint* is a record whose `mac` authenticates the chain so far
//!   (see `key`): after every `checkpoint_every` other records, at least
//!   once a minute while records are written, at start after an unclean
//!   stop, and at shutdown.
//!
//! A record is written by the request that submits it, on its own thread,
//! when the log is free: one append(2) of a line to the page cache, no
//! hand-off to another thread and back before the call's last byte goes.
//! When the log is busy (another request is writing, the writer thread is
//! fsyncing or switching files) the record is queued instead, and the
//! writer thread writes it: nobody waits on the lock.
//!
//! The writer is a dedicated OS thread with its own single-threaded tokio
//! runtime (for the queue and timers), so its slow file I/O (fsync, new
//! day files, retention) never occupies the agent's runtime. It fsyncs at
//! least every 100 ms while there are unsynced writes, switches files at
//! the UTC day boundary (never back to an earlier day, whatever the clock
//! does), sweeps old files daily (`retention`), and at start repairs a torn
//! tail (`recover`).
//!
//! A record that cannot be written (disk full) is not silently lost: its
//! [`Written`] resolves to an error, `AuditStats::failed` counts it, the
//! file is truncated back to the last whole record, and the next record
//! that does get written is preceded by a `repair` record saying how many
//! were lost and why.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use jiff::civil::Date;
use jiff::Timestamp;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::key::AuditKey;
use super::record::{AuditEvent, AuditRecord, Decision, Kind};
use super::recover::{recover, ChainHead};
use super::{audit_dir, day, retention, AuditError};
use crate::clock::{rfc3339_micros, Clock};
use crate::config::{AuditConfig, Identity, KeyStoreChoice};
use crate::tls::store;

/// Unsynced writes are fsynced within this long.
pub const FSYNC_INTERVAL: Duration = Duration::from_millis(100);
/// A checkpoint at least this often while records are being written.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);
/// How often the writer checks timers that are not urgent (checkpoint age,
/// day change for retention).
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);
/// Most records in one batch (one write).
const MAX_BATCH: usize = 1024;
/// At shutdown, how long to wait for requests still holding permits to
/// submit before giving up on them.
const DRAIN_IDLE: Duration = Duration::from_secs(3);

/// The request path's handle: reserve, submit, observe. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AuditLog {
    tx: mpsc::Sender<Job>,
    shared: Arc<Shared>,
    open: Arc<OpenLog>,
}

/// The open log, shared by the writer thread and the requests that write
/// inline: `None` before it opens and after it is closed.
#[derive(Default)]
struct OpenLog {
    sink: Mutex<Option<Sink>>,
    /// A write left unsynced bytes where there were none: the writer
    /// thread's fsync timer starts.
    dirty: tokio::sync::Notify,
}

impl std::fmt::Debug for OpenLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenLog").finish_non_exhaustive()
    }
}

impl OpenLog {
    /// Write `job` now if nobody else is using the log; else hand it back.
    fn try_write(&self, job: Job) -> Option<Job> {
        let Ok(mut guard) = self.sink.try_lock() else {
            return Some(job);
        };
        let Some(sink) = guard.as_mut() else {
            return Some(job);
        };
        let was_clean = sink.dirty_since.is_none();
        sink.write_job(job);
        if was_clean && sink.dirty_since.is_some() {
            self.dirty.notify_one();
        }
        None
    }

    /// Run `f` on the open sink (waiting for the lock: the writer thread).
    fn with<T>(&self, f: impl FnOnce(&mut Sink) -> T) -> Option<T> {
        let mut guard = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_mut().map(f)
    }
}

/// Counters for `status` and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditStats {
    /// Request records written (checkpoints and repairs not counted).
    pub written: u64,
    /// Permits held or records queued right now.
    pub queued: usize,
    /// Requests refused because the backlog was full (`on_audit_backlog = "block"`).
    pub refused: u64,
    /// Requests served unaudited because the backlog was full
    /// (`on_audit_backlog = "allow"`).
    pub dropped: u64,
    /// Records submitted but not written (I/O errors, writer stopped).
    pub failed: u64,
    /// The last write or housekeeping error, if any.
    pub last_error: Option<String>,
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    written: AtomicU64,
    refused: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
    stopped: AtomicBool,
    /// First day the shipper has not fully shipped; retention keeps it and
    /// everything after.
    protect_from: Mutex<Option<Date>>,
}

impl Shared {
    fn record_error(&self, message: String) {
        tracing::error!("audit: {message}");
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(message);
    }

    fn protect_from(&self) -> Option<Date> {
        *self.protect_from.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One submitted event and whom to tell when it is written.
struct Job {
    event: AuditEvent,
    /// Written only once this resolves (see [`AuditPermit::submit_after`]).
    after: Option<Precondition>,
    ack: oneshot::Sender<Result<(), String>>,
}

impl Job {
    fn new(event: AuditEvent, ack: oneshot::Sender<Result<(), String>>) -> Job {
        Job {
            event,
            after: None,
            ack,
        }
    }
}

/// What a record waits for before it is written.
pub type Precondition = Pin<Box<dyn Future<Output = ()> + Send>>;

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("event", &self.event)
            .field("after", &self.after.is_some())
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Reserve a queue slot for one record; `None` when the backlog is full
    /// (or the writer has stopped).
    pub fn try_reserve(&self) -> Option<AuditPermit> {
        let permit = self.tx.clone().try_reserve_owned().ok()?;
        Some(AuditPermit {
            permit,
            shared: self.shared.clone(),
            open: self.open.clone(),
        })
    }

    /// Current counters.
    pub fn stats(&self) -> AuditStats {
        AuditStats {
            written: self.shared.written.load(Ordering::Relaxed),
            queued: self.tx.max_capacity() - self.tx.capacity(),
            refused: self.shared.refused.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            failed: self.shared.failed.load(Ordering::Relaxed),
            last_error: self
                .shared
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    /// The request path refused a request because the backlog was full.
    pub fn note_refused(&self) {
        self.shared.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// The request path served a request unaudited because the backlog was
    /// full and policy allows that.
    pub fn note_dropped(&self) {
        self.shared.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// For the OTLP shipper: `day` is the first day not yet fully shipped,
    /// so retention must keep it and every later file (`None`: shipping is
    /// off, retention alone decides). Until the shipper first calls this,
    /// a writer started with `[audit.export]` keeps every file.
    pub fn set_protect_from(&self, day: Option<Date>) {
        *self
            .shared
            .protect_from
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = day;
    }

    /// The directory of the day files.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }
}

/// A reserved queue slot; dropping it unused frees the slot.
#[derive(Debug)]
pub struct AuditPermit {
    permit: mpsc::OwnedPermit<Job>,
    shared: Arc<Shared>,
    open: Arc<OpenLog>,
}

impl AuditPermit {
    /// Write `event` (now, or queued when the log is busy); the returned
    /// [`Written`] resolves once it is in the file (write(2) done, not
    /// fsynced). Dropping `Written` does not cancel the write.
    pub fn submit(self, event: AuditEvent) -> Written {
        self.send(event, None)
    }

    /// [`submit`](Self::submit), but `event` is written only once `after`
    /// resolves (a budget charge's ledger commit), so the record never
    /// claims what has not happened yet. Other records do not wait for it.
    pub fn submit_after(
        self,
        event: AuditEvent,
        after: impl Future<Output = ()> + Send + 'static,
    ) -> Written {
        self.send(event, Some(Box::pin(after)))
    }

    fn send(self, event: AuditEvent, after: Option<Precondition>) -> Written {
        let (ack, rx) = oneshot::channel();
        if self.shared.stopped.load(Ordering::Acquire) {
            self.shared.failed.fetch_add(1, Ordering::Relaxed);
        }
        let AuditPermit { permit, open, .. } = self;
        // Usually already met (the ledger commits a free file in `settle`).
        let after = after.and_then(|mut after| (!is_met(&mut after)).then_some(after));
        match (after, tokio::runtime::Handle::try_current()) {
            (None, _) => write(&open, permit, Job::new(event, ack)),
            // Waited for on the request's runtime, then written like any
            // other: the writer thread is not woken to wait for it.
            (Some(after), Ok(runtime)) => {
                runtime.spawn(async move {
                    after.await;
                    write(&open, permit, Job::new(event, ack));
                });
            }
            (Some(after), Err(_)) => {
                permit.send(Job {
                    after: Some(after),
                    ..Job::new(event, ack)
                });
            }
        }
        Written { rx }
    }
}

/// Whether `after` has resolved, polled once without a waker to wake.
fn is_met(after: &mut Precondition) -> bool {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    after.as_mut().poll(&mut cx).is_ready()
}

/// Write `job` now if the log is free, else queue it for the writer thread;
/// `permit`'s slot is given back once the record is written.
fn write(open: &OpenLog, permit: mpsc::OwnedPermit<Job>, job: Job) {
    if let Some(job) = open.try_write(job) {
        permit.send(job);
    }
}

/// Resolves when a submitted record has been written to its day file.
#[derive(Debug)]
#[must_use = "a Written does nothing unless awaited (the record is written either way)"]
pub struct Written {
    rx: oneshot::Receiver<Result<(), String>>,
}

impl Future for Written {
    type Output = Result<(), AuditError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx).poll(cx).map(|result| match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(AuditError::NotWritten(message)),
            Err(_) => Err(AuditError::WriterStopped),
        })
    }
}

/// The writer thread's owner handle: [`AuditWriter::shutdown`] it after the
/// request path has drained. Dropping it also stops the writer (without
/// waiting).
#[derive(Debug)]
pub struct AuditWriter {
    stop: oneshot::Sender<()>,
    finished: oneshot::Receiver<()>,
}

impl AuditWriter {
    /// Write everything submitted (waiting a little for permits still
    /// held), write a final checkpoint, fsync, and return.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.finished.await;
    }
}

/// Open the audit log of `state_dir`: load or make the HMAC key, repair a
/// torn tail, sweep old files, and start the writer thread.
pub async fn start(
    state_dir: &Path,
    config: &AuditConfig,
    key_store: KeyStoreChoice,
) -> Result<(AuditLog, AuditWriter), AuditError> {
    start_with_clock(state_dir, config, key_store, Clock::system()).await
}

/// [`start`] with the writer's notion of now supplied (tests: day rollover).
pub async fn start_with_clock(
    state_dir: &Path,
    config: &AuditConfig,
    key_store: KeyStoreChoice,
    clock: Clock,
) -> Result<(AuditLog, AuditWriter), AuditError> {
    let dir = audit_dir(state_dir);
    let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
    let shared = Arc::new(Shared {
        dir: dir.clone(),
        written: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        last_error: Mutex::new(None),
        stopped: AtomicBool::new(false),
        // Shipping on: keep everything until the shipper says what it has sent.
        protect_from: Mutex::new(config.export.as_ref().map(|_| Date::MIN)),
    });
    let setup = Setup {
        state_dir: state_dir.to_path_buf(),
        dir,
        config: config.clone(),
        key_store,
        clock,
        shared: shared.clone(),
    };
    let open = Arc::new(OpenLog::default());
    let (ready_tx, ready_rx) = oneshot::channel();
    let (stop_tx, stop_rx) = oneshot::channel();
    let (finished_tx, finished_rx) = oneshot::channel();
    let thread_open = open.clone();
    std::thread::Builder::new()
        .name("outpost-audit".into())
        .spawn(move || writer_thread(setup, thread_open, rx, stop_rx, ready_tx, finished_tx))
        .map_err(AuditError::Thread)?;
    ready_rx.await.map_err(|_| AuditError::WriterStopped)??;
    Ok((
        AuditLog { tx, shared, open },
        AuditWriter {
            stop: stop_tx,
            finished: finished_rx,
        },
    ))
}

/// What the writer thread needs to open the log.
struct Setup {
    state_dir: PathBuf,
    dir: PathBuf,
    config: AuditConfig,
    key_store: KeyStoreChoice,
    clock: Clock,
    shared: Arc<Shared>,
}

fn writer_thread(
    setup: Setup,
    open: Arc<OpenLog>,
    rx: mpsc::Receiver<Job>,
    stop: oneshot::Receiver<()>,
    ready: oneshot::Sender<Result<(), AuditError>>,
    finished: oneshot::Sender<()>,
) {
    let shared = setup.shared.clone();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = ready.send(Err(AuditError::Thread(e)));
            return;
        }
    };
    // Timers created while opening belong to this thread's runtime.
    let opened = {
        let _guard = runtime.enter();
        Sink::open(setup)
    };
    let sink = match opened {
        Ok(sink) => sink,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    *open.sink.lock().unwrap_or_else(|p| p.into_inner()) = Some(sink);
    let _ = ready.send(Ok(()));
    runtime.block_on(run(&open, rx, stop));
    shared.stopped.store(true, Ordering::Release);
    let _ = finished.send(());
}

async fn run(open: &OpenLog, mut rx: mpsc::Receiver<Job>, mut stop: oneshot::Receiver<()>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING_INTERVAL);
    housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let fsync_at = open
            .with(|sink| sink.dirty_since)
            .flatten()
            .map(|t| t + FSYNC_INTERVAL);
        // Biased, timers first: under constant load the queue is always
        // ready, and fsync must still happen every FSYNC_INTERVAL.
        tokio::select! {
            biased;
            _ = &mut stop => break,
            () = tokio::time::sleep_until(fsync_at.unwrap_or_else(Instant::now)), if fsync_at.is_some() => {
                open.with(Sink::sync);
            }
            // An inline write started the fsync timer: go round to set it.
            () = open.dirty.notified(), if fsync_at.is_none() => {}
            _ = housekeeping.tick() => {
                open.with(Sink::housekeeping);
            }
            n = rx.recv_many(&mut jobs, MAX_BATCH) => {
                if n == 0 {
                    break; // every AuditLog is gone
                }
                preconditions(&mut jobs).await;
                open.with(|sink| sink.write_jobs(&mut jobs));
            }
        }
    }
    // Refuse new permits; take what is queued and what held permits submit.
    rx.close();
    loop {
        match tokio::time::timeout(DRAIN_IDLE, rx.recv_many(&mut jobs, MAX_BATCH)).await {
            Ok(0) => break,
            Ok(_) => {
                preconditions(&mut jobs).await;
                open.with(|sink| sink.write_jobs(&mut jobs));
            }
            Err(_) => {
                tracing::warn!(
                    "audit: requests still held {} queue slots {}s after shutdown began; \
                     their records will not be written",
                    rx.max_capacity() - rx.capacity(),
                    DRAIN_IDLE.as_secs()
                );
                break;
            }
        }
    }
    // Closed: a record submitted from now on finds no log and fails.
    let sink = open.sink.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(mut sink) = sink {
        sink.finish();
    }
}

/// Wait for every job's precondition, in order.
async fn preconditions(jobs: &mut [Job]) {
    for job in jobs {
        if let Some(after) = job.after.take() {
            after.await;
        }
    }
}

/// Something to append.
// Nearly every entry is an event, so boxing it would only add an allocation
// per record.
#[allow(clippy::large_enum_variant)]
enum Entry {
    /// A submitted event.
    Event(AuditEvent),
    /// A `repair` record with this explanation.
    Repair(String),
    /// A checkpoint over the chain so far (skipped if the last record is one).
    Checkpoint,
}

/// Records that could not be written, reported by the next record that is.
struct Lost {
    count: u64,
    error: String,
}

/// The open day file.
struct DayFile {
    day: Date,
    path: PathBuf,
    file: File,
    /// Bytes of whole records in the file.
    len: u64,
    /// A failed write left bytes after `len` that could not be cut off yet.
    needs_truncate: bool,
}

/// The writer's state: the chain, the open file, the timers' bookkeeping.
struct Sink {
    dir: PathBuf,
    key: AuditKey,
    identity: Identity,
    checkpoint_every: u64,
    retention_days: u32,
    clock: Clock,
    shared: Arc<Shared>,
    /// seq of the last record written.
    seq: u64,
    /// hash of the last record written.
    head: String,
    /// Non-checkpoint records after the last checkpoint.
    since_checkpoint: u64,
    last_checkpoint: Instant,
    /// Never write to a day before this (the newest file's day), whatever
    /// the clock says, so day order stays chain order.
    floor_day: Option<Date>,
    file: Option<DayFile>,
    dirty_since: Option<Instant>,
    lost: Option<Lost>,
    swept_on: Option<Date>,
}

/// A batch being built: the chain advanced tentatively, committed only when
/// the bytes are written.
struct Batch {
    seq: u64,
    head: String,
    since_checkpoint: u64,
    bytes: Vec<u8>,
    events: u64,
    checkpoints: u64,
}

impl Sink {
    fn open(setup: Setup) -> Result<Sink, AuditError> {
        let Setup {
            state_dir,
            dir,
            config,
            key_store,
            clock,
            shared,
        } = setup;
        store::create_private_dir(&dir)?;
        let key = AuditKey::load_or_create(&state_dir, key_store)?;
        let recovered = recover(&dir)?;
        let floor_day = day::list(&dir)
            .map_err(AuditError::io(&dir))?
            .last()
            .map(|f| f.day);
        let ChainHead { seq, hash, kind } = recovered.head;
        let mut sink = Sink {
            dir,
            key: key.key,
            identity: config.identity.clone(),
            checkpoint_every: config.checkpoint_every.max(1),
            retention_days: config.retention_days,
            clock,
            shared,
            seq,
            head: hash,
            // After an unclean stop the run since the last checkpoint is
            // unknown; non-zero so the start checkpoint below is written.
            since_checkpoint: u64::from(seq > 0 && kind != Some(Kind::Checkpoint)),
            last_checkpoint: Instant::now(),
            floor_day,
            file: None,
            dirty_since: None,
            lost: None,
            swept_on: None,
        };
        tracing::info!(
            "audit log {} (chain at seq {}; HMAC key in {})",
            sink.dir.display(),
            sink.seq,
            key.location
        );

        // Cover what the last run wrote, then say what was repaired, then
        // cover that too, so nothing before this start is left unkeyed.
        let mut entries = vec![Entry::Checkpoint];
        let mut notes = recovered.notes;
        if key.created && seq > 0 {
            notes.push(format!(
                "no audit HMAC key was found, so a new one was made ({}): checkpoints before \
                 this record cannot be verified with it",
                key.location
            ));
        }
        for note in &notes {
            tracing::warn!("audit repair: {note}");
        }
        if !notes.is_empty() {
            entries.extend(notes.into_iter().map(Entry::Repair));
            entries.push(Entry::Checkpoint);
        }
        sink.append(entries)?;
        sink.sync_now()?;
        sink.sweep();
        Ok(sink)
    }

    /// Append a batch of submitted jobs and acknowledge each.
    fn write_jobs(&mut self, jobs: &mut Vec<Job>) {
        let (events, acks): (Vec<_>, Vec<_>) = jobs
            .drain(..)
            .map(|job| (Entry::Event(job.event), job.ack))
            .unzip();
        let result = self.append(events).map_err(|e| e.to_string());
        for ack in acks {
            let _ = ack.send(result.clone());
        }
    }

    /// Append one submitted job (a call writing its own record) and
    /// acknowledge it.
    fn write_job(&mut self, job: Job) {
        let result = self
            .append(vec![Entry::Event(job.event)])
            .map_err(|e| e.to_string());
        let _ = job.ack.send(result);
    }

    /// Chain, encode and append `entries` with one write.
    fn append(&mut self, entries: Vec<Entry>) -> Result<(), AuditError> {
        let now = self.clock.now();
        let mut batch = Batch {
            seq: self.seq,
            head: self.head.clone(),
            since_checkpoint: self.since_checkpoint,
            bytes: Vec::new(),
            events: 0,
            checkpoints: 0,
        };
        let lost = self.lost.take();
        if let Some(lost) = &lost {
            self.push(
                &mut batch,
                self.repair_event(
                    now,
                    format!(
                        "{} audit record(s) could not be written and are missing: {}",
                        lost.count, lost.error
                    ),
                ),
                None,
            );
        }
        for entry in entries {
            match entry {
                Entry::Event(event) => {
                    self.push(&mut batch, event, None);
                    batch.events += 1;
                }
                Entry::Repair(note) => {
                    let event = self.repair_event(now, note);
                    self.push(&mut batch, event, None);
                }
                Entry::Checkpoint => self.push_checkpoint(&mut batch, now),
            }
        }
        if batch.bytes.is_empty() {
            self.lost = lost;
            return Ok(());
        }
        match self.write_batch(now, &batch.bytes) {
            Ok(()) => {
                self.seq = batch.seq;
                self.head = batch.head;
                self.since_checkpoint = batch.since_checkpoint;
                if batch.checkpoints > 0 {
                    self.last_checkpoint = Instant::now();
                }
                self.dirty_since.get_or_insert_with(Instant::now);
                self.shared
                    .written
                    .fetch_add(batch.events, Ordering::Relaxed);
                Ok(())
            }
            Err(err) => {
                let message = err.to_string();
                self.shared
                    .record_error(format!("{} record(s) not written: {message}", batch.events));
                self.shared
                    .failed
                    .fetch_add(batch.events, Ordering::Relaxed);
                let earlier = lost.map_or(0, |l| l.count);
                if batch.events + earlier > 0 {
                    self.lost = Some(Lost {
                        count: batch.events + earlier,
                        error: message,
                    });
                }
                Err(err)
            }
        }
    }

    /// Chain `event` into `batch`, then a checkpoint if one is due.
    fn push(&self, batch: &mut Batch, event: AuditEvent, mac: Option<String>) {
        let is_checkpoint = event.kind == Kind::Checkpoint;
        batch.seq += 1;
        let record = AuditRecord::chain(batch.seq, event, mac, &batch.head);
        batch.bytes.extend_from_slice(&record.to_line());
        batch.bytes.push(b'\n');
        batch.head = record.hash;
        if is_checkpoint {
            batch.since_checkpoint = 0;
            batch.checkpoints += 1;
        } else {
            batch.since_checkpoint += 1;
            if batch.since_checkpoint >= self.checkpoint_every {
                let now = self.clock.now();
                self.push_checkpoint(batch, now);
            }
        }
    }

    /// A checkpoint over `batch`'s head, unless that head is already one.
    fn push_checkpoint(&self, batch: &mut Batch, now: Timestamp) {
        if batch.since_checkpoint == 0 {
            return;
        }
        let mac = self.key.checkpoint_mac(&batch.head);
        let event = self.own_event(Kind::Checkpoint, now, Decision::Allow, None);
        self.push(batch, event, Some(mac));
    }

    fn repair_event(&self, now: Timestamp, note: String) -> AuditEvent {
        self.own_event(Kind::Repair, now, Decision::Error, Some(note))
    }

    /// A record the writer makes itself (not a request).
    fn own_event(
        &self,
        kind: Kind,
        now: Timestamp,
        decision: Decision,
        error: Option<String>,
    ) -> AuditEvent {
        AuditEvent {
            error,
            ..AuditEvent::new(
                kind,
                rfc3339_micros(now),
                &self.identity.user,
                &self.identity.device,
                decision,
            )
        }
    }

    /// One write of `bytes` to the day file for `now`; on failure the file
    /// is cut back to its last whole record.
    fn write_batch(&mut self, now: Timestamp, bytes: &[u8]) -> Result<(), AuditError> {
        let day = self
            .floor_day
            .map_or(day::of(now), |floor| floor.max(day::of(now)));
        let file = self.day_file(day)?;
        if file.needs_truncate {
            file.file
                .set_len(file.len)
                .map_err(AuditError::io(&file.path))?;
            file.needs_truncate = false;
        }
        match file.file.write_all(bytes) {
            Ok(()) => {
                file.len += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Whatever part of the batch reached the file is no record
                // anyone was told about; cut it off (or retry next time).
                file.needs_truncate = file.file.set_len(file.len).is_err();
                Err(AuditError::Io {
                    path: file.path.clone(),
                    source: e,
                })
            }
        }
    }

    /// The open file for `day`, switching files at a new day.
    fn day_file(&mut self, day: Date) -> Result<&mut DayFile, AuditError> {
        let current = self.file.as_ref().map(|f| f.day);
        if current != Some(day) {
            // Finish the old day durably first: a torn tail can then only
            // ever be in the newest file.
            if let Some(old) = self.file.take() {
                if self.dirty_since.is_some() {
                    old.file.sync_data().map_err(AuditError::io(&old.path))?;
                    self.dirty_since = None;
                }
            }
            self.file = Some(open_day_file(&self.dir, day)?);
            self.floor_day = Some(day);
        }
        // Set just above.
        self.file.as_mut().ok_or(AuditError::WriterStopped)
    }

    fn sync_now(&mut self) -> Result<(), AuditError> {
        if let Some(file) = &self.file {
            if self.dirty_since.is_some() {
                file.file.sync_data().map_err(AuditError::io(&file.path))?;
            }
        }
        self.dirty_since = None;
        Ok(())
    }

    fn sync(&mut self) {
        if let Err(e) = self.sync_now() {
            self.shared.record_error(format!("fsync failed: {e}"));
        }
    }

    fn housekeeping(&mut self) {
        if self.since_checkpoint > 0 && self.last_checkpoint.elapsed() >= CHECKPOINT_INTERVAL {
            if let Err(e) = self.append(vec![Entry::Checkpoint]) {
                self.shared
                    .record_error(format!("checkpoint not written: {e}"));
            }
        }
        if self.swept_on != Some(day::of(self.clock.now())) {
            self.sweep();
        }
    }

    fn sweep(&mut self) {
        let today = day::of(self.clock.now());
        self.swept_on = Some(today);
        match retention::sweep(
            &self.dir,
            self.retention_days,
            today,
            self.shared.protect_from(),
        ) {
            Ok(deleted) => {
                for path in deleted {
                    tracing::info!("audit retention: deleted {}", path.display());
                }
            }
            Err(e) => self.shared.record_error(format!("retention: {e}")),
        }
    }

    /// Final checkpoint and fsync.
    fn finish(&mut self) {
        if let Err(e) = self.append(vec![Entry::Checkpoint]) {
            self.shared
                .record_error(format!("final checkpoint not written: {e}"));
        }
        self.sync();
        tracing::info!("audit log closed at seq {}", self.seq);
    }
}

/// Open (creating, mode 0600) the day file for `day` for appending.
fn open_day_file(dir: &Path, day: Date) -> Result<DayFile, AuditError> {
    let path = day::path(dir, day);
    let existed = path.exists();
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(&path).map_err(AuditError::io(&path))?;
    let len = file.metadata().map_err(AuditError::io(&path))?.len();
    if !existed {
        // Make the new name durable, not only its contents.
        if let Ok(dir) = File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    Ok(DayFile {
        day,
        path,
        file,
        len,
        needs_truncate: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::{sample_event, GENESIS};
    use crate::audit::verify::verify;
    use crate::clock::ManualClock;

    fn config(queue_capacity: usize, checkpoint_every: u64) -> AuditConfig {
        AuditConfig {
            enabled: true,
            retention_days: 0,
            queue_capacity,
            checkpoint_every,
            export: None,
            identity: Identity {
                user: "agent-user".into(),
                device: "dev-1".into(),
            },
        }
    }

    /// A clock the test moves.
    #[derive(Clone)]
    struct TestClock {
        time: ManualClock,
    }

    impl TestClock {
        fn at(day: i8) -> TestClock {
            TestClock {
                time: ManualClock::new(on(day)),
            }
        }
        fn set(&self, t: Timestamp) {
            self.time.set(t);
        }
        fn clock(&self) -> Clock {
            let this = self.clone();
            Clock::from_fn(move || this.time.now())
        }
    }

    /// A minute before midnight UTC, 2026-11-`day`.
    fn on(day: i8) -> Timestamp {
        jiff::civil::date(2026, 11, day)
            .at(23, 59, 0, 0)
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .unwrap()
            .timestamp()
    }

    fn lines(path: &Path) -> Vec<AuditRecord> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    async fn write_events(log: &AuditLog, n: usize) {
        for i in 0..n {
            let mut event = sample_event();
            event.latency_ms = i as u64;
            log.try_reserve().unwrap().submit(event).await.unwrap();
        }
    }

    fn key_of(state: &Path) -> AuditKey {
        AuditKey::load(state).unwrap().0
    }

    #[tokio::test]
    async fn chain_continues_across_day_files_and_restarts() {
        let state = tempfile::tempdir().unwrap();
        let clock = TestClock::at(24);
        let cfg = config(64, 1000);
        let (log, writer) =
            start_with_clock(state.path(), &cfg, KeyStoreChoice::File, clock.clock())
                .await
                .unwrap();
        write_events(&log, 3).await;
        clock.set(on(25));
        write_events(&log, 2).await;
        writer.shutdown().await;
        assert_eq!(log.stats().written, 5);

        let dir = audit_dir(state.path());
        let day1 = lines(&dir.join("2026-11-24.jsonl"));
        let day2 = lines(&dir.join("2026-11-25.jsonl"));
        assert_eq!(day1.len(), 3);
        assert_eq!(day1[0].seq, 1);
        assert_eq!(day1[0].prev, GENESIS);
        for pair in day1.iter().chain(&day2).collect::<Vec<_>>().windows(2) {
            assert_eq!(pair[1].seq, pair[0].seq + 1);
            assert_eq!(pair[1].prev, pair[0].hash);
            assert_eq!(pair[1].hash, pair[1].compute_hash());
        }
        // Two events on day 2, then the shutdown checkpoint.
        assert_eq!(day2.len(), 3);
        assert_eq!(day2[0].prev, day1[2].hash);
        let last = &day2[2];
        assert_eq!(last.event.kind, Kind::Checkpoint);
        assert_eq!(last.event.device, "dev-1");
        assert!(key_of(state.path()).verify_checkpoint(&last.prev, last.mac.as_deref().unwrap()));

        // A restart (even with the clock set back a day) continues the
        // chain in the newest file.
        clock.set(on(24));
        let (log, writer) =
            start_with_clock(state.path(), &cfg, KeyStoreChoice::File, clock.clock())
                .await
                .unwrap();
        write_events(&log, 1).await;
        writer.shutdown().await;
        let day2 = lines(&dir.join("2026-11-25.jsonl"));
        assert_eq!(day2.len(), 5, "event and its shutdown checkpoint appended");
        assert_eq!(day2[3].seq, 7);
        assert_eq!(day2[3].prev, last.hash);
        assert_eq!(lines(&dir.join("2026-11-24.jsonl")).len(), 3);

        let summary = verify(&dir, &key_of(state.path()), None, None, 1000).unwrap();
        assert_eq!(summary.records, 8);
        assert_eq!(summary.checkpoints, 2);
    }

    #[tokio::test]
    async fn a_record_with_a_precondition_waits_for_it_and_no_other_does() {
        let state = tempfile::tempdir().unwrap();
        let (log, writer) = start(state.path(), &config(64, 1000), KeyStoreChoice::File)
            .await
            .unwrap();
        let (release, released) = oneshot::channel::<()>();
        let mut first = sample_event();
        first.latency_ms = 1;
        let mut first_written = log.try_reserve().unwrap().submit_after(first, async {
            let _ = released.await;
        });
        let mut second = sample_event();
        second.latency_ms = 2;
        let second_written = log.try_reserve().unwrap().submit(second);
        tokio::time::timeout(Duration::from_secs(5), second_written)
            .await
            .expect("the record without a precondition is written at once")
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut first_written).poll(&mut cx).is_pending());
        assert_eq!(log.stats().written, 1);
        release.send(()).unwrap();
        first_written.await.unwrap();
        assert_eq!(log.stats().written, 2);
        writer.shutdown().await;
        let dir = audit_dir(state.path());
        let files = day::list(&dir).unwrap();
        let records: Vec<AuditRecord> = files.iter().flat_map(|f| lines(&f.path)).collect();
        let order: Vec<u64> = records
            .iter()
            .filter(|r| r.event.kind == Kind::Request)
            .map(|r| r.event.latency_ms)
            .collect();
        assert_eq!(order, [2, 1]);
    }

    #[tokio::test]
    async fn checkpoints_every_n_records_verify_with_the_key_only() {
        let state = tempfile::tempdir().unwrap();
        let (log, writer) = start(state.path(), &config(64, 3), KeyStoreChoice::File)
            .await
            .unwrap();
        write_events(&log, 7).await;
        writer.shutdown().await;
        let dir = audit_dir(state.path());
        let files = day::list(&dir).unwrap();
        let records: Vec<AuditRecord> = files.iter().flat_map(|f| lines(&f.path)).collect();
        let kinds: Vec<Kind> = records.iter().map(|r| r.event.kind).collect();
        use Kind::{Checkpoint as C, Request as R};
        assert_eq!(kinds, [R, R, R, C, R, R, R, C, R, C]);
        let key = key_of(state.path());
        assert!(verify(&dir, &key, None, None, 3).is_ok());
        let wrong = AuditKey::from_bytes([1; 32]);
        let broken = verify(&dir, &wrong, None, None, 3).unwrap_err();
        assert_eq!(broken.seq, 4);
        assert_eq!(broken.line, 4);
        assert!(broken.reason.contains("checkpoint"), "{broken}");
    }

    // Holding the std lock across the await is the point: it stops the
    // writer thread (not this task) just before it writes.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test]
    async fn written_resolves_only_once_the_bytes_are_in_the_file() {
        let state = tempfile::tempdir().unwrap();
        let clock = TestClock::at(24);
        let (log, writer) = start_with_clock(
            state.path(),
            &config(64, 1000),
            KeyStoreChoice::File,
            clock.clock(),
        )
        .await
        .unwrap();
        let path = audit_dir(state.path()).join("2026-11-24.jsonl");
        let mut event = sample_event();
        event.path = Some("/v1/the-one-to-find".into());
        let needle = "the-one-to-find";

        // A busy log (another writer holding it): the record is queued for
        // the writer thread, and its Written waits for the bytes.
        let busy = log.open.sink.lock().unwrap();
        let mut written = log.try_reserve().unwrap().submit(event);
        let early = tokio::time::timeout(Duration::from_millis(300), &mut written).await;
        assert!(early.is_err(), "resolved before the writer wrote anything");
        let before = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(!before.contains(needle));
        drop(busy);

        written.await.unwrap();
        // No fsync or shutdown needed: the bytes are in the file now.
        let after = std::fs::read_to_string(&path).unwrap();
        assert!(after.contains(needle));
        assert!(after.ends_with('\n'));

        // A free log (the writer thread past its fsync, which it may be
        // doing just then: a few tries): written by the submitter, in the
        // file when `submit` returns.
        tokio::time::sleep(FSYNC_INTERVAL * 2).await;
        let mut inline = false;
        for n in 0..5 {
            let mut event = sample_event();
            event.path = Some(format!("/v1/written-inline-{n}"));
            let written = log.try_reserve().unwrap().submit(event);
            let now = std::fs::read_to_string(&path).unwrap();
            inline |= now.contains(&format!("written-inline-{n}"));
            written.await.unwrap();
            if inline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(inline, "every record went through the writer thread");
        writer.shutdown().await;
    }

    #[tokio::test]
    async fn backlog_is_full_while_capacity_permits_are_held() {
        let state = tempfile::tempdir().unwrap();
        let (log, writer) = start(state.path(), &config(16, 1000), KeyStoreChoice::File)
            .await
            .unwrap();
        let mut held: Vec<AuditPermit> = (0..16).map(|_| log.try_reserve().unwrap()).collect();
        assert!(log.try_reserve().is_none());
        assert_eq!(log.stats().queued, 16);
        log.note_refused();
        log.note_dropped();
        // Dropping a permit frees its slot; submitting frees it once written.
        drop(held.pop());
        let permit = log.try_reserve().expect("a slot was freed");
        assert!(log.try_reserve().is_none());
        permit.submit(sample_event()).await.unwrap();
        assert!(log.try_reserve().is_some());
        for permit in held {
            permit.submit(sample_event()).await.unwrap();
        }
        let stats = log.stats();
        assert_eq!((stats.written, stats.queued), (16, 0));
        assert_eq!((stats.refused, stats.dropped, stats.failed), (1, 1, 0));
        writer.shutdown().await;
        assert!(
            log.try_reserve().is_none(),
            "no slots once the writer is gone"
        );
    }

    #[tokio::test]
    async fn torn_tail_is_moved_aside_and_a_repair_record_continues_the_chain() {
        let state = tempfile::tempdir().unwrap();
        let clock = TestClock::at(24);
        let cfg = config(64, 1000);
        let (log, writer) =
            start_with_clock(state.path(), &cfg, KeyStoreChoice::File, clock.clock())
                .await
                .unwrap();
        write_events(&log, 3).await;
        writer.shutdown().await;
        // Make it look like kill -9 in the middle of the next batch: no
        // shutdown checkpoint after the three records, and half a line.
        let dir = audit_dir(state.path());
        let path = dir.join("2026-11-24.jsonl");
        let text = std::fs::read_to_string(&path).unwrap();
        let keep: String = text.split_inclusive('\n').take(3).collect();
        let torn = b"{\"seq\":4,\"kind\":\"requ";
        std::fs::write(&path, [keep.as_bytes(), torn].concat()).unwrap();
        let last_good: AuditRecord = serde_json::from_str(keep.lines().last().unwrap()).unwrap();

        let (log, writer) =
            start_with_clock(state.path(), &cfg, KeyStoreChoice::File, clock.clock())
                .await
                .unwrap();
        write_events(&log, 1).await;
        writer.shutdown().await;

        let moved = dir
            .join("torn")
            .join(format!("2026-11-24.jsonl.{}.bin", keep.len()));
        assert_eq!(std::fs::read(&moved).unwrap(), torn);
        let records = lines(&path);
        let kinds: Vec<Kind> = records.iter().map(|r| r.event.kind).collect();
        use Kind::{Checkpoint as C, Repair as P, Request as R};
        assert_eq!(kinds, [R, R, R, C, P, C, R, C]);
        assert_eq!(
            records[3].prev, last_good.hash,
            "chained after the last good record"
        );
        let note = records[4].event.error.as_deref().unwrap();
        assert!(note.contains("2026-11-24.jsonl"), "{note}");
        assert!(note.contains(&format!("offset {}", keep.len())), "{note}");
        assert!(note.contains(&format!("{} bytes", torn.len())), "{note}");
        assert!(note.contains("torn"), "{note}");
        verify(&dir, &key_of(state.path()), None, None, 1000).unwrap();
    }

    #[tokio::test]
    async fn a_lost_key_is_replaced_and_said_so() {
        let state = tempfile::tempdir().unwrap();
        let cfg = config(64, 1000);
        let (log, writer) = start(state.path(), &cfg, KeyStoreChoice::File)
            .await
            .unwrap();
        write_events(&log, 1).await;
        writer.shutdown().await;
        std::fs::remove_file(audit_dir(state.path()).join("hmac.key")).unwrap();
        let (_log, writer) = start(state.path(), &cfg, KeyStoreChoice::File)
            .await
            .unwrap();
        writer.shutdown().await;
        let dir = audit_dir(state.path());
        let records: Vec<AuditRecord> = day::list(&dir)
            .unwrap()
            .iter()
            .flat_map(|f| lines(&f.path))
            .collect();
        let repair = records
            .iter()
            .find(|r| r.event.kind == Kind::Repair)
            .unwrap();
        assert!(repair
            .event
            .error
            .as_deref()
            .unwrap()
            .contains("new one was made"));
        // The old checkpoint no longer verifies with the new key.
        let broken = verify(&dir, &key_of(state.path()), None, None, 1000).unwrap_err();
        assert_eq!(broken.seq, 2);
    }
}
