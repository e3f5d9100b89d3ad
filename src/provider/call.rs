//! One API call as policy sees it: which API, which model, streaming or not,
//! how many output tokens it may spend, and every piece of user-controlled
//! text with the place it lives in the body.
//!
//! [`parse_request`] routes by method and path ([`route`]),
//! parses the body once and hands it to the adapter for that API's wire
//! format ([`openai`], [`anthropic`], [`gemini`]). Words used here:
//!
//! - *text*: a string the model will read that a user, a tool or an earlier
//!   model turn put there: message content, system prompts, tool-call
//!   arguments, tool results, tool descriptions. Not: ids, names, enum values,
//!   images, token arrays.
//! - *span*: one such string and its [`JsonPath`], which
//!   [`rewrite_texts`](super::rewrite_texts) accepts back for redaction.
//! - *wire format*: the family of body shapes (OpenAI, Anthropic, Gemini). It
//!   follows the [`Api`], not the host: Gemini's host also serves OpenAI chat.

use serde_json::Value;

use super::json_path::JsonPath;
use super::route::{self, Route};
use super::shape::{as_object, opt_str, parse_json, Object, ParseError};
use super::{anthropic, gemini, openai, Provider};

/// The API a request calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// OpenAI Chat Completions (`…/chat/completions`), also Azure and every OpenAI-compatible host.
    ChatCompletions,
    /// OpenAI Responses (`…/responses`).
    Responses,
    /// Legacy text completions (`…/completions`; also Mistral FIM).
    Completions,
    /// Embeddings (`…/embeddings`).
    Embeddings,
    /// Anthropic Messages (`…/v1/messages`).
    AnthropicMessages,
    /// Anthropic token counting (`…/v1/messages/count_tokens`): a Messages body, nothing generated.
    AnthropicCountTokens,
    /// Gemini `…/models/{model}:generateContent`.
    GeminiGenerateContent,
    /// Gemini `…/models/{model}:streamGenerateContent` (always streams).
    GeminiStreamGenerateContent,
    /// Gemini `…:countTokens`: contents, nothing generated.
    GeminiCountTokens,
    /// Gemini `…:embedContent` and `…:batchEmbedContents`.
    GeminiEmbed,
    /// A request without a prompt: `GET /v1/models`, any GET, HEAD, DELETE or OPTIONS.
    NoPrompt,
    /// A body-carrying request to a path we do not know (files, batches,
    /// images, audio, assistants …). Its body was not read; policy decides
    /// whether such calls pass.
    Unknown,
}

/// The family of body shapes an [`Api`] speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireFormat {
    OpenAi,
    Anthropic,
    Gemini,
}

impl Api {
    /// Short stable name (logs, audit).
    pub fn name(self) -> &'static str {
        match self {
            Api::ChatCompletions => "chat_completions",
            Api::Responses => "responses",
            Api::Completions => "completions",
            Api::Embeddings => "embeddings",
            Api::AnthropicMessages => "anthropic_messages",
            Api::AnthropicCountTokens => "anthropic_count_tokens",
            Api::GeminiGenerateContent => "gemini_generate_content",
            Api::GeminiStreamGenerateContent => "gemini_stream_generate_content",
            Api::GeminiCountTokens => "gemini_count_tokens",
            Api::GeminiEmbed => "gemini_embed",
            Api::NoPrompt => "no_prompt",
            Api::Unknown => "unknown",
        }
    }

    /// True when this call makes the model generate output (and so can cost
    /// output tokens and carry output text).
    pub fn generates(self) -> bool {
        matches!(
            self,
            Api::ChatCompletions
                | Api::Responses
                | Api::Completions
                | Api::AnthropicMessages
                | Api::GeminiGenerateContent
                | Api::GeminiStreamGenerateContent
        )
    }

    /// True when this call is billed by tokens: it generates, or embeds.
    /// Budgets and rate limits count these calls.
    pub fn metered(self) -> bool {
        self.generates() || matches!(self, Api::Embeddings | Api::GeminiEmbed)
    }

    /// The wire format of this API; for calls whose body we do not read, the
    /// host's native one (it decides the shape of errors we answer with).
    pub(crate) fn wire_format(self, provider: Provider) -> WireFormat {
        match self {
            Api::ChatCompletions | Api::Responses | Api::Completions | Api::Embeddings => {
                WireFormat::OpenAi
            }
            Api::AnthropicMessages | Api::AnthropicCountTokens => WireFormat::Anthropic,
            Api::GeminiGenerateContent
            | Api::GeminiStreamGenerateContent
            | Api::GeminiCountTokens
            | Api::GeminiEmbed => WireFormat::Gemini,
            Api::NoPrompt | Api::Unknown => match provider {
                Provider::Anthropic => WireFormat::Anthropic,
                Provider::Gemini => WireFormat::Gemini,
                Provider::OpenAi | Provider::Azure | Provider::OpenAiCompatible => {
                    WireFormat::OpenAi
                }
            },
        }
    }
}

/// Who wrote a piece of text, as far as the body says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TextRole {
    /// System or developer instructions.
    System,
    /// The user's turn.
    User,
    /// An earlier model turn sent back (or, in responses, the model's output),
    /// including the arguments of tool calls it made.
    Assistant,
    /// A tool's result fed back to the model.
    Tool,
    /// A tool's description or parameter descriptions.
    ToolDefinition,
    /// Text of another kind (unrecognised role, predicted output, prompt variables).
    Other,
}

/// One piece of text and where it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextSpan {
    /// The string's place in the body: `["messages", 2, "content", 0, "text"]`.
    pub path: JsonPath,
    /// Who wrote it.
    pub role: TextRole,
    /// The string, unescaped.
    pub text: String,
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiCall {
    /// The provider the host belongs to.
    pub provider: Provider,
    /// The API the method and path name.
    pub api: Api,
    /// The model: from the path (Gemini, Azure deployments) or the body's `model`.
    pub model: Option<String>,
    /// Whether the response will be a server-sent event stream.
    pub stream: bool,
    /// The output-token cap the request sets, if any.
    pub max_tokens: Option<u64>,
    /// Every piece of user-controlled text, in body order.
    pub texts: Vec<TextSpan>,
}

/// Reads the API call in `body`, sent with `method` to `path` (no query) on a
/// `provider` host.
///
/// Bodies of [`Api::NoPrompt`] and [`Api::Unknown`] calls are not read. For
/// every other API the body must be JSON of that API's shape; if it is not,
/// the error names the place (`messages[2].content: expected string or
/// array, found number`). The body is parsed exactly once.
pub fn parse_request(
    provider: Provider,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<ApiCall, ParseError> {
    let Route { api, model } = route::route(method, path);
    let mut call = ApiCall {
        provider,
        api,
        model,
        stream: api == Api::GeminiStreamGenerateContent,
        max_tokens: None,
        texts: Vec::new(),
    };
    if matches!(api, Api::NoPrompt | Api::Unknown) {
        return Ok(call);
    }
    let root: Value = parse_json(body)?;
    let object = as_object(&root, &JsonPath::root())?;
    match api {
        Api::ChatCompletions => openai::read_chat_request(object, &mut call)?,
        Api::Responses => openai::read_responses_request(object, &mut call)?,
        Api::Completions => openai::read_completions_request(object, &mut call)?,
        Api::Embeddings => openai::read_embeddings_request(object, &mut call)?,
        Api::AnthropicMessages | Api::AnthropicCountTokens => {
            anthropic::read_messages_request(object, &mut call)?
        }
        Api::GeminiGenerateContent
        | Api::GeminiStreamGenerateContent
        | Api::GeminiCountTokens
        | Api::GeminiEmbed => gemini::read_request(object, &mut call)?,
        Api::NoPrompt | Api::Unknown => {}
    }
    Ok(call)
}

/// Sets the call's model from the body's `model` unless the path named one
/// (the path wins: it is what the provider routes on). The member is
/// type-checked either way.
pub(crate) fn read_body_model(object: &Object, call: &mut ApiCall) -> Result<(), ParseError> {
    let body_model = opt_str(object, "model", &JsonPath::root())?;
    if call.model.is_none() {
        call.model = body_model.map(str::to_owned);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodyless_and_unknown_calls_do_not_read_the_body() {
        let call = parse_request(Provider::OpenAi, "GET", "/v1/models", b"\xff not json").unwrap();
        assert_eq!((call.api, call.texts.len()), (Api::NoPrompt, 0));
        let call = parse_request(Provider::OpenAi, "POST", "/v1/files", b"--multipart--").unwrap();
        assert_eq!(call.api, Api::Unknown);
    }

    #[test]
    fn known_endpoints_need_a_json_object() {
        let err = parse_request(
            Provider::OpenAi,
            "POST",
            "/v1/chat/completions",
            b"{\"messages\": [",
        )
        .unwrap_err();
        assert!(
            matches!(&err, ParseError::InvalidJson(m) if m.contains("line 1")),
            "{err}"
        );
        let err = parse_request(Provider::OpenAi, "POST", "/v1/chat/completions", b"").unwrap_err();
        assert!(matches!(err, ParseError::InvalidJson(_)));
        let err = parse_request(Provider::Anthropic, "POST", "/v1/messages", b"[1]").unwrap_err();
        assert_eq!(err.to_string(), "body: expected object, found array");
    }

    #[test]
    fn wire_format_follows_the_api_not_the_host() {
        assert_eq!(
            Api::ChatCompletions.wire_format(Provider::Gemini),
            WireFormat::OpenAi
        );
        assert_eq!(
            Api::Unknown.wire_format(Provider::Gemini),
            WireFormat::Gemini
        );
        assert_eq!(
            Api::AnthropicMessages.wire_format(Provider::OpenAiCompatible),
            WireFormat::Anthropic
        );
        assert_eq!(
            Api::NoPrompt.wire_format(Provider::Azure),
            WireFormat::OpenAi
        );
    }
}
