//! Day files: `state_dir/audit/YYYY-MM-DD.jsonl`, one per UTC day at write
//! time, in chain order when sorted by day. This is the layout the OTLP
//! shipper and the CLI read; nothing else in the audit dir ends in `.jsonl`.
//!
//! A *day* is a [`time::Date`] (UTC). Torn tails moved aside at start live in
//! `torn/<day file>.<offset>.bin` (see `recover`).

use std::io;
use std::path::{Path, PathBuf};

use time::{Date, Month};

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

/// `YYYY-MM-DD`.
pub fn format_day(day: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

/// Parse a strict `YYYY-MM-DD`.
pub fn parse_day(text: &str) -> Option<Date> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let digits = |s: &str| -> Option<u32> {
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())
            .flatten()
    };
    let year = i32::try_from(digits(text.get(0..4)?)?).ok()?;
    let month = Month::try_from(u8::try_from(digits(text.get(5..7)?)?).ok()?).ok()?;
    let day = u8::try_from(digits(text.get(8..10)?)?).ok()?;
    Date::from_calendar_date(year, month, day).ok()
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
        let day = Date::from_calendar_date(2026, Month::March, 7).unwrap();
        assert_eq!(file_name(day), "2026-03-07.jsonl");
        assert_eq!(parse_file_name("2026-03-07.jsonl"), Some(day));
        for bad in [
            "2026-3-07.jsonl",
            "2026-02-30.jsonl",
            "2026-03-07.json",
            "2026-03-07.jsonl.tmp",
            "+026-03-07.jsonl",
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
}
