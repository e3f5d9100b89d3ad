//! The tamper-evident audit log.
//!
//! One JSON line per intercepted request, appended to
//! `state_dir/audit/YYYY-MM-DD.jsonl` (the UTC day at write time), each line
//! chained to the one before by hash, across files. Keyed *checkpoint*
//! records, HMAC'd with a per-device key the agent keeps like its CA key,
//! make the chain tamper-evident even to someone who can edit the files:
//! they can recompute hashes but not checkpoints.
//!
//! - [`record`]: the record schema and its canonical encoding (pure);
//! - [`day`]: day-file names and listing (the layout the shipper reads);
//! - [`key`]: the HMAC key and checkpoint MACs;
//! - [`writer`]: the queue the request path submits to, and the writer
//!   thread that appends, acknowledges, fsyncs and checkpoints;
//! - [`recover`]: crash repair at start (a torn last line is moved aside);
//! - [`retention`]: deleting old day files, never unshipped ones;
//! - [`verify`]: checking files, hashes, links and checkpoints;
//! - [`read`]: reading records back (tail, follow, export);
//! - [`render`]: records as human-readable lines and CSV.

pub mod day;
pub mod key;
pub mod read;
pub mod record;
pub mod recover;
pub mod render;
pub mod retention;
pub mod ship;
pub mod verify;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use time::OffsetDateTime;

use crate::tls::store::StoreError;

/// The directory holding the day files: `state_dir/audit`.
pub fn audit_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("audit")
}

/// Why the audit log could not start, or a record was not written.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Filesystem trouble, with the path (ours, or the disk's).
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The HMAC key could not be loaded or stored.
    #[error("audit HMAC key: {0}")]
    Key(#[from] StoreError),
    /// The system's random source failed (making a new HMAC key).
    #[error("no randomness for a new audit HMAC key")]
    Random,
    /// The writer thread could not be started.
    #[error("cannot start the audit writer thread: {0}")]
    Thread(std::io::Error),
    /// The writer tried and failed to append this record (disk full, I/O
    /// error); it is counted in `AuditStats::failed`.
    #[error("audit record not written: {0}")]
    NotWritten(String),
    /// The writer has stopped (shut down, or died); the record was not
    /// written.
    #[error("the audit writer has stopped; the record was not written")]
    WriterStopped,
}

impl AuditError {
    /// An I/O error on `path`.
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AuditError + '_ {
        move |source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Where the writer gets "now" from: the system clock, or a test's.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> OffsetDateTime + Send + Sync>);

impl Clock {
    /// The system clock (UTC).
    pub fn system() -> Clock {
        Clock(Arc::new(OffsetDateTime::now_utc))
    }

    /// A clock that asks `now` (tests: a settable time, day rollover).
    pub fn from_fn(now: impl Fn() -> OffsetDateTime + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(now))
    }

    /// The current time, in UTC.
    pub fn now(&self) -> OffsetDateTime {
        (self.0)().to_offset(time::UtcOffset::UTC)
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// `t` as RFC 3339 UTC with microseconds (`2026-11-24T10:00:00.000001Z`),
/// the form of every record's `ts`.
pub fn rfc3339_micros(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_microseconds_in_utc() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_795_000_000_123_456_789).unwrap();
        let t = t.to_offset(time::UtcOffset::from_hms(2, 0, 0).unwrap());
        assert_eq!(rfc3339_micros(t), "2026-11-18T11:06:40.123456Z");
    }
}
