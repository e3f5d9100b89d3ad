//! The persistent budget ledger: every settled charge, kept in
//! `state_dir/budget/ledger.db` (SQLite, WAL) so budgets survive restarts
//! and `kill -9` without losing a charge.
//!
//! Words:
//! - *charge*: one settled request's real cost on one counter (budget id,
//!   scope key, window start), with its request id, time and whether the
//!   cost was estimated (a stream cut off before its usage).
//! - *reset*: an admin's `outpost budget reset ID`. It is a row, not a
//!   delete: charges of that budget recorded before it stop counting, and
//!   the history stays.
//! - *hold*: a live reservation ([`Hold`]), the token a request carries from
//!   [`Ledger::reserve`] to exactly one [`Ledger::settle`] or
//!   [`Ledger::release`].
//!
//! Split: admission only touches the in-memory [`Reservations`] (one mutex,
//! no I/O). A settle makes its charge durable by appending its rows to the
//! charge journal ([`super::journal`]: one `write(2)` on the settling
//! thread, no hand-off), so its [`Committed`] is resolved when `settle`
//! returns; the rows also go on a bounded channel to one writer thread
//! ([`LedgerWriter`]), which drains whatever is queued, inserts it in one
//! transaction with how far the journal is now in, and commits: nobody
//! waits for SQLite, and under load batches grow and one commit covers many
//! charges.
//!
//! Crash safety, the same promise as the audit log's: a charge is in the
//! journal (`write(2)`, no fsync) before [`Committed`] resolves. A process
//! killed at any point loses only charges whose `Committed` had not
//! resolved: on the next open, the journal entries past the database's mark
//! are committed before anything reads the ledger (exactly once: the mark
//! moves in the same transactions as the rows), and SQLite rolls back a
//! half-written transaction. Against power loss, a checkpoint (which fsyncs
//! the WAL) runs at most [`SYNC_EVERY`] after a commit; the journal is
//! emptied only when all of it is committed and synced. The audit writer
//! writes a charged call's record only after its `Committed` resolves
//! (`AuditPermit::submit_after`): "a charge acknowledged to the audit log
//! is in the ledger". One process at a time: `ledger.lock` is held while
//! the ledger is open.
//!
//! On open, charges of windows that started in the last
//! [`RESTORE_LOOKBACK`] (the longest window plus slack) are summed per
//! counter, net of resets, into [`Reservations::add_spent`], so a restarted
//! agent refuses exactly what the one before it would have.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::{future::Future, pin::Pin};

use jiff::{SignedDuration, Timestamp};
use rusqlite::{params, Connection, TransactionBehavior};
use tokio::sync::oneshot;

use super::journal::{self, Journal, Row};
use super::reserve::{Charge, CounterKey, Exceeded, ReservationId, Reservations};
use super::rules::BudgetRule;
use super::window::{window_of, WindowError};

/// The schema this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 3;

/// How far back window starts are restored on open: a month window (at most
/// 31 days, plus a DST hour) that is still current started within this.
pub const RESTORE_LOOKBACK: SignedDuration = SignedDuration::from_hours(24 * 32);

/// Longest a commit waits for its fsync (a WAL checkpoint).
pub const SYNC_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// How long a connection waits for another process's write lock (the
/// writer thread's; a settle on the call's thread never waits).
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Charges the request path may queue before `settle` waits for the writer.
const QUEUE_CAPACITY: usize = 4096;

/// How long the writer lets journaled charges gather before the next
/// commit (they are durable already; a flush waits at most this more).
const LINGER: std::time::Duration = std::time::Duration::from_millis(5);

/// Most jobs written in one transaction, so one commit's latency stays small.
const MAX_BATCH: usize = 1024;

const NANOS_PER_USD: f64 = 1e9;

/// Why the ledger could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The state directory could not be created or restricted (the host's
    /// fault: permissions, disk).
    #[error("ledger directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The lock file or the charge journal could not be read or written
    /// (the host's fault: permissions, disk).
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// SQLite refused an open, query or commit (disk full, corrupt file,
    /// another process holding a lock past the busy timeout).
    #[error("ledger database: {0}")]
    Db(#[from] rusqlite::Error),
    /// The file was written by a newer Outpost (operator's fault: downgrade).
    #[error("ledger schema version {found} is newer than this build's {SCHEMA_VERSION}")]
    SchemaTooNew {
        /// The file's `user_version`.
        found: i64,
    },
    /// A commit failed; the charge is counted in memory but not on disk.
    #[error("ledger write not committed: {0}")]
    NotCommitted(String),
    /// Another process has the ledger open (the operator's: two agents on
    /// one state directory, or the CLI beside a running agent).
    #[error("{0}: the budget ledger is in use by another Outpost process (a running agent?); stop it, or reach it through its admin endpoint")]
    InUse(PathBuf),
    /// The writer thread has stopped (shut down, or it panicked).
    #[error("ledger writer stopped")]
    WriterStopped,
    /// A budget window could not be computed (policy's fault: time zone).
    #[error(transparent)]
    Window(#[from] WindowError),
    /// A timestamp outside what the file stores (±292 years around 1970;
    /// ours: only a broken clock reaches it).
    #[error("timestamp {0} out of the ledger's range")]
    TimeOutOfRange(Timestamp),
}

/// A settled request's real cost, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Settlement {
    /// What the request cost, in USD.
    pub usd: f64,
    /// The request's id, as in the audit log.
    pub request_id: String,
    /// When it settled.
    pub at: Timestamp,
    /// The cost was estimated from the text that passed (usage never came).
    pub estimated: bool,
}

/// One live reservation; settle or release it exactly once. Dropping it
/// unsettled leaks the hold until restart, so the request path must not.
#[derive(Debug)]
#[must_use = "a Hold keeps budget reserved until settled or released"]
pub struct Hold {
    id: ReservationId,
    keys: Vec<CounterKey>,
    // The in-memory ledger it was reserved on: a reset swaps in a new one.
    on: Arc<Reservations>,
}

/// One row of `outpost budget show`.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetLine {
    /// The `[[budgets]]` id.
    pub budget_id: String,
    /// Who or what is counted (`alice`, `openai`, `*`).
    pub scope_key: String,
    /// Settled spend in the current window, USD.
    pub spent_usd: f64,
    /// Held by requests in flight, USD (zero when read by another process).
    pub reserved_usd: f64,
    /// The budget's limit per window, USD.
    pub limit_usd: f64,
    /// Start of the current window.
    pub window_start: Timestamp,
    /// When the window resets.
    pub window_end: Timestamp,
}

/// Resolves once a charge (or flush) is durably committed. Dropping it does
/// not cancel the write.
#[derive(Debug)]
#[must_use = "a Committed does nothing unless awaited (the charge is written either way)"]
pub struct Committed {
    rx: oneshot::Receiver<Result<(), String>>,
}

impl Committed {
    /// Block until committed. Not from inside an async runtime (it panics
    /// there): await the `Committed` instead.
    pub fn wait(self) -> Result<(), LedgerError> {
        map_ack(self.rx.blocking_recv())
    }

    /// Already durable (in the journal).
    fn done() -> Committed {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(Ok(()));
        Committed { rx }
    }

    fn stopped() -> Committed {
        // The sender is dropped at once, so the receiver reports "stopped".
        let (_, rx) = oneshot::channel();
        Committed { rx }
    }
}

impl Future for Committed {
    type Output = Result<(), LedgerError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx).poll(cx).map(map_ack)
    }
}

fn map_ack(ack: Result<Result<(), String>, oneshot::error::RecvError>) -> Result<(), LedgerError> {
    match ack {
        Ok(Ok(())) => Ok(()),
        Ok(Err(message)) => Err(LedgerError::NotCommitted(message)),
        Err(_) => Err(LedgerError::WriterStopped),
    }
}

enum Ack {
    Async(oneshot::Sender<Result<(), String>>),
    // For `reset`, which blocks and may be called from inside a runtime,
    // where a oneshot's `blocking_recv` panics.
    Blocking(SyncSender<Result<(), String>>),
}

impl Ack {
    fn send(self, result: Result<(), String>) {
        // The waiter may have gone away; the write stands either way.
        match self {
            Ack::Async(tx) => drop(tx.send(result)),
            Ack::Blocking(tx) => drop(tx.send(result)),
        }
    }
}

enum Job {
    /// One settle's rows; `journal`: its (epoch, ordinal) when it is in the
    /// journal (then nobody waits for it: `ack` is `None`).
    Charges {
        rows: Vec<Row>,
        ack: Option<Ack>,
        journal: Option<(u64, u64)>,
    },
    Reset {
        budget_id: String,
        at_ns: i64,
        ack: Ack,
    },
    Flush(Ack),
    Stop(Ack),
    /// Nothing to write: wakes the writer to take what was spilled.
    Wake,
}

/// The persistent ledger: in-memory reservations plus a queue to the
/// writer. Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct Ledger {
    shared: Arc<Shared>,
}

struct Shared {
    // Read on every reserve/settle (uncontended); written only by `reset`.
    current: RwLock<Arc<Reservations>>,
    queue: SyncSender<Job>,
    /// The writer thread's connection (tests hold it to stall the writer).
    #[cfg(test)]
    writer: Arc<Mutex<Option<Connection>>>,
    /// Jobs that found the queue full: the writer takes them with its next
    /// batch. Settling never waits for the writer.
    spill: Arc<Mutex<Vec<Job>>>,
    /// How many jobs were ever spilled (the writer was behind).
    spilled: std::sync::atomic::AtomicU64,
    // For `snapshot` and `reset`'s reload; never on the request path.
    // Also the sync thread's, for its checkpoints.
    reader: Arc<Mutex<Connection>>,
    /// Where a settle makes its charge durable (see [`journal`]). Held
    /// while queueing too, so the writer sees charges in journal order.
    journal: Arc<Mutex<Journal>>,
    /// The exclusive lock on `ledger.lock`, shared with the writer thread:
    /// released when both are gone.
    _lock: Arc<std::fs::File>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").finish_non_exhaustive()
    }
}

/// The writer thread's owner handle. [`LedgerWriter::shutdown`] commits what
/// is queued and joins the thread; dropping the handle leaves the thread to
/// finish on its own once every [`Ledger`] clone is gone.
#[derive(Debug)]
pub struct LedgerWriter {
    queue: SyncSender<Job>,
    thread: JoinHandle<()>,
}

impl LedgerWriter {
    /// Commit everything queued so far, stop the writer and wait for it.
    /// Blocking: from async code, call it in `spawn_blocking`.
    pub fn shutdown(self) -> Result<(), LedgerError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let sent = self.queue.send(Job::Stop(Ack::Blocking(tx))).is_ok();
        let result = if sent {
            match rx.recv() {
                Ok(Ok(())) => Ok(()),
                Ok(Err(message)) => Err(LedgerError::NotCommitted(message)),
                Err(_) => Err(LedgerError::WriterStopped),
            }
        } else {
            Err(LedgerError::WriterStopped)
        };
        self.thread.join().map_err(|_| LedgerError::WriterStopped)?;
        result
    }
}

impl Ledger {
    /// Open (or create) `state_dir/budget/ledger.db`, restore the spend of
    /// windows that may still be current at `now`, and start the writer.
    pub fn open(state_dir: &Path, now: Timestamp) -> Result<(Ledger, LedgerWriter), LedgerError> {
        let dir = state_dir.join("budget");
        create_private_dir(&dir)?;
        let path = dir.join("ledger.db");
        // One process at a time: the journal is replayed and renewed on
        // open, which must never happen under a live writer.
        let lock = Arc::new(lock(&dir.join("ledger.lock"))?);
        let thread_lock = lock.clone();
        let mut writer_conn = connect(&path)?;
        migrate(&mut writer_conn)?;
        // What a killed agent had journaled but not committed, first.
        let journal = replay(&mut writer_conn, &dir.join(journal::FILE))?;
        // Checkpoints (the fsyncs) are the sync thread's, not the committer's.
        writer_conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let reader = connect(&path)?;
        let reservations = restore(&reader, now)?;
        let reader = Arc::new(Mutex::new(reader));
        let committed = Arc::new(Mutex::new((journal.epoch, 0)));
        let journal = Arc::new(Mutex::new(journal));
        let syncer = Syncer {
            conn: reader.clone(),
            journal: journal.clone(),
            committed: committed.clone(),
        };

        let (queue, jobs) = mpsc::sync_channel(QUEUE_CAPACITY);
        let spill = Arc::new(Mutex::new(Vec::new()));
        let writer_spill = spill.clone();
        let writer = Arc::new(Mutex::new(Some(writer_conn)));
        let thread_writer = writer.clone();
        let thread = std::thread::Builder::new()
            .name("outpost-ledger".into())
            .spawn(move || {
                run_writer(&thread_writer, jobs, &writer_spill, &committed, syncer);
                drop(thread_lock);
            })
            .map_err(|source| LedgerError::Dir {
                path: dir.clone(),
                source,
            })?;
        let ledger = Ledger {
            shared: Arc::new(Shared {
                current: RwLock::new(Arc::new(reservations)),
                queue: queue.clone(),
                #[cfg(test)]
                writer,
                spill,
                spilled: std::sync::atomic::AtomicU64::new(0),
                reader,
                journal,
                _lock: lock,
            }),
        };
        Ok((ledger, LedgerWriter { queue, thread }))
    }

    /// Hold `amount_usd` on every counter of `charges`, or refuse (see
    /// [`Reservations::reserve`]). No I/O.
    pub fn reserve(&self, charges: &[Charge], amount_usd: f64) -> Result<Hold, Exceeded> {
        let on = self.current();
        let id = on.reserve(charges, amount_usd)?;
        let mut keys: Vec<CounterKey> = Vec::with_capacity(charges.len());
        for charge in charges {
            // Held once per counter, as `Reservations::reserve` does.
            if !keys.contains(&charge.key) {
                keys.push(charge.key.clone());
            }
        }
        Ok(Hold { id, keys, on })
    }

    /// The request cost `settlement.usd`: move it from held to spent in
    /// memory, and queue one charge row per counter for the writer. The
    /// returned [`Committed`] resolves once the rows are on disk.
    ///
    /// Waits only if the writer's queue is full: losing a charge is worse
    /// than slowing requests while the disk catches up.
    pub fn settle(&self, hold: Hold, settlement: Settlement) -> Committed {
        let rows = match charge_rows(&hold.keys, &settlement) {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(
                    "budget ledger: charge {} not recorded: {e}",
                    settlement.request_id
                );
                self.release(hold);
                return Committed::stopped();
            }
        };
        // Held across the queueing, so a `reset` (write lock) sees this
        // charge either wholly before it or wholly after.
        let current = self.read_current();
        // The hold came from this ledger and is consumed here, so it is live.
        let _ = hold.on.settle(hold.id, settlement.usd);
        if !Arc::ptr_eq(&hold.on, &current) {
            // Reserved before a reset: the new counters never held it, but
            // the charge happened after the reset and counts.
            for key in &hold.keys {
                current.add_spent(key.clone(), settlement.usd);
            }
        }
        let committed = self.journaled(rows);
        drop(current);
        committed
    }

    /// Append `rows` to the journal and queue them for the database: durable
    /// when this returns. With the journal broken (a failed append: disk
    /// full), they are only queued, and the `Committed` waits for the
    /// database.
    fn journaled(&self, rows: Vec<Row>) -> Committed {
        let mut journal = self
            .shared
            .journal
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !journal.broken {
            match journal.append(&rows) {
                Ok(ordinal) => {
                    let epoch = journal.epoch;
                    self.enqueue(Job::Charges {
                        rows,
                        ack: None,
                        journal: Some((epoch, ordinal)),
                    });
                    return Committed::done();
                }
                Err(e) => tracing::error!(
                    "budget ledger: {}: {e}; charges wait for the database until the journal is renewed",
                    journal.path().display()
                ),
            }
        }
        let (tx, rx) = oneshot::channel();
        self.enqueue(Job::Charges {
            rows,
            ack: Some(Ack::Async(tx)),
            journal: None,
        });
        Committed { rx }
    }

    /// The request failed before costing anything: drop its hold. No I/O.
    pub fn release(&self, hold: Hold) {
        // Consumed here, so live (see `settle`).
        let _ = hold.on.release(hold.id);
    }

    /// The in-memory counters (for `totals`, and tests).
    pub fn reservations(&self) -> Arc<Reservations> {
        self.current()
    }

    /// Resolves once everything queued before it is committed.
    pub fn flush(&self) -> Committed {
        let (tx, rx) = oneshot::channel();
        self.enqueue(Job::Flush(Ack::Async(tx)));
        Committed { rx }
    }

    /// Zero `budget_id`'s spend persistently: a reset row makes every
    /// earlier charge of that budget stop counting, here and after restarts.
    /// Charges settled later count, including those of requests in flight
    /// now; their holds are forgotten, so until they settle the budget may
    /// admit up to that much more.
    ///
    /// Blocking (a commit and a reload; reserve/settle wait meanwhile): from
    /// async code, call it in `spawn_blocking`.
    pub fn reset(&self, budget_id: &str, now: Timestamp) -> Result<(), LedgerError> {
        let at_ns = to_ns(now)?;
        let mut current = self
            .shared
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let (tx, rx) = mpsc::sync_channel(1);
        self.enqueue(Job::Reset {
            budget_id: budget_id.to_string(),
            at_ns,
            ack: Ack::Blocking(tx),
        });
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(message)) => return Err(LedgerError::NotCommitted(message)),
            Err(_) => return Err(LedgerError::WriterStopped),
        }
        // Every charge settled before the write lock was queued before the
        // reset, so it is committed now and the reload sees it.
        let fresh = restore(&self.reader(), now)?;
        *current = Arc::new(fresh);
        Ok(())
    }

    /// `outpost budget show`: for each of `budgets` (the policy's), each
    /// scope key with charges in the window current at `now` (in the
    /// budget's time zone). Spent and reserved come from memory; which
    /// scope keys exist comes from the file, so a key with only requests in
    /// flight is not listed.
    pub fn snapshot(
        &self,
        now: Timestamp,
        budgets: &[BudgetRule],
    ) -> Result<Vec<BudgetLine>, LedgerError> {
        // Which scope keys exist comes from the file: let the writer catch
        // up with the journal first.
        let _ = self.flush().wait();
        lines(&self.reader(), &self.current(), now, budgets)
    }

    /// [`snapshot`](Self::snapshot) from the file alone, for when no agent
    /// has it open: spent as committed, nothing reserved. `None` when there
    /// is no ledger file yet.
    pub fn snapshot_file(
        state_dir: &Path,
        now: Timestamp,
        budgets: &[BudgetRule],
    ) -> Result<Option<Vec<BudgetLine>>, LedgerError> {
        let path = state_dir.join("budget").join("ledger.db");
        if !path.exists() {
            return Ok(None);
        }
        let conn = connect(&path)?;
        let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if found > SCHEMA_VERSION {
            return Err(LedgerError::SchemaTooNew { found });
        }
        if found < 1 {
            return Ok(None);
        }
        let restored = restore(&conn, now)?;
        lines(&conn, &restored, now, budgets).map(Some)
    }

    fn enqueue(&self, job: Job) {
        let mut spill = self
            .shared
            .spill
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Order: while anything waits in the spill, later jobs wait behind
        // it (the writer takes the spill only once the queue is empty), so
        // charges reach the database in journal order.
        let job = if spill.is_empty() {
            match self.shared.queue.try_send(job) {
                Ok(()) => return,
                Err(TrySendError::Full(job)) => job,
                Err(TrySendError::Disconnected(job)) => {
                    // Dropping the job drops its ack: the waiter sees "stopped".
                    drop(job);
                    tracing::error!(
                        "budget ledger: writer stopped; charge kept in memory and the journal only"
                    );
                    return;
                }
            }
        } else {
            job
        };
        // The writer is behind. Never block the caller (an async worker,
        // often inside a body's poll): spill, count, and wake it.
        spill.push(job);
        drop(spill);
        let spilled = self
            .shared
            .spilled
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if spilled.is_power_of_two() {
            tracing::warn!(
                "budget ledger: the writer is behind ({} charges waited beside a full queue)",
                spilled + 1
            );
        }
        let _ = self.shared.queue.try_send(Job::Wake);
    }

    /// Jobs that ever found the writer's queue full.
    pub fn spilled(&self) -> u64 {
        self.shared
            .spilled
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn current(&self) -> Arc<Reservations> {
        Arc::clone(&self.read_current())
    }

    fn read_current(&self) -> std::sync::RwLockReadGuard<'_, Arc<Reservations>> {
        // Guarded sections only swap or clone an Arc: nothing to leave half done.
        self.shared
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        // A connection has no invariant of ours that a panic could break.
        self.shared
            .reader
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// One [`BudgetLine`] per budget and scope key with charges in its window
/// current at `now`; totals from `reservations`.
fn lines(
    reader: &Connection,
    reservations: &Reservations,
    now: Timestamp,
    budgets: &[BudgetRule],
) -> Result<Vec<BudgetLine>, LedgerError> {
    let mut query = reader.prepare_cached(
        "SELECT DISTINCT scope_key FROM charges
         WHERE budget_id = ?1 AND window_start_ns = ?2 ORDER BY scope_key",
    )?;
    let mut lines = Vec::new();
    for budget in budgets {
        let window = window_of(now, budget.window, &budget.time_zone)?;
        let start_ns = to_ns(window.start)?;
        let scope_keys = query
            .query_map(params![budget.id, start_ns], |row| row.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        for scope_key in scope_keys {
            let key = CounterKey {
                budget_id: budget.id.clone(),
                scope_key,
                window_start: window.start,
            };
            let totals = reservations.totals(&key);
            lines.push(BudgetLine {
                budget_id: key.budget_id,
                scope_key: key.scope_key,
                spent_usd: totals.spent_usd,
                reserved_usd: totals.reserved_usd,
                limit_usd: budget.limit_usd,
                window_start: window.start,
                window_end: window.end,
            });
        }
    }
    Ok(lines)
}

fn charge_rows(keys: &[CounterKey], s: &Settlement) -> Result<Vec<Row>, LedgerError> {
    let at_ns = to_ns(s.at)?;
    let usd_nanos = to_nanos(s.usd);
    keys.iter()
        .map(|key| {
            Ok(Row {
                budget_id: key.budget_id.clone(),
                scope_key: key.scope_key.clone(),
                window_start_ns: to_ns(key.window_start)?,
                usd_nanos,
                request_id: s.request_id.clone(),
                at_ns,
                estimated: s.estimated,
            })
        })
        .collect()
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> Result<(), LedgerError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let err = |source| LedgerError::Dir {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(err)?;
    // An existing directory keeps its mode through `create`: tighten it.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> Result<(), LedgerError> {
    std::fs::create_dir_all(dir).map_err(|source| LedgerError::Dir {
        path: dir.to_path_buf(),
        source,
    })
}

fn connect(path: &Path) -> Result<Connection, LedgerError> {
    let conn = Connection::open(path)?;
    // Another process (the CLI) may hold the write lock briefly.
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // WAL: readers never block the writer. NORMAL: a commit is written to
    // the WAL, and fsynced at the next checkpoint (see `run_syncer`). A
    // small page cache: the ledger's working set is a few pages.
    conn.pragma_update(None, "cache_size", -256)?;
    // Small pages: a commit writes each page it touches to the WAL, and a
    // charge touches a few rows (1 KB pages took the commit from 26 to
    // 23 µs p50 in the budget bench, p99 from 137 to 52 µs). Only a new
    // file takes it.
    conn.pragma_update(None, "page_size", 1024)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!("budget ledger: journal mode is {mode}, not wal");
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

/// The `charges` table's columns (schema 2).
const CHARGES_COLUMNS: &str = "seq INTEGER PRIMARY KEY,
    budget_id TEXT NOT NULL,
    scope_key TEXT NOT NULL,
    window_start_ns INTEGER NOT NULL,
    usd_nanos INTEGER NOT NULL,
    request_id TEXT NOT NULL,
    at_ns INTEGER NOT NULL,
    estimated INTEGER NOT NULL";

fn migrate(conn: &mut Connection) -> Result<(), LedgerError> {
    // IMMEDIATE: two processes opening a new file do not both create it.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(LedgerError::SchemaTooNew { found });
    }
    if found < 1 {
        // Times are Unix nanoseconds; money is integer nano-dollars, as in
        // `reserve`, so sums are exact. `through_seq`: charges of the budget
        // with `seq` up to it no longer count. `seq` is a plain rowid (rows
        // are never deleted, so it only grows): AUTOINCREMENT would write
        // `sqlite_sequence` on every commit.
        tx.execute_batch(&format!(
            "CREATE TABLE charges ({CHARGES_COLUMNS});
             CREATE INDEX charges_window ON charges (window_start_ns, budget_id);
             CREATE TABLE resets (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 budget_id TEXT NOT NULL,
                 at_ns INTEGER NOT NULL,
                 through_seq INTEGER NOT NULL
             );
             CREATE INDEX resets_budget ON resets (budget_id);
             PRAGMA user_version = 2;",
        ))?;
    } else if found < 2 {
        // Version 1 had `seq INTEGER PRIMARY KEY AUTOINCREMENT`; the same
        // rows and numbers, without the per-commit `sqlite_sequence` write.
        tx.execute_batch(&format!(
            "CREATE TABLE charges_v2 ({CHARGES_COLUMNS});
             INSERT INTO charges_v2 SELECT seq, budget_id, scope_key, window_start_ns,
                 usd_nanos, request_id, at_ns, estimated FROM charges;
             DROP TABLE charges;
             ALTER TABLE charges_v2 RENAME TO charges;
             CREATE INDEX charges_window ON charges (window_start_ns, budget_id);
             PRAGMA user_version = 2;",
        ))?;
    }
    if found < 3 {
        // Version 3: how far the charge journal is committed.
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS journal (
                 id INTEGER PRIMARY KEY CHECK (id = 1),
                 epoch INTEGER NOT NULL,
                 through INTEGER NOT NULL
             );
             PRAGMA user_version = 3;",
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// Sum the counters of windows that started since `now - RESTORE_LOOKBACK`,
/// net of resets, into a fresh in-memory ledger.
fn restore(conn: &Connection, now: Timestamp) -> Result<Reservations, LedgerError> {
    let since = now
        .checked_sub(RESTORE_LOOKBACK)
        .map_err(|_| LedgerError::TimeOutOfRange(now))?;
    let mut query = conn.prepare_cached(
        "SELECT c.budget_id, c.scope_key, c.window_start_ns, SUM(c.usd_nanos)
         FROM charges c
         WHERE c.window_start_ns >= ?1
           AND c.seq > COALESCE(
               (SELECT MAX(r.through_seq) FROM resets r WHERE r.budget_id = c.budget_id), 0)
         GROUP BY c.budget_id, c.scope_key, c.window_start_ns",
    )?;
    let reservations = Reservations::new();
    let mut rows = query.query(params![to_ns(since)?])?;
    while let Some(row) = rows.next()? {
        let window_ns: i64 = row.get(2)?;
        let nanos: i64 = row.get(3)?;
        let window_start = Timestamp::from_nanosecond(i128::from(window_ns))
            .map_err(|_| LedgerError::TimeOutOfRange(now))?;
        let key = CounterKey {
            budget_id: row.get(0)?,
            scope_key: row.get(1)?,
            window_start,
        };
        reservations.add_spent(key, nanos as f64 / NANOS_PER_USD);
    }
    Ok(reservations)
}

/// The sync thread's part: its connection, the journal it empties once
/// synced, and how far the writer has committed it (epoch, ordinal).
struct Syncer {
    conn: Arc<Mutex<Connection>>,
    journal: Arc<Mutex<Journal>>,
    committed: Arc<Mutex<(u64, u64)>>,
}

fn run_writer(
    writer: &Mutex<Option<Connection>>,
    jobs: Receiver<Job>,
    spill: &Mutex<Vec<Job>>,
    committed: &Mutex<(u64, u64)>,
    syncer: Syncer,
) {
    // The syncer fsyncs (checkpoints) on its own connection and thread, so
    // commits never wait behind an fsync. A full channel means a sync is
    // already due.
    let (dirty, dirty_rx) = mpsc::sync_channel::<bool>(1);
    let sync_thread = std::thread::Builder::new()
        .name("outpost-ledger-sync".into())
        .spawn(move || run_syncer(syncer, dirty_rx));
    if let Err(e) = &sync_thread {
        tracing::error!("budget ledger: no sync thread ({e}); syncing at shutdown only");
    }
    let take_spill = || std::mem::take(&mut *spill.lock().unwrap_or_else(PoisonError::into_inner));
    // Ends when told to stop, or when every sender (all `Ledger` clones and
    // the `LedgerWriter`) is gone.
    'jobs: loop {
        let mut batch = Vec::new();
        loop {
            let mut drained = false;
            while batch.len() < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => {
                        drained = true;
                        break;
                    }
                }
            }
            // Spilled jobs are newer than everything queued (see
            // `enqueue`): only once the queue is empty.
            if drained {
                batch.append(&mut take_spill());
            }
            if !batch.is_empty() {
                break;
            }
            // Nothing anywhere: wait. A job spilled from now on is followed
            // by a `Wake` on the (then empty) queue.
            match jobs.recv() {
                Ok(job) => batch.push(job),
                Err(_) => break 'jobs,
            }
        }
        let stop = batch.iter().any(|job| matches!(job, Job::Stop(_)));
        if stop {
            // Everything sent so far is committed before the writer stops.
            loop {
                let before = batch.len();
                batch.extend(jobs.try_iter());
                batch.append(&mut take_spill());
                if batch.len() == before {
                    break;
                }
            }
        }
        let result = {
            let mut guard = writer.lock().unwrap_or_else(PoisonError::into_inner);
            let result = match guard.as_mut() {
                Some(conn) => write_batch(conn, &batch).map_err(|e| {
                    tracing::error!("budget ledger: commit failed: {e}");
                    e.to_string()
                }),
                None => Err("the ledger writer has stopped".to_string()),
            };
            if result.is_ok() {
                if let Some(mark) = journal_mark(&batch) {
                    *committed.lock().unwrap_or_else(PoisonError::into_inner) = mark;
                }
            }
            if stop {
                // Closed: a settle from now on finds no connection and
                // queues (to a writer that is gone: "stopped").
                if let Some(conn) = guard.take() {
                    sync(&conn);
                }
            }
            result
        };
        if !stop {
            let _ = dirty.try_send(false);
        }
        // Nobody waits for journaled charges: let the next ones gather for
        // a moment, so that one commit (and no wake-up per call) covers
        // many. A batch someone waited for was a flush, reset or stop.
        let waited = batch
            .iter()
            .any(|job| !matches!(job, Job::Charges { ack: None, .. } | Job::Wake));
        let linger = !waited && !stop;
        for job in batch {
            let ack = match job {
                Job::Charges { ack: Some(ack), .. }
                | Job::Reset { ack, .. }
                | Job::Flush(ack)
                | Job::Stop(ack) => ack,
                Job::Charges { ack: None, .. } | Job::Wake => continue,
            };
            ack.send(result.clone());
        }
        if stop {
            break;
        }
        if linger {
            std::thread::sleep(LINGER);
        }
    }
    if let Ok(thread) = sync_thread {
        let _ = dirty.send(true);
        let _ = thread.join();
    }
}

/// The last journal entry a batch commits.
fn journal_mark(batch: &[Job]) -> Option<(u64, u64)> {
    batch.iter().rev().find_map(|job| match job {
        Job::Charges { journal, .. } => *journal,
        _ => None,
    })
}

/// At most [`SYNC_EVERY`] after a commit, fsync it; then, if everything
/// journaled is committed and synced, empty a journal grown past
/// [`journal::ROTATE_BYTES`] (or one an append broke).
fn run_syncer(syncer: Syncer, dirty: Receiver<bool>) {
    while let Ok(false) = dirty.recv() {
        std::thread::sleep(SYNC_EVERY);
        // Commits made while sleeping are covered by this sync.
        let stopped = dirty.try_recv() == Ok(true);
        // Read before the sync: what was committed by then is synced after.
        let durable = *syncer
            .committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        sync(&syncer.conn.lock().unwrap_or_else(PoisonError::into_inner));
        let mut journal = syncer
            .journal
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let all_in = (journal.epoch, journal.appended) == durable;
        if all_in && (journal.len > journal::ROTATE_BYTES || journal.broken) {
            if let Err(e) = journal.rotate() {
                tracing::error!(
                    "budget ledger: cannot renew {}: {e}",
                    journal.path().display()
                );
            }
        }
        drop(journal);
        if stopped {
            return;
        }
    }
}

/// Open and exclusively lock `path` (advisory: other Outpost processes).
fn lock(path: &Path) -> Result<std::fs::File, LedgerError> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path).map_err(|source| LedgerError::File {
        path: path.to_path_buf(),
        source,
    })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(LedgerError::InUse(path.to_path_buf())),
        Err(std::fs::TryLockError::Error(source)) => Err(LedgerError::File {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Commit the journal's entries that the database does not have (a killed
/// agent's last charges), sync, and start the next epoch's journal.
fn replay(conn: &mut Connection, path: &Path) -> Result<Journal, LedgerError> {
    let io = |source| LedgerError::File {
        path: path.to_path_buf(),
        source,
    };
    let (mark_epoch, mark): (u64, u64) = conn
        .query_row("SELECT epoch, through FROM journal WHERE id = 1", [], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
        })
        .unwrap_or((0, 0));
    let mut epoch = mark_epoch;
    if let Some(contents) = journal::read(path).map_err(io)? {
        for line in &contents.bad_lines {
            tracing::error!(
                "budget ledger: {}:{line}: not a journal entry; that charge is lost",
                path.display()
            );
        }
        let pending: Vec<Job> = contents
            .entries
            .into_iter()
            .filter(|e| contents.epoch != mark_epoch || e.ordinal > mark)
            .map(|e| Job::Charges {
                rows: e.rows,
                ack: None,
                journal: Some((contents.epoch, e.ordinal)),
            })
            .collect();
        if !pending.is_empty() {
            write_batch(conn, &pending)?;
            sync(conn);
            tracing::info!(
                "budget ledger: {} charge(s) from the journal committed",
                pending.len()
            );
        }
        epoch = epoch.max(contents.epoch);
    }
    Journal::create(path, epoch + 1).map_err(io)
}

/// Fsync what is committed: a passive checkpoint syncs the WAL first, and
/// never blocks the writer.
fn sync(conn: &Connection) {
    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
        tracing::warn!("budget ledger: checkpoint failed: {e}");
    }
}

fn write_batch(conn: &mut Connection, batch: &[Job]) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut insert_charge = tx.prepare_cached(
            "INSERT INTO charges
                 (budget_id, scope_key, window_start_ns, usd_nanos, request_id, at_ns, estimated)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        let mut insert_reset = tx.prepare_cached(
            "INSERT INTO resets (budget_id, at_ns, through_seq)
             VALUES (?1, ?2, (SELECT COALESCE(MAX(seq), 0) FROM charges))",
        )?;
        for job in batch {
            match job {
                Job::Charges { rows, .. } => {
                    for r in rows {
                        insert_charge.execute(params![
                            r.budget_id,
                            r.scope_key,
                            r.window_start_ns,
                            r.usd_nanos,
                            r.request_id,
                            r.at_ns,
                            r.estimated
                        ])?;
                    }
                }
                Job::Reset {
                    budget_id, at_ns, ..
                } => {
                    insert_reset.execute(params![budget_id, at_ns])?;
                }
                Job::Flush(_) | Job::Stop(_) | Job::Wake => {}
            }
        }
        // How far the journal is in, with the rows themselves.
        if let Some((epoch, through)) = journal_mark(batch) {
            tx.execute(
                "INSERT INTO journal (id, epoch, through) VALUES (1, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET epoch = ?1, through = ?2",
                params![epoch as i64, through as i64],
            )?;
        }
    }
    tx.commit()
}

fn to_ns(t: Timestamp) -> Result<i64, LedgerError> {
    i64::try_from(t.as_nanosecond()).map_err(|_| LedgerError::TimeOutOfRange(t))
}

/// USD → nano-dollars, rounded to the nearest as `reserve` does, so the
/// restored spend equals what memory held.
fn to_nanos(usd: f64) -> i64 {
    (usd * NANOS_PER_USD).round().max(0.0) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::rules::{BudgetWindow, Scope};
    use jiff::tz::TimeZone;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn day_key(budget: &str, day: &str) -> CounterKey {
        CounterKey {
            budget_id: budget.into(),
            scope_key: "alice".into(),
            window_start: ts(&format!("{day}T00:00:00Z")),
        }
    }

    fn charge(budget: &str, day: &str, limit_usd: f64) -> Charge {
        Charge {
            key: day_key(budget, day),
            limit_usd,
        }
    }

    fn settlement(usd: f64, request_id: &str) -> Settlement {
        Settlement {
            usd,
            request_id: request_id.into(),
            at: ts("2025-03-10T12:00:00Z"),
            estimated: false,
        }
    }

    fn rule(id: &str, limit_usd: f64) -> BudgetRule {
        BudgetRule {
            id: id.into(),
            per: Scope::User,
            limit_usd,
            window: BudgetWindow::Day,
            warn_at: None,
            providers: None,
            models: None,
            time_zone: TimeZone::UTC,
        }
    }

    const NOW: &str = "2025-03-10T12:00:00Z";
    const TODAY: &str = "2025-03-10";

    fn spent(ledger: &Ledger, budget: &str, day: &str) -> f64 {
        ledger
            .reservations()
            .totals(&day_key(budget, day))
            .spent_usd
    }

    /// Reserve `reserve_usd` on `charge` and settle `usd` as `request_id`,
    /// waiting until it is durable.
    fn settle_one(ledger: &Ledger, charge: Charge, reserve_usd: f64, usd: f64, request_id: &str) {
        let hold = ledger.reserve(&[charge], reserve_usd).unwrap();
        ledger
            .settle(hold, settlement(usd, request_id))
            .wait()
            .unwrap();
    }

    #[test]
    fn a_burst_past_the_writer_queue_never_blocks_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, writer) = Ledger::open(dir.path(), ts(NOW)).unwrap();
        // Far more charges than the queue holds while the ledger file is
        // busy (held here, as a long commit would): they queue, some spill
        // beside the full queue; none may be lost.
        let busy = ledger.shared.writer.lock().unwrap();
        let n = 3 * QUEUE_CAPACITY;
        let mut committed = Vec::with_capacity(n);
        for i in 0..n {
            let hold = ledger.reserve(&[charge("day", TODAY, 1e9)], 0.001).unwrap();
            committed.push(ledger.settle(hold, settlement(0.001, &format!("r{i}"))));
        }
        assert!(ledger.spilled() > 0);
        drop(busy);
        for c in committed {
            c.wait().unwrap();
        }
        // The writer takes the spill behind the queue, batch after batch,
        // until a flush queued behind them all resolves.
        ledger.flush().wait().unwrap();
        let rows: i64 = connect(&dir.path().join("budget/ledger.db"))
            .unwrap()
            .query_row("SELECT COUNT(*) FROM charges", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, n as i64);
        writer.shutdown().unwrap();
        drop(ledger);
        let (ledger, writer) = Ledger::open(dir.path(), ts(NOW)).unwrap();
        let total = spent(&ledger, "day", TODAY);
        assert!((total - 0.001 * n as f64).abs() < 1e-6, "{total}");
        writer.shutdown().unwrap();
    }

    #[test]
    fn a_settle_is_in_the_journal_when_it_returns_and_in_the_database_after() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, writer) = Ledger::open(dir.path(), ts(NOW)).unwrap();
        let hold = ledger.reserve(&[charge("day", TODAY, 1e9)], 0.5).unwrap();
        let mut committed = ledger.settle(hold, settlement(0.25, "r1"));
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(matches!(
            Pin::new(&mut committed).poll(&mut cx),
            Poll::Ready(Ok(()))
        ));
        let (contents, _) = journal_state(dir.path());
        assert_eq!(contents.entries.len(), 1);
        assert_eq!(contents.entries[0].rows[0].request_id, "r1");
        ledger.flush().wait().unwrap();
        // In the file: a second connection sees it.
        let rows: i64 = connect(&dir.path().join("budget/ledger.db"))
            .unwrap()
            .query_row("SELECT COUNT(*) FROM charges", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 1);
        writer.shutdown().unwrap();
    }

    #[test]
    fn a_settle_never_waits_for_another_process_holding_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, writer) = Ledger::open(dir.path(), ts(NOW)).unwrap();
        // Another process (the CLI, say) holds the write lock.
        let other = connect(&dir.path().join("budget/ledger.db")).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let hold = ledger.reserve(&[charge("day", TODAY, 1e9)], 0.5).unwrap();
        let started = std::time::Instant::now();
        let committed = ledger.settle(hold, settlement(0.25, "r1"));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "settle waited {:?} for the lock",
            started.elapsed()
        );
        // Queued for the writer thread, which commits once the lock is free.
        other.execute_batch("COMMIT").unwrap();
        committed.wait().unwrap();
        writer.shutdown().unwrap();
    }

    #[test]
    fn spend_is_restored_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, writer) = Ledger::open(dir.path(), ts(NOW)).unwrap();
        settle_one(&ledger, charge("day", TODAY, 1.0), 0.5, 0.3, "r1");
        writer.shutdown().unwrap();
        drop(ledger);

        let (ledger, writer) = Ledger::open(dir.path(), ts(NOW)).unwrap();
        assert_eq!(spent(&ledger, "day", TODAY), 0.3);
        // 0.3 spent + 0.8 > 1.0: the restarted ledger refuses.
        assert!(ledger.reserve(&[charge("day", TODAY, 1.0)], 0.8).is_err());
        writer.shutdown().unwrap();
    }

    #[test]
    fn a_version_1_ledger_is_migrated_with_its_charges() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, writer) = Ledger::open(dir.path(), ts(NOW)).unwrap();
        settle_one(&ledger, charge("day", TODAY, 1.0), 0.5, 0.3, "r1");
        writer.shutdown().unwrap();
        drop(ledger);
        // Make it the version 1 schema: AUTOINCREMENT on `charges.seq`.
        let path = dir.path().join("budget/ledger.db");
        let conn = connect(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE charges_v1 (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT, budget_id TEXT NOT NULL,
                 scope_key TEXT NOT NULL, window_start_ns INTEGER NOT NULL,
                 usd_nanos INTEGER NOT NULL, request_id TEXT NOT NULL,
                 at_ns INTEGER NOT NULL, estimated INTEGER NOT NULL);
             INSERT INTO charges_v1 SELECT * FROM charges;
             DROP TABLE charges;
             ALTER TABLE charges_v1 RENAME TO charges;
             CREATE INDEX charges_window ON charges (window_start_ns, budget_id);
             PRAGMA user_version = 1;",
        )
        .unwrap();
        drop(conn);

        let (ledger, writer) = Ledger::open(dir.path(), ts(NOW)).unwrap();
        assert_eq!(spent(&ledger, "day", TODAY), 0.3);
        settle_one(&ledger, charge("day", TODAY, 1.0), 0.5, 0.2, "r2");
        writer.shutdown().unwrap();
        let conn = connect(&path).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let sql: String = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'charges'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(!sql.contains("AUTOINCREMENT"), "{sql}");
        let seqs: Vec<i64> = conn
            .prepare("SELECT seq FROM charges ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(seqs, [1, 2]);
    }

    #[cfg(unix)]
    #[test]
    fn directory_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (_ledger, writer) = Ledger::open(dir.path(), ts(NOW)).unwrap();
        let mode = std::fs::metadata(dir.path().join("budget"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        writer.shutdown().unwrap();
    }

    /// Child half of `kill_9_loses_no_acknowledged_charge`: settles charges
    /// forever, printing the count after each one's `Committed` resolved.
    #[test]
    fn crash_child() {
        let Some(dir) = std::env::var_os("OUTPOST_LEDGER_CRASH_DIR") else {
            return;
        };
        let (ledger, _writer) = Ledger::open(Path::new(&dir), ts(NOW)).unwrap();
        for i in 1.. {
            settle_one(
                &ledger,
                charge("day", TODAY, 1e9),
                0.01,
                0.01,
                &format!("r{i}"),
            );
            println!("committed {i}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn kill_9_loses_no_acknowledged_charge() {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "budget::ledger::tests::crash_child",
                "--nocapture",
            ])
            .env("OUTPOST_LEDGER_CRASH_DIR", dir.path())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut acknowledged = 0;
        while acknowledged < 50 {
            let line = lines.next().unwrap().unwrap();
            if let Some(n) = line.strip_prefix("committed ") {
                acknowledged = n.parse().unwrap();
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let (ledger, writer) = Ledger::open(dir.path(), ts(NOW)).unwrap();
        let spent = spent(&ledger, "day", TODAY);
        assert!(
            spent >= acknowledged as f64 * 0.01 - 1e-9,
            "spent {spent} < {acknowledged} acknowledged charges"
        );
        // The child may have settled a few more after its last line (its
        // pipe is read behind it), but never a charge twice: each is in the
        // journal once and committed once.
        let rows: i64 = connect(&dir.path().join("budget/ledger.db"))
            .unwrap()
            .query_row(
                "SELECT COUNT(*) - COUNT(DISTINCT request_id) FROM charges",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(rows, 0, "a charge was committed twice");
        writer.shutdown().unwrap();
    }

    #[test]
    fn concurrent_settles_are_persisted_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, writer) = Ledger::open(dir.path(), ts(NOW)).unwrap();
        let charges = [
            charge("day", TODAY, 100.0),
            charge("month", "2025-03-01", 100.0),
        ];
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let (ledger, charges) = (ledger.clone(), charges.clone());
                std::thread::spawn(move || {
                    let waits: Vec<Committed> = (0..50)
                        .map(|i| {
                            let hold = ledger.reserve(&charges, 0.02).unwrap();
                            ledger.settle(hold, settlement(0.01, &format!("t{t}-{i}")))
                        })
                        .collect();
                    for committed in waits {
                        committed.wait().unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        writer.shutdown().unwrap();
        drop(ledger);

        let conn = Connection::open(dir.path().join("budget/ledger.db")).unwrap();
        let (rows, distinct, sum): (i64, i64, i64) = conn
            .query_row(
                "SELECT COUNT(*), COUNT(DISTINCT request_id || budget_id), SUM(usd_nanos)
                 FROM charges",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        // 800 requests × 2 counters, each once.
        assert_eq!((rows, distinct, sum), (1600, 1600, 1600 * 10_000_000));

        let (ledger, writer) = Ledger::open(dir.path(), ts(NOW)).unwrap();
        assert!((spent(&ledger, "day", TODAY) - 8.0).abs() < 1e-9);
        assert!((spent(&ledger, "month", "2025-03-01") - 8.0).abs() < 1e-9);
        writer.shutdown().unwrap();
    }

    #[test]
    fn reset_persists_and_later_charges_count() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, writer) = Ledger::open(dir.path(), ts(NOW)).unwrap();
        let other = charge("other", TODAY, 1.0);
        let hold = ledger
            .reserve(&[charge("day", TODAY, 1.0), other.clone()], 0.9)
            .unwrap();
        ledger.settle(hold, settlement(0.9, "r1")).wait().unwrap();
        // A request in flight across the reset.
        let in_flight = ledger.reserve(&[charge("day", TODAY, 1.0)], 0.05).unwrap();

        ledger.reset("day", ts(NOW)).unwrap();
        assert_eq!(spent(&ledger, "day", TODAY), 0.0);
        assert_eq!(spent(&ledger, "other", TODAY), 0.9);
        ledger
            .settle(in_flight, settlement(0.05, "r2"))
            .wait()
            .unwrap();
        assert_eq!(spent(&ledger, "day", TODAY), 0.05);
        writer.shutdown().unwrap();
        drop(ledger);

        let (ledger, writer) = Ledger::open(dir.path(), ts(NOW)).unwrap();
        assert_eq!(spent(&ledger, "day", TODAY), 0.05);
        assert_eq!(spent(&ledger, "other", TODAY), 0.9);
        let conn = ledger.reader();
        let rows: i64 = conn
            .query_row("SELECT COUNT(*) FROM charges", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 3, "a reset keeps the history");
        drop(conn);
        writer.shutdown().unwrap();
    }

    #[test]
    fn old_windows_do_not_count() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, writer) = Ledger::open(dir.path(), ts(NOW)).unwrap();
        let hold = ledger
            .reserve(&[charge("day", "2025-03-09", 1.0)], 0.9)
            .unwrap();
        ledger
            .settle(hold, settlement(0.9, "yesterday"))
            .wait()
            .unwrap();
        // Today's window is a different counter: the full limit is free.
        let today = ledger.reserve(&[charge("day", TODAY, 1.0)], 1.0).unwrap();
        ledger.release(today);
        writer.shutdown().unwrap();
        drop(ledger);

        let (ledger, writer) = Ledger::open(dir.path(), ts(NOW)).unwrap();
        assert_eq!(spent(&ledger, "day", TODAY), 0.0);
        assert!(ledger.reserve(&[charge("day", TODAY, 1.0)], 1.0).is_ok());
        let lines = ledger.snapshot(ts(NOW), &[rule("day", 1.0)]).unwrap();
        assert!(lines.is_empty(), "yesterday's key is not in today's window");
        writer.shutdown().unwrap();
        drop(ledger);

        // Windows older than the lookback are not even loaded.
        let much_later = ts(NOW) + SignedDuration::from_hours(24 * 40);
        let (ledger, writer) = Ledger::open(dir.path(), much_later).unwrap();
        assert_eq!(spent(&ledger, "day", "2025-03-09"), 0.0);
        writer.shutdown().unwrap();
    }

    #[test]
    fn snapshot_lists_spent_reserved_limit_and_window() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, writer) = Ledger::open(dir.path(), ts(NOW)).unwrap();
        settle_one(&ledger, charge("day", TODAY, 2.0), 0.5, 0.4, "r1");
        let _held = ledger.reserve(&[charge("day", TODAY, 2.0)], 0.3).unwrap();
        let lines = ledger
            .snapshot(ts(NOW), &[rule("day", 2.0), rule("unused", 5.0)])
            .unwrap();
        assert_eq!(
            lines,
            vec![BudgetLine {
                budget_id: "day".into(),
                scope_key: "alice".into(),
                spent_usd: 0.4,
                reserved_usd: 0.3,
                limit_usd: 2.0,
                window_start: ts("2025-03-10T00:00:00Z"),
                window_end: ts("2025-03-11T00:00:00Z"),
            }]
        );
        writer.shutdown().unwrap();
    }

    #[test]
    fn a_settle_after_shutdown_is_kept_by_the_journal_for_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, writer) = Ledger::open(dir.path(), ts(NOW)).unwrap();
        writer.shutdown().unwrap();
        settle_one(&ledger, charge("day", TODAY, 1.0), 0.1, 0.1, "late");
        // Counted in memory now, and by the next agent.
        assert_eq!(spent(&ledger, "day", TODAY), 0.1);
        drop(ledger);
        let (ledger, writer) = Ledger::open(dir.path(), ts(NOW)).unwrap();
        assert_eq!(spent(&ledger, "day", TODAY), 0.1);
        writer.shutdown().unwrap();
    }

    /// The journal of `dir`'s ledger, and its database's mark.
    fn journal_state(dir: &Path) -> (journal::Contents, (i64, i64)) {
        let contents = journal::read(&dir.join("budget").join(journal::FILE))
            .unwrap()
            .unwrap();
        let mark = connect(&dir.join("budget/ledger.db"))
            .unwrap()
            .query_row("SELECT epoch, through FROM journal", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap_or((0, 0));
        (contents, mark)
    }

    #[test]
    fn journal_entries_the_database_lacks_are_committed_on_open_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, writer) = Ledger::open(dir.path(), ts(NOW)).unwrap();
        for i in 0..5 {
            settle_one(
                &ledger,
                charge("day", TODAY, 1e9),
                0.2,
                0.1,
                &format!("r{i}"),
            );
        }
        writer.shutdown().unwrap();
        drop(ledger);
        let (contents, mark) = journal_state(dir.path());
        assert_eq!(contents.entries.len(), 5);
        assert_eq!(mark, (contents.epoch as i64, 5));
        // As a kill -9 leaves it: five journaled, three committed (the mark
        // says so, as the same transactions did), and a torn sixth.
        let db = connect(&dir.path().join("budget/ledger.db")).unwrap();
        db.execute_batch(
            "DELETE FROM charges WHERE request_id IN ('r3', 'r4');
             UPDATE journal SET through = 3;",
        )
        .unwrap();
        drop(db);
        {
            use std::io::Write;
            let path = dir.path().join("budget").join(journal::FILE);
            let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
            file.write_all(b"[6,[[\"day\",\"al").unwrap();
        }
        let (ledger, writer) = Ledger::open(dir.path(), ts(NOW)).unwrap();
        assert!((spent(&ledger, "day", TODAY) - 0.5).abs() < 1e-9);
        writer.shutdown().unwrap();
        drop(ledger);
        // And again: nothing is committed twice.
        let (ledger, writer) = Ledger::open(dir.path(), ts(NOW)).unwrap();
        assert!((spent(&ledger, "day", TODAY) - 0.5).abs() < 1e-9);
        let (contents, _) = journal_state(dir.path());
        assert!(contents.entries.is_empty(), "a fresh journal after replay");
        // A second process cannot open it meanwhile.
        let err = Ledger::open(dir.path(), ts(NOW)).unwrap_err();
        assert!(matches!(err, LedgerError::InUse(_)), "{err}");
        assert!(err.to_string().contains("ledger.lock"), "{err}");
        writer.shutdown().unwrap();
    }

    #[test]
    fn a_journal_of_another_epoch_is_committed_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, writer) = Ledger::open(dir.path(), ts(NOW)).unwrap();
        writer.shutdown().unwrap();
        drop(ledger);
        // A journal the database has never seen (its epoch is ahead).
        let path = dir.path().join("budget").join(journal::FILE);
        let mut journal = Journal::create(&path, 99).unwrap();
        let row = |id: &str| Row {
            budget_id: "day".into(),
            scope_key: "alice".into(),
            window_start_ns: to_ns(ts(&format!("{TODAY}T00:00:00Z"))).unwrap(),
            usd_nanos: 250_000_000,
            request_id: id.into(),
            at_ns: to_ns(ts(NOW)).unwrap(),
            estimated: false,
        };
        journal.append(&[row("a")]).unwrap();
        journal.append(&[row("b")]).unwrap();
        let (ledger, writer) = Ledger::open(dir.path(), ts(NOW)).unwrap();
        assert!((spent(&ledger, "day", TODAY) - 0.5).abs() < 1e-9);
        let (contents, _) = journal_state(dir.path());
        assert_eq!(contents.epoch, 100);
        writer.shutdown().unwrap();
    }

    #[test]
    fn a_grown_journal_is_emptied_once_the_database_has_it_all() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, writer) = Ledger::open(dir.path(), ts(NOW)).unwrap();
        let path = dir.path().join("budget").join(journal::FILE);
        let first_epoch = journal::read(&path).unwrap().unwrap().epoch;
        let mut n = 0;
        while std::fs::metadata(&path).unwrap().len() <= journal::ROTATE_BYTES {
            settle_one(
                &ledger,
                charge("day", TODAY, 1e12),
                0.01,
                0.001,
                &format!("request-{n:08}"),
            );
            n += 1;
        }
        ledger.flush().wait().unwrap();
        let total = 0.001 * n as f64;
        wait_for("the journal to be renewed", || {
            journal::read(&path).unwrap().unwrap().epoch > first_epoch
        });
        // One more after the renewal: both files' charges count, once.
        settle_one(&ledger, charge("day", TODAY, 1e12), 0.01, 0.001, "after");
        writer.shutdown().unwrap();
        drop(ledger);
        let (ledger, writer) = Ledger::open(dir.path(), ts(NOW)).unwrap();
        let spent = spent(&ledger, "day", TODAY);
        assert!((spent - total - 0.001).abs() < 1e-6, "{spent} vs {total}");
        writer.shutdown().unwrap();
    }

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !done() {
            assert!(
                std::time::Instant::now() < until,
                "timed out waiting for {what}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
