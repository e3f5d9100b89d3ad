//! Retention: delete day files older than `[audit] retention_days`.
//!
//! Three files are never deleted, whatever their age:
//! - a file on or after `protect_from`, the first day the OTLP shipper has
//!   not fully shipped (`None` when shipping is off): the local files are
//!   the shipper's spool;
//! - the newest day file, which holds the chain head: without it the next
//!   start would begin a new chain at seq 1;
//! - anything that is not a day file.
//!
//! Torn tails set aside by crash repair (`torn/<day file>.<offset>.bin`)
//! follow their day file's age.

use std::path::{Path, PathBuf};

use jiff::civil::Date;
use jiff::SignedDuration;

use super::day::{self, TORN_DIR};
use super::AuditError;

/// Delete day files (and torn tails) more than `keep_days` days before
/// `today`; `keep_days = 0` keeps everything. Returns what was deleted.
pub fn sweep(
    dir: &Path,
    keep_days: u32,
    today: Date,
    protect_from: Option<Date>,
) -> Result<Vec<PathBuf>, AuditError> {
    if keep_days == 0 {
        return Ok(Vec::new());
    }
    let files = day::list(dir).map_err(AuditError::io(dir))?;
    let newest = files.last().map(|f| f.day);
    // Civil dates have no DST: every day is 24 hours apart.
    let keep = SignedDuration::from_hours(24 * i64::from(keep_days));
    let expired = |day: Date| {
        today.duration_since(day) >= keep
            && protect_from.is_none_or(|p| day < p)
            && Some(day) != newest
    };
    let mut deleted = Vec::new();
    for file in files.iter().filter(|f| expired(f.day)) {
        std::fs::remove_file(&file.path).map_err(AuditError::io(&file.path))?;
        deleted.push(file.path.clone());
    }
    let torn = dir.join(TORN_DIR);
    if let Ok(entries) = std::fs::read_dir(&torn) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let day = name
                .to_str()
                .and_then(|n| n.get(..10))
                .and_then(day::parse_day);
            if day.is_some_and(expired) {
                let path = entry.path();
                std::fs::remove_file(&path).map_err(AuditError::io(&path))?;
                deleted.push(path);
            }
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(day: i8) -> Date {
        jiff::civil::date(2026, 6, day)
    }

    fn setup(days: &[i8]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(TORN_DIR)).unwrap();
        for &n in days {
            std::fs::write(day::path(dir.path(), d(n)), "x\n").unwrap();
        }
        std::fs::write(dir.path().join("hmac.key"), "k").unwrap();
        dir
    }

    fn left(dir: &Path) -> Vec<i8> {
        day::list(dir)
            .unwrap()
            .iter()
            .map(|f| f.day.day())
            .collect()
    }

    #[test]
    fn old_files_go_unless_unshipped() {
        let dir = setup(&[1, 2, 3, 4, 5, 10]);
        std::fs::write(
            dir.path().join(TORN_DIR).join("2026-06-01.jsonl.7.bin"),
            "t",
        )
        .unwrap();
        std::fs::write(
            dir.path().join(TORN_DIR).join("2026-06-05.jsonl.7.bin"),
            "t",
        )
        .unwrap();
        // Keep 7 days on the 10th: the 4th and later stay; the shipper has
        // not finished the 2nd.
        let deleted = sweep(dir.path(), 7, d(10), Some(d(2))).unwrap();
        assert_eq!(left(dir.path()), [2, 3, 4, 5, 10]);
        assert_eq!(deleted.len(), 2, "{deleted:?}");
        assert!(!dir
            .path()
            .join(TORN_DIR)
            .join("2026-06-01.jsonl.7.bin")
            .exists());
        assert!(dir
            .path()
            .join(TORN_DIR)
            .join("2026-06-05.jsonl.7.bin")
            .exists());
        // Shipping off: the protection goes.
        sweep(dir.path(), 7, d(10), None).unwrap();
        assert_eq!(left(dir.path()), [4, 5, 10]);
        assert!(dir.path().join("hmac.key").exists());
    }

    #[test]
    fn zero_keeps_everything_and_the_newest_file_always_stays() {
        let dir = setup(&[1, 2]);
        assert!(sweep(dir.path(), 0, d(30), None).unwrap().is_empty());
        assert_eq!(left(dir.path()), [1, 2]);
        sweep(dir.path(), 1, d(30), None).unwrap();
        assert_eq!(left(dir.path()), [2]);
    }
}
