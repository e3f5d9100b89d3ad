//! Well-formed starting inputs for each target, in the targets' input
//! layout: real-shaped request bodies and streams from the providers' API
//! references. The smoke driver mutates them; `smoke --write-corpus DIR`
//! writes them out as a libFuzzer corpus.

use crate::PATHS;

/// Index of `path` in [`PATHS`] as a selector byte.
fn path_selector(path: &str) -> u8 {
    PATHS
        .iter()
        .position(|p| *p == path)
        .and_then(|i| u8::try_from(i).ok())
        .unwrap_or(u8::MAX)
}

fn request(provider: u8, path: &str, body: &str) -> Vec<u8> {
    let mut input = vec![provider, 0, path_selector(path)];
    input.extend_from_slice(body.as_bytes());
    input
}

/// Seeds for [`scanned_is_sent`](crate::scanned_is_sent): the request
/// seeds behind a redaction selector, and bodies that name members twice.
pub fn scanned_is_sent() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = parse_request()
        .into_iter()
        .enumerate()
        .map(|(i, seed)| {
            let mut input = vec![i as u8];
            input.extend(seed);
            input
        })
        .collect();
    for (provider, path, body) in [
        (0, 0, r#"{"model":"gpt-4o","messages":[{"role":"user","content":"AKIA"}],"messages":[{"role":"user","content":"hi"}]}"#),
        (0, 0, r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi","content":"x"}],"metadata":{"k":"v"},"user":"u"}"#),
        (1, 4, r#"{"model":"claude","max_tokens":5,"messages":[{"role":"user","content":"hi"}],"system":"s","metadata":{"user_id":"u1"}}"#),
        (0, 255, "/v1/threads/t_1/messages\n{\"role\":\"user\",\"content\":\"hello\",\"metadata\":{\"a\":[\"b\",{\"c\":\"d\"}]}}"),
        (1, 255, "/v1/messages/batches\n{\"requests\":[{\"custom_id\":\"a\",\"params\":{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]}}]}"),
    ] {
        let mut input = vec![1u8, provider, 0, path];
        input.extend_from_slice(body.as_bytes());
        seeds.push(input);
    }
    seeds
}

/// Seeds for [`parse_request`](crate::parse_request).
pub fn parse_request() -> Vec<Vec<u8>> {
    let mut seeds = vec![
        request(
            0,
            "/v1/chat/completions",
            r#"{"model":"gpt-4o","stream":true,"max_completion_tokens":512,"messages":[{"role":"developer","content":"Be terse."},{"role":"user","content":[{"type":"text","text":"What is in this image?"},{"type":"image_url","image_url":{"url":"https://e.com/a.png"}}]},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"city\":\"Paris\"}"}}]},{"role":"tool","tool_call_id":"c1","content":"22C"}],"tools":[{"type":"function","function":{"name":"f","description":"Weather","parameters":{"type":"object","properties":{"city":{"type":"string","description":"City"}}}}}],"stream_options":{"include_usage":false}}"#,
        ),
        request(
            0,
            "/v1/responses",
            r#"{"model":"o3","instructions":"Pirate.","max_output_tokens":100,"input":[{"role":"user","content":[{"type":"input_text","text":"hi"}]},{"type":"function_call","call_id":"c","name":"f","arguments":"{}"},{"type":"function_call_output","call_id":"c","output":"ok"},{"type":"reasoning","summary":[{"type":"summary_text","text":"s"}]}],"tools":[{"type":"function","name":"f","description":"d","parameters":{}}],"prompt":{"id":"p","variables":{"name":"Ada"}}}"#,
        ),
        request(
            0,
            "/v1/completions",
            r#"{"model":"m","prompt":["Say this",[1,2],3],"suffix":"end","max_tokens":7,"stream":true}"#,
        ),
        request(
            0,
            "/v1/embeddings",
            r#"{"model":"text-embedding-3-small","input":["a","b"]}"#,
        ),
        request(
            1,
            "/v1/messages",
            r#"{"model":"claude-sonnet-4-5","max_tokens":1024,"stream":true,"system":[{"type":"text","text":"sys","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":[{"type":"thinking","thinking":"t","signature":"s"},{"type":"tool_use","id":"t1","name":"f","input":{"q":"x","n":[1,"y"]}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":[{"type":"text","text":"r"}]},{"type":"document","source":{"type":"text","media_type":"text/plain","data":"doc"},"title":"T"}]}],"tools":[{"name":"f","description":"d","input_schema":{"type":"object","properties":{"q":{"type":"string","description":"query"}}}}]}"#,
        ),
        request(
            1,
            "/v1/messages/count_tokens",
            r#"{"model":"m","system":"s","messages":[{"role":"user","content":"c"}]}"#,
        ),
        request(
            2,
            "/v1beta/models/gemini-2.0-flash:generateContent",
            r#"{"system_instruction":{"parts":[{"text":"cat"}]},"contents":[{"role":"user","parts":[{"text":"hi"},{"inline_data":{"mime_type":"image/png","data":"AA"}}]},{"role":"model","parts":[{"functionCall":{"name":"f","args":{"a":"b"}}}]},{"role":"user","parts":[{"functionResponse":{"name":"f","response":{"r":"s"}}}]}],"tools":[{"functionDeclarations":[{"name":"f","description":"d","parameters":{"type":"object"}}]}],"generationConfig":{"maxOutputTokens":800}}"#,
        ),
        request(
            2,
            "/v1beta/models/gemini-2.0-flash:streamGenerateContent",
            r#"{"contents":{"parts":{"text":"one"}},"generation_config":{"max_output_tokens":5}}"#,
        ),
        request(
            2,
            "/v1beta/models/gemini-2.0-flash:countTokens",
            r#"{"generateContentRequest":{"model":"models/m","contents":[{"parts":[{"text":"c"}]}]}}"#,
        ),
        request(
            2,
            "/v1beta/models/text-embedding-004:batchEmbedContents",
            r#"{"requests":[{"model":"models/e","content":{"parts":[{"text":"x"}]}}]}"#,
        ),
        request(
            3,
            "/openai/deployments/gpt-4o/chat/completions",
            r#"{"messages":[{"role":"user","content":"hi"}],"stream":true}"#,
        ),
        request(
            4,
            "/api/v1/chat/completions",
            r#"{"model":"x/y","messages":[{"role":"system","content":[{"type":"text","text":"s"}]}],"max_tokens":1.0e3}"#,
        ),
        request(0, "/v1/models", ""),
    ];
    // A path from the input itself (selector past the table).
    let mut custom = vec![4, 0, 255];
    custom.extend_from_slice(b"/v1beta/models/x%3AgenerateContent\n{\"contents\":[]}");
    seeds.push(custom);
    seeds
}

fn stream(selector: u8, body: &str) -> Vec<u8> {
    let mut input = vec![selector];
    input.extend_from_slice(body.as_bytes());
    input
}

const CHAT_STREAM: &str = concat!(
    "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}]}\n\n",
    "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"a\\\"\"}}]}}]}\n\n",
    ": keep-alive\n\n",
    "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":3,\"prompt_tokens_details\":{\"cached_tokens\":2}}}\n\n",
    "data: [DONE]\n\n",
);

const RESPONSES_STREAM: &str = concat!(
    "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hi\"}\n\n",
    "event: response.output_text.done\ndata: {\"type\":\"response.output_text.done\",\"text\":\"Hi\"}\n\n",
    "event: response.output_item.done\ndata: {\"type\":\"response.output_item.done\",\"item\":{\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"Hi\"}]}}\n\n",
    "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"output\":[{\"type\":\"function_call\",\"arguments\":\"{}\"}],\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n",
);

const ANTHROPIC_STREAM: &str = concat!(
    "event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":10,\"cache_read_input_tokens\":4,\"output_tokens\":1}}}\r\n\r\n",
    "event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\r\n\r\n",
    "event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"q\"}}\r\n\r\n",
    "event: message_delta\r\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":7}}\r\n\r\n",
    "event: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n",
);

const GEMINI_STREAM: &str = concat!(
    "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"The\"},{\"functionCall\":{\"name\":\"f\",\"args\":{\"a\":\"b\"}}}],\"role\":\"model\"},\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":9}}\r\n\r\n",
    "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\" end\",\"thought\":true}]},\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":9,\"candidatesTokenCount\":4,\"thoughtsTokenCount\":2}}\r\n\r\n",
);

/// Seeds for [`stream_state`](crate::stream_state): selector byte, then a stream.
pub fn stream_state() -> Vec<Vec<u8>> {
    vec![
        stream(0, CHAT_STREAM),
        stream(
            1,
            "data: {\"choices\":[{\"text\":\"legacy\",\"index\":0}]}\n\ndata: [DONE]\n\n",
        ),
        stream(2, RESPONSES_STREAM),
        stream(3, ANTHROPIC_STREAM),
        stream(4, GEMINI_STREAM),
        stream(5, CHAT_STREAM),
        stream(6, "event: thread.message.delta\ndata: {\"x\":1}\n\n"),
        stream(
            7,
            "data: {\"type\":\"response.output_text.delta\",\"delta\":\"hi\"}\n\n\
             data: {\"type\":\"response.done\",\"response\":{\"output\":[{\"content\":[{\"text\":\"hi\"}]}],\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n",
        ),
        stream(
            8,
            "data: {\"serverContent\":{\"modelTurn\":{\"parts\":[{\"text\":\"hi\"}]}}}\n\n\
             data: {\"serverContent\":{\"turnComplete\":true},\"usageMetadata\":{\"promptTokenCount\":2,\"responseTokenCount\":1}}\n\n",
        ),
    ]
}

/// Seeds for [`sse_parser`](crate::sse_parser): chunking seed and size, then a stream.
pub fn sse_parser() -> Vec<Vec<u8>> {
    let streams: [&[u8]; 5] = [
        CHAT_STREAM.as_bytes(),
        ANTHROPIC_STREAM.as_bytes(),
        b"\xEF\xBB\xBF: c\r\revent: a\rid: 1\rretry: 10\rdata: x\rdata\r\r",
        b"data: {\"t\":\"\xC3\xA9\xF0\x9F\x98\x80\"}\n\nid\nevent:\ndata:  x\n\n: tail\ndata: [DONE]",
        b"data: a\r\n\r\ndata: b\r\n\r\n",
    ];
    let mut seeds = Vec::new();
    for (i, stream) in streams.iter().enumerate() {
        let i = u8::try_from(i).unwrap_or(0);
        for max in [1u8, 3, 17, 200] {
            let mut input = vec![i.wrapping_mul(31).wrapping_add(max), max];
            input.extend_from_slice(stream);
            seeds.push(input);
        }
    }
    seeds
}

/// Seeds for [`socket_messages`](crate::socket_messages): one selector byte
/// (the API), then one client message.
pub fn socket_messages() -> Vec<Vec<u8>> {
    let seed = |api: u8, message: &str| {
        let mut out = vec![api];
        out.extend_from_slice(message.as_bytes());
        out
    };
    vec![
        seed(
            0,
            r#"{"type":"response.create","model":"gpt-5","input":[{"role":"user","content":[{"type":"input_text","text":"hi"}]}],"metadata":{"k":"v"}}"#,
        ),
        seed(
            1,
            r#"{"type":"conversation.item.create","item":{"type":"message","role":"user","content":[{"type":"input_text","text":"x"},{"type":"input_audio","audio":"QUJD"}]}}"#,
        ),
        seed(1, r#"{"type":"input_audio_buffer.append","audio":"UklGRg=="}"#),
        seed(
            2,
            r#"{"realtimeInput":{"audio":{"mimeType":"audio/pcm","data":"AAAA"}},"x":{"data":"AKIA"}}"#,
        ),
        seed(
            2,
            r#"{"clientContent":{"turns":[{"role":"user","parts":[{"text":"hi"}]}],"turnComplete":true}}"#,
        ),
        seed(0, r#"{"type":"response.create","input":"a","input":"b"}"#),
    ]
}
