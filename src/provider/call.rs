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
use super::shape::{as_object, opt_str, parse_json_strict, Object, ParseError};
use super::unclaimed::unclaimed_strings;
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
    /// Anthropic Message Batches (`POST …/v1/messages/batches`): Messages
    /// bodies inline, answered later; the create call returns no usage.
    AnthropicBatch,
    /// Gemini `…/models/{model}:generateContent`.
    GeminiGenerateContent,
    /// Gemini `…/models/{model}:streamGenerateContent` (always streams).
    GeminiStreamGenerateContent,
    /// Gemini `…:countTokens`: contents, nothing generated.
    GeminiCountTokens,
    /// Gemini `…:embedContent` and `…:batchEmbedContents`.
    GeminiEmbed,
    /// OpenAI Realtime over WebSocket (`…/v1/realtime`): one call per response.
    Realtime,
    /// Gemini Live over WebSocket (`…BidiGenerateContent`): one call per turn.
    GeminiLive,
    /// A request without a prompt: `GET /v1/models`, any GET, HEAD, DELETE or OPTIONS.
    NoPrompt,
    /// A body-carrying request to a path no adapter knows (files, threads,
    /// images, audio, assistants …), or a body sent with a method that
    /// normally has none. Policy (`[intercept] unknown_endpoints`) decides:
    /// a JSON body has every string scanned.
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
            Api::AnthropicBatch => "anthropic_batch",
            Api::GeminiGenerateContent => "gemini_generate_content",
            Api::GeminiStreamGenerateContent => "gemini_stream_generate_content",
            Api::GeminiCountTokens => "gemini_count_tokens",
            Api::GeminiEmbed => "gemini_embed",
            Api::Realtime => "realtime",
            Api::GeminiLive => "gemini_live",
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
                | Api::Realtime
                | Api::GeminiLive
        )
    }

    /// True when this call is billed by tokens: it generates, or embeds.
    /// Budgets and rate limits count these calls.
    pub fn metered(self) -> bool {
        self.generates()
            || matches!(
                self,
                Api::Embeddings | Api::GeminiEmbed | Api::AnthropicBatch
            )
    }

    /// True when the provider's answer never says what the call used (a
    /// batch is billed when it runs, later): such a call is charged its
    /// worst case.
    pub fn usage_unobservable(self) -> bool {
        self == Api::AnthropicBatch
    }

    /// The wire format of this API; for calls whose body we do not read, the
    /// host's native one (it decides the shape of errors we answer with).
    pub(crate) fn wire_format(self, provider: Provider) -> WireFormat {
        match self {
            Api::ChatCompletions
            | Api::Responses
            | Api::Completions
            | Api::Embeddings
            | Api::Realtime => WireFormat::OpenAi,
            Api::AnthropicMessages | Api::AnthropicCountTokens | Api::AnthropicBatch => {
                WireFormat::Anthropic
            }
            Api::GeminiGenerateContent
            | Api::GeminiStreamGenerateContent
            | Api::GeminiCountTokens
            | Api::GeminiEmbed
            | Api::GeminiLive => WireFormat::Gemini,
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
    /// Text of another kind (unrecognised role, predicted output, prompt
    /// variables, and every string no adapter claimed: `metadata`, `user`, …).
    Other,
    /// The name of an object member; its path is the member's own.
    Key,
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
    /// For a batch: how many requests it carries and every model they name.
    pub batch: Option<Batch>,
}

/// The requests of one batch call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Batch {
    /// Requests in the batch.
    pub count: usize,
    /// Each distinct model the requests name, in first-seen order.
    pub models: Vec<String>,
}

impl ApiCall {
    /// A call of `api` on a `provider` host about which nothing else is known.
    pub fn bare(provider: Provider, api: Api, model: Option<String>) -> ApiCall {
        ApiCall {
            provider,
            api,
            model,
            stream: api == Api::GeminiStreamGenerateContent,
            max_tokens: None,
            texts: Vec::new(),
            batch: None,
        }
    }

    /// Every model this call names (a batch names several).
    pub fn models(&self) -> Vec<&str> {
        match &self.batch {
            Some(batch) => batch.models.iter().map(String::as_str).collect(),
            None => self.model.as_deref().into_iter().collect(),
        }
    }
}

/// A request body read for inspection: the call, the parsed document (the
/// bytes forwarded are this document serialised again, so what was scanned
/// is what is sent), and every string in it that is not prompt text.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedRequest {
    /// What the call says.
    pub call: ApiCall,
    /// The body, if it had one.
    pub json: Option<Value>,
    /// Strings and member names outside `call.texts` (see [`unclaimed`](super::unclaimed)).
    pub unclaimed: Vec<TextSpan>,
}

/// Reads the API call in `body`, sent with `method` to `path` (no query) on a
/// `provider` host. See [`read_request`]; this keeps only the call.
pub fn parse_request(
    provider: Provider,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<ApiCall, ParseError> {
    read_request(provider, method, path, body).map(|parsed| parsed.call)
}

/// Reads the request in `body`, sent with `method` to `path` on a
/// `provider` host.
///
/// Every non-empty body is parsed, exactly once, as JSON that names no
/// member twice: a known API's body must have that API's shape (an error
/// names the place: `messages[2].content: expected string or array, found
/// number`); the body of an unknown endpoint, or one sent with a method
/// that normally has none (`GET` with a body), may be any JSON, and is
/// reported as [`Api::Unknown`] with all its strings unclaimed. An empty
/// body is fine where the API takes none.
pub fn read_request(
    provider: Provider,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<ParsedRequest, ParseError> {
    read_routed(provider, route::route(method, path), body)
}

/// [`read_request`] for a request whose method and path were already
/// routed ([`route::route`]).
pub fn read_routed(
    provider: Provider,
    route: Route,
    body: &[u8],
) -> Result<ParsedRequest, ParseError> {
    let Route { api, model } = route.with_body(!body.is_empty());
    let mut call = ApiCall::bare(provider, api, model);
    if matches!(api, Api::NoPrompt | Api::Unknown) && body.is_empty() {
        return Ok(ParsedRequest {
            call,
            json: None,
            unclaimed: Vec::new(),
        });
    }
    let root: Value = parse_json_strict(body)?;
    if api == Api::Unknown {
        if call.model.is_none() {
            call.model = root.get("model").and_then(Value::as_str).map(str::to_owned);
        }
    } else {
        read_known(&root, &mut call)?;
    }
    let unclaimed = unclaimed_strings(&root, &call.texts);
    Ok(ParsedRequest {
        call,
        json: Some(root),
        unclaimed,
    })
}

fn read_known(root: &Value, call: &mut ApiCall) -> Result<(), ParseError> {
    let object = as_object(root, &JsonPath::root())?;
    match call.api {
        Api::ChatCompletions => openai::read_chat_request(object, call),
        Api::Responses => openai::read_responses_request(object, call),
        Api::Completions => openai::read_completions_request(object, call),
        Api::Embeddings => openai::read_embeddings_request(object, call),
        Api::AnthropicMessages | Api::AnthropicCountTokens => {
            anthropic::read_messages_request(object, call)
        }
        Api::AnthropicBatch => anthropic::read_batch_request(object, call),
        Api::GeminiGenerateContent
        | Api::GeminiStreamGenerateContent
        | Api::GeminiCountTokens
        | Api::GeminiEmbed => gemini::read_request(object, call),
        // Socket APIs are read message by message (`socket`), never routed here.
        Api::Realtime | Api::GeminiLive | Api::NoPrompt | Api::Unknown => Ok(()),
    }
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
    fn bodyless_calls_have_no_prompt_and_any_body_is_read() {
        let call = parse_request(Provider::OpenAi, "GET", "/v1/models", b"").unwrap();
        assert_eq!((call.api, call.texts.len()), (Api::NoPrompt, 0));
        let call = parse_request(Provider::OpenAi, "POST", "/v1/files", b"").unwrap();
        assert_eq!(call.api, Api::Unknown);
        // A body where none is expected, or on an unknown endpoint, must be JSON.
        let err = parse_request(Provider::OpenAi, "GET", "/v1/models", b"\xff not json");
        assert!(matches!(err, Err(ParseError::InvalidJson(_))), "{err:?}");
        let err = parse_request(Provider::OpenAi, "POST", "/v1/files", b"--multipart--");
        assert!(matches!(err, Err(ParseError::InvalidJson(_))), "{err:?}");
    }

    #[test]
    fn unknown_and_get_bodies_have_every_string_unclaimed() {
        let parsed = read_request(
            Provider::OpenAi,
            "GET",
            "/v1/chat/completions",
            br#"{"model":"gpt-4o","messages":[{"role":"user","content":"x"}]}"#,
        )
        .unwrap();
        assert_eq!(parsed.call.api, Api::Unknown);
        assert_eq!(parsed.call.model.as_deref(), Some("gpt-4o"));
        assert!(parsed.unclaimed.iter().any(|s| s.text == "x"));
        let parsed = read_request(
            Provider::OpenAi,
            "POST",
            "/v1/threads/t_1/messages",
            br#"{"role":"user","content":"hello there"}"#,
        )
        .unwrap();
        assert_eq!(parsed.call.api, Api::Unknown);
        assert!(parsed.unclaimed.iter().any(|s| s.text == "hello there"));
    }

    #[test]
    fn known_calls_report_metadata_and_user_as_unclaimed() {
        let parsed = read_request(
            Provider::OpenAi,
            "POST",
            "/v1/chat/completions",
            br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"metadata":{"k":"v1"},"user":"u2"}"#,
        )
        .unwrap();
        let unclaimed: Vec<&str> = parsed.unclaimed.iter().map(|s| s.text.as_str()).collect();
        assert!(
            unclaimed.contains(&"v1") && unclaimed.contains(&"u2"),
            "{unclaimed:?}"
        );
        assert!(
            !unclaimed.contains(&"hi"),
            "claimed text is not reported twice"
        );
    }

    #[test]
    fn duplicate_members_are_refused() {
        let err = parse_request(
            Provider::OpenAi,
            "POST",
            "/v1/chat/completions",
            br#"{"model":"m","messages":[{"role":"user","content":"a"}],"messages":[]}"#,
        )
        .unwrap_err();
        assert!(matches!(err, ParseError::DuplicateKey(_)), "{err}");
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
