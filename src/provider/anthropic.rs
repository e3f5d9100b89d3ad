//! The Anthropic Messages wire format (`POST /v1/messages`,
//! `/v1/messages/count_tokens`, and the Messages bodies inline in
//! `/v1/messages/batches`), requests, responses and stream events.
//!
//! Shapes, from the API reference:
//!
//! - `system`: a string or an array of `text` blocks.
//! - `messages[].content`: a string or an array of blocks: `text` (`text`),
//!   `tool_use` (`input`: free JSON, every string leaf is text), `tool_result`
//!   (`content`: a string or blocks), `document` (a `text` source's `data`, a
//!   `content` source's blocks, `title`, `context`), `search_result`.
//!   `image` blocks carry no text.
//! - `tools[]`: `description` and a JSON-Schema `input_schema`.
//!
//! `thinking` and `redacted_thinking` blocks are not reported: Anthropic signs
//! them, so they cannot be redacted without failing the next turn, and they
//! are the model's own earlier output.
//!
//! Streams: `message_start` (usage so far), `content_block_start`,
//! `content_block_delta` (`text_delta.text`, `input_json_delta.partial_json`),
//! `message_delta` (cumulative usage), `message_stop` (the end), `ping`,
//! `error`. Usage: Anthropic's `input_tokens` excludes cache reads and
//! writes; [`Usage`] includes them (see [`usage`](super::usage)).

use serde_json::Value;

use super::call::{read_body_model, Api, ApiCall, Batch, TextRole, TextSpan};
use super::json_path::JsonPath;
use super::shape::{
    as_object, count, opt_array, opt_bool, opt_count, opt_object, opt_str, present, push_opt_str,
    push_text, required_array, schema_descriptions, string_leaves, wrong_shape, Object, ParseError,
};
use super::stream::{OutputKind, OutputSlot, StreamItem};
use super::usage::Usage;

// ---- requests -------------------------------------------------------------

/// `POST …/v1/messages/batches`: `requests[].params` are Messages bodies,
/// each read as one; the call's texts are all of theirs, its output cap
/// their sum, and its models every one they name.
pub(crate) fn read_batch_request(body: &Object, call: &mut ApiCall) -> Result<(), ParseError> {
    let root = JsonPath::root();
    let requests_at = root.key("requests");
    let requests = required_array(body, "requests", &root)?;
    let mut batch = Batch {
        count: requests.len(),
        models: Vec::new(),
    };
    let mut max_tokens = 0u64;
    for (i, request) in requests.iter().enumerate() {
        let at = requests_at.index(i);
        let params_at = at.key("params");
        let params = opt_object(as_object(request, &at)?, "params", &at)?.ok_or_else(|| {
            ParseError::Missing {
                path: params_at.clone(),
                expected: "object",
            }
        })?;
        let mut one = ApiCall::bare(call.provider, Api::AnthropicMessages, None);
        read_messages_request(params, &mut one).map_err(|err| err.under(&params_at))?;
        if let Some(model) = one.model.take() {
            if !batch.models.contains(&model) {
                batch.models.push(model);
            }
        }
        max_tokens = max_tokens.saturating_add(one.max_tokens.unwrap_or(0));
        call.texts
            .extend(one.texts.into_iter().map(|span| TextSpan {
                path: params_at.join(&span.path),
                ..span
            }));
    }
    call.model = batch.models.first().cloned();
    call.max_tokens = Some(max_tokens);
    call.batch = Some(batch);
    Ok(())
}

/// `POST …/v1/messages` and `…/v1/messages/count_tokens`.
pub(crate) fn read_messages_request(body: &Object, call: &mut ApiCall) -> Result<(), ParseError> {
    let root = JsonPath::root();
    read_body_model(body, call)?;
    if call.api == Api::AnthropicMessages {
        call.stream = opt_bool(body, "stream", &root)?.unwrap_or(false);
        call.max_tokens = opt_count(body, "max_tokens", &root)?;
    }
    let out = &mut call.texts;
    if let Some(system) = present(body, "system") {
        read_blocks(system, &root.key("system"), TextRole::System, out)?;
    }
    let messages_at = root.key("messages");
    for (i, message) in required_array(body, "messages", &root)?.iter().enumerate() {
        let at = messages_at.index(i);
        let message = as_object(message, &at)?;
        let role = match opt_str(message, "role", &at)? {
            Some("user") => TextRole::User,
            Some("assistant") => TextRole::Assistant,
            _ => TextRole::Other,
        };
        match present(message, "content") {
            Some(content) => read_blocks(content, &at.key("content"), role, out)?,
            None => {
                return Err(ParseError::Missing {
                    path: at.key("content"),
                    expected: "string or array",
                })
            }
        }
    }
    if let Some(tools) = opt_array(body, "tools", &root)? {
        for (i, tool) in tools.iter().enumerate() {
            let at = root.key("tools").index(i);
            let tool = as_object(tool, &at)?;
            push_opt_str(out, tool, "description", &at, TextRole::ToolDefinition)?;
            if let Some(schema) = present(tool, "input_schema") {
                schema_descriptions(schema, &at.key("input_schema"), out);
            }
        }
    }
    Ok(())
}

/// `content` (or `system`, or a tool result's `content`): a string or blocks.
fn read_blocks(
    value: &Value,
    at: &JsonPath,
    role: TextRole,
    out: &mut Vec<TextSpan>,
) -> Result<(), ParseError> {
    match value {
        Value::String(text) => push_text(out, at.clone(), role, text),
        Value::Array(blocks) => {
            for (j, block) in blocks.iter().enumerate() {
                read_block(block, &at.index(j), role, out)?;
            }
        }
        other => return Err(wrong_shape(at, "string or array", other)),
    }
    Ok(())
}

/// One content block.
fn read_block(
    block: &Value,
    at: &JsonPath,
    role: TextRole,
    out: &mut Vec<TextSpan>,
) -> Result<(), ParseError> {
    let object = as_object(block, at)?;
    match opt_str(object, "type", at)? {
        Some("text") => match present(object, "text") {
            Some(Value::String(text)) => push_text(out, at.key("text"), role, text),
            Some(other) => return Err(wrong_shape(&at.key("text"), "string", other)),
            None => {
                return Err(ParseError::Missing {
                    path: at.key("text"),
                    expected: "string",
                })
            }
        },
        Some("tool_use" | "server_tool_use" | "mcp_tool_use") => {
            if let Some(input) = present(object, "input") {
                string_leaves(input, &at.key("input"), TextRole::Assistant, out);
            }
        }
        Some("tool_result" | "mcp_tool_result") => {
            if let Some(content) = present(object, "content") {
                read_blocks(content, &at.key("content"), TextRole::Tool, out)?;
            }
        }
        Some("document") => {
            if let Some(source) = opt_object(object, "source", at)? {
                let source_at = at.key("source");
                match opt_str(source, "type", &source_at)? {
                    Some("text") => push_opt_str(out, source, "data", &source_at, role)?,
                    Some("content") => {
                        if let Some(content) = present(source, "content") {
                            read_blocks(content, &source_at.key("content"), role, out)?;
                        }
                    }
                    // base64, url, file: binary or remote, nothing to read here.
                    _ => {}
                }
            }
            push_opt_str(out, object, "title", at, role)?;
            push_opt_str(out, object, "context", at, role)?;
        }
        Some("search_result") => {
            push_opt_str(out, object, "title", at, role)?;
            if let Some(content) = present(object, "content") {
                read_blocks(content, &at.key("content"), role, out)?;
            }
        }
        // Signed by Anthropic (see the module doc).
        Some("thinking" | "redacted_thinking") => {}
        // Blocks we do not know are scanned if they carry text anyway.
        _ => {
            if let Some(Value::String(text)) = object.get("text") {
                push_text(out, at.key("text"), role, text);
            }
        }
    }
    Ok(())
}

// ---- responses ------------------------------------------------------------

/// Output text of a Messages response (`content[]` blocks).
pub(crate) fn read_response(root: &Value, out: &mut Vec<TextSpan>) -> Result<(), ParseError> {
    let at = JsonPath::root();
    let body = as_object(root, &at)?;
    if let Some(blocks) = opt_array(body, "content", &at)? {
        for (i, block) in blocks.iter().enumerate() {
            read_block(block, &at.key("content").index(i), TextRole::Assistant, out)?;
        }
    }
    Ok(())
}

/// Anthropic's raw counts. A stream reports them piecewise: `message_start`
/// has the input side, each `message_delta` the cumulative output (and, on
/// newer API versions, updated input counts), so later values replace
/// earlier ones field by field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    input: Option<u64>,
    output: Option<u64>,
    cache_read: Option<u64>,
    cache_write: Option<u64>,
}

impl Counts {
    /// Takes every count `usage` carries.
    pub(crate) fn update(&mut self, usage: &Value) {
        let get = |key: &str| usage.get(key).and_then(count);
        self.input = get("input_tokens").or(self.input);
        self.output = get("output_tokens").or(self.output);
        self.cache_read = get("cache_read_input_tokens").or(self.cache_read);
        self.cache_write = get("cache_creation_input_tokens").or(self.cache_write);
    }

    /// In [`Usage`]'s convention; `None` before any count was seen.
    pub(crate) fn usage(&self) -> Option<Usage> {
        if self.input.is_none() && self.output.is_none() {
            return None;
        }
        let cache_read = self.cache_read.unwrap_or(0);
        let cache_write = self.cache_write.unwrap_or(0);
        Some(Usage {
            input_tokens: self
                .input
                .unwrap_or(0)
                .saturating_add(cache_read)
                .saturating_add(cache_write),
            output_tokens: self.output.unwrap_or(0),
            cached_input_tokens: cache_read,
            cache_write_tokens: cache_write,
            reasoning_tokens: 0,
        })
    }
}

/// A response's `usage` object.
pub(crate) fn usage(usage: &Value) -> Option<Usage> {
    let mut counts = Counts::default();
    counts.update(usage);
    counts.usage()
}

/// The message of an `{"type":"error","error":{...}}` body or event.
fn error_message(data: &Value) -> Option<String> {
    let error = data.get("error")?;
    Some(
        error
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| error.to_string()),
    )
}

// ---- streams --------------------------------------------------------------

/// One stream event; `counts` carries usage across the stream.
pub(crate) fn read_event(data: &Value, counts: &mut Counts, item: &mut StreamItem) {
    let root = JsonPath::root();
    let index = data.get("index").and_then(count).unwrap_or(0);
    match data.get("type").and_then(Value::as_str) {
        Some("message_start") => {
            if let Some(usage) = data.get("message").and_then(|m| m.get("usage")) {
                counts.update(usage);
                item.usage = counts.usage();
            }
        }
        Some("content_block_start") => {
            // Text blocks start empty in practice, but may not.
            let block = data.get("content_block");
            let is_text = block.and_then(|b| b.get("type")).and_then(Value::as_str) == Some("text");
            if let Some(Value::String(text)) = block.and_then(|b| b.get("text")).filter(|_| is_text)
            {
                let slot = OutputSlot {
                    index,
                    part: 0,
                    kind: OutputKind::Text,
                };
                item.push_delta(root.key("content_block").key("text"), slot, text);
            }
        }
        Some("content_block_delta") => {
            let Some(delta) = data.get("delta") else {
                return;
            };
            let (key, kind) = match delta.get("type").and_then(Value::as_str) {
                Some("text_delta") => ("text", OutputKind::Text),
                Some("input_json_delta") => ("partial_json", OutputKind::ToolArguments),
                _ => return,
            };
            if let Some(Value::String(text)) = delta.get(key) {
                let slot = OutputSlot {
                    index,
                    part: 0,
                    kind,
                };
                item.push_delta(root.key("delta").key(key), slot, text);
            }
        }
        Some("message_delta") => {
            if let Some(usage) = data.get("usage") {
                counts.update(usage);
                item.usage = counts.usage();
            }
        }
        Some("message_stop") => item.terminal = true,
        Some("error") => {
            item.upstream_error = error_message(data);
            item.terminal = true;
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{expect, post, post_err, spans};
    use super::super::{
        response_texts, response_usage, rewrite_texts, stream_error_event, ErrorKind, Provider,
        SseParser, StreamState,
    };
    use super::*;
    use TextRole::{Assistant, System, Tool, ToolDefinition, User};

    const MESSAGES: &str = r#"{
      "model": "claude-sonnet-4-5",
      "max_tokens": 1024,
      "stream": true,
      "system": [
        {"type": "text", "text": "You are a helpful assistant."},
        {"type": "text", "text": "Company handbook ...", "cache_control": {"type": "ephemeral"}}
      ],
      "messages": [
        {"role": "user", "content": "What's the weather in SF?"},
        {"role": "assistant", "content": [
          {"type": "thinking", "thinking": "Let me check.", "signature": "sig"},
          {"type": "text", "text": "I'll check."},
          {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"location": "San Francisco, CA", "units": ["c", 1]}}
        ]},
        {"role": "user", "content": [
          {"type": "tool_result", "tool_use_id": "toolu_01", "content": "15 degrees"},
          {"type": "tool_result", "tool_use_id": "toolu_02", "content": [
            {"type": "text", "text": "secret sk-ant-123"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}}
          ]},
          {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "The grass is green."}, "title": "Facts", "context": "From a textbook"},
          {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
          {"type": "text", "text": "Thanks!"}
        ]}
      ],
      "tools": [{"name": "get_weather", "description": "Get the current weather",
                 "input_schema": {"type": "object", "properties": {"location": {"type": "string", "description": "City and state"}}}}]
    }"#;

    #[test]
    fn messages_request_reports_every_text_with_its_place() {
        let call = post(Provider::Anthropic, "/v1/messages", MESSAGES);
        assert_eq!(call.api, Api::AnthropicMessages);
        assert_eq!(call.model.as_deref(), Some("claude-sonnet-4-5"));
        assert_eq!((call.stream, call.max_tokens), (true, Some(1024)));
        assert_eq!(
            spans(&call.texts),
            expect(&[
                ("system[0].text", System, "You are a helpful assistant."),
                ("system[1].text", System, "Company handbook ..."),
                ("messages[0].content", User, "What's the weather in SF?"),
                ("messages[1].content[1].text", Assistant, "I'll check."),
                (
                    "messages[1].content[2].input.location",
                    Assistant,
                    "San Francisco, CA"
                ),
                ("messages[1].content[2].input.units[0]", Assistant, "c"),
                ("messages[2].content[0].content", Tool, "15 degrees"),
                (
                    "messages[2].content[1].content[0].text",
                    Tool,
                    "secret sk-ant-123"
                ),
                (
                    "messages[2].content[2].source.data",
                    User,
                    "The grass is green."
                ),
                ("messages[2].content[2].title", User, "Facts"),
                ("messages[2].content[2].context", User, "From a textbook"),
                ("messages[2].content[4].text", User, "Thanks!"),
                (
                    "tools[0].description",
                    ToolDefinition,
                    "Get the current weather"
                ),
                (
                    "tools[0].input_schema.properties.location.description",
                    ToolDefinition,
                    "City and state"
                ),
            ])
        );
    }

    #[test]
    fn count_tokens_reads_texts_but_no_limits() {
        let call = post(
            Provider::Anthropic,
            "/v1/messages/count_tokens",
            r#"{"model":"claude-opus-4","system":"Be brief.","messages":[{"role":"user","content":"Hello"}],"max_tokens":9,"stream":true}"#,
        );
        assert_eq!(call.api, Api::AnthropicCountTokens);
        assert_eq!((call.stream, call.max_tokens), (false, None));
        assert_eq!(
            spans(&call.texts),
            expect(&[
                ("system", System, "Be brief."),
                ("messages[0].content", User, "Hello")
            ])
        );
    }

    #[test]
    fn messages_request_of_the_wrong_shape_says_what_and_where() {
        let cases = [
            (
                r#"{"model":"m","max_tokens":1}"#,
                "messages: missing (expected array)",
            ),
            (
                r#"{"system":7,"messages":[]}"#,
                "system: expected string or array, found number",
            ),
            (
                r#"{"messages":[{"role":"user"}]}"#,
                "messages[0].content: missing (expected string or array)",
            ),
            (
                r#"{"messages":[{"role":"user","content":{"type":"text"}}]}"#,
                "messages[0].content: expected string or array, found object",
            ),
            (
                r#"{"messages":[{"role":"user","content":[{"type":"text","text":1}]}]}"#,
                "messages[0].content[0].text: expected string, found number",
            ),
            (
                r#"{"messages":[{"role":"user","content":[{"type":"tool_result","content":5}]}]}"#,
                "messages[0].content[0].content: expected string or array, found number",
            ),
            (
                r#"{"messages":[],"max_tokens":"lots"}"#,
                "max_tokens: expected non-negative integer, found string",
            ),
        ];
        for (body, message) in cases {
            assert_eq!(
                post_err(Provider::Anthropic, "/v1/messages", body),
                message,
                "{body}"
            );
        }
    }

    #[test]
    fn rewrite_round_trip_in_a_nested_tool_result() {
        let call = post(Provider::Anthropic, "/v1/messages", MESSAGES);
        let secret = call
            .texts
            .iter()
            .find(|s| s.text.contains("sk-ant"))
            .unwrap();
        assert_eq!(
            secret.path.to_string(),
            "messages[2].content[1].content[0].text"
        );
        let rewritten = rewrite_texts(
            MESSAGES.as_bytes(),
            &[(secret.path.clone(), "secret [KEY]".into())],
        )
        .unwrap();
        let again = post(
            Provider::Anthropic,
            "/v1/messages",
            std::str::from_utf8(&rewritten).unwrap(),
        );
        let mut expected = call.texts.clone();
        for span in &mut expected {
            if span.path == secret.path {
                span.text = "secret [KEY]".into();
            }
        }
        assert_eq!(again.texts, expected);
        let before: Value = serde_json::from_str(MESSAGES).unwrap();
        let after: Value = serde_json::from_slice(&rewritten).unwrap();
        // The thinking block and its signature are untouched.
        assert_eq!(
            before["messages"][1]["content"][0],
            after["messages"][1]["content"][0]
        );
        assert_eq!(
            before["messages"][2]["content"][1]["content"][1],
            after["messages"][2]["content"][1]["content"][1]
        );
    }

    #[test]
    fn response_texts_and_usage_include_cache_counts() {
        let call = post(Provider::Anthropic, "/v1/messages", MESSAGES);
        let body = br#"{
          "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
          "content": [
            {"type": "text", "text": "It is 15 degrees."},
            {"type": "tool_use", "id": "toolu_3", "name": "f", "input": {"q": "again"}}
          ],
          "stop_reason": "end_turn",
          "usage": {"input_tokens": 50, "cache_creation_input_tokens": 200, "cache_read_input_tokens": 1000, "output_tokens": 20}
        }"#;
        assert_eq!(
            spans(&response_texts(&call, body).unwrap()),
            expect(&[
                ("content[0].text", Assistant, "It is 15 degrees."),
                ("content[1].input.q", Assistant, "again")
            ])
        );
        let usage = response_usage(&call, body).unwrap();
        assert_eq!(
            usage,
            Usage {
                input_tokens: 1250,
                output_tokens: 20,
                cached_input_tokens: 1000,
                cache_write_tokens: 200,
                reasoning_tokens: 0,
            }
        );
        assert_eq!(usage.uncached_input_tokens(), 50);
        // count_tokens answers with a count, but nothing was used.
        let count = post(
            Provider::Anthropic,
            "/v1/messages/count_tokens",
            r#"{"messages":[]}"#,
        );
        assert_eq!(response_usage(&count, br#"{"input_tokens": 14}"#), None);
    }

    const STREAM: &str = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"content\":[],\"usage\":{\"input_tokens\":472,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":300,\"output_tokens\":2}}}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: ping\n",
        "data: {\"type\": \"ping\"}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"loc\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"hmm\"}}\n\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":15}}\n\n",
        "event: message_stop\n",
        "data: {\"type\":\"message_stop\"}\n\n",
    );

    #[test]
    fn stream_deltas_merged_usage_and_stop() {
        let call = post(Provider::Anthropic, "/v1/messages", MESSAGES);
        let mut parser = SseParser::new();
        let events = parser.push(STREAM.as_bytes());
        let mut state = StreamState::new(&call);
        let items: Vec<_> = events.iter().map(|e| state.on_event(e)).collect();
        assert_eq!(items.len(), 8);
        assert_eq!(
            items[0].usage,
            Some(Usage {
                input_tokens: 772,
                output_tokens: 2,
                cached_input_tokens: 300,
                cache_write_tokens: 0,
                reasoning_tokens: 0,
            })
        );
        assert!(items[1].deltas.is_empty() && items[2].deltas.is_empty());
        let text = &items[3].deltas[0];
        assert_eq!(
            (text.path.to_string(), text.text.as_str()),
            ("delta.text".to_owned(), "Hello")
        );
        assert_eq!(
            text.slot,
            OutputSlot {
                index: 0,
                part: 0,
                kind: OutputKind::Text
            }
        );
        assert_eq!(items[4].deltas[0].path.to_string(), "delta.partial_json");
        assert_eq!(items[4].deltas[0].slot.kind, OutputKind::ToolArguments);
        assert!(
            items[5].deltas.is_empty(),
            "thinking is signed and not reported"
        );
        // message_delta's cumulative output count replaces message_start's; input stays.
        assert_eq!(
            items[6].usage.map(|u| (u.input_tokens, u.output_tokens)),
            Some((772, 15))
        );
        assert!(!items[6].terminal && items[7].terminal);
        assert_eq!(state.usage().map(|u| u.output_tokens), Some(15));
    }

    #[test]
    fn stream_error_event_is_reported_and_produced_in_anthropic_shape() {
        let call = post(Provider::Anthropic, "/v1/messages", MESSAGES);
        let bytes = stream_error_event(
            Provider::Anthropic,
            Api::AnthropicMessages,
            ErrorKind::PolicyBlocked,
            "Blocked by rule `x`.",
        );
        let mut parser = SseParser::new();
        let events = parser.push(&bytes);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event_type(), "error");
        let data: Value = serde_json::from_str(events[0].data.as_deref().unwrap()).unwrap();
        assert_eq!(data["type"], "error");
        assert_eq!(data["error"]["type"], "invalid_request_error");
        assert_eq!(data["error"]["message"], "Blocked by rule `x`.");
        let item = StreamState::new(&call).on_event(&events[0]);
        assert_eq!(item.upstream_error.as_deref(), Some("Blocked by rule `x`."));
        assert!(item.terminal);
    }
}
