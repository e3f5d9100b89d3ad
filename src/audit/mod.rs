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
