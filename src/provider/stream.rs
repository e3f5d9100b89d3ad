//! Reading and editing a streamed response event by event.
//!
//! [`SseParser`](super::sse::SseParser) cuts the stream into events;
//! [`StreamState`] (one per call) reads each event's data in the call's wire
//! format and says what it carries ([`StreamItem`]): text *deltas* (new output
//! to append), *snapshots* (output already streamed as deltas, repeated whole:
//! Responses' `*.done` and `response.completed` events), whether the stream
//! is over, usage, and an in-stream error. An event that needs no change is
//! forwarded as its raw bytes; one that does goes through [`rewrite_event`].
//!
//! Output slots: deltas belong to separate texts when a response has several
//! choices, content blocks or tool calls interleaved; a guardrail that looks
//! across deltas (a card number split over two chunks) must join deltas of
//! the same [`OutputSlot`] only.
//!
//! Also here: the provider-shaped error event that ends a stream we cut
//! short ([`stream_error_event`]), and the OpenAI usage chunk the proxy
//! requests for budgets ([`ensure_stream_usage`], [`is_usage_only_chunk`]).

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::call::{Api, ApiCall, TextSpan, WireFormat};
use super::json_path::JsonPath;
use super::rewrite::{apply_edits, to_json};
use super::shape::{parse_json, wrong_shape, ParseError};
use super::sse::SseEvent;
use super::usage::Usage;
use super::{anthropic, error_json, gemini, openai, socket, ErrorKind, Provider};

/// What kind of output a delta extends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputKind {
    /// Visible text.
    Text,
    /// A tool call's arguments (JSON text, possibly partial).
    ToolArguments,
    /// A refusal message.
    Refusal,
    /// Reasoning text or a reasoning summary.
    Reasoning,
}

/// Which output text a delta extends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OutputSlot {
    /// Choice (OpenAI Chat), output item (Responses), content block
    /// (Anthropic) or candidate (Gemini) index, as the provider numbers it.
    pub index: u64,
    /// Tool call index (OpenAI Chat), content part or summary part index
    /// (Responses); 0 otherwise.
    pub part: u64,
    /// What the text is.
    pub kind: OutputKind,
}

/// A piece of streamed output text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextDelta {
    /// Where the string is inside the event's data JSON.
    pub path: JsonPath,
    /// Which output it extends.
    pub slot: OutputSlot,
    /// The new text.
    pub text: String,
}

impl From<TextDelta> for (JsonPath, String) {
    /// The delta as an edit for [`rewrite_event`].
    fn from(delta: TextDelta) -> (JsonPath, String) {
        (delta.path, delta.text)
    }
}

/// What one event carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamItem {
    /// New output text.
    pub deltas: Vec<TextDelta>,
    /// Output text repeated whole after its deltas (Responses only). Apply the
    /// redactions made to the deltas here too; scanning it again is not needed.
    pub snapshots: Vec<TextSpan>,
    /// The provider said the stream is over: `[DONE]`, `message_stop`,
    /// `response.completed`/`incomplete`/`failed`, an Anthropic `error`, or a
    /// Gemini chunk in which every candidate has a `finishReason`.
    pub terminal: bool,
    /// Usage so far, if this event reported any (cumulative; see [`StreamState::usage`]).
    pub usage: Option<Usage>,
    /// The message of an error the upstream reported in the stream.
    pub upstream_error: Option<String>,
    /// The event's data was not JSON (it is passed on; the caller decides
    /// whether unscanned output may reach the client).
    pub malformed: Option<ParseError>,
}

impl StreamItem {
    /// Records a delta (empty strings carry nothing).
    pub(crate) fn push_delta(&mut self, path: JsonPath, slot: OutputSlot, text: &str) {
        if !text.is_empty() {
            self.deltas.push(TextDelta {
                path,
                slot,
                text: text.to_owned(),
            });
        }
    }
}

/// Per-call reader of a response stream.
#[derive(Debug, Clone)]
pub struct StreamState {
    api: Api,
    format: WireFormat,
    anthropic_counts: anthropic::Counts,
    usage: Option<Usage>,
    finished: bool,
}

impl StreamState {
    /// A reader for the stream answering `call`.
    pub fn new(call: &ApiCall) -> StreamState {
        StreamState {
            api: call.api,
            format: call.api.wire_format(call.provider),
            anthropic_counts: anthropic::Counts::default(),
            usage: None,
            finished: false,
        }
    }

    /// Reads one event. Blocks without data (comments, keep-alives) carry nothing.
    pub fn on_event(&mut self, event: &SseEvent) -> StreamItem {
        let mut item = StreamItem::default();
        let Some(data) = event.data.as_deref() else {
            return item;
        };
        if self.format == WireFormat::OpenAi && data.trim() == "[DONE]" {
            item.terminal = true;
            self.finished = true;
            return item;
        }
        let value = match parse_json(data.as_bytes()) {
            Ok(value) => value,
            Err(err) => {
                item.malformed = Some(err);
                return item;
            }
        };
        match (self.format, self.api) {
            (WireFormat::OpenAi, Api::Responses) => openai::read_responses_event(&value, &mut item),
            (WireFormat::OpenAi, Api::Realtime) => socket::read_realtime_event(&value, &mut item),
            (WireFormat::Gemini, Api::GeminiLive) => socket::read_live_message(&value, &mut item),
            (WireFormat::OpenAi, _) => openai::read_chunk(&value, &mut item),
            (WireFormat::Anthropic, _) => {
                anthropic::read_event(&value, &mut self.anthropic_counts, &mut item)
            }
            (WireFormat::Gemini, _) => gemini::read_chunk(&value, &mut item),
        }
        if item.usage.is_some() {
            self.usage = item.usage;
        }
        self.finished |= item.terminal;
        item
    }

    /// The usage reported so far (the latest cumulative report; Anthropic's
    /// pieces merged).
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Whether a terminal event has been seen. A stream that ends without one
    /// was cut short (Gemini aside, whose last chunk is recognised by its
    /// finish reasons).
    pub fn is_finished(&self) -> bool {
        self.finished
    }
}

/// `event` with the strings at `edits`' paths (inside its data JSON)
/// replaced: the same lines as before (`event:`, `id:`, comments, line ends)
/// with the `data:` lines replaced by one compact `data:` line, ending in a
/// blank line. No edits: the raw bytes unchanged.
pub fn rewrite_event(event: &SseEvent, edits: &[(JsonPath, String)]) -> Result<Bytes, ParseError> {
    let Some(data) = event.data.as_deref() else {
        return Err(ParseError::NoEventData);
    };
    if edits.is_empty() {
        return Ok(event.raw.clone());
    }
    let mut value = parse_json(data.as_bytes())?;
    apply_edits(&mut value, edits)?;
    Ok(Bytes::from(replace_data_lines(
        &event.raw,
        &to_json(&value),
    )))
}

/// Rebuilds a block's raw bytes with `data` (one line, no line ends: compact
/// JSON escapes them) in place of its data lines.
fn replace_data_lines(raw: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + data.len());
    let mut rest = raw;
    // A stray `\n` completing the previous block's `\r\n` is copied as it
    // is: a block with data cannot start with a blank line, so a leading
    // `\n` is always that.
    if let Some(after) = rest.strip_prefix(b"\n") {
        out.push(b'\n');
        rest = after;
    }
    let mut data_written = false;
    let mut ended_with_blank_line = false;
    while !rest.is_empty() {
        let (line, ending, next) = split_line(rest);
        ended_with_blank_line = line.is_empty() && !ending.is_empty();
        let ending = if ending.is_empty() {
            &b"\n"[..]
        } else {
            ending
        };
        if is_data_line(line) {
            if !data_written {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(data);
                out.extend_from_slice(ending);
                data_written = true;
            }
        } else {
            out.extend_from_slice(line);
            out.extend_from_slice(ending);
        }
        rest = next;
    }
    if !ended_with_blank_line {
        out.push(b'\n');
    }
    out
}

/// The first line of `bytes`: (content, line end, rest). The line end is
/// empty when `bytes` has none.
fn split_line(bytes: &[u8]) -> (&[u8], &[u8], &[u8]) {
    match memchr::memchr2(b'\n', b'\r', bytes) {
        None => (bytes, &[], &[]),
        Some(end) => {
            let len = if bytes[end] == b'\r' && bytes.get(end + 1) == Some(&b'\n') {
                2
            } else {
                1
            };
            (&bytes[..end], &bytes[end..end + len], &bytes[end + len..])
        }
    }
}

/// A `data` field line (`data`, `data:…`).
fn is_data_line(line: &[u8]) -> bool {
    let name = match memchr::memchr(b':', line) {
        Some(colon) => &line[..colon],
        None => line,
    };
    name == b"data"
}

/// The event that tells the client's SDK the stream failed, in the
/// provider's own in-stream error shape:
///
/// - OpenAI Chat/Completions: `data: {"error":{"message","type","param","code"}}` (the SDKs raise on it);
/// - OpenAI Responses: `event: error` with `{"type":"error","code","message","param"}`
///   plus the same `error` object, so both typed event readers and the SDKs' `error` check see it;
/// - Anthropic: `event: error` / `{"type":"error","error":{"type","message"}}`;
/// - Gemini: `data: {"error":{"code","message","status"}}`.
pub fn stream_error_event(provider: Provider, api: Api, kind: ErrorKind, message: &str) -> Bytes {
    let format = api.wire_format(provider);
    let body = error_json(format, kind, message);
    let text = match format {
        WireFormat::Anthropic => format!("event: error\ndata: {body}\n\n"),
        WireFormat::OpenAi if api == Api::Responses => {
            let event = json!({
                "type": "error",
                "code": kind.code(),
                "message": message,
                "param": null,
                "error": body["error"],
            });
            format!("event: error\ndata: {event}\n\n")
        }
        WireFormat::OpenAi | WireFormat::Gemini => format!("data: {body}\n\n"),
    };
    Bytes::from(text)
}

/// A socket message (`data`, one JSON document) with the strings at
/// `edits`' paths replaced, as compact JSON.
pub fn rewrite_message(data: &str, edits: &[(JsonPath, String)]) -> Result<Bytes, ParseError> {
    let mut value = parse_json(data.as_bytes())?;
    apply_edits(&mut value, edits)?;
    Ok(Bytes::from(to_json(&value)))
}

/// The error event a socket client of `api` reads as a failed request, as
/// one message. Responses carries the HTTP `status` the same refusal gets
/// over HTTPS (clients such as Codex map it as they map an HTTP error) and
/// the error both at the top (the event's documented fields) and as
/// `error`; Realtime has `error` only. Gemini Live has no error event (its
/// server closes the socket with a reason): the session closes instead and
/// this is its error object, for the record.
pub fn socket_error_event(provider: Provider, api: Api, kind: ErrorKind, message: &str) -> Bytes {
    let format = api.wire_format(provider);
    let body = error_json(format, kind, message);
    let event = match (format, api) {
        (WireFormat::OpenAi, Api::Responses) => json!({
            "type": "error",
            // Codex retries a 429 event and then shows only "exceeded retry
            // limit"; on a 400 it stops and shows the message. A budget or
            // rate limit refusal must be read, so it says 400 here.
            "status": match kind {
                ErrorKind::BudgetExhausted | ErrorKind::RateLimited => 400,
                kind => kind.status(),
            },
            "code": kind.code(),
            "message": message,
            "param": null,
            "error": body["error"],
        }),
        (WireFormat::OpenAi, _) => json!({"type": "error", "error": body["error"]}),
        _ => body,
    };
    Bytes::from(to_json(&event))
}

/// For a streaming OpenAI-family Chat Completions or Completions call whose
/// body does not ask for `stream_options.include_usage: true`: sets it in
/// `root`, so the stream ends with a usage chunk budgets can settle on, and
/// says whether it did. Key order is kept; `stream_options`, if new, goes last.
///
/// Some OpenAI-compatible hosts (Mistral) refuse unknown members: call this
/// only for hosts whose [`ProviderEntry::stream_options`](super::table::ProviderEntry::stream_options)
/// is set. When the client did not ask for usage itself, drop the extra
/// chunk before it reaches the client ([`is_usage_only_chunk`]).
pub fn ensure_stream_usage(call: &ApiCall, root: &mut Value) -> Result<bool, ParseError> {
    if !call.stream || !matches!(call.api, Api::ChatCompletions | Api::Completions) {
        return Ok(false);
    }
    let Value::Object(object) = root else {
        return Err(wrong_shape(&JsonPath::root(), "object", root));
    };
    match object.get_mut("stream_options") {
        Some(Value::Object(options)) => {
            if options.get("include_usage") == Some(&Value::Bool(true)) {
                return Ok(false);
            }
            options.insert("include_usage".to_owned(), Value::Bool(true));
        }
        None | Some(Value::Null) => {
            let mut options = Map::new();
            options.insert("include_usage".to_owned(), Value::Bool(true));
            object.insert("stream_options".to_owned(), Value::Object(options));
        }
        Some(other) => {
            return Err(wrong_shape(
                &JsonPath::root().key("stream_options"),
                "object",
                other,
            ));
        }
    }
    Ok(true)
}

/// True for the OpenAI chunk that carries only usage (`"choices": []` and a
/// `usage` object): the one [`ensure_stream_usage`] makes the upstream send.
pub fn is_usage_only_chunk(event: &SseEvent) -> bool {
    let Some(data) = event.data.as_deref() else {
        return false;
    };
    // Cheap test first: this runs on every chunk of every stream.
    let bytes = data.as_bytes();
    if memchr::memmem::find(bytes, b"\"usage\"").is_none()
        || memchr::memmem::find(bytes, b"\"choices\"").is_none()
    {
        return false;
    }
    parse_json(bytes).is_ok_and(|value| openai::is_usage_only(&value))
}

#[cfg(test)]
mod tests {
    use super::super::sse::SseParser;
    use super::*;

    fn parse(bytes: &[u8]) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        let mut events = parser.push(bytes);
        events.extend(parser.finish());
        events
    }

    #[test]
    fn rewrite_keeps_other_lines_and_line_ends() {
        let raw = b"event: e\r\nid: 5\r\n: note\r\ndata: {\"t\":\"secret\",\r\ndata: \"n\":1}\r\nretry: 9\r\n\r\n";
        let event = &parse(raw)[0];
        let out = rewrite_event(event, &[(JsonPath::root().key("t"), "x".into())]).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "event: e\r\nid: 5\r\n: note\r\ndata: {\"t\":\"x\",\"n\":1}\r\nretry: 9\r\n\r\n"
        );
        let again = &parse(&out)[0];
        assert_eq!(
            (again.event.as_deref(), again.id.as_deref(), again.retry),
            (Some("e"), Some("5"), Some(9))
        );
    }

    #[test]
    fn rewrite_without_edits_is_byte_identical() {
        let raw = b"data:  {\"t\" : \"a\"}\n\n";
        let event = &parse(raw)[0];
        assert_eq!(&rewrite_event(event, &[]).unwrap()[..], raw);
    }

    #[test]
    fn rewrite_errors() {
        let comment = &parse(b": ping\n\n")[0];
        assert_eq!(rewrite_event(comment, &[]), Err(ParseError::NoEventData));
        let event = &parse(b"data: {\"t\":1}\n\n")[0];
        let path = JsonPath::root().key("t");
        assert_eq!(
            rewrite_event(event, &[(path.clone(), "x".into())]),
            Err(ParseError::EditTarget { path })
        );
        let done = &parse(b"data: [DONE]\n\n")[0];
        assert!(matches!(
            rewrite_event(done, &[(JsonPath::root(), "x".into())]),
            Err(ParseError::InvalidJson(_))
        ));
    }

    #[test]
    fn rewrite_completes_an_unterminated_event_and_keeps_a_stray_lf() {
        let last = &parse(b"data: {\"t\":\"a\"}")[0];
        let out = rewrite_event(last, &[(JsonPath::root().key("t"), "b".into())]).unwrap();
        assert_eq!(&out[..], b"data: {\"t\":\"b\"}\n\n");

        let mut parser = SseParser::new();
        let first = parser.push(b"data: {\"t\":\"a\"}\r\n\r");
        let second = parser.push(b"\ndata: {\"t\":\"b\"}\r\n\r\n");
        assert_eq!(second[0].raw[0], b'\n');
        let out = rewrite_event(&second[0], &[(JsonPath::root().key("t"), "c".into())]).unwrap();
        assert_eq!(&out[..], b"\ndata: {\"t\":\"c\"}\r\n\r\n");
        // The client still sees two events.
        let mut stream = first[0].raw.to_vec();
        stream.extend_from_slice(&out);
        let seen: Vec<_> = parse(&stream).into_iter().filter_map(|e| e.data).collect();
        assert_eq!(seen, ["{\"t\":\"a\"}", "{\"t\":\"c\"}"]);
    }

    #[test]
    fn openai_stream_errors_raise_in_the_sdks() {
        let chat = stream_error_event(
            Provider::OpenAi,
            Api::ChatCompletions,
            ErrorKind::PolicyBlocked,
            "Blocked.",
        );
        let events = parse(&chat);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event, None);
        let data: Value = serde_json::from_str(events[0].data.as_deref().unwrap()).unwrap();
        assert_eq!(data["error"]["message"], "Blocked.");
        assert_eq!(data["error"]["code"], "policy_blocked");
        assert_eq!(data["error"]["type"], "invalid_request_error");
        assert!(data["error"]["param"].is_null());

        let responses = stream_error_event(
            Provider::OpenAi,
            Api::Responses,
            ErrorKind::UpstreamUnavailable,
            "Gone.",
        );
        let events = parse(&responses);
        assert_eq!(events[0].event_type(), "error");
        let data: Value = serde_json::from_str(events[0].data.as_deref().unwrap()).unwrap();
        assert_eq!(
            (data["type"].as_str(), data["message"].as_str()),
            (Some("error"), Some("Gone."))
        );
        assert_eq!(data["error"]["message"], "Gone.");
        // Our own reader sees it as an upstream error too.
        let call = ApiCall {
            stream: true,
            ..ApiCall::bare(Provider::OpenAi, Api::Responses, None)
        };
        let item = StreamState::new(&call).on_event(&events[0]);
        assert_eq!(item.upstream_error.as_deref(), Some("Gone."));
    }

    #[test]
    fn data_less_blocks_and_non_json_are_never_usage_chunks() {
        for raw in [
            &b": ping\n\n"[..],
            b"data: [DONE]\n\n",
            b"data: {\"choices\":[{}],\"usage\":{}}\n\n",
            b"data: {\"choices\":[],\"usage\":null}\n\n",
        ] {
            assert!(
                !is_usage_only_chunk(&parse(raw)[0]),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        assert!(is_usage_only_chunk(
            &parse(b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\n\n")[0]
        ));
    }
}
