//! The charge journal, `state_dir/budget/journal`: where a settled charge
//! is first made durable, with one `write(2)` on the settling thread.
//!
//! The ledger's writer thread commits the same rows into SQLite behind it,
//! in journal order, and records in the same transaction how far it got
//! (`journal` table: epoch and ordinal). On open, the entries past that
//! mark are committed before anything else reads the ledger, so a process
//! killed between the two loses nothing and counts nothing twice.
//!
//! Format: a header line `outpost budget journal 1 epoch N`, then one JSON
//! line per settle, `[ordinal, [[budget_id, scope_key, window_start_ns,
//! usd_nanos, request_id, at_ns, estimated], …]]`, ordinals from 1. A torn
//! last line (a write cut short) is not an entry. Once everything in it is
//! committed and fsynced, a journal past [`ROTATE_BYTES`] is replaced by an
//! empty one of the next epoch.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The journal's file name in `state_dir/budget`.
pub const FILE: &str = "journal";

const HEADER: &str = "outpost budget journal 1 epoch ";

/// A journal larger than this is emptied once all of it is in the database.
pub const ROTATE_BYTES: u64 = 1 << 20;

/// One charge row as stored, in the journal and in the `charges` table.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Row {
    /// The `[[budgets]]` id.
    pub budget_id: String,
    /// Who or what is counted.
    pub scope_key: String,
    /// The window's start, Unix nanoseconds.
    pub window_start_ns: i64,
    /// The charge, nano-dollars.
    pub usd_nanos: i64,
    /// The request's id, as in the audit log.
    pub request_id: String,
    /// When it settled, Unix nanoseconds.
    pub at_ns: i64,
    /// The cost was estimated.
    pub estimated: bool,
}

type RowFields = (String, String, i64, i64, String, i64, bool);

impl Row {
    fn fields(&self) -> RowFields {
        (
            self.budget_id.clone(),
            self.scope_key.clone(),
            self.window_start_ns,
            self.usd_nanos,
            self.request_id.clone(),
            self.at_ns,
            self.estimated,
        )
    }

    fn from_fields(f: RowFields) -> Row {
        Row {
            budget_id: f.0,
            scope_key: f.1,
            window_start_ns: f.2,
            usd_nanos: f.3,
            request_id: f.4,
            at_ns: f.5,
            estimated: f.6,
        }
    }
}

/// One settle's rows, as read back.
#[derive(Debug, PartialEq)]
pub struct Entry {
    /// Its place in the journal's epoch, from 1.
    pub ordinal: u64,
    /// The rows.
    pub rows: Vec<Row>,
}

/// What [`read`] found.
#[derive(Debug)]
pub struct Contents {
    /// The header's epoch.
    pub epoch: u64,
    /// Every complete entry, in order.
    pub entries: Vec<Entry>,
    /// Lines that did not parse (not the torn last one): their numbers.
    pub bad_lines: Vec<usize>,
}

/// Read the journal at `path`; `None` when there is none, or no complete
/// header (a journal whose creation was cut short holds nothing).
pub fn read(path: &Path) -> std::io::Result<Option<Contents>> {
    let text = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let text = String::from_utf8_lossy(&text);
    // Only newline-terminated lines are whole.
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => return Ok(None),
    };
    let mut lines = complete.split('\n');
    let Some(epoch) = lines
        .next()
        .and_then(|h| h.strip_prefix(HEADER))
        .and_then(|n| n.parse().ok())
    else {
        return Ok(None);
    };
    let mut entries = Vec::new();
    let mut bad_lines = Vec::new();
    for (i, line) in lines.enumerate() {
        match serde_json::from_str::<(u64, Vec<RowFields>)>(line) {
            Ok((ordinal, rows)) => entries.push(Entry {
                ordinal,
                rows: rows.into_iter().map(Row::from_fields).collect(),
            }),
            Err(_) => bad_lines.push(i + 2),
        }
    }
    Ok(Some(Contents {
        epoch,
        entries,
        bad_lines,
    }))
}

/// The open journal, appended to under the ledger's lock.
#[derive(Debug)]
pub struct Journal {
    file: File,
    path: PathBuf,
    /// This file's epoch.
    pub epoch: u64,
    /// Entries appended in this epoch (the last one's ordinal).
    pub appended: u64,
    /// Its size in bytes.
    pub len: u64,
    /// An append failed: entries may be torn, so no more are added until
    /// the journal is replaced (settles wait for the database meanwhile).
    pub broken: bool,
}

impl Journal {
    /// A new, empty journal of `epoch` at `path`, replacing any there: the
    /// header is written to a temporary file, synced, and renamed over it.
    pub fn create(path: &Path, epoch: u64) -> std::io::Result<Journal> {
        let tmp = path.with_extension("tmp");
        let header = format!("{HEADER}{epoch}\n");
        {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&tmp)?;
            file.write_all(header.as_bytes())?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            if let Ok(dir) = File::open(dir) {
                let _ = dir.sync_all();
            }
        }
        let file = std::fs::OpenOptions::new().append(true).open(path)?;
        Ok(Journal {
            file,
            path: path.to_path_buf(),
            epoch,
            appended: 0,
            len: header.len() as u64,
            broken: false,
        })
    }

    /// Append one settle's `rows` as the next entry, in one `write(2)`;
    /// returns its ordinal.
    pub fn append(&mut self, rows: &[Row]) -> std::io::Result<u64> {
        let ordinal = self.appended + 1;
        let fields: Vec<RowFields> = rows.iter().map(Row::fields).collect();
        let mut line = serde_json::to_vec(&(ordinal, fields)).map_err(std::io::Error::other)?;
        line.push(b'\n');
        if let Err(e) = self.file.write_all(&line) {
            self.broken = true;
            return Err(e);
        }
        self.appended = ordinal;
        self.len += line.len() as u64;
        Ok(ordinal)
    }

    /// Replace it with an empty journal of the next epoch: only once every
    /// entry is committed to the database and synced.
    pub fn rotate(&mut self) -> std::io::Result<()> {
        *self = Journal::create(&self.path, self.epoch + 1)?;
        Ok(())
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(request_id: &str) -> Row {
        Row {
            budget_id: "day".into(),
            scope_key: "alice\t\"quoted\"\n".into(),
            window_start_ns: 1_741_564_800_000_000_000,
            usd_nanos: 12_000_000,
            request_id: request_id.into(),
            at_ns: 1_741_600_000_000_000_000,
            estimated: false,
        }
    }

    #[test]
    fn entries_are_read_back_in_order_and_a_torn_last_line_is_not_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let mut journal = Journal::create(&path, 7).unwrap();
        assert_eq!(journal.append(&[row("r1"), row("r1")]).unwrap(), 1);
        assert_eq!(journal.append(&[row("r2")]).unwrap(), 2);
        assert_eq!(journal.len, std::fs::metadata(&path).unwrap().len());
        // A write cut short.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"[3,[[\"day\"")
            .unwrap();
        let read = read(&path).unwrap().unwrap();
        assert_eq!(read.epoch, 7);
        assert_eq!(
            read.entries,
            vec![
                Entry {
                    ordinal: 1,
                    rows: vec![row("r1"), row("r1")]
                },
                Entry {
                    ordinal: 2,
                    rows: vec![row("r2")]
                },
            ]
        );
        assert!(read.bad_lines.is_empty());
    }

    #[test]
    fn rotation_empties_it_under_the_next_epoch_and_a_headless_file_holds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let mut journal = Journal::create(&path, 1).unwrap();
        journal.append(&[row("r1")]).unwrap();
        journal.rotate().unwrap();
        assert_eq!((journal.epoch, journal.appended), (2, 0));
        assert_eq!(journal.append(&[row("r2")]).unwrap(), 1);
        let read = read(&path).unwrap().unwrap();
        assert_eq!(read.epoch, 2);
        assert_eq!(read.entries.len(), 1);
        std::fs::write(&path, "outpost budget jour").unwrap();
        assert!(read_none(&path));
        std::fs::remove_file(&path).unwrap();
        assert!(read_none(&path));
    }

    #[test]
    fn a_damaged_line_is_reported_and_the_rest_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let mut journal = Journal::create(&path, 3).unwrap();
        journal.append(&[row("r1")]).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"garbage\n")
            .unwrap();
        journal.append(&[row("r3")]).unwrap();
        let read = read(&path).unwrap().unwrap();
        assert_eq!(read.bad_lines, vec![3]);
        assert_eq!(read.entries.len(), 2);
    }

    fn read_none(path: &Path) -> bool {
        read(path).unwrap().is_none()
    }
}
