//! The provider protocols spoken over WebSocket, message by message.
//!
//! Three APIs run over a socket on provider hosts:
//! - **Responses** (`wss://…/v1/responses`): the client sends
//!   `response.create` with the same top-level fields as `POST
//!   /v1/responses`; the server answers with the same events as the SSE
//!   stream, one per message, ending in `response.completed`.
//! - **Realtime** (`wss://…/v1/realtime?model=…`): conversation items and
//!   session settings arrive on their own (`conversation.item.create`,
//!   `session.update`), audio in `input_audio_buffer.append`; a response is
//!   asked for with `response.create` and ends with `response.done`.
//! - **Gemini Live** (`…BidiGenerateContent`): a `setup` message names the
//!   model; `clientContent` turns (or `realtimeInput`) ask for an answer,
//!   which comes as `serverContent` messages until `turnComplete`, with
//!   `usageMetadata`. The server sends its JSON in binary frames.
//!
//! Words: a *call* message asks the model for a response (it is admitted
//! against model rules, rate limits and budgets, and gets an audit record);
//! an *input* message adds to what the next call sends (its strings are
//! scanned and it may be refused or rewritten, but it is not a call by
//! itself); *media* is audio or video, which no guardrail can read.
//!
//! Every string of every client message is scanned, whatever its type, but
//! media payloads (base64 audio and video): a message type this module does
//! not know is still scanned whole. Pure: bytes in, facts out.

use serde_json::Value;

use super::call::{Api, TextRole, TextSpan};
use super::json_path::JsonPath;
use super::shape::{parse_json_strict, ParseError};
use super::stream::{OutputKind, OutputSlot, StreamItem};
use super::unclaimed::unclaimed_strings;
use super::usage::Usage;

/// The API a WebSocket handshake path names: [`Api::Responses`],
/// [`Api::Realtime`], [`Api::GeminiLive`], or [`Api::Unknown`]. The path is
/// normalised as for HTTP routing ([`super::route::segments`]).
pub fn socket_api(path: &str) -> Api {
    let segments = super::route::segments(path);
    let Some(last) = segments.last().map(|s| s.to_ascii_lowercase()) else {
        return Api::Unknown;
    };
    match last.as_str() {
        "responses" => Api::Responses,
        "realtime" => Api::Realtime,
        // `google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent`
        // (and the constrained variant for ephemeral tokens).
        l if l.ends_with(".bidigeneratecontent")
            || l.ends_with(".bidigeneratecontentconstrained") =>
        {
            Api::GeminiLive
        }
        _ => Api::Unknown,
    }
}

/// What one client message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// Asks the model for a response.
    Call,
    /// Adds input, settings or tool results for the next call.
    Input,
    /// Anything else (cancel, commit, acknowledgements, unknown types).
    Other,
}

/// One client message, read.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientMessage {
    /// What it is.
    pub kind: ClientKind,
    /// The message `type` (Gemini: its top-level member), for records and errors.
    pub name: String,
    /// A model it names (`response.create`'s `model`, `session.update`'s
    /// `session.model`, Gemini's `setup.model` without `models/`).
    pub model: Option<String>,
    /// The output cap it sets.
    pub max_tokens: Option<u64>,
    /// The parsed message.
    pub json: Value,
    /// Every string and member name in it but media payloads: what the
    /// request guardrails scan.
    pub texts: Vec<TextSpan>,
    /// It carries audio or video (unscannable).
    pub media: bool,
}

impl ClientMessage {
    /// Bytes of text in the message (member names aside): what a budget
    /// estimates the prompt from.
    pub fn text_bytes(&self) -> usize {
        self.texts
            .iter()
            .filter(|t| t.role != TextRole::Key)
            .map(|t| t.text.len())
            .sum()
    }
}

/// Read one client message of `api` (JSON naming no member twice).
pub fn read_client_message(api: Api, bytes: &[u8]) -> Result<ClientMessage, ParseError> {
    let json = parse_json_strict(bytes)?;
    let mut media = Vec::new();
    find_media(&json, &JsonPath::root(), &mut media);
    let texts = unclaimed_strings(&json, &media);
    let str_at = |path: &[&str]| {
        let mut at = &json;
        for key in path {
            at = at.get(key)?;
        }
        at.as_str().map(str::to_owned)
    };
    let count_at = |path: &[&str]| {
        let mut at = &json;
        for key in path {
            at = at.get(key)?;
        }
        at.as_u64()
    };
    let (kind, name, model, max_tokens) = if api == Api::GeminiLive {
        let name = json
            .as_object()
            .and_then(|o| o.keys().next().cloned())
            .unwrap_or_default();
        let kind = match name.as_str() {
            // A turn the client ends, or live input: both make the model answer.
            "clientContent" if json["clientContent"]["turnComplete"] == Value::Bool(true) => {
                ClientKind::Call
            }
            "realtimeInput" => ClientKind::Call,
            "setup" | "clientContent" | "toolResponse" => ClientKind::Input,
            _ => ClientKind::Other,
        };
        let model = str_at(&["setup", "model"])
            .map(|m| m.strip_prefix("models/").map(str::to_owned).unwrap_or(m));
        let cap = count_at(&["setup", "generationConfig", "maxOutputTokens"]);
        (kind, name, model, cap)
    } else {
        let name = str_at(&["type"]).unwrap_or_default();
        let kind = match name.as_str() {
            "response.create" => ClientKind::Call,
            "conversation.item.create"
            | "session.update"
            | "response.append"
            | "response.steer" => ClientKind::Input,
            _ => ClientKind::Other,
        };
        // Responses puts the body's fields at the top; Realtime (and
        // earlier Responses drafts) under `response`.
        let model = str_at(&["model"])
            .or_else(|| str_at(&["response", "model"]))
            .or_else(|| str_at(&["session", "model"]));
        // Codex's warm-up (`"generate": false`) makes the model write nothing.
        let warm_up = json["generate"] == Value::Bool(false);
        let cap = warm_up
            .then_some(0)
            .or_else(|| count_at(&["max_output_tokens"]))
            .or_else(|| count_at(&["response", "max_output_tokens"]))
            .or_else(|| count_at(&["response", "max_response_output_tokens"]));
        (kind, name, model, cap)
    };
    Ok(ClientMessage {
        kind,
        name,
        model,
        max_tokens,
        media: !media.is_empty() || name_is_media(api, &json),
        json,
        texts,
    })
}

/// Messages that are media by their type, even when the payload is empty.
fn name_is_media(api: Api, json: &Value) -> bool {
    match api {
        Api::GeminiLive => ["audio", "video", "mediaChunks"]
            .iter()
            .any(|k| json["realtimeInput"].get(k).is_some()),
        _ => json["type"] == "input_audio_buffer.append",
    }
}

/// The places of media payloads: OpenAI's `audio` strings (the audio
/// buffer, `input_audio` content parts) and Gemini blobs (`data` next to a
/// `mimeType` that is audio, video or an image).
fn find_media(value: &Value, at: &JsonPath, out: &mut Vec<TextSpan>) {
    match value {
        Value::Object(members) => {
            let mime = members
                .get("mimeType")
                .or_else(|| members.get("mime_type"))
                .and_then(Value::as_str);
            let blob = mime.is_some_and(|m| {
                let m = m.to_ascii_lowercase();
                m.starts_with("audio/") || m.starts_with("video/") || m.starts_with("image/")
            });
            for (key, member) in members {
                let member_at = at.key(key);
                let payload = (key == "audio" && member.is_string())
                    || (blob && key == "data" && member.is_string());
                if payload {
                    out.push(TextSpan {
                        path: member_at,
                        role: TextRole::Other,
                        text: String::new(),
                    });
                } else {
                    find_media(member, &member_at, out);
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                find_media(item, &at.index(i), out);
            }
        }
        _ => {}
    }
}

/// Whether a server message of `api` begins a response (Responses and
/// Realtime `response.created`; for Gemini Live, any model output).
pub fn starts_response(api: Api, json: &Value) -> bool {
    match api {
        Api::GeminiLive => json.get("serverContent").is_some() || json.get("toolCall").is_some(),
        _ => json["type"] == "response.created",
    }
}

/// One Realtime server event (GA and beta names).
pub(crate) fn read_realtime_event(data: &Value, item: &mut StreamItem) {
    let kind = data["type"].as_str().unwrap_or_default();
    let number = |key: &str| data.get(key).and_then(Value::as_u64).unwrap_or(0);
    let root = JsonPath::root();
    let delta = match kind {
        "response.output_text.delta" | "response.text.delta" => Some(OutputKind::Text),
        "response.output_audio_transcript.delta" | "response.audio_transcript.delta" => {
            // The spoken answer's words: the same output, heard.
            Some(OutputKind::Text)
        }
        "response.function_call_arguments.delta" => Some(OutputKind::ToolArguments),
        _ => None,
    };
    if let Some(kind) = delta {
        if let Some(Value::String(text)) = data.get("delta") {
            let slot = OutputSlot {
                index: number("output_index"),
                part: number("content_index"),
                kind,
            };
            item.push_delta(root.key("delta"), slot, text);
        }
        return;
    }
    match kind {
        "response.done" => {
            item.terminal = true;
            item.usage = data["response"].get("usage").and_then(realtime_usage);
            if data["response"]["status"] == "failed" {
                item.upstream_error = data["response"]["status_details"]["error"]["message"]
                    .as_str()
                    .map(str::to_owned)
                    .or_else(|| Some("the response failed".into()));
            }
        }
        "error" => {
            item.upstream_error = data["error"]["message"].as_str().map(str::to_owned);
        }
        _ => {}
    }
    // Everything else repeats output already streamed (or is the model's
    // own item): every text it carries gets the redactions too.
    snapshot_texts(data, &root, &mut item.snapshots);
}

/// Strings under members that carry model text, anywhere in `value`.
fn snapshot_texts(value: &Value, at: &JsonPath, out: &mut Vec<TextSpan>) {
    match value {
        Value::Object(members) => {
            for (key, member) in members {
                let member_at = at.key(key);
                match member {
                    Value::String(text)
                        if matches!(key.as_str(), "text" | "transcript" | "arguments") =>
                    {
                        super::shape::push_text(out, member_at, TextRole::Assistant, text);
                    }
                    _ => snapshot_texts(member, &member_at, out),
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                snapshot_texts(item, &at.index(i), out);
            }
        }
        _ => {}
    }
}

/// A Realtime `usage` object (`input_token_details`, singular).
fn realtime_usage(usage: &Value) -> Option<Usage> {
    let input = usage.get("input_tokens")?.as_u64()?;
    let output = usage["output_tokens"].as_u64().unwrap_or(0);
    let cached = usage["input_token_details"]["cached_tokens"]
        .as_u64()
        .unwrap_or(0);
    Some(Usage {
        input_tokens: input,
        output_tokens: output,
        cached_input_tokens: cached.min(input),
        ..Usage::default()
    })
}

/// One Gemini Live server message.
pub(crate) fn read_live_message(data: &Value, item: &mut StreamItem) {
    let root = JsonPath::root();
    if let Some(content) = data.get("serverContent") {
        let at = root.key("serverContent");
        if let Some(parts) = content["modelTurn"]["parts"].as_array() {
            for (i, part) in parts.iter().enumerate() {
                if let Some(Value::String(text)) = part.get("text") {
                    let slot = OutputSlot {
                        index: 0,
                        part: 0,
                        kind: OutputKind::Text,
                    };
                    let path = at.key("modelTurn").key("parts").index(i).key("text");
                    item.push_delta(path, slot, text);
                }
            }
        }
        if let Some(Value::String(text)) = content["outputTranscription"].get("text") {
            let slot = OutputSlot {
                index: 0,
                part: 1,
                kind: OutputKind::Text,
            };
            item.push_delta(at.key("outputTranscription").key("text"), slot, text);
        }
        item.terminal = content["turnComplete"] == Value::Bool(true);
    }
    if let Some(call) = data.get("toolCall") {
        snapshot_texts(call, &root.key("toolCall"), &mut item.snapshots);
    }
    if let Some(metadata) = data.get("usageMetadata") {
        item.usage = live_usage(metadata);
    }
}

/// Live's `usageMetadata` (`responseTokenCount` for the output).
fn live_usage(metadata: &Value) -> Option<Usage> {
    let mut usage = super::gemini::usage(metadata);
    let response = metadata.get("responseTokenCount").and_then(Value::as_u64);
    match (&mut usage, response) {
        (Some(u), Some(n)) if u.output_tokens == 0 => u.output_tokens = n + u.reasoning_tokens,
        (None, Some(n)) => {
            usage = Some(Usage {
                output_tokens: n,
                ..Usage::default()
            })
        }
        _ => {}
    }
    usage
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{SseEvent, StreamState};
    use serde_json::json;

    #[test]
    fn handshake_paths_name_their_api_however_written() {
        assert_eq!(socket_api("/v1/responses"), Api::Responses);
        assert_eq!(socket_api("/v1//responses/"), Api::Responses);
        assert_eq!(socket_api("/v1/%72ealtime"), Api::Realtime);
        assert_eq!(socket_api("/openai/v1/realtime;x"), Api::Realtime);
        assert_eq!(
            socket_api(
                "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
            ),
            Api::GeminiLive
        );
        assert_eq!(socket_api("/v1/chat/completions"), Api::Unknown);
        assert_eq!(socket_api("/"), Api::Unknown);
    }

    #[test]
    fn a_response_create_is_a_call_with_its_model_cap_and_every_string() {
        let message = json!({"type": "response.create", "model": "gpt-5",
            "max_output_tokens": 300, "input": [{"role": "user",
            "content": [{"type": "input_text", "text": "hi AKIA"}]}],
            "metadata": {"k": "v"}});
        let read = read_client_message(Api::Responses, message.to_string().as_bytes()).unwrap();
        assert_eq!(read.kind, ClientKind::Call);
        assert_eq!(read.model.as_deref(), Some("gpt-5"));
        assert_eq!(read.max_tokens, Some(300));
        let texts: Vec<&str> = read.texts.iter().map(|t| t.text.as_str()).collect();
        for expected in ["hi AKIA", "v", "k", "metadata", "response.create"] {
            assert!(texts.contains(&expected), "{expected}: {texts:?}");
        }
        assert!(!read.media);
    }

    #[test]
    fn audio_payloads_are_media_and_not_scanned() {
        let append = json!({"type": "input_audio_buffer.append", "audio": "UklGRiQAAABXQVZF"});
        let read = read_client_message(Api::Realtime, append.to_string().as_bytes()).unwrap();
        assert!(read.media);
        assert!(read.texts.iter().all(|t| t.text != "UklGRiQAAABXQVZF"));
        let item = json!({"type": "conversation.item.create", "item": {"type": "message",
            "role": "user", "content": [{"type": "input_text", "text": "hello"},
            {"type": "input_audio", "audio": "QUJD"}]}});
        let read = read_client_message(Api::Realtime, item.to_string().as_bytes()).unwrap();
        assert_eq!(read.kind, ClientKind::Input);
        assert!(read.media);
        assert!(read.texts.iter().any(|t| t.text == "hello"));
        assert!(read.texts.iter().all(|t| t.text != "QUJD"));
        let live = json!({"realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=16000",
            "data": "AAAA"}}});
        let read = read_client_message(Api::GeminiLive, live.to_string().as_bytes()).unwrap();
        assert!(read.media);
        assert!(read.texts.iter().all(|t| t.text != "AAAA"));
        // A `data` string that is not a media blob is scanned.
        let text = json!({"clientContent": {"turns": [{"parts": [{"data": "AKIA"}]}]}});
        let read = read_client_message(Api::GeminiLive, text.to_string().as_bytes()).unwrap();
        assert!(!read.media);
        assert!(read.texts.iter().any(|t| t.text == "AKIA"));
    }

    #[test]
    fn gemini_live_setup_names_the_model_and_a_complete_turn_is_a_call() {
        let setup = br#"{"setup":{"model":"models/gemini-live-2.5-flash","generationConfig":{"maxOutputTokens":64}}}"#;
        let read = read_client_message(Api::GeminiLive, setup).unwrap();
        assert_eq!(read.kind, ClientKind::Input);
        assert_eq!(read.model.as_deref(), Some("gemini-live-2.5-flash"));
        assert_eq!(read.max_tokens, Some(64));
        let turn = br#"{"clientContent":{"turns":[{"role":"user","parts":[{"text":"hi"}]}],"turnComplete":true}}"#;
        assert_eq!(
            read_client_message(Api::GeminiLive, turn).unwrap().kind,
            ClientKind::Call
        );
        let partial = br#"{"clientContent":{"turns":[],"turnComplete":false}}"#;
        assert_eq!(
            read_client_message(Api::GeminiLive, partial).unwrap().kind,
            ClientKind::Input
        );
    }

    #[test]
    fn duplicate_members_are_refused() {
        let twice = br#"{"type":"response.create","input":"AKIA","input":"hi"}"#;
        assert!(matches!(
            read_client_message(Api::Responses, twice),
            Err(ParseError::DuplicateKey(_))
        ));
    }

    fn events(api: Api, messages: &[Value]) -> Vec<StreamItem> {
        let call = crate::provider::ApiCall::bare(crate::provider::Provider::OpenAi, api, None);
        let mut state = StreamState::new(&call);
        messages
            .iter()
            .map(|m| {
                let text = m.to_string();
                state.on_event(&SseEvent {
                    event: None,
                    data: Some(text.clone()),
                    id: None,
                    retry: None,
                    raw: text.into(),
                })
            })
            .collect()
    }

    #[test]
    fn realtime_events_give_deltas_snapshots_and_usage() {
        let items = events(
            Api::Realtime,
            &[
                json!({"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": "4111 "}),
                json!({"type": "response.output_audio_transcript.delta", "delta": "spoken"}),
                json!({"type": "response.output_text.done", "text": "4111 1111"}),
                json!({"type": "response.done", "response": {"status": "completed",
                    "output": [{"content": [{"type": "output_text", "text": "4111 1111"}]}],
                    "usage": {"input_tokens": 12, "output_tokens": 5,
                              "input_token_details": {"cached_tokens": 4}}}}),
            ],
        );
        assert_eq!(items[0].deltas[0].text, "4111 ");
        assert_eq!(items[1].deltas[0].text, "spoken");
        assert_eq!(items[2].snapshots[0].text, "4111 1111");
        assert!(items[3].terminal);
        assert_eq!(items[3].snapshots.len(), 1);
        let usage = items[3].usage.unwrap();
        assert_eq!(
            (
                usage.input_tokens,
                usage.output_tokens,
                usage.cached_input_tokens
            ),
            (12, 5, 4)
        );
    }

    #[test]
    fn gemini_live_messages_give_deltas_a_turn_end_and_usage() {
        let items = events(
            Api::GeminiLive,
            &[
                json!({"serverContent": {"modelTurn": {"parts": [{"text": "Hel"}, {"text": "lo"}]}}}),
                json!({"serverContent": {"turnComplete": true},
                       "usageMetadata": {"promptTokenCount": 9, "responseTokenCount": 3, "totalTokenCount": 12}}),
            ],
        );
        let texts: Vec<&str> = items[0].deltas.iter().map(|d| d.text.as_str()).collect();
        assert_eq!(texts, ["Hel", "lo"]);
        assert!(!items[0].terminal);
        assert!(items[1].terminal);
        let usage = items[1].usage.unwrap();
        assert_eq!((usage.input_tokens, usage.output_tokens), (9, 3));
    }
}
