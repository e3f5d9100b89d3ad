//! Output text of a non-streaming response, for output guardrails.
//!
//! The call decides the format (its [`Api`]), so a response is
//! read as the shape its request asked for. Paths are rooted at the response
//! body and go back to [`rewrite_texts`](super::rewrite_texts) unchanged.
//! Error bodies and APIs without generated text (embeddings, token counts)
//! have no output text.

use serde_json::Value;

use super::call::{Api, ApiCall, TextSpan};
use super::shape::{parse_json, ParseError};
use super::Usage;
use super::{anthropic, gemini, openai};

/// Every piece of generated text in `body`, the response to `call`: message
/// content, refusals, tool-call arguments, reasoning summaries (all with
/// role [`Assistant`](super::TextRole::Assistant)).
pub fn response_texts(call: &ApiCall, body: &[u8]) -> Result<Vec<TextSpan>, ParseError> {
    if !call.api.generates() {
        return Ok(Vec::new());
    }
    texts_of(call, &parse_json(body)?)
}

/// The usage and the texts of `body`, the response to `call`, from one
/// parse: [`response_usage`](super::response_usage) and [`response_texts`].
pub fn read_response(
    call: &ApiCall,
    body: &[u8],
) -> (Option<Usage>, Result<Vec<TextSpan>, ParseError>) {
    if !call.api.generates() {
        return (super::response_usage(call, body), Ok(Vec::new()));
    }
    match parse_json(body) {
        Ok(root) => (super::usage::usage_of(call, &root), texts_of(call, &root)),
        Err(err) => (None, Err(err)),
    }
}

fn texts_of(call: &ApiCall, root: &Value) -> Result<Vec<TextSpan>, ParseError> {
    let mut out = Vec::new();
    match call.api {
        Api::ChatCompletions | Api::Completions => openai::read_choices_response(root, &mut out)?,
        Api::Responses => openai::read_responses_response(root, &mut out)?,
        Api::AnthropicMessages => anthropic::read_response(root, &mut out)?,
        Api::GeminiGenerateContent | Api::GeminiStreamGenerateContent => {
            gemini::read_response(root, &mut out)?
        }
        Api::Embeddings
        | Api::AnthropicCountTokens
        | Api::AnthropicBatch
        | Api::GeminiCountTokens
        | Api::GeminiEmbed
        // Socket APIs have no whole-body answer.
        | Api::Realtime
        | Api::GeminiLive
        | Api::NoPrompt
        | Api::Unknown => {}
    }
    Ok(out)
}
