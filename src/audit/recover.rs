//! Crash repair at start: find where the chain ends, and set aside a torn
//! tail.
//!
//! After `kill -9` or a power cut the newest day file can end in a *torn
//! tail*: a line with no newline (a batch cut short), or lines that are not
//! records (zeros the filesystem showed for pages never written). Nothing
//! in a torn tail was acknowledged: the writer acknowledges a batch only
//! after the whole batch, newline included, was written.
//!
//! Repair, newest file first: walk back from the end to the last line that
//! parses as a record (the *chain head*); copy everything after it to
//! `torn/<file>.<offset>.bin`, durably; only then truncate the file there
//! and fsync. If the newest file holds no record at all, the head is in the
//! file before it. A crash during repair repeats it harmlessly next start.
//!
//! The writer then chains a `repair` record, saying what was moved where,
//! after the head (see `writer`).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::day::{self, TORN_DIR};
use super::read::{read_span, LinesBackwards, MAX_LINE_BYTES};
use super::record::{AuditRecord, Kind, GENESIS};
use super::AuditError;
use crate::tls::store;

/// Where the chain ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    /// `seq` of the last record (0 when there is none).
    pub seq: u64,
    /// `hash` of the last record ([`GENESIS`] when there is none).
    pub hash: String,
    /// Kind of the last record (`None` when there is none).
    pub kind: Option<Kind>,
}

impl ChainHead {
    /// The head of an empty log.
    pub fn genesis() -> ChainHead {
        ChainHead {
            seq: 0,
            hash: GENESIS.to_string(),
            kind: None,
        }
    }
}

/// What start-up found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Where the chain continues.
    pub head: ChainHead,
    /// What was repaired or found wrong, one sentence each, for `repair`
    /// records. Empty after a clean shutdown.
    pub notes: Vec<String>,
}

/// Find the chain head in `dir` and set aside any torn tail.
pub fn recover(dir: &Path) -> Result<Recovered, AuditError> {
    let files = day::list(dir).map_err(AuditError::io(dir))?;
    let mut notes = Vec::new();
    for file in files.iter().rev() {
        let (head, torn) = repair_file(dir, &file.path)?;
        notes.extend(torn);
        if let Some(record) = head {
            if record.compute_hash() != record.hash {
                notes.push(format!(
                    "{}: the last record (seq {}) does not verify: its hash does not match its \
                     contents; the chain continues after its stored hash",
                    file.path.display(),
                    record.seq
                ));
            }
            return Ok(Recovered {
                head: ChainHead {
                    seq: record.seq,
                    hash: record.hash,
                    kind: Some(record.event.kind),
                },
                notes,
            });
        }
    }
    Ok(Recovered {
        head: ChainHead::genesis(),
        notes,
    })
}

/// The last record of `path`, after moving aside whatever follows it.
fn repair_file(
    dir: &Path,
    path: &Path,
) -> Result<(Option<AuditRecord>, Option<String>), AuditError> {
    let io = AuditError::io(path);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(AuditError::io(path))?;
    let len = file.metadata().map_err(AuditError::io(path))?.len();
    let mut lines = LinesBackwards::new(&file, len).map_err(AuditError::io(path))?;
    let mut torn_from = None;
    let mut torn_lines = 0u64;
    let mut last = None;
    while let Some(span) = lines.next_span().map_err(AuditError::io(path))? {
        let record = if span.terminated && span.len <= MAX_LINE_BYTES {
            let bytes = read_span(&file, span).map_err(AuditError::io(path))?;
            serde_json::from_slice::<AuditRecord>(&bytes).ok()
        } else {
            None
        };
        match record {
            Some(record) => {
                last = Some(record);
                break;
            }
            None => {
                torn_from = Some(span.offset);
                torn_lines += 1;
            }
        }
    }
    let Some(offset) = torn_from else {
        return Ok((last, None));
    };
    let saved = save_torn(dir, path, &file, offset, len)?;
    file.set_len(offset).map_err(AuditError::io(path))?;
    file.sync_all().map_err(io)?;
    let what = if torn_lines == 1 {
        "a torn last line".to_string()
    } else {
        format!("{torn_lines} unreadable last lines")
    };
    let note = format!(
        "{}: {what} at byte offset {offset} ({} bytes, written before a crash and never \
         acknowledged) moved to {}",
        path.display(),
        len - offset,
        saved.display()
    );
    Ok((last, Some(note)))
}

/// Copy bytes `offset..len` of `file` to `torn/<name>.<offset>.bin`.
fn save_torn(
    dir: &Path,
    path: &Path,
    mut file: &File,
    offset: u64,
    len: u64,
) -> Result<PathBuf, AuditError> {
    let torn_dir = dir.join(TORN_DIR);
    store::create_private_dir(&torn_dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let target = torn_dir.join(format!("{name}.{offset}.bin"));
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.take(len - offset).read_to_end(&mut bytes))
        .map_err(AuditError::io(path))?;
    store::write_atomic(&target, &bytes, 0o600)?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::sample_event;

    fn line(seq: u64, prev: &str) -> (AuditRecord, Vec<u8>) {
        let record = AuditRecord::chain(seq, sample_event(), None, prev);
        let mut bytes = record.to_line();
        bytes.push(b'\n');
        (record, bytes)
    }

    #[test]
    fn clean_file_needs_no_repair() {
        let dir = tempfile::tempdir().unwrap();
        let (r1, l1) = line(1, GENESIS);
        let (r2, l2) = line(2, &r1.hash);
        std::fs::write(dir.path().join("2026-01-01.jsonl"), [l1, l2].concat()).unwrap();
        let found = recover(dir.path()).unwrap();
        assert_eq!(found.head.seq, 2);
        assert_eq!(found.head.hash, r2.hash);
        assert!(found.notes.is_empty());
        assert!(!dir.path().join(TORN_DIR).exists());
    }

    #[test]
    fn empty_log_starts_at_genesis() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(recover(dir.path()).unwrap().head, ChainHead::genesis());
    }

    #[test]
    fn unreadable_tail_lines_and_an_empty_newest_file_are_handled() {
        let dir = tempfile::tempdir().unwrap();
        let (r1, l1) = line(1, GENESIS);
        let old = dir.path().join("2026-01-01.jsonl");
        std::fs::write(&old, &l1).unwrap();
        // The newest file holds only zeros the filesystem never filled, with
        // a newline in the middle.
        let new = dir.path().join("2026-01-02.jsonl");
        let mut zeros = vec![0u8; 100];
        zeros[40] = b'\n';
        std::fs::write(&new, &zeros).unwrap();
        let found = recover(dir.path()).unwrap();
        assert_eq!(found.head.seq, 1);
        assert_eq!(found.head.hash, r1.hash);
        assert_eq!(found.notes.len(), 1, "{:?}", found.notes);
        assert!(
            found.notes[0].contains("2 unreadable last lines"),
            "{:?}",
            found.notes
        );
        assert_eq!(std::fs::metadata(&new).unwrap().len(), 0);
        let moved = dir.path().join(TORN_DIR).join("2026-01-02.jsonl.0.bin");
        assert_eq!(std::fs::read(moved).unwrap(), zeros);
        assert_eq!(std::fs::read(&old).unwrap(), l1);
    }

    #[test]
    fn tampered_last_record_is_noted() {
        let dir = tempfile::tempdir().unwrap();
        let (mut r1, _) = line(1, GENESIS);
        r1.event.status = 500;
        let mut bytes = r1.to_line();
        bytes.push(b'\n');
        std::fs::write(dir.path().join("2026-01-01.jsonl"), bytes).unwrap();
        let found = recover(dir.path()).unwrap();
        assert_eq!(found.head.seq, 1);
        assert!(
            found.notes[0].contains("does not verify"),
            "{:?}",
            found.notes
        );
    }
}
