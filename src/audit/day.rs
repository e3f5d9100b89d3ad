//! Day files: `state_dir/audit/YYYY-MM-DD.jsonl`, one per UTC day at write
//! time, in chain order when sorted by day. This is the layout the OTLP
//! shipper and the CLI read; nothing else in the audit dir ends in `.jsonl`.
//!
//! A *day* is a [`jiff::civil::Date`], the UTC date of a write ([`of`]).
//! Torn tails moved aside at start live in `torn/<day file>.<offset>.bin`
//! (see `recover`).

use std::io;
use std::path::{Path, PathBuf};

use jiff::civil::Date;
use jiff::tz::Offset;
use jiff::Timestamp;

/// Day-file extension.
pub const EXTENSION: &str = "jsonl";

/// Subdirectory for torn tails moved aside at start.
pub const TORN_DIR: &str = "torn";

/// One day file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayFile {
    /// Its day.
    pub day: Date,
    /// Its path.
    pub path: PathBuf,
}

/// The UTC day of `t`: which day file a record written at `t` goes to.
pub fn of(t: Timestamp) -> Date {
    Offset::UTC.to_datetime(t).date()
}

/// `YYYY-MM-DD` (jiff's ISO 8601 date; four-digit years through 9999).
pub fn format_day(day: Date) -> String {
    day.to_string()
}

/// Parse a strict `YYYY-MM-DD`: exactly what [`format_day`] writes, so a
/// name read from the directory is the name the writer and the shipper's
/// cursor use for that day. jiff alone also takes `20260307` and
/// `+002026-03-07`; those are not day files.
pub fn parse_day(text: &str) -> Option<Date> {
    let day: Date = text.parse().ok()?;
    (format_day(day) == text).then_some(day)
}

/// `YYYY-MM-DD.jsonl`.
pub fn file_name(day: Date) -> String {
    format!("{}.{EXTENSION}", format_day(day))
}

/// The day file for `day` in `dir`.
pub fn path(dir: &Path, day: Date) -> PathBuf {
    dir.join(file_name(day))
}

/// The day a file name stands for, if it is a day file's name.
pub fn parse_file_name(name: &str) -> Option<Date> {
    parse_day(name.strip_suffix(EXTENSION)?.strip_suffix('.')?)
}

/// Every day file in `dir`, oldest first; empty when `dir` does not exist.
pub fn list(dir: &Path) -> io::Result<Vec<DayFile>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Some(day) = entry.file_name().to_str().and_then(parse_file_name) else {
            continue;
        };
        if entry.file_type()?.is_file() {
            files.push(DayFile {
                day,
                path: entry.path(),
            });
        }
    }
    files.sort_by_key(|f| f.day);
    Ok(files)
}

/// Day files with `from <= day <= to` (either bound open).
pub fn in_range(files: Vec<DayFile>, from: Option<Date>, to: Option<Date>) -> Vec<DayFile> {
    files
        .into_iter()
        .filter(|f| from.is_none_or(|d| f.day >= d) && to.is_none_or(|d| f.day <= d))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_junk_is_ignored() {
        let day = jiff::civil::date(2026, 3, 7);
        assert_eq!(file_name(day), "2026-03-07.jsonl");
        assert_eq!(file_name(jiff::civil::date(999, 1, 2)), "0999-01-02.jsonl");
        assert_eq!(parse_file_name("2026-03-07.jsonl"), Some(day));
        for bad in [
            "2026-3-07.jsonl",
            "2026-02-30.jsonl",
            "2026-03-07.json",
            "2026-03-07.jsonl.tmp",
            "+026-03-07.jsonl",
            "+002026-03-07.jsonl",
            "20260307.jsonl",
            "2026-03-07T00.jsonl",
            "2026-03-07 .jsonl",
            "2026-03-07Z.jsonl",
            "hmac.key",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn listing_is_in_day_order() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "2026-01-10.jsonl",
            "2025-12-31.jsonl",
            "hmac.key",
            "2026-01-02.jsonl",
        ] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        std::fs::create_dir(dir.path().join("2026-01-05.jsonl")).unwrap();
        let names: Vec<String> = list(dir.path())
            .unwrap()
            .iter()
            .map(|f| format_day(f.day))
            .collect();
        assert_eq!(names, ["2025-12-31", "2026-01-02", "2026-01-10"]);
        assert!(list(&dir.path().join("missing")).unwrap().is_empty());
    }

    #[test]
    fn a_write_goes_to_its_utc_day() {
        let t: Timestamp = "2026-11-24T23:59:59.999999999Z".parse().unwrap();
        assert_eq!(format_day(of(t)), "2026-11-24");
        let t: Timestamp = "2026-11-25T00:30:00+01:00".parse().unwrap();
        assert_eq!(format_day(of(t)), "2026-11-24");
    }
}
