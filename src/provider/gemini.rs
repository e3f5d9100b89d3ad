//! The Gemini API wire format (`…/models/{model}:generateContent`,
//! `:streamGenerateContent`, `:countTokens`, `:embedContent`,
//! `:batchEmbedContents`), requests, responses and stream chunks.
//!
//! The model is in the path ([`route`](super::route)); bodies carry
//! `contents[]` of `{role, parts[]}` where a part is `text`, `inlineData`,
//! `fileData`, `functionCall` (`args`: free JSON), `functionResponse`
//! (`response`: free JSON), `executableCode` or `codeExecutionResult`;
//! `systemInstruction` is one such content; `generationConfig.maxOutputTokens`
//! caps output.
//!
//! Gemini's JSON is proto3 JSON: every field may also be written in
//! `snake_case` (`system_instruction`, `max_output_tokens`), and the REST
//! docs do so. Both spellings are read. A repeated field given as a single
//! object (`"parts": {"text": …}`) is read as a list of one rather than
//! refused: reading more than the upstream accepts cannot hide text.
//!
//! Streams (`alt=sse`) are one `GenerateContentResponse` per event with no
//! terminal marker; `usageMetadata` is cumulative, so the last one wins.
//! Without `alt=sse` the upstream streams a JSON array instead, which is not
//! SSE: the proxy must look at the response's `Content-Type`.

use serde_json::Value;

use super::call::{Api, ApiCall, TextRole, TextSpan};
use super::json_path::JsonPath;
use super::shape::{
    as_object, count, opt_count, opt_str, present, push_text, schema_descriptions, string_leaves,
    wrong_shape, Object, ParseError,
};
use super::stream::{OutputKind, OutputSlot, StreamItem};
use super::usage::Usage;

// ---- requests -------------------------------------------------------------

/// Any Gemini request body; the API decides which members matter.
pub(crate) fn read_request(body: &Object, call: &mut ApiCall) -> Result<(), ParseError> {
    let root = JsonPath::root();
    match call.api {
        Api::GeminiCountTokens => {
            // Either bare `contents`, or a whole `generateContentRequest`.
            if let Some(contents) = present(body, "contents") {
                read_contents(contents, &root.key("contents"), &mut call.texts)?;
            }
            for (key, request) in
                members(body, ["generateContentRequest", "generate_content_request"])
            {
                let at = root.key(key);
                read_generate_request(as_object(request, &at)?, &at, call, false)?;
            }
            Ok(())
        }
        Api::GeminiEmbed => {
            if let Some(content) = present(body, "content") {
                read_content(
                    content,
                    &root.key("content"),
                    TextRole::User,
                    &mut call.texts,
                )?;
            }
            if let Some(requests) = present(body, "requests") {
                for (at, request) in one_or_many(requests, &root.key("requests"))? {
                    let request = as_object(request, &at)?;
                    if let Some(content) = present(request, "content") {
                        let at = at.key("content");
                        read_content(content, &at, TextRole::User, &mut call.texts)?;
                    }
                }
            }
            Ok(())
        }
        _ => read_generate_request(body, &root, call, true),
    }
}

/// A `GenerateContentRequest` at `at`; `with_limits` reads the output cap.
fn read_generate_request(
    body: &Object,
    at: &JsonPath,
    call: &mut ApiCall,
    with_limits: bool,
) -> Result<(), ParseError> {
    let Some(contents) = present(body, "contents") else {
        return Err(ParseError::Missing {
            path: at.key("contents"),
            expected: "array",
        });
    };
    read_contents(contents, &at.key("contents"), &mut call.texts)?;
    for (key, system) in members(body, ["systemInstruction", "system_instruction"]) {
        read_content(system, &at.key(key), TextRole::System, &mut call.texts)?;
    }
    if let Some(tools) = present(body, "tools") {
        for (tool_at, tool) in one_or_many(tools, &at.key("tools"))? {
            let tool = as_object(tool, &tool_at)?;
            for (key, declarations) in
                members(tool, ["functionDeclarations", "function_declarations"])
            {
                for (decl_at, declaration) in one_or_many(declarations, &tool_at.key(key))? {
                    read_function_declaration(
                        as_object(declaration, &decl_at)?,
                        &decl_at,
                        &mut call.texts,
                    )?;
                }
            }
        }
    }
    if with_limits {
        for (key, config) in members(body, ["generationConfig", "generation_config"]) {
            let config_at = at.key(key);
            let config = as_object(config, &config_at)?;
            for name in ["maxOutputTokens", "max_output_tokens"] {
                if let Some(limit) = opt_count(config, name, &config_at)? {
                    call.max_tokens = Some(call.max_tokens.map_or(limit, |m| m.max(limit)));
                }
            }
        }
    }
    Ok(())
}

fn read_function_declaration(
    declaration: &Object,
    at: &JsonPath,
    out: &mut Vec<TextSpan>,
) -> Result<(), ParseError> {
    if let Some(description) = opt_str(declaration, "description", at)? {
        push_text(
            out,
            at.key("description"),
            TextRole::ToolDefinition,
            description,
        );
    }
    for key in [
        "parameters",
        "parametersJsonSchema",
        "parameters_json_schema",
        "response",
        "responseJsonSchema",
    ] {
        if let Some(schema) = present(declaration, key) {
            schema_descriptions(schema, &at.key(key), out);
        }
    }
    Ok(())
}

/// `contents`: a list of `Content`.
fn read_contents(
    contents: &Value,
    at: &JsonPath,
    out: &mut Vec<TextSpan>,
) -> Result<(), ParseError> {
    for (content_at, content) in one_or_many(contents, at)? {
        read_content(content, &content_at, TextRole::User, out)?;
    }
    Ok(())
}

/// One `Content`: `{role, parts}`. `role` decides the text role unless
/// `forced` is `System` (a system instruction's role is ignored upstream).
fn read_content(
    content: &Value,
    at: &JsonPath,
    forced: TextRole,
    out: &mut Vec<TextSpan>,
) -> Result<(), ParseError> {
    let object = as_object(content, at)?;
    let role = match (forced, opt_str(object, "role", at)?) {
        (TextRole::System, _) => TextRole::System,
        (_, None | Some("user")) => TextRole::User,
        (_, Some("model")) => TextRole::Assistant,
        (_, Some("function" | "tool")) => TextRole::Tool,
        (_, Some(_)) => TextRole::Other,
    };
    if let Some(parts) = present(object, "parts") {
        for (part_at, part) in one_or_many(parts, &at.key("parts"))? {
            read_part(part, &part_at, role, out)?;
        }
    }
    Ok(())
}

/// One `Part`.
fn read_part(
    part: &Value,
    at: &JsonPath,
    role: TextRole,
    out: &mut Vec<TextSpan>,
) -> Result<(), ParseError> {
    let object = as_object(part, at)?;
    match present(object, "text") {
        Some(Value::String(text)) => push_text(out, at.key("text"), role, text),
        Some(other) => return Err(wrong_shape(&at.key("text"), "string", other)),
        None => {}
    }
    for (key, call) in members(object, ["functionCall", "function_call"]) {
        if let Some(args) = call.get("args") {
            string_leaves(args, &at.key(key).key("args"), TextRole::Assistant, out);
        }
    }
    for (key, response) in members(object, ["functionResponse", "function_response"]) {
        if let Some(payload) = response.get("response") {
            string_leaves(payload, &at.key(key).key("response"), TextRole::Tool, out);
        }
    }
    for (key, code) in members(object, ["executableCode", "executable_code"]) {
        if let Some(Value::String(text)) = code.get("code") {
            push_text(out, at.key(key).key("code"), TextRole::Assistant, text);
        }
    }
    for (key, result) in members(object, ["codeExecutionResult", "code_execution_result"]) {
        if let Some(Value::String(text)) = result.get("output") {
            push_text(out, at.key(key).key("output"), TextRole::Tool, text);
        }
    }
    Ok(())
}

/// The present members among a field's two spellings (camelCase, snake_case).
fn members<'v>(
    object: &'v Object,
    names: [&'static str; 2],
) -> impl Iterator<Item = (&'static str, &'v Value)> {
    names
        .into_iter()
        .filter_map(move |name| present(object, name).map(|value| (name, value)))
}

/// A repeated field: an array's elements, or a lone object as a list of one.
fn one_or_many<'v>(
    value: &'v Value,
    at: &JsonPath,
) -> Result<Vec<(JsonPath, &'v Value)>, ParseError> {
    match value {
        Value::Array(items) => Ok(items
            .iter()
            .enumerate()
            .map(|(i, item)| (at.index(i), item))
            .collect()),
        Value::Object(_) => Ok(vec![(at.clone(), value)]),
        other => Err(wrong_shape(at, "array", other)),
    }
}

// ---- responses ------------------------------------------------------------

/// Output text of a `GenerateContentResponse` (`candidates[].content.parts[]`).
pub(crate) fn read_response(root: &Value, out: &mut Vec<TextSpan>) -> Result<(), ParseError> {
    let at = JsonPath::root();
    as_object(root, &at)?;
    if let Some(candidates) = root.get("candidates").filter(|c| !c.is_null()) {
        for (candidate_at, candidate) in one_or_many(candidates, &at.key("candidates"))? {
            if let Some(content) = candidate.get("content").filter(|c| !c.is_null()) {
                read_content(
                    content,
                    &candidate_at.key("content"),
                    TextRole::Assistant,
                    out,
                )?;
            }
        }
    }
    Ok(())
}

/// A `usageMetadata` object, in [`Usage`]'s convention.
pub(crate) fn usage(metadata: &Value) -> Option<Usage> {
    let get = |key: &str| metadata.get(key).and_then(count);
    let prompt = get("promptTokenCount");
    let candidates = get("candidatesTokenCount");
    if prompt.is_none() && candidates.is_none() {
        return None;
    }
    let input = prompt
        .unwrap_or(0)
        .saturating_add(get("toolUsePromptTokenCount").unwrap_or(0));
    let thoughts = get("thoughtsTokenCount").unwrap_or(0);
    Some(Usage {
        input_tokens: input,
        output_tokens: candidates.unwrap_or(0).saturating_add(thoughts),
        cached_input_tokens: get("cachedContentTokenCount").unwrap_or(0).min(input),
        cache_write_tokens: 0,
        reasoning_tokens: thoughts,
    })
}

// ---- streams --------------------------------------------------------------

/// One stream chunk (a `GenerateContentResponse`).
pub(crate) fn read_chunk(data: &Value, item: &mut StreamItem) {
    if let Some(error) = data.get("error") {
        item.upstream_error = Some(
            error
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| error.to_string()),
        );
        item.terminal = true;
    }
    let root = JsonPath::root();
    let candidates = data
        .get("candidates")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (i, candidate) in candidates.iter().enumerate() {
        let index = candidate.get("index").and_then(count).unwrap_or(i as u64);
        let parts_at = root.key("candidates").index(i).key("content").key("parts");
        let parts = candidate
            .get("content")
            .and_then(|c| c.get("parts"))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for (j, part) in parts.iter().enumerate() {
            let at = parts_at.index(j);
            if let Some(Value::String(text)) = part.get("text") {
                let thought = part.get("thought").and_then(Value::as_bool) == Some(true);
                let kind = if thought {
                    OutputKind::Reasoning
                } else {
                    OutputKind::Text
                };
                item.push_delta(
                    at.key("text"),
                    OutputSlot {
                        index,
                        part: 0,
                        kind,
                    },
                    text,
                );
            }
            if let Some(args) = part.get("functionCall").and_then(|c| c.get("args")) {
                let mut leaves = Vec::new();
                string_leaves(
                    args,
                    &at.key("functionCall").key("args"),
                    TextRole::Assistant,
                    &mut leaves,
                );
                for leaf in leaves {
                    let slot = OutputSlot {
                        index,
                        part: 0,
                        kind: OutputKind::ToolArguments,
                    };
                    item.push_delta(leaf.path, slot, &leaf.text);
                }
            }
        }
    }
    item.usage = data.get("usageMetadata").and_then(usage);
    let all_finished = !candidates.is_empty()
        && candidates
            .iter()
            .all(|c| c.get("finishReason").is_some_and(|r| !r.is_null()));
    let prompt_blocked = data
        .get("promptFeedback")
        .and_then(|f| f.get("blockReason"))
        .is_some_and(|r| !r.is_null());
    item.terminal |= all_finished || prompt_blocked;
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

    const GENERATE: &str = r#"{
      "system_instruction": {"parts": [{"text": "You are a cat. Your name is Neko."}]},
      "contents": [
        {"role": "user", "parts": [
          {"text": "Describe this picture"},
          {"inline_data": {"mime_type": "image/jpeg", "data": "/9j/4AAQ"}}
        ]},
        {"role": "model", "parts": [{"functionCall": {"name": "find_theaters", "args": {"location": "Mountain View, CA", "movie": "Barbie"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "find_theaters", "response": {"name": "find_theaters", "content": {"movie": "Barbie", "theaters": [{"name": "AMC Mountain View 16"}]}}}}]},
        {"parts": {"text": "No role, one part"}}
      ],
      "tools": [{"functionDeclarations": [{"name": "find_theaters", "description": "find theaters showing a movie",
                  "parameters": {"type": "object", "properties": {"location": {"type": "string", "description": "The city and state"}}}}]}],
      "generationConfig": {"temperature": 1.0, "maxOutputTokens": 800}
    }"#;

    #[test]
    fn generate_content_reads_model_from_path_and_texts_from_both_spellings() {
        let call = post(
            Provider::Gemini,
            "/v1beta/models/gemini-2.0-flash:generateContent",
            GENERATE,
        );
        assert_eq!(call.api, Api::GeminiGenerateContent);
        assert_eq!(call.model.as_deref(), Some("gemini-2.0-flash"));
        assert_eq!((call.stream, call.max_tokens), (false, Some(800)));
        assert_eq!(
            spans(&call.texts),
            expect(&[
                ("contents[0].parts[0].text", User, "Describe this picture"),
                (
                    "contents[1].parts[0].functionCall.args.location",
                    Assistant,
                    "Mountain View, CA"
                ),
                (
                    "contents[1].parts[0].functionCall.args.movie",
                    Assistant,
                    "Barbie"
                ),
                (
                    "contents[2].parts[0].functionResponse.response.name",
                    Tool,
                    "find_theaters"
                ),
                (
                    "contents[2].parts[0].functionResponse.response.content.movie",
                    Tool,
                    "Barbie"
                ),
                (
                    "contents[2].parts[0].functionResponse.response.content.theaters[0].name",
                    Tool,
                    "AMC Mountain View 16"
                ),
                ("contents[3].parts.text", User, "No role, one part"),
                (
                    "system_instruction.parts[0].text",
                    System,
                    "You are a cat. Your name is Neko."
                ),
                (
                    "tools[0].functionDeclarations[0].description",
                    ToolDefinition,
                    "find theaters showing a movie"
                ),
                (
                    "tools[0].functionDeclarations[0].parameters.properties.location.description",
                    ToolDefinition,
                    "The city and state"
                ),
            ])
        );
    }

    #[test]
    fn stream_path_streams_and_snake_case_limits_count() {
        let body = r#"{"contents":[{"parts":[{"text":"hi"}]}],"generation_config":{"max_output_tokens":64}}"#;
        let call = post(
            Provider::Gemini,
            "/v1beta/models/gemini-1.5-pro:streamGenerateContent",
            body,
        );
        assert_eq!(call.api, Api::GeminiStreamGenerateContent);
        assert_eq!((call.stream, call.max_tokens), (true, Some(64)));
        let tuned = post(
            Provider::Gemini,
            "/v1beta/tunedModels/my-tune-1:generateContent",
            body,
        );
        assert_eq!(tuned.model.as_deref(), Some("tunedModels/my-tune-1"));
        let v1 = post(
            Provider::Gemini,
            "/v1/models/gemini-pro:generateContent",
            body,
        );
        assert_eq!(v1.model.as_deref(), Some("gemini-pro"));
    }

    #[test]
    fn count_tokens_and_embeddings() {
        let call = post(
            Provider::Gemini,
            "/v1beta/models/gemini-2.0-flash:countTokens",
            r#"{"generateContentRequest":{"model":"models/gemini-2.0-flash","contents":[{"parts":[{"text":"count me"}]}],"systemInstruction":{"parts":[{"text":"sys"}]},"generationConfig":{"maxOutputTokens":5}}}"#,
        );
        assert_eq!((call.api, call.max_tokens), (Api::GeminiCountTokens, None));
        assert_eq!(
            spans(&call.texts),
            expect(&[
                (
                    "generateContentRequest.contents[0].parts[0].text",
                    User,
                    "count me"
                ),
                (
                    "generateContentRequest.systemInstruction.parts[0].text",
                    System,
                    "sys"
                ),
            ])
        );
        let call = post(
            Provider::Gemini,
            "/v1beta/models/text-embedding-004:batchEmbedContents",
            r#"{"requests":[{"model":"models/text-embedding-004","content":{"parts":[{"text":"What is life?"}]}},{"model":"models/text-embedding-004","content":{"parts":[{"text":"How does it work?"}]}}]}"#,
        );
        assert_eq!(call.api, Api::GeminiEmbed);
        assert_eq!(
            spans(&call.texts),
            expect(&[
                ("requests[0].content.parts[0].text", User, "What is life?"),
                (
                    "requests[1].content.parts[0].text",
                    User,
                    "How does it work?"
                ),
            ])
        );
        let single = post(
            Provider::Gemini,
            "/v1beta/models/text-embedding-004:embedContent",
            r#"{"content":{"parts":[{"text":"one"}]}}"#,
        );
        assert_eq!(
            spans(&single.texts),
            expect(&[("content.parts[0].text", User, "one")])
        );
    }

    #[test]
    fn wrong_shapes_say_what_and_where() {
        let path = "/v1beta/models/gemini-pro:generateContent";
        let cases = [
            (r#"{}"#, "contents: missing (expected array)"),
            (
                r#"{"contents":"hello"}"#,
                "contents: expected array, found string",
            ),
            (
                r#"{"contents":[{"parts":[{"text":3}]}]}"#,
                "contents[0].parts[0].text: expected string, found number",
            ),
            (
                r#"{"contents":[{"parts":["hello"]}]}"#,
                "contents[0].parts[0]: expected object, found string",
            ),
            (
                r#"{"contents":[],"generationConfig":{"maxOutputTokens":"many"}}"#,
                "generationConfig.maxOutputTokens: expected non-negative integer, found string",
            ),
        ];
        for (body, message) in cases {
            assert_eq!(post_err(Provider::Gemini, path, body), message, "{body}");
        }
    }

    #[test]
    fn rewrite_round_trip_in_function_response() {
        let path = "/v1beta/models/gemini-2.0-flash:generateContent";
        let call = post(Provider::Gemini, path, GENERATE);
        let target = call
            .texts
            .iter()
            .find(|s| s.text == "AMC Mountain View 16")
            .unwrap();
        let rewritten = rewrite_texts(
            GENERATE.as_bytes(),
            &[(target.path.clone(), "[THEATER]".into())],
        )
        .unwrap();
        let again = post(
            Provider::Gemini,
            path,
            std::str::from_utf8(&rewritten).unwrap(),
        );
        let changed: Vec<_> = call
            .texts
            .iter()
            .zip(&again.texts)
            .filter(|(a, b)| a != b)
            .collect();
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].1.text, "[THEATER]");
        assert_eq!(again.texts.len(), call.texts.len());
    }

    #[test]
    fn response_texts_and_usage_count_thoughts_as_output() {
        let call = post(
            Provider::Gemini,
            "/v1beta/models/gemini-2.5-pro:generateContent",
            GENERATE,
        );
        let body = br#"{
          "candidates": [{"content": {"parts": [{"text": "Meow, I see", "thought": false}, {"text": " a cat."}], "role": "model"},
                          "finishReason": "STOP", "index": 0}],
          "usageMetadata": {"promptTokenCount": 1000, "candidatesTokenCount": 40, "totalTokenCount": 1140,
                            "cachedContentTokenCount": 600, "thoughtsTokenCount": 100},
          "modelVersion": "gemini-2.5-pro"
        }"#;
        assert_eq!(
            spans(&response_texts(&call, body).unwrap()),
            expect(&[
                (
                    "candidates[0].content.parts[0].text",
                    Assistant,
                    "Meow, I see"
                ),
                ("candidates[0].content.parts[1].text", Assistant, " a cat."),
            ])
        );
        assert_eq!(
            response_usage(&call, body),
            Some(Usage {
                input_tokens: 1000,
                output_tokens: 140,
                cached_input_tokens: 600,
                cache_write_tokens: 0,
                reasoning_tokens: 100,
            })
        );
        let blocked = br#"{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":8,"totalTokenCount":8}}"#;
        assert!(response_texts(&call, blocked).unwrap().is_empty());
        assert_eq!(
            response_usage(&call, blocked).map(|u| (u.input_tokens, u.output_tokens)),
            Some((8, 0))
        );
    }

    #[test]
    fn sse_chunks_give_deltas_last_usage_and_a_finish() {
        let call = post(
            Provider::Gemini,
            "/v1beta/models/gemini-2.0-flash:streamGenerateContent",
            GENERATE,
        );
        // Gemini frames events with CRLF.
        let stream = concat!(
            "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"The\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 9,\"candidatesTokenCount\": 1,\"totalTokenCount\": 10}}\r\n\r\n",
            "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \" cat sat.\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 9,\"candidatesTokenCount\": 4,\"totalTokenCount\": 13}}\r\n\r\n",
        );
        let mut parser = SseParser::new();
        let events = parser.push(stream.as_bytes());
        let mut state = StreamState::new(&call);
        let first = state.on_event(&events[0]);
        assert_eq!(
            first.deltas[0].path.to_string(),
            "candidates[0].content.parts[0].text"
        );
        assert_eq!(first.deltas[0].text, "The");
        assert!(!first.terminal);
        let last = state.on_event(&events[1]);
        assert_eq!(last.deltas[0].text, " cat sat.");
        assert!(last.terminal);
        assert_eq!(
            state.usage().map(|u| (u.input_tokens, u.output_tokens)),
            Some((9, 4))
        );
    }

    #[test]
    fn stream_error_event_in_gemini_shape() {
        let bytes = stream_error_event(
            Provider::Gemini,
            Api::GeminiStreamGenerateContent,
            ErrorKind::BudgetExhausted,
            "Budget used up.",
        );
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(
            text.starts_with("data: {") && text.ends_with("}\n\n"),
            "{text}"
        );
        let data: Value = serde_json::from_str(&text[6..text.len() - 2]).unwrap();
        assert_eq!(data["error"]["code"], 429);
        assert_eq!(data["error"]["status"], "RESOURCE_EXHAUSTED");
        assert_eq!(data["error"]["message"], "Budget used up.");
        // The same kind on Gemini's OpenAI-compatible endpoint is OpenAI-shaped.
        let bytes = stream_error_event(
            Provider::Gemini,
            Api::ChatCompletions,
            ErrorKind::BudgetExhausted,
            "m",
        );
        let text = std::str::from_utf8(&bytes).unwrap();
        let data: Value = serde_json::from_str(&text[6..text.len() - 2]).unwrap();
        assert_eq!(data["error"]["code"], "budget_exhausted");
    }
}
