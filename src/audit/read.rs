//! Reading day files back: line by line forwards (verify, export, the
//! shipper), the last lines backwards (tail, crash repair), and following a
//! log as it grows across day rollover (`tail -f`).
//!
//! A *line* is the bytes between newlines, without the newline. The last
//! line of a file may be *unterminated* (no newline yet): a write in
//! progress, or a tail torn by a crash. Readers that hand records on never
//! hand on an unterminated line as if it were complete.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use jiff::civil::Date;
use jiff::Timestamp;

use super::day::{self, DayFile};
use super::record::AuditRecord;

/// Lines longer than this are never records (a record with full content is
/// bounded by `[audit] max_content_chars`); readers skip rather than load them.
pub const MAX_LINE_BYTES: u64 = 64 << 20;

/// Chunk size for reading backwards.
const BACK_CHUNK: u64 = 64 << 10;

/// One line of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Byte offset of its first byte.
    pub offset: u64,
    /// Its bytes, without the newline.
    pub bytes: Vec<u8>,
    /// It ends with a newline.
    pub terminated: bool,
}

/// Where a line is, found while reading backwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineSpan {
    /// Byte offset of its first byte.
    pub offset: u64,
    /// Length without the newline.
    pub len: u64,
    /// It ends with a newline.
    pub terminated: bool,
}

/// Forward iterator over the lines of one file, with 1-based line numbers.
pub struct Lines<R> {
    reader: BufReader<R>,
    offset: u64,
    number: u64,
}

impl Lines<File> {
    /// The lines of the file at `path`.
    pub fn open(path: &Path) -> io::Result<Lines<File>> {
        Ok(Lines::new(File::open(path)?))
    }
}

impl<R: Read> Lines<R> {
    /// The lines of `reader`, from its current position (taken as offset 0).
    pub fn new(reader: R) -> Lines<R> {
        Lines {
            reader: BufReader::with_capacity(256 << 10, reader),
            offset: 0,
            number: 0,
        }
    }

    /// The next line and its 1-based number, or `None` at the end.
    pub fn next_line(&mut self) -> io::Result<Option<(u64, Line)>> {
        let mut bytes = Vec::new();
        let n = self.reader.read_until(b'\n', &mut bytes)?;
        if n == 0 {
            return Ok(None);
        }
        let offset = self.offset;
        self.offset += n as u64;
        self.number += 1;
        let terminated = bytes.last() == Some(&b'\n');
        if terminated {
            bytes.pop();
        }
        Ok(Some((
            self.number,
            Line {
                offset,
                bytes,
                terminated,
            },
        )))
    }
}

/// Iterator over the lines of a file from the last to the first, as spans
/// (read a span's bytes with [`read_span`]). Only `len` bytes are
/// considered, so a caller can pin the end while the file grows.
pub struct LinesBackwards<'a> {
    file: &'a File,
    /// End (exclusive, before its newline) of the next line to yield.
    end: u64,
    terminated: bool,
    done: bool,
}

impl<'a> LinesBackwards<'a> {
    /// The lines of the first `len` bytes of `file`, last first.
    pub fn new(file: &'a File, len: u64) -> io::Result<LinesBackwards<'a>> {
        let terminated = len > 0 && byte_at(file, len - 1)? == b'\n';
        Ok(LinesBackwards {
            file,
            end: if terminated { len - 1 } else { len },
            terminated,
            done: len == 0,
        })
    }

    /// The previous line, or `None` before the first.
    pub fn next_span(&mut self) -> io::Result<Option<LineSpan>> {
        if self.done {
            return Ok(None);
        }
        let start = match newline_before(self.file, self.end)? {
            Some(at) => at + 1,
            None => 0,
        };
        let span = LineSpan {
            offset: start,
            len: self.end - start,
            terminated: self.terminated,
        };
        if start == 0 {
            self.done = true;
        } else {
            self.end = start - 1;
            self.terminated = true;
        }
        Ok(Some(span))
    }
}

fn byte_at(mut file: &File, at: u64) -> io::Result<u8> {
    let mut b = [0u8; 1];
    file.seek(SeekFrom::Start(at))?;
    file.read_exact(&mut b)?;
    Ok(b[0])
}

/// Offset of the last `\n` before `end`.
fn newline_before(mut file: &File, end: u64) -> io::Result<Option<u64>> {
    let mut search_end = end;
    let mut buf = vec![0u8; BACK_CHUNK as usize];
    while search_end > 0 {
        let start = search_end.saturating_sub(BACK_CHUNK);
        let chunk = &mut buf[..(search_end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(i) = memchr::memrchr(b'\n', chunk) {
            return Ok(Some(start + i as u64));
        }
        search_end = start;
    }
    Ok(None)
}

/// The bytes of `span` (without its newline); an error for spans longer
/// than [`MAX_LINE_BYTES`].
pub fn read_span(mut file: &File, span: LineSpan) -> io::Result<Vec<u8>> {
    let len = usize::try_from(span.len)
        .ok()
        .filter(|&n| n as u64 <= MAX_LINE_BYTES)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "line too long for a record"))?;
    let mut bytes = vec![0u8; len];
    file.seek(SeekFrom::Start(span.offset))?;
    file.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// A record parsed from a day file, with where it came from.
#[derive(Debug, Clone)]
pub struct Found {
    /// The file.
    pub path: PathBuf,
    /// The record.
    pub record: AuditRecord,
    /// The line as stored (for export: exactly the hashed bytes).
    pub line: Vec<u8>,
}

/// The last `n` complete records across day files, oldest first, and where
/// the newest file ended when they were read (so a follower can continue
/// exactly there). Lines that do not parse are skipped.
pub fn last_records(dir: &Path, n: usize) -> io::Result<(Vec<Found>, Option<Position>)> {
    let files = day::list(dir)?;
    let mut found: Vec<Found> = Vec::new();
    let mut position = None;
    for (i, file) in files.iter().enumerate().rev() {
        let handle = File::open(&file.path)?;
        let len = handle.metadata()?.len();
        let mut lines = LinesBackwards::new(&handle, len)?;
        while found.len() < n {
            let Some(span) = lines.next_span()? else {
                break;
            };
            if !span.terminated {
                continue; // a write in progress: not yet a record
            }
            if span.len > MAX_LINE_BYTES {
                continue;
            }
            let line = read_span(&handle, span)?;
            if let Ok(record) = serde_json::from_slice::<AuditRecord>(&line) {
                found.push(Found {
                    path: file.path.clone(),
                    record,
                    line,
                });
            }
        }
        if i == files.len() - 1 {
            // Follow from the end of the last complete line, so a write in
            // progress is read whole later.
            let complete = match len {
                0 => 0,
                _ if byte_at(&handle, len - 1)? == b'\n' => len,
                _ => newline_before(&handle, len)?.map_or(0, |at| at + 1),
            };
            position = Some(Position {
                day: file.day,
                offset: complete,
            });
        }
        if found.len() >= n {
            break;
        }
    }
    found.reverse();
    Ok((found, position))
}

/// A place in the log: a day file and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The day file.
    pub day: Date,
    /// Offset of the next unread byte.
    pub offset: u64,
}

/// Follows the log as it grows, across day files (`tail -f`, by polling).
pub struct Follower {
    dir: PathBuf,
    at: Option<Position>,
}

impl Follower {
    /// Follow from `at` (`None`: from the start of the first day file that
    /// appears).
    pub fn new(dir: &Path, at: Option<Position>) -> Follower {
        Follower {
            dir: dir.to_path_buf(),
            at,
        }
    }

    /// Complete lines written since the last poll, in order.
    pub fn poll(&mut self) -> io::Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        loop {
            let files = day::list(&self.dir)?;
            let Some(at) = self.at else {
                match files.first() {
                    Some(first) => {
                        self.at = Some(Position {
                            day: first.day,
                            offset: 0,
                        });
                        continue;
                    }
                    None => return Ok(out),
                }
            };
            self.read_complete(&day::path(&self.dir, at.day), &mut out)?;
            let Some(next) = files.iter().find(|f| f.day > at.day) else {
                return Ok(out);
            };
            // The writer finishes a day before it starts the next, but it
            // may have appended between our read and our listing: drain the
            // old day once more before moving on.
            self.read_complete(&day::path(&self.dir, at.day), &mut out)?;
            self.at = Some(Position {
                day: next.day,
                offset: 0,
            });
        }
    }

    /// Append the complete lines after the current position to `out`.
    fn read_complete(&mut self, path: &Path, out: &mut Vec<Vec<u8>>) -> io::Result<()> {
        let Some(at) = self.at.as_mut() else {
            return Ok(());
        };
        let mut file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        if len < at.offset {
            // Truncated under us (crash repair): start over at its new end.
            at.offset = len;
            return Ok(());
        }
        file.seek(SeekFrom::Start(at.offset))?;
        let mut lines = Lines::new(file.take(len - at.offset));
        while let Some((_, line)) = lines.next_line()? {
            if !line.terminated {
                break;
            }
            at.offset += line.bytes.len() as u64 + 1;
            out.push(line.bytes);
        }
        Ok(())
    }
}

/// Calls `each` for every record whose `ts` is at or after `since`, in
/// chain order. Records are in the file of the day they were written,
/// which can be a little after their `ts` (a request that ran past
/// midnight), so the file of the day before `since` is read too. Lines
/// that do not parse go to `bad` (file, line number).
pub fn records_since(
    dir: &Path,
    since: Timestamp,
    mut each: impl FnMut(Found) -> io::Result<()>,
    mut bad: impl FnMut(&Path, u64),
) -> io::Result<()> {
    let since_day = day::of(since);
    let first_day = since_day.yesterday().unwrap_or(since_day);
    for file in day::in_range(day::list(dir)?, Some(first_day), None) {
        read_file_records(&file, &mut |number, line| {
            if !line.terminated {
                return Ok(());
            }
            match serde_json::from_slice::<AuditRecord>(&line.bytes) {
                Ok(record) => {
                    let at = record.event.ts.parse::<Timestamp>();
                    if at.is_ok_and(|at| at >= since) {
                        each(Found {
                            path: file.path.clone(),
                            record,
                            line: line.bytes,
                        })?;
                    }
                }
                Err(_) => bad(&file.path, number),
            }
            Ok(())
        })?;
    }
    Ok(())
}

fn read_file_records(
    file: &DayFile,
    each: &mut dyn FnMut(u64, Line) -> io::Result<()>,
) -> io::Result<()> {
    let mut lines = Lines::open(&file.path)?;
    while let Some((number, line)) = lines.next_line()? {
        each(number, line)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn spans(text: &[u8]) -> Vec<(u64, Vec<u8>, bool)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, text).unwrap();
        let file = File::open(&path).unwrap();
        let mut back = LinesBackwards::new(&file, text.len() as u64).unwrap();
        let mut out = Vec::new();
        while let Some(span) = back.next_span().unwrap() {
            out.push((
                span.offset,
                read_span(&file, span).unwrap(),
                span.terminated,
            ));
        }
        out
    }

    #[test]
    fn backwards_spans_cover_every_line() {
        assert!(spans(b"").is_empty());
        assert_eq!(spans(b"abc\n"), vec![(0, b"abc".to_vec(), true)]);
        assert_eq!(
            spans(b"a\n\nbc\nde"),
            vec![
                (6, b"de".to_vec(), false),
                (3, b"bc".to_vec(), true),
                (2, b"".to_vec(), true),
                (0, b"a".to_vec(), true)
            ]
        );
        // Lines longer than one backwards chunk.
        let long = vec![b'x'; (BACK_CHUNK as usize) * 2 + 5];
        let mut text = long.clone();
        text.push(b'\n');
        text.extend_from_slice(b"y\n");
        let got = spans(&text);
        assert_eq!(got[0], (long.len() as u64 + 1, b"y".to_vec(), true));
        assert_eq!(got[1], (0, long, true));
    }

    #[test]
    fn last_records_stop_before_a_line_in_progress() {
        use crate::audit::record::{sample_event, GENESIS};
        let dir = tempfile::tempdir().unwrap();
        let d1 = jiff::civil::date(2026, 5, 1);
        let record = AuditRecord::chain(1, sample_event(), None, GENESIS);
        let mut text = record.to_line();
        text.push(b'\n');
        let complete = text.len() as u64;
        text.extend_from_slice(b"{\"seq\":2,");
        std::fs::write(day::path(dir.path(), d1), &text).unwrap();
        for n in [0, 5] {
            let (found, position) = last_records(dir.path(), n).unwrap();
            assert_eq!(found.len(), n.min(1));
            assert_eq!(
                position,
                Some(Position {
                    day: d1,
                    offset: complete
                })
            );
        }
    }

    #[test]
    fn follower_reads_complete_lines_across_days() {
        let dir = tempfile::tempdir().unwrap();
        let d1 = jiff::civil::date(2026, 5, 1);
        let d2 = d1.tomorrow().unwrap();
        let mut f1 = std::fs::File::create(day::path(dir.path(), d1)).unwrap();
        f1.write_all(b"one\ntw").unwrap();
        let mut follower = Follower::new(dir.path(), None);
        assert_eq!(follower.poll().unwrap(), vec![b"one".to_vec()]);
        assert!(follower.poll().unwrap().is_empty());
        f1.write_all(b"o\n").unwrap();
        std::fs::write(day::path(dir.path(), d2), b"three\n").unwrap();
        assert_eq!(
            follower.poll().unwrap(),
            vec![b"two".to_vec(), b"three".to_vec()]
        );
        let mut f2 = std::fs::OpenOptions::new()
            .append(true)
            .open(day::path(dir.path(), d2))
            .unwrap();
        f2.write_all(b"four\n").unwrap();
        assert_eq!(follower.poll().unwrap(), vec![b"four".to_vec()]);
    }
}
