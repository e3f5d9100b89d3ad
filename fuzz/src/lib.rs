//! Fuzz target bodies for `outpost::provider`, shared by the libFuzzer entry
//! points (`fuzz_targets/`, nightly) and the deterministic smoke driver
//! (`src/bin/smoke.rs`, stable).
//!
//! Each target does more than "must not panic": it checks the properties the
//! proxy relies on, and panics (a finding) when one fails.
//!
//! - [`parse_request`]: every reported span's path names, in the body, a
//!   string equal to the span's text; replacing every span through
//!   `rewrite_texts` succeeds and re-parses to the same paths carrying the new
//!   text; `ensure_stream_usage` output still parses.
//! - [`scanned_is_sent`]: for any body (duplicate members included), what
//!   the proxy would forward holds no string or member name the scanner was
//!   not shown, and a body naming a member twice is always refused.
//! - [`sse_parser`]: any chunking of a stream gives the same events as the
//!   whole stream, and the events' raw bytes concatenate back to the input;
//!   `rewrite_event` without edits is byte-identical and with edits yields one
//!   event with the same type and id.
//! - [`stream_state`]: every delta and snapshot path names its text inside
//!   the event's data, and rewriting them reads back the same paths (the
//!   socket APIs' server messages included).
//! - [`socket_messages`]: a WebSocket client message naming a member twice
//!   is refused, and one that is read, rewritten with its scanned strings
//!   redacted, carries nothing unscanned but audio and video payloads.
//!
//! Input layout: leading selector bytes choose the provider, method, path or
//! API from small tables ([`PATHS`], [`STREAM_CALLS`]); the rest is the body
//! or stream. [`seeds`] builds well-formed inputs in that layout.
#![forbid(unsafe_code)]

use outpost::provider::rewrite::{redact_document, to_json};
use outpost::provider::{
    ensure_stream_usage, error_body, is_usage_only_chunk, parse_request as parse, read_request,
    rewrite_event, rewrite_texts, stream_error_event, Api, ApiCall, ErrorKind, JsonPath,
    ParseError, Provider, SseEvent, SseParser, StreamState, TextRole, TextSpan,
};
use serde_json::Value;

pub mod seeds;

/// Providers a selector byte picks from.
pub const PROVIDERS: [Provider; 5] = [
    Provider::OpenAi,
    Provider::Anthropic,
    Provider::Gemini,
    Provider::Azure,
    Provider::OpenAiCompatible,
];

/// Methods a selector byte picks from (lower-case `post` on purpose).
pub const METHODS: [&str; 4] = ["POST", "GET", "post", "DELETE"];

/// Paths a selector byte picks from; a selector past the end takes the path
/// from the input, up to its first newline.
pub const PATHS: [&str; 14] = [
    "/v1/chat/completions",
    "/v1/responses",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/v1beta/models/gemini-2.0-flash:generateContent",
    "/v1beta/models/gemini-2.0-flash:streamGenerateContent",
    "/v1beta/models/gemini-2.0-flash:countTokens",
    "/v1beta/models/text-embedding-004:batchEmbedContents",
    "/openai/deployments/gpt-4o/chat/completions",
    "/openai/v1/chat/completions",
    "/api/v1/chat/completions",
    "/v1/models",
];

/// `(provider, method, path, body)` from a fuzz input.
pub fn split_request(data: &[u8]) -> Option<(Provider, &'static str, String, &[u8])> {
    let (&[provider, method, path], rest) = data.split_first_chunk::<3>()?;
    let provider = PROVIDERS[usize::from(provider) % PROVIDERS.len()];
    let method = METHODS[usize::from(method) % METHODS.len()];
    match PATHS.get(usize::from(path)) {
        Some(known) => Some((provider, method, (*known).to_owned(), rest)),
        None => {
            let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            let path = String::from_utf8_lossy(&rest[..end]).into_owned();
            Some((
                provider,
                method,
                path,
                rest.get(end + 1..).unwrap_or_default(),
            ))
        }
    }
}

/// Request adapters, rewriting, and stream-usage injection.
pub fn parse_request(data: &[u8]) {
    let Some((provider, method, path, body)) = split_request(data) else {
        return;
    };
    let Ok(call) = parse(provider, method, &path, body) else {
        return;
    };
    let _ = error_body(call.provider, call.api, ErrorKind::PolicyBlocked, "fuzz");
    if matches!(call.api, Api::NoPrompt | Api::Unknown) {
        assert!(call.texts.is_empty(), "unread bodies report no text");
        return;
    }
    let root: Value = serde_json::from_slice(body).expect("a parsed call's body is JSON");
    assert_spans_locate(&root, &call.texts);

    let edits: Vec<(JsonPath, String)> = call
        .texts
        .iter()
        .map(|span| (span.path.clone(), format!("X{}", span.text.len() % 7)))
        .collect();
    let rewritten = rewrite_texts(body, &edits).expect("every span path names a string");
    let again = parse(provider, method, &path, &rewritten).expect("a rewritten body still parses");
    assert_eq!(again.api, call.api);
    assert_eq!(again.model, call.model);
    assert_eq!(again.stream, call.stream);
    assert_eq!(again.max_tokens, call.max_tokens);
    let paths = |texts: &[TextSpan]| texts.iter().map(|s| s.path.clone()).collect::<Vec<_>>();
    assert_eq!(
        paths(&again.texts),
        paths(&call.texts),
        "rewriting moved a span"
    );
    for (span, (_, text)) in again.texts.iter().zip(&edits) {
        assert_eq!(&span.text, text);
    }

    let mut with_usage = root.clone();
    if let Ok(true) = ensure_stream_usage(&call, &mut with_usage) {
        let bytes = to_json(&with_usage);
        let added =
            parse(provider, method, &path, &bytes).expect("usage injection keeps the body valid");
        assert_eq!(paths(&added.texts), paths(&call.texts));
        assert_eq!(
            ensure_stream_usage(&added, &mut with_usage),
            Ok(false),
            "injection is idempotent"
        );
    }
}

/// What the scanner saw is what is sent: for any body, either the request
/// is refused (it names a member twice, or is not JSON of its API's shape),
/// or every string and member name in the bytes the proxy would forward
/// (after redacting a selector-chosen subset) is one the scanner was shown,
/// or a replacement it chose. Duplicates are found here by an independent
/// reader that keeps every member.
pub fn scanned_is_sent(data: &[u8]) {
    let Some((&redact_every, data)) = data.split_first() else {
        return;
    };
    let Some((provider, method, path, body)) = split_request(data) else {
        return;
    };
    let all = every_string(body);
    let parsed = match read_request(provider, method, &path, body) {
        Ok(parsed) => parsed,
        Err(ParseError::DuplicateKey(_)) => {
            // The strict reader stops at the first duplicate; what follows
            // may be broken, so only the duplicate itself is compared.
            assert!(
                all.duplicate,
                "refused a duplicate the independent reader did not see"
            );
            return;
        }
        Err(_) => return,
    };
    assert!(!all.duplicate, "a body naming a member twice was accepted");
    let Some(mut root) = parsed.json else {
        assert!(body.is_empty(), "a non-empty body must be read");
        return;
    };
    assert!(all.valid, "a body that is not JSON was accepted");
    let scanned: Vec<&TextSpan> = parsed.call.texts.iter().chain(&parsed.unclaimed).collect();
    let every = usize::from(redact_every % 4) + 1;
    let mut edits = Vec::new();
    let mut renames = Vec::new();
    for (i, span) in scanned.iter().enumerate().filter(|(i, _)| i % every == 0) {
        let label = format!("[R{i}]");
        match span.role {
            TextRole::Key => renames.push((span.path.clone(), label)),
            _ => edits.push((span.path.clone(), label)),
        }
    }
    redact_document(&mut root, &edits, &renames).expect("every scanned path is in the document");
    let sent = every_string(&to_json(&root));
    assert!(sent.valid && !sent.duplicate, "the proxy sends plain JSON");
    for text in &sent.strings {
        let seen = scanned.iter().any(|s| &s.text == text)
            || text.is_empty()
            || (text.starts_with("[R") && text.ends_with(']'));
        assert!(seen, "{text:?} was sent but never scanned");
    }
}

/// Every string and member name of a JSON document, duplicates kept, read
/// as far as the document is valid.
struct AllStrings {
    strings: Vec<String>,
    /// Some object named a member twice (before any syntax error).
    duplicate: bool,
    /// The whole input is one JSON value.
    valid: bool,
}

fn every_string(bytes: &[u8]) -> AllStrings {
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    use std::collections::HashSet;

    struct Collect<'a>(&'a mut AllStrings);

    impl<'de> DeserializeSeed<'de> for Collect<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Collect<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, v: &str) -> Result<(), E> {
            self.0.strings.push(v.to_owned());
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element_seed(Collect(&mut *self.0))?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut names = HashSet::new();
            while let Some(name) = map.next_key::<String>()? {
                self.0.duplicate |= !names.insert(name.clone());
                self.0.strings.push(name);
                map.next_value_seed(Collect(&mut *self.0))?;
            }
            Ok(())
        }
    }

    let mut all = AllStrings {
        strings: Vec::new(),
        duplicate: false,
        valid: false,
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let read = Collect(&mut all).deserialize(&mut de).is_ok();
    all.valid = read && de.end().is_ok();
    all
}

fn assert_spans_locate(root: &Value, spans: &[TextSpan]) {
    for span in spans {
        let found = span.path.lookup(root).and_then(Value::as_str);
        assert_eq!(
            found,
            Some(span.text.as_str()),
            "span at {} does not locate its text",
            span.path
        );
    }
}

/// Chunk sizes from a seed byte: a small deterministic sequence in 1..=max.
fn chunk_sizes(seed: u8, max: u8) -> impl Iterator<Item = usize> {
    let max = usize::from(max.max(1));
    let mut state = u32::from(seed) | 0x100;
    std::iter::repeat_with(move || {
        // xorshift32: cheap and reproducible.
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state as usize % max) + 1
    })
}

fn parse_in_chunks(stream: &[u8], seed: u8, max: u8) -> Vec<SseEvent> {
    let mut parser = SseParser::new();
    let mut events = Vec::new();
    let mut rest = stream;
    let mut sizes = chunk_sizes(seed, max);
    while !rest.is_empty() {
        let size = sizes.next().unwrap_or(1).min(rest.len());
        let (chunk, tail) = rest.split_at(size);
        events.extend(parser.push(chunk));
        rest = tail;
    }
    events.extend(parser.finish());
    events
}

type Fields<'e> = (
    Option<&'e str>,
    Option<&'e str>,
    Option<&'e str>,
    Option<u64>,
);

fn dispatched(events: &[SseEvent]) -> Vec<Fields<'_>> {
    events
        .iter()
        .filter(|e| e.is_dispatched())
        .map(|e| {
            (
                e.event.as_deref(),
                e.data.as_deref(),
                e.id.as_deref(),
                e.retry,
            )
        })
        .collect()
}

/// The SSE parser under arbitrary chunking, and event rewriting.
pub fn sse_parser(data: &[u8]) {
    let Some((&[seed, max], stream)) = data.split_first_chunk::<2>() else {
        return;
    };
    let whole = {
        let mut parser = SseParser::new();
        let mut events = parser.push(stream);
        events.extend(parser.finish());
        events
    };
    let chunked = parse_in_chunks(stream, seed, max);
    assert_eq!(
        dispatched(&chunked),
        dispatched(&whole),
        "chunking changed the events"
    );
    for events in [&whole, &chunked] {
        let raw: Vec<u8> = events.iter().flat_map(|e| e.raw.iter().copied()).collect();
        assert_eq!(raw, stream, "raw bytes do not add up to the stream");
    }

    // A tight bound fails cleanly and stays failed.
    let mut small = SseParser::with_max_event_bytes(usize::from(max));
    let mut failed = false;
    for chunk in stream.chunks(usize::from(seed.max(1))) {
        let events = small.push(chunk);
        assert!(!failed || events.is_empty(), "a failed parser recovered");
        for event in &events {
            assert!(
                event.raw.len() <= usize::from(max),
                "an event over the bound got through"
            );
        }
        failed = small.error().is_some();
    }
    let last = small.finish();
    assert!(!failed || last.is_none(), "a failed parser finished");

    for event in whole.iter().filter(|e| e.is_dispatched()) {
        assert_eq!(rewrite_event(event, &[]).ok(), Some(event.raw.clone()));
        let _ = is_usage_only_chunk(event);
        check_rewrite_event(event, &first_string_leaf(event));
    }
}

/// The path of the first string in an event's data, if its data is JSON with one.
fn first_string_leaf(event: &SseEvent) -> Vec<(JsonPath, String)> {
    fn find(value: &Value, at: JsonPath) -> Option<JsonPath> {
        match value {
            Value::String(_) => Some(at),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, v)| find(v, at.index(i))),
            Value::Object(members) => members.iter().find_map(|(k, v)| find(v, at.key(k))),
            _ => None,
        }
    }
    let Some(Ok(value)) = event.data.as_deref().map(serde_json::from_str::<Value>) else {
        return Vec::new();
    };
    find(&value, JsonPath::root())
        .map(|path| vec![(path, "EDITED\n\"".to_owned())])
        .unwrap_or_default()
}

/// The blocks of `bytes` read as a piece of a stream already under way (a
/// byte-order mark means nothing there), as the client reads a rewritten event.
fn reparse_mid_stream(bytes: &[u8]) -> Vec<SseEvent> {
    let mut parser = SseParser::new();
    let mut events = parser.push(b"\n");
    events.extend(parser.push(bytes));
    events.extend(parser.finish());
    events
}

/// `rewrite_event(event, edits)` reads back as one event with the same type
/// and id whose data has the edits.
fn check_rewrite_event(event: &SseEvent, edits: &[(JsonPath, String)]) {
    if edits.is_empty() {
        return;
    }
    let bytes = rewrite_event(event, edits).expect("edits at string paths apply");
    let events = reparse_mid_stream(&bytes);
    let events: Vec<&SseEvent> = events.iter().filter(|e| e.is_dispatched()).collect();
    assert_eq!(events.len(), 1, "a rewritten event must stay one event");
    assert_eq!(events[0].event, event.event);
    assert_eq!(events[0].id, event.id);
    let data: Value =
        serde_json::from_str(events[0].data.as_deref().unwrap_or_default()).expect("JSON data");
    for (path, text) in edits {
        assert_eq!(
            path.lookup(&data).and_then(Value::as_str),
            Some(text.as_str())
        );
    }
}

/// The calls a stream-state selector byte picks from.
pub const STREAM_CALLS: [(Provider, Api); 9] = [
    (Provider::OpenAi, Api::ChatCompletions),
    (Provider::OpenAi, Api::Completions),
    (Provider::OpenAi, Api::Responses),
    (Provider::Anthropic, Api::AnthropicMessages),
    (Provider::Gemini, Api::GeminiStreamGenerateContent),
    (Provider::Gemini, Api::ChatCompletions),
    (Provider::OpenAiCompatible, Api::Unknown),
    (Provider::OpenAi, Api::Realtime),
    (Provider::Gemini, Api::GeminiLive),
];

/// The socket APIs a selector byte picks from.
pub const SOCKET_APIS: [Api; 3] = [Api::Responses, Api::Realtime, Api::GeminiLive];

/// One client WebSocket message (selector byte: the API, and how many
/// scanned strings to redact): a message naming a member twice is refused;
/// one that is read has every string and member name in its scanned texts
/// but media payloads, which sit only under `audio` or a blob's `data`; and
/// the message rewritten with every scanned string redacted carries nothing
/// the scanner was not shown but those payloads.
pub fn socket_messages(data: &[u8]) {
    use outpost::provider::socket::read_client_message;
    let Some((&selector, message)) = data.split_first() else {
        return;
    };
    let api = SOCKET_APIS[usize::from(selector) % SOCKET_APIS.len()];
    let all = every_string(message);
    let read = match read_client_message(api, message) {
        Ok(read) => read,
        Err(ParseError::DuplicateKey(_)) => {
            assert!(all.duplicate, "refused a duplicate the reader did not see");
            return;
        }
        Err(_) => return,
    };
    assert!(!all.duplicate && all.valid, "accepted what is not plain JSON");
    let every = usize::from(selector / 3 % 4) + 1;
    let mut edits = Vec::new();
    let mut renames = Vec::new();
    for (i, span) in read.texts.iter().enumerate().filter(|(i, _)| i % every == 0) {
        let label = format!("[R{i}]");
        match span.role {
            TextRole::Key => renames.push((span.path.clone(), label)),
            _ => edits.push((span.path.clone(), label)),
        }
    }
    let mut root = read.json.clone();
    redact_document(&mut root, &edits, &renames).expect("every scanned path is in the message");
    let media = media_strings(&read.json);
    assert!(read.media || media.is_empty(), "a media payload went unflagged");
    let sent = every_string(&to_json(&root));
    for text in &sent.strings {
        let seen = read.texts.iter().any(|s| &s.text == text)
            || text.is_empty()
            || (text.starts_with("[R") && text.ends_with(']'))
            || media.contains(text);
        assert!(seen, "{text:?} was sent but never scanned");
    }
}

/// The strings under an `audio` member, or a `data` member of an object
/// with a media `mimeType`: the only strings a socket message may carry
/// unscanned.
fn media_strings(value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Value::Object(members) = value {
        let mime = members
            .get("mimeType")
            .or_else(|| members.get("mime_type"))
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase);
        let blob = mime.is_some_and(|m| {
            ["audio/", "video/", "image/"]
                .iter()
                .any(|p| m.starts_with(p))
        });
        for (key, member) in members {
            match member {
                Value::String(s) if key == "audio" || (blob && key == "data") => {
                    out.push(s.clone())
                }
                other => out.extend(media_strings(other)),
            }
        }
    } else if let Value::Array(items) = value {
        for item in items {
            out.extend(media_strings(item));
        }
    }
    out
}

/// Reading a stream event by event, and rewriting what it reports.
pub fn stream_state(data: &[u8]) {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let (provider, api) = STREAM_CALLS[usize::from(selector) % STREAM_CALLS.len()];
    let call = ApiCall {
        stream: true,
        ..ApiCall::bare(provider, api, None)
    };
    let _ = stream_error_event(
        provider,
        api,
        ErrorKind::UpstreamUnavailable,
        "fuzz \"quote\"\n",
    );
    let mut parser = SseParser::new();
    let mut events = parser.push(stream);
    events.extend(parser.finish());
    let mut state = StreamState::new(&call);
    for event in &events {
        let item = state.on_event(event);
        let edits: Vec<(JsonPath, String)> = item
            .deltas
            .iter()
            .map(|d| (d.path.clone(), d.text.clone()))
            .chain(
                item.snapshots
                    .iter()
                    .map(|s| (s.path.clone(), s.text.clone())),
            )
            .collect();
        if edits.is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(event.data.as_deref().unwrap_or_default())
            .expect("texts come from JSON data");
        for (path, text) in &edits {
            assert_eq!(
                path.lookup(&value).and_then(Value::as_str),
                Some(text.as_str()),
                "{path}"
            );
        }
        let renamed: Vec<(JsonPath, String)> = edits
            .iter()
            .map(|(p, _)| (p.clone(), "Y".to_owned()))
            .collect();
        check_rewrite_event(event, &renamed);
        let bytes = rewrite_event(event, &renamed).expect("checked above");
        let again = reparse_mid_stream(&bytes);
        let Some(again) = again.iter().find(|e| e.is_dispatched()) else {
            panic!("rewritten event lost its data");
        };
        let reread = StreamState::new(&call).on_event(again);
        let paths = |item: &outpost::provider::StreamItem| {
            item.deltas
                .iter()
                .map(|d| d.path.clone())
                .chain(item.snapshots.iter().map(|s| s.path.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(paths(&reread), paths(&item), "rewriting moved a delta");
    }
    let _ = state.usage();
}
