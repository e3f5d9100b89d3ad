//! An incremental server-sent events parser (WHATWG HTML, "Parsing an event
//! stream") that keeps every event's raw bytes.
//!
//! The proxy reads a streaming response in whatever chunks the network
//! delivers, which may split an event anywhere: inside a line, inside a
//! `\r\n`, inside a UTF-8 sequence. [`SseParser::push`] takes those chunks and
//! returns each *block* as it completes. A block is everything up to and
//! including the blank line that ends it: its field lines, comments, and the
//! line ends as sent. Every input byte belongs to exactly one block's
//! [`SseEvent::raw`], so a proxy that forwards the raw bytes of blocks it does
//! not change forwards the stream byte-identical, keep-alive comments
//! included.
//!
//! Words, after the spec: a *field* line is `name: value` (one optional space
//! after the colon is dropped) or a bare `name`; a line starting with `:` is a
//! *comment*; lines end in `\n`, `\r\n` or `\r`. A block is *dispatched* (a
//! real event) when it had at least one `data` field; per the spec,
//! `data`-less blocks are not events, but they are still returned (with
//! [`SseEvent::data`] `None`) because their bytes must reach the client.
//!
//! Deviations, both on purpose:
//! - A `\r` that ends a blank line dispatches at once; if the next chunk
//!   starts with `\n`, that `\n` (the second half of a split `\r\n`) is the
//!   first byte of the *next* block's `raw`. Waiting for the next chunk instead
//!   would stall an event whose stream pauses right there.
//! - Size is bounded: when a block's raw bytes exceed the parser's limit
//!   (default [`DEFAULT_MAX_EVENT_BYTES`]) the parser *fails*: that `push`
//!   returns the blocks completed before the overflow, [`SseParser::error`]
//!   says why, and every later `push` returns nothing and `finish` `None`. A
//!   hostile or broken upstream that never sends a blank line cannot grow our
//!   memory. The caller must check `error()` and end the stream (with
//!   [`stream_error_event`](super::stream_error_event)); passing the rest
//!   through unparsed would let output reach the client unscanned, and a
//!   truncated event would be worse than none.

use bytes::Bytes;

/// The default bound on one block's raw size. The largest legitimate events
/// are Responses' `response.completed`, which repeat the whole output; 16 MiB
/// is far above any real one.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One block of an event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if the block set one to a non-empty value (`None`
    /// means the default type, `message`).
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`; `None` if the block had no `data`
    /// field (a comment, keep-alive or `retry`-only block: not an event).
    pub data: Option<String>,
    /// The `id:` field set in this block (ids containing NUL are ignored, as
    /// the spec says).
    pub id: Option<String>,
    /// The `retry:` field, if it was all ASCII digits.
    pub retry: Option<u64>,
    /// Every byte of the block as received, line ends and blank line included.
    /// May begin with a lone `\n` completing the previous block's `\r\n` (see
    /// the module doc). A byte-order mark opening the stream is a block of
    /// its own.
    pub raw: Bytes,
}

impl SseEvent {
    /// The event type: the `event` field, or `message`.
    pub fn event_type(&self) -> &str {
        self.event.as_deref().unwrap_or("message")
    }

    /// True when the spec would dispatch this block as an event (it has data).
    pub fn is_dispatched(&self) -> bool {
        self.data.is_some()
    }
}

/// Why a stream cannot be parsed further.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// One block grew past the parser's limit without ending.
    #[error("server-sent event larger than {limit} bytes")]
    EventTooLarge {
        /// The limit in force.
        limit: usize,
    },
}

/// The fields of the block being read.
#[derive(Debug, Default)]
struct Fields {
    event: Option<String>,
    data: Option<String>,
    id: Option<String>,
    retry: Option<u64>,
}

impl Fields {
    /// Applies one complete, non-blank line (without its line end).
    fn apply(&mut self, line: &[u8]) {
        if line.first() == Some(&b':') {
            return;
        }
        let (name, value) = match memchr::memchr(b':', line) {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            b"data" => {
                // The spec appends value + LF per line and drops the last LF;
                // joining with LF is the same without the final trim.
                match &mut self.data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(&String::from_utf8_lossy(value));
                    }
                    None => self.data = Some(String::from_utf8_lossy(value).into_owned()),
                }
            }
            b"id" if memchr::memchr(0, value).is_none() => {
                self.id = Some(String::from_utf8_lossy(value).into_owned());
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                // Absurdly long digit strings saturate rather than fail.
                self.retry = Some(value.iter().fold(0u64, |n, digit| {
                    n.saturating_mul(10).saturating_add(u64::from(digit - b'0'))
                }));
            }
            _ => {}
        }
    }

    fn into_event(self, raw: Bytes) -> SseEvent {
        SseEvent {
            event: self.event.filter(|e| !e.is_empty()),
            data: self.data,
            id: self.id,
            retry: self.retry,
            raw,
        }
    }
}

/// The incremental parser: one per response stream.
#[derive(Debug)]
pub struct SseParser {
    /// Raw bytes of the block being read.
    block: Vec<u8>,
    /// Where the current (incomplete) line starts in `block`.
    line_start: usize,
    /// Fields of the block so far.
    fields: Fields,
    /// The previous chunk ended in `\r`: a leading `\n` completes that line end.
    skip_lf: bool,
    /// Still deciding whether the stream starts with a byte-order mark.
    at_stream_start: bool,
    max_event_bytes: usize,
    failed: Option<SseError>,
}

impl Default for SseParser {
    fn default() -> SseParser {
        SseParser::new()
    }
}

impl SseParser {
    /// A parser with the default size bound.
    pub fn new() -> SseParser {
        SseParser::with_max_event_bytes(DEFAULT_MAX_EVENT_BYTES)
    }

    /// A parser that fails a block larger than `limit` raw bytes.
    pub fn with_max_event_bytes(limit: usize) -> SseParser {
        SseParser {
            block: Vec::new(),
            line_start: 0,
            fields: Fields::default(),
            skip_lf: false,
            at_stream_start: true,
            max_event_bytes: limit,
            failed: None,
        }
    }

    /// Feeds the next chunk; returns the blocks it completed, in order. After
    /// a failure ([`SseParser::error`]) it returns nothing.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        // The error is recorded in `self.failed`; the blocks completed before it stand.
        let _ = self.push_into(chunk, &mut events);
        events
    }

    /// Why the parser stopped, if it did (see the module doc).
    pub fn error(&self) -> Option<SseError> {
        self.failed
    }

    fn push_into(&mut self, chunk: &[u8], events: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if let Some(err) = self.failed {
            return Err(err);
        }
        let mut rest = chunk;
        if self.at_stream_start {
            rest = self.consume_bom(rest, events)?;
        }
        if self.skip_lf && !rest.is_empty() {
            self.skip_lf = false;
            if rest[0] == b'\n' {
                self.append(b"\n")?;
                self.line_start = self.block.len();
                rest = &rest[1..];
            }
        }
        while !rest.is_empty() {
            let Some(end) = memchr::memchr2(b'\n', b'\r', rest) else {
                self.append(rest)?;
                break;
            };
            let terminator_len = match (rest[end], rest.get(end + 1)) {
                (b'\r', Some(b'\n')) => 2,
                (b'\r', None) => {
                    self.skip_lf = true;
                    1
                }
                _ => 1,
            };
            self.append(&rest[..end + terminator_len])?;
            rest = &rest[end + terminator_len..];
            let line_end = self.block.len() - terminator_len;
            if let Some(event) = self.end_line(line_end) {
                events.push(event);
            }
        }
        Ok(())
    }

    /// Ends the stream: returns a final block that had no blank line after
    /// it (its last line may lack a line end too). The spec discards such a
    /// block; it is returned so the caller can forward its bytes and read a
    /// final `data: [DONE]` a careless server did not terminate. `None` if
    /// nothing is pending or the parser has failed.
    pub fn finish(&mut self) -> Option<SseEvent> {
        if self.failed.is_some() {
            return None;
        }
        self.at_stream_start = false;
        self.skip_lf = false;
        if self.block.is_empty() {
            return None;
        }
        if self.line_start < self.block.len() {
            // A non-empty last line without its line end: apply it.
            let line = &self.block[self.line_start..];
            self.fields.apply(line);
        }
        Some(self.take_block())
    }

    /// Holds back a possible byte-order mark at the very start and returns
    /// the rest of the chunk; `at_stream_start` stays set while undecided.
    /// A whole mark becomes a block of its own (no data), so no event's raw
    /// bytes start with a mark that only the stream's start gives meaning.
    /// Held bytes are a proper prefix of the mark, so they hold no line end:
    /// if the mark does not complete, they simply begin the first line.
    fn consume_bom<'c>(
        &mut self,
        chunk: &'c [u8],
        events: &mut Vec<SseEvent>,
    ) -> Result<&'c [u8], SseError> {
        let mut rest = chunk;
        while let Some((&byte, tail)) = rest.split_first() {
            if BOM.get(self.block.len()) != Some(&byte) {
                self.at_stream_start = false;
                return Ok(rest);
            }
            self.append(&[byte])?;
            rest = tail;
            if self.block.len() == BOM.len() {
                self.at_stream_start = false;
                events.push(self.take_block());
                return Ok(rest);
            }
        }
        Ok(rest)
    }

    /// Appends to the block, enforcing the size bound.
    fn append(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        if self.block.len() + bytes.len() > self.max_event_bytes {
            let err = SseError::EventTooLarge {
                limit: self.max_event_bytes,
            };
            self.failed = Some(err);
            self.block = Vec::new();
            return Err(err);
        }
        self.block.extend_from_slice(bytes);
        Ok(())
    }

    /// The line from `line_start` to `line_end` is complete; applies it and,
    /// if it was blank, returns the finished block.
    fn end_line(&mut self, line_end: usize) -> Option<SseEvent> {
        let line = &self.block[self.line_start..line_end];
        if line.is_empty() {
            return Some(self.take_block());
        }
        self.fields.apply(line);
        self.line_start = self.block.len();
        None
    }

    /// Ends the block and resets for the next.
    fn take_block(&mut self) -> SseEvent {
        let raw = Bytes::from(std::mem::take(&mut self.block));
        self.line_start = 0;
        std::mem::take(&mut self.fields).into_event(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every feature of the format, with every kind of line end.
    const CORPUS: &[u8] = b"\xEF\xBB\xBF: comment\n\n\
event: add\nid: 7\ndata: first\ndata:second\ndata\n\n\
retry: 1500\n\n\
data: crlf \xC3\xA9\xF0\x9F\x98\x80\r\n\r\n\
data: cr\r\r\
data: x\n\n\
: keepalive\n\n\n\n\
data:  two spaces\nid: a\0b\nretry: 12x\nevent:\n\n\
field-without-colon\ndata: tail";

    /// The fields of an event, without its raw bytes.
    fn fields(event: &SseEvent) -> (Option<&str>, Option<&str>, Option<&str>, Option<u64>) {
        (
            event.event.as_deref(),
            event.data.as_deref(),
            event.id.as_deref(),
            event.retry,
        )
    }

    /// Parses `chunks` in order, then finishes.
    fn parse_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        for chunk in chunks {
            events.extend(parser.push(chunk));
        }
        events.extend(parser.finish());
        events
    }

    fn concat_raw(events: &[SseEvent]) -> Vec<u8> {
        events.iter().flat_map(|e| e.raw.iter().copied()).collect()
    }

    #[test]
    fn whole_stream_parses_per_spec() {
        let events = parse_chunks([CORPUS]);
        let got: Vec<_> = events.iter().map(fields).collect();
        assert_eq!(
            got,
            [
                (None, None, None, None),
                (None, None, None, None),
                (Some("add"), Some("first\nsecond\n"), Some("7"), None),
                (None, None, None, Some(1500)),
                (None, Some("crlf \u{e9}\u{1f600}"), None, None),
                (None, Some("cr"), None, None),
                (None, Some("x"), None, None),
                (None, None, None, None),
                (None, None, None, None),
                (None, None, None, None),
                (None, Some(" two spaces"), None, None),
                (None, Some("tail"), None, None),
            ]
        );
        assert_eq!(&events[0].raw[..], b"\xEF\xBB\xBF");
        assert_eq!(&events[1].raw[..], b": comment\n\n");
        assert_eq!(
            &events[4].raw[..],
            "data: crlf \u{e9}\u{1f600}\r\n\r\n".as_bytes()
        );
        assert_eq!(&events[5].raw[..], b"data: cr\r\r");
        assert!(!events[1].is_dispatched() && events[2].is_dispatched());
        assert_eq!(events[2].event_type(), "add");
        assert_eq!(events[6].event_type(), "message");
        assert_eq!(concat_raw(&events), CORPUS);
    }

    #[test]
    fn one_byte_at_a_time_gives_the_same_events() {
        let whole = parse_chunks([CORPUS]);
        let bytewise = parse_chunks(CORPUS.chunks(1));
        assert_eq!(
            bytewise.iter().map(fields).collect::<Vec<_>>(),
            whole.iter().map(fields).collect::<Vec<_>>()
        );
        assert_eq!(concat_raw(&bytewise), CORPUS);
    }

    #[test]
    fn every_two_way_split_gives_the_same_events() {
        let whole = parse_chunks([CORPUS]);
        for at in 0..=CORPUS.len() {
            let (a, b) = CORPUS.split_at(at);
            let split = parse_chunks([a, b]);
            assert_eq!(
                split.iter().map(fields).collect::<Vec<_>>(),
                whole.iter().map(fields).collect::<Vec<_>>(),
                "split at {at}"
            );
            assert_eq!(concat_raw(&split), CORPUS, "split at {at}");
            // Raw bytes only move when the split falls inside a `\r\n`.
            let inside_crlf = at > 0 && CORPUS[at - 1] == b'\r' && CORPUS.get(at) == Some(&b'\n');
            if !inside_crlf {
                assert_eq!(split, whole, "split at {at}");
            }
        }
    }

    #[test]
    fn crlf_split_across_chunks_is_one_line_end() {
        let mut parser = SseParser::new();
        // `\r` ends a data line: the `\n` that follows in the next chunk must not be a blank line.
        assert!(parser.push(b"data: a\r").is_empty());
        let events = parser.push(b"\ndata: b\r\n\r");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data.as_deref(), Some("a\nb"));
        assert_eq!(&events[0].raw[..], b"data: a\r\ndata: b\r\n\r");
        // The event ending in a lone `\r` was dispatched at once; its `\n` starts the next block.
        let events = parser.push(b"\ndata: c\n\n");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data.as_deref(), Some("c"));
        assert_eq!(&events[0].raw[..], b"\ndata: c\n\n");
    }

    #[test]
    fn split_utf8_sequences_are_joined() {
        let text = "data: \u{1f600}\u{e9}\n\n".as_bytes();
        let events = parse_chunks(text.chunks(1));
        assert_eq!(events[0].data.as_deref(), Some("\u{1f600}\u{e9}"));
    }

    #[test]
    fn a_split_byte_order_mark_is_still_dropped() {
        let stream = b"\xEF\xBB\xBFdata: x\n\n";
        let events = parse_chunks([&stream[..1], &stream[1..2], &stream[2..]]);
        assert_eq!(&events[0].raw[..], b"\xEF\xBB\xBF");
        assert_eq!(events[1].data.as_deref(), Some("x"));
        assert_eq!(&events[1].raw[..], b"data: x\n\n");
        // A mark that does not complete is content.
        let events = parse_chunks([&b"\xEF"[..], b"data: x\n\n"]);
        assert_eq!(events[0].data, None);
    }

    #[test]
    fn finish_returns_an_unterminated_event() {
        let mut parser = SseParser::new();
        assert_eq!(parser.push(b"data: {\"a\":1}\n\ndata: [DONE]").len(), 1);
        let last = parser.finish().unwrap();
        assert_eq!(last.data.as_deref(), Some("[DONE]"));
        assert_eq!(&last.raw[..], b"data: [DONE]");
        assert_eq!(parser.finish(), None);
        let mut parser = SseParser::new();
        parser.push(b"data: x\n");
        assert_eq!(parser.finish().and_then(|e| e.data), Some("x".to_owned()));
    }

    #[test]
    fn oversized_events_fail_and_stay_failed() {
        let mut parser = SseParser::with_max_event_bytes(32);
        // Many small events are fine: the bound is per event.
        for _ in 0..10 {
            assert_eq!(parser.push(b"data: 0123456789\n\n").len(), 1);
        }
        assert_eq!(parser.error(), None);
        // Blocks completed before the overflow in the same chunk are returned.
        let events = parser.push(b"data: ok\n\ndata: 0123456789012345678901234567890123456789");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data.as_deref(), Some("ok"));
        assert_eq!(parser.error(), Some(SseError::EventTooLarge { limit: 32 }));
        assert!(parser.push(b"\n\ndata: later\n\n").is_empty());
        assert_eq!(parser.finish(), None);
        assert_eq!(parser.error(), Some(SseError::EventTooLarge { limit: 32 }));
        // A line end never arriving is the same as a huge line.
        let mut parser = SseParser::with_max_event_bytes(32);
        for _ in 0..3 {
            assert!(parser.push(b"data: 0123456789").is_empty());
        }
        assert!(parser.error().is_some());
    }
}
