//! The OpenAI wire format: Chat Completions, Responses, legacy Completions
//! and Embeddings, as OpenAI, Azure and every OpenAI-compatible host speak
//! them.
//!
//! Requests are checked strictly (a wrong shape is an error, so no text goes
//! unseen); responses and stream events are read leniently (they are passed
//! on to the client whatever we make of them). Shapes, from the API
//! reference:
//!
//! - Chat: `messages[].content` is a string or an array of parts (`text`
//!   parts carry `text`; `image_url`, `input_audio`, `file` carry none);
//!   assistant turns carry `tool_calls[].function.arguments` (a JSON string)
//!   and `refusal`; `tool` turns carry results in `content`; `tools[].function`
//!   carries `description` and a JSON-Schema `parameters`.
//! - Responses: `instructions`, and `input` as a string or an array of items:
//!   messages (content parts `input_text`/`output_text`/`refusal`),
//!   `function_call` (`arguments`), `function_call_output` (`output`),
//!   `reasoning` (`summary[].text`) and a few more.
//! - Completions: `prompt` (and Mistral FIM `suffix`) as a string, strings,
//!   tokens or token arrays. Embeddings: `input` likewise.
//!
//! Usage convention (see [`Usage`]): `input_tokens` *includes* cached input
//! tokens, as OpenAI's `prompt_tokens` does; `output_tokens` includes
//! reasoning tokens, as `completion_tokens` does.

use serde_json::Value;

use super::call::{read_body_model, ApiCall, TextRole, TextSpan};
use super::json_path::JsonPath;
use super::shape::{
    as_object, count, opt_array, opt_bool, opt_count, opt_object, opt_str, present, push_opt_str,
    push_text, required_array, schema_descriptions, wrong_shape, Object, ParseError,
};
use super::stream::{OutputKind, OutputSlot, StreamItem};
use super::usage::Usage;

// ---- requests -------------------------------------------------------------

/// `POST …/chat/completions`.
pub(crate) fn read_chat_request(body: &Object, call: &mut ApiCall) -> Result<(), ParseError> {
    let root = JsonPath::root();
    read_body_model(body, call)?;
    call.stream = opt_bool(body, "stream", &root)?.unwrap_or(false);
    call.max_tokens = largest_count(body, &["max_completion_tokens", "max_tokens"], &root)?;
    let out = &mut call.texts;
    let messages_at = root.key("messages");
    for (i, message) in required_array(body, "messages", &root)?.iter().enumerate() {
        read_chat_message(message, &messages_at.index(i), out)?;
    }
    if let Some(prediction) = opt_object(body, "prediction", &root)? {
        if let Some(content) = present(prediction, "content") {
            read_content(
                content,
                &root.key("prediction").key("content"),
                TextRole::Other,
                out,
            )?;
        }
    }
    read_tools(body, &root, out)?;
    Ok(())
}

/// `POST …/responses`.
pub(crate) fn read_responses_request(body: &Object, call: &mut ApiCall) -> Result<(), ParseError> {
    let root = JsonPath::root();
    read_body_model(body, call)?;
    call.stream = opt_bool(body, "stream", &root)?.unwrap_or(false);
    call.max_tokens = opt_count(body, "max_output_tokens", &root)?;
    let out = &mut call.texts;
    if let Some(instructions) = present(body, "instructions") {
        read_items_or_text(
            instructions,
            &root.key("instructions"),
            TextRole::System,
            out,
        )?;
    }
    if let Some(input) = present(body, "input") {
        read_items_or_text(input, &root.key("input"), TextRole::User, out)?;
    }
    read_tools(body, &root, out)?;
    // Reusable prompt templates: the variables are substituted into the prompt.
    if let Some(prompt) = opt_object(body, "prompt", &root)? {
        let at = root.key("prompt");
        if let Some(variables) = opt_object(prompt, "variables", &at)? {
            let at = at.key("variables");
            for (name, value) in variables {
                match value {
                    Value::String(text) => push_text(out, at.key(name), TextRole::User, text),
                    Value::Object(_) => read_part(value, &at.key(name), TextRole::User, out)?,
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

/// `POST …/completions` (legacy; also Mistral FIM with `suffix`).
pub(crate) fn read_completions_request(
    body: &Object,
    call: &mut ApiCall,
) -> Result<(), ParseError> {
    let root = JsonPath::root();
    read_body_model(body, call)?;
    call.stream = opt_bool(body, "stream", &root)?.unwrap_or(false);
    call.max_tokens = opt_count(body, "max_tokens", &root)?;
    if let Some(prompt) = present(body, "prompt") {
        read_strings_or_tokens(prompt, &root.key("prompt"), &mut call.texts)?;
    }
    push_opt_str(&mut call.texts, body, "suffix", &root, TextRole::User)?;
    Ok(())
}

/// `POST …/embeddings`.
pub(crate) fn read_embeddings_request(body: &Object, call: &mut ApiCall) -> Result<(), ParseError> {
    let root = JsonPath::root();
    read_body_model(body, call)?;
    let Some(input) = present(body, "input") else {
        return Err(ParseError::Missing {
            path: root.key("input"),
            expected: "string or array",
        });
    };
    read_strings_or_tokens(input, &root.key("input"), &mut call.texts)
}

/// The larger of several spellings of one cap: budgets reserve for the worst case.
fn largest_count(body: &Object, keys: &[&str], at: &JsonPath) -> Result<Option<u64>, ParseError> {
    let mut largest = None;
    for key in keys {
        if let Some(n) = opt_count(body, key, at)? {
            largest = Some(largest.map_or(n, |m: u64| m.max(n)));
        }
    }
    Ok(largest)
}

fn chat_role(role: Option<&str>) -> TextRole {
    match role {
        Some("system" | "developer") => TextRole::System,
        Some("user") => TextRole::User,
        Some("assistant") => TextRole::Assistant,
        Some("tool" | "function") => TextRole::Tool,
        _ => TextRole::Other,
    }
}

/// One chat message (request) or `choices[].message` (response).
fn read_chat_message(
    message: &Value,
    at: &JsonPath,
    out: &mut Vec<TextSpan>,
) -> Result<(), ParseError> {
    let object = as_object(message, at)?;
    let role = chat_role(opt_str(object, "role", at)?);
    if let Some(content) = present(object, "content") {
        read_content(content, &at.key("content"), role, out)?;
    }
    push_opt_str(out, object, "refusal", at, role)?;
    // Reasoning text some compatible hosts return (DeepSeek, OpenRouter);
    // other hosts use these names for objects, which carry no text.
    for key in ["reasoning_content", "reasoning"] {
        if let Some(Value::String(text)) = object.get(key) {
            push_text(out, at.key(key), TextRole::Assistant, text);
        }
    }
    if let Some(tool_calls) = opt_array(object, "tool_calls", at)? {
        let calls_at = at.key("tool_calls");
        for (j, tool_call) in tool_calls.iter().enumerate() {
            let at = calls_at.index(j);
            let tool_call = as_object(tool_call, &at)?;
            if let Some(function) = opt_object(tool_call, "function", &at)? {
                push_opt_str(
                    out,
                    function,
                    "arguments",
                    &at.key("function"),
                    TextRole::Assistant,
                )?;
            }
            if let Some(custom) = opt_object(tool_call, "custom", &at)? {
                push_opt_str(out, custom, "input", &at.key("custom"), TextRole::Assistant)?;
            }
        }
    }
    if let Some(function_call) = opt_object(object, "function_call", at)? {
        push_opt_str(
            out,
            function_call,
            "arguments",
            &at.key("function_call"),
            TextRole::Assistant,
        )?;
    }
    Ok(())
}

/// `content`: a string, or an array of parts.
fn read_content(
    content: &Value,
    at: &JsonPath,
    role: TextRole,
    out: &mut Vec<TextSpan>,
) -> Result<(), ParseError> {
    match content {
        Value::String(text) => push_text(out, at.clone(), role, text),
        Value::Array(parts) => {
            for (j, part) in parts.iter().enumerate() {
                read_part(part, &at.index(j), role, out)?;
            }
        }
        other => return Err(wrong_shape(at, "string or array", other)),
    }
    Ok(())
}

/// One content part. Text parts must carry a string `text`; a part of a
/// type we do not know is scanned if it carries a string `text` anyway.
fn read_part(
    part: &Value,
    at: &JsonPath,
    role: TextRole,
    out: &mut Vec<TextSpan>,
) -> Result<(), ParseError> {
    let object = as_object(part, at)?;
    let kind = opt_str(object, "type", at)?;
    let is_text_part = matches!(
        kind,
        Some("text" | "input_text" | "output_text" | "summary_text" | "reasoning_text")
    );
    match present(object, "text") {
        Some(Value::String(text)) => push_text(out, at.key("text"), role, text),
        Some(other) if is_text_part => return Err(wrong_shape(&at.key("text"), "string", other)),
        None if is_text_part => {
            return Err(ParseError::Missing {
                path: at.key("text"),
                expected: "string",
            })
        }
        _ => {}
    }
    if kind == Some("refusal") {
        push_opt_str(out, object, "refusal", at, role)?;
    }
    Ok(())
}

/// `instructions` / `input` of a Responses request: a string, or items.
fn read_items_or_text(
    value: &Value,
    at: &JsonPath,
    role: TextRole,
    out: &mut Vec<TextSpan>,
) -> Result<(), ParseError> {
    match value {
        Value::String(text) => push_text(out, at.clone(), role, text),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                read_response_item(item, &at.index(i), out)?;
            }
        }
        other => return Err(wrong_shape(at, "string or array", other)),
    }
    Ok(())
}

/// One Responses item (request `input[]` or response `output[]`). Items
/// that carry no text we know of (`item_reference`, `web_search_call`,
/// `computer_call`, …) are skipped.
fn read_response_item(
    item: &Value,
    at: &JsonPath,
    out: &mut Vec<TextSpan>,
) -> Result<(), ParseError> {
    let object = as_object(item, at)?;
    match opt_str(object, "type", at)?.unwrap_or("message") {
        "message" => {
            let role = chat_role(opt_str(object, "role", at)?);
            if let Some(content) = present(object, "content") {
                read_content(content, &at.key("content"), role, out)?;
            }
        }
        "function_call" => push_opt_str(out, object, "arguments", at, TextRole::Assistant)?,
        "custom_tool_call" => push_opt_str(out, object, "input", at, TextRole::Assistant)?,
        "mcp_call" => {
            push_opt_str(out, object, "arguments", at, TextRole::Assistant)?;
            push_opt_str(out, object, "output", at, TextRole::Tool)?;
        }
        "function_call_output" | "custom_tool_call_output" | "local_shell_call_output" => {
            if let Some(output) = present(object, "output") {
                read_content(output, &at.key("output"), TextRole::Tool, out)?;
            }
        }
        "reasoning" => {
            for key in ["summary", "content"] {
                if let Some(parts) = opt_array(object, key, at)? {
                    for (j, part) in parts.iter().enumerate() {
                        read_part(part, &at.key(key).index(j), TextRole::Assistant, out)?;
                    }
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// `tools[]` (Chat nests the definition under `function` or `custom`;
/// Responses puts it on the tool) and legacy `functions[]`.
fn read_tools(body: &Object, root: &JsonPath, out: &mut Vec<TextSpan>) -> Result<(), ParseError> {
    if let Some(tools) = opt_array(body, "tools", root)? {
        for (i, tool) in tools.iter().enumerate() {
            let at = root.key("tools").index(i);
            let tool = as_object(tool, &at)?;
            read_tool_definition(tool, &at, out)?;
            for key in ["function", "custom"] {
                if let Some(definition) = opt_object(tool, key, &at)? {
                    read_tool_definition(definition, &at.key(key), out)?;
                }
            }
        }
    }
    if let Some(functions) = opt_array(body, "functions", root)? {
        for (i, function) in functions.iter().enumerate() {
            let at = root.key("functions").index(i);
            read_tool_definition(as_object(function, &at)?, &at, out)?;
        }
    }
    Ok(())
}

fn read_tool_definition(
    definition: &Object,
    at: &JsonPath,
    out: &mut Vec<TextSpan>,
) -> Result<(), ParseError> {
    push_opt_str(out, definition, "description", at, TextRole::ToolDefinition)?;
    if let Some(parameters) = present(definition, "parameters") {
        schema_descriptions(parameters, &at.key("parameters"), out);
    }
    Ok(())
}

/// A string, or an array of strings, token ids, or token-id arrays.
fn read_strings_or_tokens(
    value: &Value,
    at: &JsonPath,
    out: &mut Vec<TextSpan>,
) -> Result<(), ParseError> {
    match value {
        Value::String(text) => push_text(out, at.clone(), TextRole::User, text),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(text) => push_text(out, at.index(i), TextRole::User, text),
                    Value::Number(_) => {}
                    Value::Array(tokens) => {
                        if let Some(bad) = tokens.iter().position(|t| !t.is_number()) {
                            return Err(wrong_shape(
                                &at.index(i).index(bad),
                                "token id",
                                &tokens[bad],
                            ));
                        }
                    }
                    other => {
                        return Err(wrong_shape(
                            &at.index(i),
                            "string, token id or token array",
                            other,
                        ))
                    }
                }
            }
        }
        other => return Err(wrong_shape(at, "string or array", other)),
    }
    Ok(())
}

// ---- responses ------------------------------------------------------------

/// Output text of a Chat Completions or Completions response.
pub(crate) fn read_choices_response(
    root: &Value,
    out: &mut Vec<TextSpan>,
) -> Result<(), ParseError> {
    let at = JsonPath::root();
    let body = as_object(root, &at)?;
    let Some(choices) = opt_array(body, "choices", &at)? else {
        return Ok(());
    };
    for (i, choice) in choices.iter().enumerate() {
        let at = at.key("choices").index(i);
        let choice = as_object(choice, &at)?;
        if let Some(message) = present(choice, "message") {
            read_chat_message(message, &at.key("message"), out)?;
        }
        push_opt_str(out, choice, "text", &at, TextRole::Assistant)?;
    }
    Ok(())
}

/// Output text of a Responses response (`output[]` items).
pub(crate) fn read_responses_response(
    root: &Value,
    out: &mut Vec<TextSpan>,
) -> Result<(), ParseError> {
    let at = JsonPath::root();
    let body = as_object(root, &at)?;
    if let Some(items) = opt_array(body, "output", &at)? {
        for (i, item) in items.iter().enumerate() {
            read_response_item(item, &at.key("output").index(i), out)?;
        }
    }
    Ok(())
}

/// A `usage` object in any OpenAI-family shape: Chat/Completions/Embeddings
/// (`prompt_tokens`, `completion_tokens`, `*_details`), Responses
/// (`input_tokens`, `output_tokens`, `*_details`), and DeepSeek's
/// `prompt_cache_hit_tokens`. `None` without an input count.
pub(crate) fn usage(usage: &Value) -> Option<Usage> {
    let get = |key: &str| usage.get(key).and_then(count);
    let detail =
        |outer: &str, inner: &str| usage.get(outer).and_then(|d| d.get(inner)).and_then(count);
    let input = get("prompt_tokens").or_else(|| get("input_tokens"))?;
    let output = get("completion_tokens")
        .or_else(|| get("output_tokens"))
        .unwrap_or(0);
    let cached = detail("prompt_tokens_details", "cached_tokens")
        .or_else(|| detail("input_tokens_details", "cached_tokens"))
        .or_else(|| get("prompt_cache_hit_tokens"))
        .unwrap_or(0);
    let reasoning = detail("completion_tokens_details", "reasoning_tokens")
        .or_else(|| detail("output_tokens_details", "reasoning_tokens"))
        .unwrap_or(0);
    Some(Usage {
        input_tokens: input,
        output_tokens: output,
        cached_input_tokens: cached.min(input),
        cache_write_tokens: 0,
        reasoning_tokens: reasoning.min(output),
    })
}

/// The `usage` member of a response body.
pub(crate) fn response_usage(root: &Value) -> Option<Usage> {
    root.get("usage").and_then(usage)
}

/// The message of an `{"error": {...}}` body or event.
pub(crate) fn error_message(root: &Value) -> Option<String> {
    let error = root.get("error").filter(|e| !e.is_null())?;
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| error.to_string());
    Some(message)
}

// ---- streams --------------------------------------------------------------

/// One Chat Completions or Completions chunk.
pub(crate) fn read_chunk(data: &Value, item: &mut StreamItem) {
    item.upstream_error = error_message(data);
    if let Some(choices) = data.get("choices").and_then(Value::as_array) {
        for (i, choice) in choices.iter().enumerate() {
            read_chunk_choice(choice, &JsonPath::root().key("choices").index(i), i, item);
        }
    }
    item.usage = data.get("usage").and_then(usage);
}

fn read_chunk_choice(choice: &Value, at: &JsonPath, position: usize, item: &mut StreamItem) {
    let index = choice
        .get("index")
        .and_then(count)
        .unwrap_or(position as u64);
    let slot = |part: u64, kind: OutputKind| OutputSlot { index, part, kind };
    // Completions chunks carry `text` on the choice.
    if let Some(Value::String(text)) = choice.get("text") {
        item.push_delta(at.key("text"), slot(0, OutputKind::Text), text);
    }
    let Some(delta) = choice.get("delta") else {
        return;
    };
    let at = at.key("delta");
    match delta.get("content") {
        Some(Value::String(text)) => {
            item.push_delta(at.key("content"), slot(0, OutputKind::Text), text)
        }
        // A few compatible hosts stream content as parts.
        Some(Value::Array(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                if let Some(Value::String(text)) = part.get("text") {
                    item.push_delta(
                        at.key("content").index(j).key("text"),
                        slot(0, OutputKind::Text),
                        text,
                    );
                }
            }
        }
        _ => {}
    }
    if let Some(Value::String(text)) = delta.get("refusal") {
        item.push_delta(at.key("refusal"), slot(0, OutputKind::Refusal), text);
    }
    for key in ["reasoning_content", "reasoning"] {
        if let Some(Value::String(text)) = delta.get(key) {
            item.push_delta(at.key(key), slot(0, OutputKind::Reasoning), text);
        }
    }
    if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
        for (j, call) in calls.iter().enumerate() {
            let tool = call.get("index").and_then(count).unwrap_or(j as u64);
            let arguments = call.get("function").and_then(|f| f.get("arguments"));
            if let Some(Value::String(text)) = arguments {
                let path = at
                    .key("tool_calls")
                    .index(j)
                    .key("function")
                    .key("arguments");
                item.push_delta(path, slot(tool, OutputKind::ToolArguments), text);
            }
        }
    }
}

/// One Responses stream event (`data.type` says which).
pub(crate) fn read_responses_event(data: &Value, item: &mut StreamItem) {
    let Some(kind) = data.get("type").and_then(Value::as_str) else {
        item.upstream_error = error_message(data);
        return;
    };
    let number = |key: &str| data.get(key).and_then(count).unwrap_or(0);
    let root = JsonPath::root();
    let delta_kind = match kind {
        "response.output_text.delta" => Some((OutputKind::Text, number("content_index"))),
        "response.refusal.delta" => Some((OutputKind::Refusal, number("content_index"))),
        "response.function_call_arguments.delta"
        | "response.custom_tool_call_input.delta"
        | "response.mcp_call_arguments.delta" => Some((OutputKind::ToolArguments, 0)),
        "response.reasoning_summary_text.delta" => {
            Some((OutputKind::Reasoning, number("summary_index")))
        }
        "response.reasoning_text.delta" => Some((OutputKind::Reasoning, number("content_index"))),
        _ => None,
    };
    if let Some((output_kind, part)) = delta_kind {
        if let Some(Value::String(text)) = data.get("delta") {
            let slot = OutputSlot {
                index: number("output_index"),
                part,
                kind: output_kind,
            };
            item.push_delta(root.key("delta"), slot, text);
        }
        return;
    }
    // Everything else that repeats text already streamed as deltas: the
    // client sees it again, so redactions must reach it too.
    let snapshot_key = match kind {
        "response.output_text.done"
        | "response.reasoning_summary_text.done"
        | "response.reasoning_text.done" => Some("text"),
        "response.refusal.done" => Some("refusal"),
        "response.function_call_arguments.done" | "response.mcp_call_arguments.done" => {
            Some("arguments")
        }
        "response.custom_tool_call_input.done" => Some("input"),
        _ => None,
    };
    if let Some(key) = snapshot_key {
        if let Some(Value::String(text)) = data.get(key) {
            push_text(
                &mut item.snapshots,
                root.key(key),
                TextRole::Assistant,
                text,
            );
        }
        return;
    }
    match kind {
        "response.content_part.added"
        | "response.content_part.done"
        | "response.reasoning_summary_part.added"
        | "response.reasoning_summary_part.done" => {
            if let Some(part) = data.get("part") {
                // Lenient: an odd part is passed on unscanned rather than failing the stream.
                let _ = read_part(
                    part,
                    &root.key("part"),
                    TextRole::Assistant,
                    &mut item.snapshots,
                );
            }
        }
        "response.output_item.added" | "response.output_item.done" => {
            if let Some(output) = data.get("item") {
                let _ = read_response_item(output, &root.key("item"), &mut item.snapshots);
            }
        }
        "response.created"
        | "response.queued"
        | "response.in_progress"
        | "response.completed"
        | "response.incomplete"
        | "response.failed" => read_response_snapshot(data, kind, item),
        "error" => {
            item.upstream_error = data
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| error_message(data));
        }
        _ => {}
    }
}

/// A lifecycle event carrying the whole `response` object.
fn read_response_snapshot(data: &Value, kind: &str, item: &mut StreamItem) {
    let Some(response) = data.get("response") else {
        return;
    };
    let at = JsonPath::root().key("response");
    if let Some(items) = response.get("output").and_then(Value::as_array) {
        for (i, output) in items.iter().enumerate() {
            let _ = read_response_item(output, &at.key("output").index(i), &mut item.snapshots);
        }
    }
    item.usage = response.get("usage").and_then(usage);
    item.terminal = matches!(
        kind,
        "response.completed" | "response.incomplete" | "response.failed"
    );
    if kind == "response.failed" {
        item.upstream_error =
            error_message(response).or_else(|| Some("response failed".to_owned()));
    }
}

/// True for the chunk `stream_options.include_usage` adds: no choices, a usage object.
pub(crate) fn is_usage_only(data: &Value) -> bool {
    let no_choices = data
        .get("choices")
        .and_then(Value::as_array)
        .is_some_and(|choices| choices.is_empty());
    no_choices && data.get("usage").is_some_and(Value::is_object)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{expect, post, post_err, spans};
    use super::super::{
        ensure_stream_usage, is_usage_only_chunk, response_texts, response_usage, rewrite_texts,
        Api, Provider, SseParser, StreamState,
    };
    use super::*;
    use TextRole::{Assistant, Other, System, Tool, ToolDefinition, User};

    const CHAT: &str = r#"{
      "model": "gpt-4o",
      "stream": true,
      "max_completion_tokens": 512,
      "messages": [
        {"role": "developer", "content": "You are terse."},
        {"role": "user", "content": [
          {"type": "text", "text": "What is in this image?"},
          {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
          {"type": "text", "text": "And my card 4111 1111 1111 1111"}
        ]},
        {"role": "assistant", "content": null, "tool_calls": [
          {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "22C and sunny"},
        {"role": "system", "content": [{"type": "text", "text": "Answer in French."}]}
      ],
      "tools": [{"type": "function", "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"}}, "required": ["city"]}
      }}]
    }"#;

    #[test]
    fn chat_request_reports_every_text_with_its_place() {
        let call = post(Provider::OpenAi, "/v1/chat/completions", CHAT);
        assert_eq!(call.api, Api::ChatCompletions);
        assert_eq!(call.model.as_deref(), Some("gpt-4o"));
        assert!(call.stream);
        assert_eq!(call.max_tokens, Some(512));
        assert_eq!(
            spans(&call.texts),
            expect(&[
                ("messages[0].content", System, "You are terse."),
                (
                    "messages[1].content[0].text",
                    User,
                    "What is in this image?"
                ),
                (
                    "messages[1].content[2].text",
                    User,
                    "And my card 4111 1111 1111 1111"
                ),
                (
                    "messages[2].tool_calls[0].function.arguments",
                    Assistant,
                    "{\"city\":\"Paris\"}"
                ),
                ("messages[3].content", Tool, "22C and sunny"),
                ("messages[4].content[0].text", System, "Answer in French."),
                (
                    "tools[0].function.description",
                    ToolDefinition,
                    "Current weather for a city"
                ),
                (
                    "tools[0].function.parameters.properties.city.description",
                    ToolDefinition,
                    "City name"
                ),
            ])
        );
    }

    #[test]
    fn chat_max_tokens_takes_the_larger_spelling_and_defaults() {
        let call = post(
            Provider::OpenAiCompatible,
            "/openai/v1/chat/completions",
            r#"{"model":"llama","messages":[],"max_tokens":100,"max_completion_tokens":50}"#,
        );
        assert_eq!((call.max_tokens, call.stream), (Some(100), false));
        let call = post(
            Provider::OpenAiCompatible,
            "/chat/completions",
            r#"{"messages":[]}"#,
        );
        assert_eq!((call.model, call.max_tokens), (None, None));
    }

    #[test]
    fn chat_request_of_the_wrong_shape_says_what_and_where() {
        let path = "/v1/chat/completions";
        let cases = [
            (r#"{"model":"m"}"#, "messages: missing (expected array)"),
            (
                r#"{"messages":{}}"#,
                "messages: expected array, found object",
            ),
            (
                r#"{"messages":["hi"]}"#,
                "messages[0]: expected object, found string",
            ),
            (
                r#"{"messages":[{"role":"user","content":"a"},{"role":"user","content":"b"},{"role":"user","content":7}]}"#,
                "messages[2].content: expected string or array, found number",
            ),
            (
                r#"{"messages":[{"role":"user","content":[{"type":"text"}]}]}"#,
                "messages[0].content[0].text: missing (expected string)",
            ),
            (
                r#"{"messages":[{"role":"user","content":[{"type":"text","text":["x"]}]}]}"#,
                "messages[0].content[0].text: expected string, found array",
            ),
            (
                r#"{"messages":[{"role":"assistant","tool_calls":{"id":1}}]}"#,
                "messages[0].tool_calls: expected array, found object",
            ),
            (
                r#"{"messages":[{"role":"assistant","tool_calls":[{"function":{"arguments":{"a":1}}}]}]}"#,
                "messages[0].tool_calls[0].function.arguments: expected string, found object",
            ),
            (
                r#"{"model":4,"messages":[]}"#,
                "model: expected string, found number",
            ),
            (
                r#"{"stream":"yes","messages":[]}"#,
                "stream: expected boolean, found string",
            ),
            (
                r#"{"max_tokens":-1,"messages":[]}"#,
                "max_tokens: expected non-negative integer, found number",
            ),
            (
                r#"{"messages":[],"tools":[{"function":{"description":5}}]}"#,
                "tools[0].function.description: expected string, found number",
            ),
        ];
        for (body, message) in cases {
            assert_eq!(post_err(Provider::OpenAi, path, body), message, "{body}");
        }
    }

    #[test]
    fn unknown_part_types_with_text_are_still_scanned() {
        let call = post(
            Provider::OpenAi,
            "/v1/chat/completions",
            r#"{"messages":[{"role":"user","content":[{"type":"future_text","text":"hidden?"},{"type":"input_audio","input_audio":{"data":"AAA","format":"wav"}}]}],
                "prediction":{"type":"content","content":"predicted code"}}"#,
        );
        assert_eq!(
            spans(&call.texts),
            expect(&[
                ("messages[0].content[0].text", User, "hidden?"),
                ("prediction.content", Other, "predicted code"),
            ])
        );
    }

    const RESPONSES: &str = r#"{
      "model": "gpt-4.1",
      "instructions": "Talk like a pirate.",
      "max_output_tokens": 1024,
      "input": [
        {"role": "user", "content": [
          {"type": "input_text", "text": "what is in this file?"},
          {"type": "input_file", "file_id": "file-123"}
        ]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "A list of names.", "annotations": []}]},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Thinking about names"}]},
        {"type": "function_call", "call_id": "call_9", "name": "lookup", "arguments": "{\"name\":\"Ada\"}"},
        {"type": "function_call_output", "call_id": "call_9", "output": "Ada Lovelace, 1815"},
        {"type": "item_reference", "id": "msg_0"},
        {"role": "user", "content": "Summarise."}
      ],
      "tools": [{"type": "function", "name": "lookup", "description": "Find a person", "parameters": {"type": "object", "properties": {}}}]
    }"#;

    #[test]
    fn responses_request_reads_instructions_items_and_tools() {
        let call = post(Provider::OpenAi, "/v1/responses", RESPONSES);
        assert_eq!(
            (call.api, call.max_tokens, call.stream),
            (Api::Responses, Some(1024), false)
        );
        assert_eq!(
            spans(&call.texts),
            expect(&[
                ("instructions", System, "Talk like a pirate."),
                ("input[0].content[0].text", User, "what is in this file?"),
                ("input[1].content[0].text", Assistant, "A list of names."),
                (
                    "input[2].summary[0].text",
                    Assistant,
                    "Thinking about names"
                ),
                ("input[3].arguments", Assistant, "{\"name\":\"Ada\"}"),
                ("input[4].output", Tool, "Ada Lovelace, 1815"),
                ("input[6].content", User, "Summarise."),
                ("tools[0].description", ToolDefinition, "Find a person"),
            ])
        );
        let call = post(
            Provider::OpenAi,
            "/v1/responses",
            r#"{"model":"o3","input":"Hello there","stream":true}"#,
        );
        assert_eq!(
            spans(&call.texts),
            expect(&[("input", User, "Hello there")])
        );
        assert!(call.stream);
        assert_eq!(
            post_err(Provider::OpenAi, "/v1/responses", r#"{"input":42}"#),
            "input: expected string or array, found number"
        );
    }

    #[test]
    fn completions_and_embeddings_read_strings_and_skip_tokens() {
        let call = post(
            Provider::OpenAi,
            "/v1/completions",
            r#"{"model":"gpt-3.5-turbo-instruct","prompt":["Say this","is a test",[1,2,3],42],"max_tokens":7,"stream":true}"#,
        );
        assert_eq!(
            spans(&call.texts),
            expect(&[
                ("prompt[0]", User, "Say this"),
                ("prompt[1]", User, "is a test")
            ])
        );
        assert_eq!((call.max_tokens, call.stream), (Some(7), true));
        let fim = post(
            Provider::OpenAiCompatible,
            "/v1/fim/completions",
            r#"{"model":"codestral-latest","prompt":"def f(","suffix":"return x"}"#,
        );
        assert_eq!(
            spans(&fim.texts),
            expect(&[("prompt", User, "def f("), ("suffix", User, "return x")])
        );

        let call = post(
            Provider::OpenAi,
            "/v1/embeddings",
            r#"{"model":"text-embedding-3-small","input":"The food was delicious"}"#,
        );
        assert_eq!(
            (call.api, call.model.as_deref()),
            (Api::Embeddings, Some("text-embedding-3-small"))
        );
        assert_eq!(
            spans(&call.texts),
            expect(&[("input", User, "The food was delicious")])
        );
        let call = post(
            Provider::OpenAi,
            "/v1/embeddings",
            r#"{"model":"m","input":[[1,2],[3]]}"#,
        );
        assert!(call.texts.is_empty());
        assert_eq!(
            post_err(
                Provider::OpenAi,
                "/v1/embeddings",
                r#"{"model":"m","input":["a",{"x":1}]}"#
            ),
            "input[1]: expected string, token id or token array, found object"
        );
        assert_eq!(
            post_err(
                Provider::OpenAi,
                "/v1/embeddings",
                r#"{"model":"m","input":[["a"]]}"#
            ),
            "input[0][0]: expected token id, found string"
        );
        assert_eq!(
            post_err(Provider::OpenAi, "/v1/embeddings", r#"{"model":"m"}"#),
            "input: missing (expected string or array)"
        );
    }

    #[test]
    fn azure_deployment_path_names_the_model() {
        let body = r#"{"messages":[{"role":"user","content":"hi"}],"model":"ignored"}"#;
        let call = post(
            Provider::Azure,
            "/openai/deployments/gpt-4o-eu/chat/completions",
            body,
        );
        assert_eq!(
            (call.api, call.model.as_deref()),
            (Api::ChatCompletions, Some("gpt-4o-eu"))
        );
        let call = post(
            Provider::Azure,
            "/openai/v1/chat/completions",
            r#"{"model":"gpt-4o-mini","messages":[]}"#,
        );
        assert_eq!(call.model.as_deref(), Some("gpt-4o-mini"));
    }

    #[test]
    fn compatible_hosts_route_by_path_suffix() {
        let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
        for path in [
            "/openai/v1/chat/completions",
            "/api/v1/chat/completions",
            "/inference/v1/chat/completions",
            "/chat/completions",
        ] {
            let call = post(Provider::OpenAiCompatible, path, body);
            assert_eq!(
                (call.api, call.texts.len()),
                (Api::ChatCompletions, 1),
                "{path}"
            );
        }
    }

    #[test]
    fn rewrite_round_trip_changes_only_the_edited_part() {
        let call = post(Provider::OpenAi, "/v1/chat/completions", CHAT);
        let card = call.texts.iter().find(|s| s.text.contains("4111")).unwrap();
        let edits = [(card.path.clone(), "And my card [REDACTED]".to_owned())];
        let rewritten = rewrite_texts(CHAT.as_bytes(), &edits).unwrap();
        let again = post(
            Provider::OpenAi,
            "/v1/chat/completions",
            std::str::from_utf8(&rewritten).unwrap(),
        );
        for (before, after) in call.texts.iter().zip(&again.texts) {
            assert_eq!(before.path, after.path);
            if before.path == card.path {
                assert_eq!(after.text, "And my card [REDACTED]");
            } else {
                assert_eq!(before.text, after.text);
            }
        }
        assert_eq!(call.texts.len(), again.texts.len());
        // Everything else is the same document, in the same key order.
        let mut expected: Value = serde_json::from_str(CHAT).unwrap();
        *card.path.lookup_mut(&mut expected).unwrap() = Value::from("And my card [REDACTED]");
        let actual: Value = serde_json::from_slice(&rewritten).unwrap();
        assert_eq!(actual, expected);
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(
            keys(&actual),
            [
                "model",
                "stream",
                "max_completion_tokens",
                "messages",
                "tools"
            ]
        );
    }

    fn call_for(api_path: &str) -> ApiCall {
        let body = match api_path {
            "/v1/chat/completions" => r#"{"model":"m","messages":[]}"#,
            "/v1/responses" => r#"{"model":"m","input":"x"}"#,
            _ => r#"{"model":"m","prompt":"x"}"#,
        };
        post(Provider::OpenAi, api_path, body)
    }

    #[test]
    fn chat_response_texts_and_usage() {
        let call = call_for("/v1/chat/completions");
        let body = br#"{
          "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o",
          "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Hello there", "refusal": null}, "finish_reason": "stop"},
            {"index": 1, "message": {"role": "assistant", "content": null, "tool_calls": [
              {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{\"q\":\"x\"}"}}]}, "finish_reason": "tool_calls"}
          ],
          "usage": {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500,
                    "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
                    "completion_tokens_details": {"reasoning_tokens": 128}}
        }"#;
        assert_eq!(
            spans(&response_texts(&call, body).unwrap()),
            expect(&[
                ("choices[0].message.content", Assistant, "Hello there"),
                (
                    "choices[1].message.tool_calls[0].function.arguments",
                    Assistant,
                    "{\"q\":\"x\"}"
                ),
            ])
        );
        assert_eq!(
            response_usage(&call, body),
            Some(Usage {
                input_tokens: 1200,
                output_tokens: 300,
                cached_input_tokens: 1024,
                cache_write_tokens: 0,
                reasoning_tokens: 128,
            })
        );
        let legacy = call_for("/v1/completions");
        let body = br#"{"choices":[{"text":"\n\nThis is indeed a test","index":0}],"usage":{"prompt_tokens":5,"completion_tokens":7}}"#;
        assert_eq!(
            spans(&response_texts(&legacy, body).unwrap()),
            expect(&[("choices[0].text", Assistant, "\n\nThis is indeed a test")])
        );
        assert_eq!(
            response_usage(&legacy, body).map(|u| (u.input_tokens, u.output_tokens)),
            Some((5, 7))
        );
        // An error body has no text and no usage.
        let error = br#"{"error":{"message":"bad","type":"invalid_request_error"}}"#;
        assert!(response_texts(&call, error).unwrap().is_empty());
        assert_eq!(response_usage(&call, error), None);
    }

    #[test]
    fn responses_response_texts_and_usage() {
        let call = call_for("/v1/responses");
        let body = br#"{
          "id": "resp_1", "object": "response", "status": "completed",
          "output": [
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
             "content": [{"type": "output_text", "text": "In a galaxy far away", "annotations": []}]},
            {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "f", "arguments": "{}"}
          ],
          "usage": {"input_tokens": 328, "input_tokens_details": {"cached_tokens": 128},
                    "output_tokens": 52, "output_tokens_details": {"reasoning_tokens": 30}, "total_tokens": 380}
        }"#;
        assert_eq!(
            spans(&response_texts(&call, body).unwrap()),
            expect(&[
                (
                    "output[1].content[0].text",
                    Assistant,
                    "In a galaxy far away"
                ),
                ("output[2].arguments", Assistant, "{}"),
            ])
        );
        assert_eq!(
            response_usage(&call, body),
            Some(Usage {
                input_tokens: 328,
                output_tokens: 52,
                cached_input_tokens: 128,
                cache_write_tokens: 0,
                reasoning_tokens: 30,
            })
        );
    }

    #[test]
    fn compatible_usage_spellings() {
        let call = call_for("/v1/chat/completions");
        // DeepSeek reports cache hits at the top level.
        let body = br#"{"choices":[],"usage":{"prompt_tokens":100,"completion_tokens":10,"prompt_cache_hit_tokens":64,"prompt_cache_miss_tokens":36}}"#;
        assert_eq!(
            response_usage(&call, body).map(|u| u.cached_input_tokens),
            Some(64)
        );
        let embeddings = post(
            Provider::OpenAi,
            "/v1/embeddings",
            r#"{"model":"m","input":"x"}"#,
        );
        let body = br#"{"object":"list","data":[],"usage":{"prompt_tokens":8,"total_tokens":8}}"#;
        assert_eq!(
            response_usage(&embeddings, body).map(|u| (u.input_tokens, u.output_tokens)),
            Some((8, 0))
        );
    }

    fn events(stream: &str) -> Vec<super::super::SseEvent> {
        let mut parser = SseParser::new();
        let mut events = parser.push(stream.as_bytes());
        events.extend(parser.finish());
        events
    }

    #[test]
    fn chat_stream_deltas_usage_and_done() {
        let call = post(
            Provider::OpenAi,
            "/v1/chat/completions",
            r#"{"model":"m","stream":true,"messages":[]}"#,
        );
        let stream = concat!(
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}},{\"index\":1,\"delta\":{\"content\":\"Bon\"}}]}\n\n",
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":2,\"id\":\"call\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\"\"}}]}}]}\n\n",
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
            "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":12,\"total_tokens\":21}}\n\n",
            "data: [DONE]\n\n",
        );
        let events = events(stream);
        let mut state = StreamState::new(&call);
        let items: Vec<StreamItem> = events.iter().map(|e| state.on_event(e)).collect();
        assert!(items[0].deltas.is_empty());
        let deltas: Vec<(String, u64, &str)> = items[1]
            .deltas
            .iter()
            .map(|d| (d.path.to_string(), d.slot.index, d.text.as_str()))
            .collect();
        assert_eq!(
            deltas,
            [
                ("choices[0].delta.content".to_owned(), 0, "Hel"),
                ("choices[1].delta.content".to_owned(), 1, "Bon")
            ]
        );
        let tool = &items[2].deltas[0];
        assert_eq!(
            tool.path.to_string(),
            "choices[0].delta.tool_calls[0].function.arguments"
        );
        assert_eq!(
            tool.slot,
            OutputSlot {
                index: 0,
                part: 2,
                kind: OutputKind::ToolArguments
            }
        );
        assert_eq!(items[3].usage, None);
        assert!(!is_usage_only_chunk(&events[3]));
        assert!(is_usage_only_chunk(&events[4]));
        assert_eq!(
            items[4].usage.map(|u| (u.input_tokens, u.output_tokens)),
            Some((9, 12))
        );
        assert!(!items[4].terminal && items[5].terminal);
        assert!(state.is_finished());
        assert_eq!(state.usage().map(|u| u.total_tokens()), Some(21));
        assert!(!is_usage_only_chunk(&events[5]));
    }

    #[test]
    fn chat_stream_errors_and_garbage_are_reported() {
        let call = post(
            Provider::OpenAi,
            "/v1/chat/completions",
            r#"{"messages":[]}"#,
        );
        let mut state = StreamState::new(&call);
        let events = events("data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\ndata: {not json\n\n: ping\n\n");
        let items: Vec<StreamItem> = events.iter().map(|e| state.on_event(e)).collect();
        assert_eq!(items[0].upstream_error.as_deref(), Some("overloaded"));
        assert!(matches!(
            items[1].malformed,
            Some(ParseError::InvalidJson(_))
        ));
        assert_eq!(items[2], StreamItem::default());
        assert!(!state.is_finished());
    }

    #[test]
    fn responses_stream_deltas_snapshots_usage_and_end() {
        let call = post(
            Provider::OpenAi,
            "/v1/responses",
            r#"{"model":"m","input":"x","stream":true}"#,
        );
        let stream = concat!(
            "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"r\",\"output\":[],\"usage\":null}}\n\n",
            "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"item_id\":\"m\",\"output_index\":1,\"content_index\":0,\"delta\":\"Hi\",\"sequence_number\":1}\n\n",
            "event: response.function_call_arguments.delta\ndata: {\"type\":\"response.function_call_arguments.delta\",\"output_index\":2,\"delta\":\"{\\\"x\\\"\"}\n\n",
            "event: response.output_text.done\ndata: {\"type\":\"response.output_text.done\",\"output_index\":1,\"content_index\":0,\"text\":\"Hi\"}\n\n",
            "event: response.content_part.done\ndata: {\"type\":\"response.content_part.done\",\"part\":{\"type\":\"output_text\",\"text\":\"Hi\"}}\n\n",
            "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"r\",\"status\":\"completed\",\"output\":[{\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"Hi\"}]}],\"usage\":{\"input_tokens\":37,\"output_tokens\":11,\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens_details\":{\"reasoning_tokens\":0}}}}\n\n",
        );
        let mut state = StreamState::new(&call);
        let items: Vec<StreamItem> = events(stream).iter().map(|e| state.on_event(e)).collect();
        assert!(items[0].deltas.is_empty() && !items[0].terminal);
        assert_eq!(items[1].deltas[0].path.to_string(), "delta");
        assert_eq!(
            items[1].deltas[0].slot,
            OutputSlot {
                index: 1,
                part: 0,
                kind: OutputKind::Text
            }
        );
        assert_eq!(items[2].deltas[0].slot.kind, OutputKind::ToolArguments);
        assert_eq!(
            spans(&items[3].snapshots),
            expect(&[("text", Assistant, "Hi")])
        );
        assert_eq!(
            spans(&items[4].snapshots),
            expect(&[("part.text", Assistant, "Hi")])
        );
        assert_eq!(
            spans(&items[5].snapshots),
            expect(&[("response.output[0].content[0].text", Assistant, "Hi")])
        );
        assert!(items[5].terminal);
        assert_eq!(
            state.usage().map(|u| (u.input_tokens, u.output_tokens)),
            Some((37, 11))
        );
    }

    #[test]
    fn stream_usage_is_requested_when_missing() {
        let ensure = |call: &ApiCall, body: &str| {
            let mut root: serde_json::Value = serde_json::from_str(body).unwrap();
            ensure_stream_usage(call, &mut root).map(|added| added.then(|| root.to_string()))
        };
        let chat = r#"{"model":"m","messages":[],"stream":true}"#;
        let call = post(Provider::OpenAi, "/v1/chat/completions", chat);
        assert_eq!(
            ensure(&call, chat).unwrap().unwrap(),
            r#"{"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":true}}"#
        );
        let off = r#"{"stream_options":{"include_usage":false,"x":1},"model":"m","messages":[],"stream":true}"#;
        assert_eq!(
            ensure(&call, off).unwrap().unwrap(),
            r#"{"stream_options":{"include_usage":true,"x":1},"model":"m","messages":[],"stream":true}"#
        );
        let on = r#"{"stream_options":{"include_usage":true},"messages":[],"stream":true}"#;
        assert_eq!(ensure(&call, on).unwrap(), None);
        let bad = r#"{"stream_options":"yes","messages":[],"stream":true}"#;
        assert_eq!(
            ensure(&call, bad).unwrap_err().to_string(),
            "stream_options: expected object, found string"
        );
        let unary = post(
            Provider::OpenAi,
            "/v1/chat/completions",
            r#"{"messages":[]}"#,
        );
        assert_eq!(ensure(&unary, chat).unwrap(), None);
        let responses = post(
            Provider::OpenAi,
            "/v1/responses",
            r#"{"input":"x","stream":true}"#,
        );
        assert_eq!(ensure(&responses, chat).unwrap(), None);
    }
}
