//! Verifying the audit log: every line, every link, every checkpoint.
//!
//! Day files in the range are read in day order, as one chain. Each line
//! must:
//! 1. end with a newline and parse as a record;
//! 2. be in canonical form (re-encoding the parsed record gives the same
//!    bytes, so nothing was added, reordered or re-spaced);
//! 3. hash to its `hash` (`SHA-256(prev || canonical)`);
//! 4. have `seq` one more than the record before (a deleted line or file is
//!    a jump), and `prev` equal to that record's `hash`;
//! 5. if it is a checkpoint, carry a `mac` that the HMAC key verifies over
//!    `prev`; only checkpoints carry a `mac`.
//!
//! And checkpoints must be no more than `checkpoint_every` records apart:
//! the writer puts one after every `checkpoint_every` records (and more
//! often on a timer), so a longer run means checkpoints were removed, or
//! `checkpoint_every` was lowered since those records were written.
//!
//! The first record checked is trusted to follow its `prev` when it is the
//! genesis (seq 1) or when its predecessor lies before the range (or was
//! deleted by retention); the summary says which. What this cannot catch
//! without the shipped copy: removal of the newest records after the last
//! checkpoint (a truncated tail), which the summary reports as uncovered.

use std::fmt;
use std::path::{Path, PathBuf};

use jiff::civil::Date;

use super::day;
use super::key::AuditKey;
use super::read::Lines;
use super::record::{AuditRecord, Kind, GENESIS};

/// What a successful verification covered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifySummary {
    /// Day files read, in order.
    pub files: Vec<PathBuf>,
    /// Records checked.
    pub records: u64,
    /// Of which request records.
    pub requests: u64,
    /// Of which checkpoints (each MAC verified).
    pub checkpoints: u64,
    /// Of which repair records (start-up found something; read them).
    pub repairs: u64,
    /// Of which managed-policy sync records.
    pub syncs: u64,
    /// seq of the first and last record checked.
    pub seqs: Option<(u64, u64)>,
    /// The first record checked is the genesis (seq 1).
    pub from_genesis: bool,
    /// Records after the last checkpoint: covered by hashes only (the
    /// writer checkpoints them within a minute, or at its next start).
    pub uncovered: u64,
}

impl fmt::Display for VerifySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some((first, last)) = self.seqs else {
            return write!(f, "ok: no audit records");
        };
        write!(
            f,
            "ok: {} records (seq {first}..={last}) in {} file{}: {} requests, {} checkpoints, \
             {} repairs",
            self.records,
            self.files.len(),
            if self.files.len() == 1 { "" } else { "s" },
            self.requests,
            self.checkpoints,
            self.repairs
        )?;
        if self.syncs > 0 {
            write!(f, ", {} syncs", self.syncs)?;
        }
        if !self.from_genesis {
            write!(
                f,
                "; the chain enters the range at seq {first} (earlier records are before the \
                 range or were deleted by retention)"
            )?;
        }
        if self.uncovered > 0 {
            write!(
                f,
                "; the last {} record{} not yet under a checkpoint",
                self.uncovered,
                if self.uncovered == 1 { " is" } else { "s are" }
            )?;
        }
        Ok(())
    }
}

/// The first record that failed, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: seq {seq}: {reason}", file.display())]
pub struct Broken {
    /// The day file.
    pub file: PathBuf,
    /// 1-based line number in it (0: the file itself).
    pub line: u64,
    /// The record's seq, or the seq expected there when the line cannot be
    /// read.
    pub seq: u64,
    /// What failed.
    pub reason: String,
}

/// Verify the day files in `dir` from `from` to `to` (inclusive, either
/// open) with `key`, allowing at most `checkpoint_every` records between
/// checkpoints.
pub fn verify(
    dir: &Path,
    key: &AuditKey,
    from: Option<Date>,
    to: Option<Date>,
    checkpoint_every: u64,
) -> Result<VerifySummary, Broken> {
    let files = day::list(dir).map_err(|e| Broken {
        file: dir.to_path_buf(),
        line: 0,
        seq: 0,
        reason: format!("cannot list the audit directory: {e}"),
    })?;
    let mut check = Checker {
        key,
        max_gap: checkpoint_every.max(1),
        previous: None,
        since_checkpoint: 0,
        summary: VerifySummary::default(),
    };
    for file in day::in_range(files, from, to) {
        check.file(&file.path)?;
        check.summary.files.push(file.path);
    }
    check.summary.uncovered = check.since_checkpoint;
    Ok(check.summary)
}

/// Where the chain stands after the last record checked.
struct Previous {
    seq: u64,
    hash: String,
    file: PathBuf,
    line: u64,
}

struct Checker<'a> {
    key: &'a AuditKey,
    max_gap: u64,
    previous: Option<Previous>,
    since_checkpoint: u64,
    summary: VerifySummary,
}

impl Checker<'_> {
    fn file(&mut self, path: &Path) -> Result<(), Broken> {
        let expected_seq = self.previous.as_ref().map_or(0, |p| p.seq + 1);
        let broken = |line: u64, seq: u64, reason: String| Broken {
            file: path.to_path_buf(),
            line,
            seq,
            reason,
        };
        let mut lines =
            Lines::open(path).map_err(|e| broken(0, expected_seq, format!("cannot read: {e}")))?;
        loop {
            let expected_seq = self.previous.as_ref().map_or(0, |p| p.seq + 1);
            let next = lines
                .next_line()
                .map_err(|e| broken(0, expected_seq, format!("cannot read: {e}")))?;
            let Some((number, line)) = next else {
                return Ok(());
            };
            if !line.terminated {
                return Err(broken(
                    number,
                    expected_seq,
                    "the last line is incomplete (no newline): a write in progress, or torn \
                     by a crash (the agent moves it aside when it next starts)"
                        .into(),
                ));
            }
            let record: AuditRecord = serde_json::from_slice(&line.bytes).map_err(|e| {
                broken(
                    number,
                    expected_seq,
                    format!("not a valid audit record: {e}"),
                )
            })?;
            self.record(&record, &line.bytes)
                .map_err(|reason| broken(number, record.seq, reason))?;
            self.previous = Some(Previous {
                seq: record.seq,
                hash: record.hash,
                file: path.to_path_buf(),
                line: number,
            });
        }
    }

    /// Check one parsed record against its bytes and the chain so far.
    fn record(&mut self, record: &AuditRecord, bytes: &[u8]) -> Result<(), String> {
        if record.to_line() != bytes {
            return Err("not in canonical form: the line was edited".into());
        }
        if record.compute_hash() != record.hash {
            return Err("hash does not match the record's contents: the record was edited".into());
        }
        match &self.previous {
            None => {
                if record.seq == 0 || (record.seq == 1 && record.prev != GENESIS) {
                    return Err(format!(
                        "the first record of the chain must have seq 1 and prev {GENESIS}"
                    ));
                }
                self.summary.from_genesis = record.seq == 1;
            }
            Some(previous) => {
                let expected = previous.seq + 1;
                if record.seq != expected {
                    let what = if record.seq > expected {
                        format!(
                            "{} record(s) missing after {}:{} (seq {})",
                            record.seq - expected,
                            previous.file.display(),
                            previous.line,
                            previous.seq
                        )
                    } else {
                        "records out of order or repeated".to_string()
                    };
                    return Err(format!("expected seq {expected}: {what}"));
                }
                if record.prev != previous.hash {
                    return Err(format!(
                        "prev does not match the hash of the record before it ({}:{})",
                        previous.file.display(),
                        previous.line
                    ));
                }
            }
        }
        match (record.event.kind, &record.mac) {
            (Kind::Checkpoint, Some(mac)) => {
                if !self.key.verify_checkpoint(&record.prev, mac) {
                    return Err(
                        "checkpoint MAC does not verify with this device's audit key: records \
                         before it were changed, or the key was replaced"
                            .into(),
                    );
                }
            }
            (Kind::Checkpoint, None) => return Err("checkpoint without a mac".into()),
            (_, Some(_)) => return Err("a mac on a record that is not a checkpoint".into()),
            (_, None) => {}
        }
        self.count(record)
    }

    fn count(&mut self, record: &AuditRecord) -> Result<(), String> {
        let summary = &mut self.summary;
        summary.records += 1;
        summary.seqs = Some((summary.seqs.map_or(record.seq, |s| s.0), record.seq));
        match record.event.kind {
            Kind::Checkpoint => {
                summary.checkpoints += 1;
                self.since_checkpoint = 0;
                return Ok(());
            }
            Kind::Request => summary.requests += 1,
            Kind::Repair => summary.repairs += 1,
            Kind::Sync => summary.syncs += 1,
        }
        self.since_checkpoint += 1;
        if self.since_checkpoint > self.max_gap {
            return Err(format!(
                "{} records since the last checkpoint, at most {} expected: a checkpoint was \
                 removed (or checkpoint_every was lowered since these were written)",
                self.since_checkpoint, self.max_gap
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::sample_event;

    const KEY: [u8; 32] = [9; 32];

    /// Write a chain of `n` requests with a checkpoint after every
    /// `every`, split over two day files; returns the files' lines.
    fn chain(dir: &Path, n: u64, every: u64) -> (PathBuf, PathBuf) {
        let key = AuditKey::from_bytes(KEY);
        let mut prev = GENESIS.to_string();
        let mut seq = 0;
        let mut out: Vec<Vec<u8>> = Vec::new();
        let mut push = |event, mac: Option<String>, prev: &mut String| {
            seq += 1;
            let record = AuditRecord::chain(seq, event, mac, prev);
            *prev = record.hash.clone();
            let mut line = record.to_line();
            line.push(b'\n');
            out.push(line);
        };
        for i in 1..=n {
            push(sample_event(), None, &mut prev);
            if i % every == 0 {
                let mut cp = sample_event();
                cp.kind = Kind::Checkpoint;
                let mac = key.checkpoint_mac(&prev);
                push(cp, Some(mac), &mut prev);
            }
        }
        let half = out.len() / 2;
        let a = dir.join("2026-11-24.jsonl");
        let b = dir.join("2026-11-25.jsonl");
        std::fs::write(&a, out[..half].concat()).unwrap();
        std::fs::write(&b, out[half..].concat()).unwrap();
        (a, b)
    }

    fn key() -> AuditKey {
        AuditKey::from_bytes(KEY)
    }

    fn rewrite(path: &Path, edit: impl FnOnce(&mut Vec<String>)) {
        let text = std::fs::read_to_string(path).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        edit(&mut lines);
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
    }

    #[test]
    fn intact_chain_across_files_verifies() {
        let dir = tempfile::tempdir().unwrap();
        chain(dir.path(), 10, 4);
        let summary = verify(dir.path(), &key(), None, None, 4).unwrap();
        assert_eq!(summary.records, 12);
        assert_eq!(summary.requests, 10);
        assert_eq!(summary.checkpoints, 2);
        assert_eq!(summary.files.len(), 2);
        assert!(summary.from_genesis);
        assert_eq!(summary.uncovered, 2);
        assert_eq!(summary.seqs, Some((1, 12)));
        let text = summary.to_string();
        assert!(
            text.contains("12 records") && text.contains("last 2 records"),
            "{text}"
        );
    }

    #[test]
    fn a_flipped_byte_names_file_line_and_seq() {
        let dir = tempfile::tempdir().unwrap();
        let (_, b) = chain(dir.path(), 10, 4);
        // Line 2 of the second file is seq 8; flip one byte of its model.
        let mut bytes = std::fs::read(&b).unwrap();
        let line_start = bytes.iter().position(|&c| c == b'\n').unwrap() + 1;
        let at = line_start + find(&bytes[line_start..], b"gpt-4o") + 4;
        bytes[at] ^= 0x01;
        std::fs::write(&b, bytes).unwrap();
        let broken = verify(dir.path(), &key(), None, None, 4).unwrap_err();
        assert_eq!(broken.file, b);
        assert_eq!(broken.line, 2);
        assert_eq!(broken.seq, 8);
        assert!(broken.reason.contains("hash does not match"), "{broken}");
        assert!(broken
            .to_string()
            .starts_with(&format!("{}:2: seq 8:", b.display())));
    }

    #[test]
    fn a_flipped_byte_that_breaks_the_json_still_names_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let (a, _) = chain(dir.path(), 10, 4);
        rewrite(&a, |lines| lines[2] = lines[2].replacen('{', "[", 1));
        let broken = verify(dir.path(), &key(), None, None, 4).unwrap_err();
        assert_eq!((broken.line, broken.seq), (3, 3), "{broken}");
        assert!(
            broken.reason.contains("not a valid audit record"),
            "{broken}"
        );
    }

    #[test]
    fn recomputed_hashes_do_not_fool_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let (a, _) = chain(dir.path(), 10, 4);
        // Edit seq 2 and re-hash everything after it, as someone who can
        // edit the files but lacks the key would.
        let text = std::fs::read_to_string(&a).unwrap();
        let mut records: Vec<AuditRecord> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        records[1].event.status = 204;
        for i in 1..records.len() {
            records[i].prev = records[i - 1].hash.clone();
            records[i].hash = records[i].compute_hash();
        }
        let out: Vec<String> = records
            .iter()
            .map(|r| String::from_utf8(r.to_line()).unwrap())
            .collect();
        std::fs::write(&a, out.join("\n") + "\n").unwrap();
        let broken = verify(
            dir.path(),
            &key(),
            None,
            Some(day::parse_day("2026-11-24").unwrap()),
            4,
        )
        .unwrap_err();
        assert_eq!((broken.line, broken.seq), (5, 5), "{broken}");
        assert!(broken.reason.contains("checkpoint MAC"), "{broken}");
    }

    #[test]
    fn a_deleted_line_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let (a, _) = chain(dir.path(), 10, 4);
        rewrite(&a, |lines| {
            lines.remove(1);
        });
        let broken = verify(dir.path(), &key(), None, None, 4).unwrap_err();
        assert_eq!((broken.line, broken.seq), (2, 3), "{broken}");
        assert!(broken.reason.contains("1 record(s) missing"), "{broken}");
    }

    #[test]
    fn a_removed_checkpoint_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let (a, _) = chain(dir.path(), 10, 4);
        // Remove the checkpoint (line 5) and re-link the chain around it.
        let text = std::fs::read_to_string(&a).unwrap();
        let mut records: Vec<AuditRecord> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        records.remove(4);
        let (b_text, b) = {
            let b = dir.path().join("2026-11-25.jsonl");
            (std::fs::read_to_string(&b).unwrap(), b)
        };
        let mut all: Vec<AuditRecord> = records;
        let split = all.len();
        all.extend(
            b_text
                .lines()
                .map(|l| serde_json::from_str::<AuditRecord>(l).unwrap()),
        );
        for i in 4..all.len() {
            all[i].seq = all[i - 1].seq + 1;
            all[i].prev = all[i - 1].hash.clone();
            if all[i].event.kind == Kind::Checkpoint {
                all[i].mac = Some(key().checkpoint_mac(&all[i].prev));
            }
            all[i].hash = all[i].compute_hash();
        }
        let lines = |rs: &[AuditRecord]| -> String {
            rs.iter()
                .map(|r| String::from_utf8(r.to_line()).unwrap() + "\n")
                .collect()
        };
        std::fs::write(&a, lines(&all[..split])).unwrap();
        std::fs::write(&b, lines(&all[split..])).unwrap();
        // (Re-MACing the later checkpoint needed the key; even so, the gap
        // gives the removal away.)
        let broken = verify(dir.path(), &key(), None, None, 4).unwrap_err();
        assert!(
            broken.reason.contains("since the last checkpoint"),
            "{broken}"
        );
        assert_eq!(broken.seq, 5);
    }

    #[test]
    fn a_range_trusts_its_entry_point_only() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = chain(dir.path(), 10, 4);
        let day2 = day::parse_day("2026-11-25").unwrap();
        let summary = verify(dir.path(), &key(), Some(day2), None, 4).unwrap();
        assert!(!summary.from_genesis);
        assert_eq!(summary.files, vec![b.clone()]);
        assert!(
            summary.to_string().contains("enters the range at seq 7"),
            "{summary}"
        );
        // The first file alone, and a missing genesis.
        std::fs::remove_file(&b).unwrap();
        rewrite(&a, |lines| {
            lines.remove(0);
        });
        let summary = verify(dir.path(), &key(), None, None, 4).unwrap();
        assert_eq!(summary.seqs, Some((2, 6)));
    }

    #[test]
    fn a_torn_or_padded_line_fails() {
        let dir = tempfile::tempdir().unwrap();
        let (_, b) = chain(dir.path(), 4, 4);
        let mut bytes = std::fs::read(&b).unwrap();
        bytes.extend_from_slice(b"{\"seq\":");
        std::fs::write(&b, &bytes).unwrap();
        let broken = verify(dir.path(), &key(), None, None, 4).unwrap_err();
        assert!(broken.reason.contains("incomplete"), "{broken}");
        let (a, _) = chain(dir.path(), 4, 4);
        rewrite(&a, |lines| {
            lines[0] = lines[0].replacen("{\"seq\"", "{ \"seq\"", 1)
        });
        let broken = verify(dir.path(), &key(), None, None, 4).unwrap_err();
        assert!(broken.reason.contains("canonical"), "{broken}");
    }

    fn find(hay: &[u8], needle: &[u8]) -> usize {
        hay.windows(needle.len()).position(|w| w == needle).unwrap()
    }
}
