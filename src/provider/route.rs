//! Which API a request is, from its method and path alone.
//!
//! Routing is by path shape, not by host, because the shapes travel: Groq
//! serves OpenAI chat at `/openai/v1/chat/completions`, OpenRouter at
//! `/api/v1/…`, Perplexity at `/chat/completions`, Gemini at
//! `/v1beta/openai/chat/completions`, DeepSeek serves Anthropic Messages at
//! `/anthropic/v1/messages`, and Vertex AI uses Gemini's `…/models/{m}:generateContent`.
//! The host only decides [`Provider`](super::Provider) (error shapes, table
//! flags).
//!
//! The path is percent-decoded, empty segments are dropped, matrix
//! parameters (`;x`) removed and `.`/`..` resolved before matching, and
//! endpoint words match case-insensitively: a client must not dodge the
//! guardrails by writing `%3AgenerateContent`, `//chat/completions` or
//! `completions;x` where the upstream would normalise it. Matching more than the upstream
//! accepts costs nothing; matching less is a bypass.

use super::azure;
use super::call::Api;

/// What the path says about a call before its body is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The API the path names.
    pub api: Api,
    /// A model named by the path (Gemini `models/{m}:…`, Azure `deployments/{d}/…`).
    pub model: Option<String>,
}

impl Route {
    /// This route once the body is known: a body sent with a method that
    /// normally has none (`GET` with a body) is a call to an unknown
    /// endpoint, whose every string is read.
    pub fn with_body(mut self, has_body: bool) -> Route {
        if self.api == Api::NoPrompt && has_body {
            self.api = Api::Unknown;
        }
        self
    }
}

/// Methods that carry no prompt: reads, deletes, preflights.
fn is_bodyless(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "DELETE" | "OPTIONS" | "TRACE")
}

/// Routes `method` + `path` (a query, if any, is ignored).
pub fn route(method: &str, path: &str) -> Route {
    let mut route = route_path(path);
    if is_bodyless(method) {
        route.api = Api::NoPrompt;
    }
    route
}

/// Routes `path` alone, as if its method carried a body.
fn route_path(path: &str) -> Route {
    let decoded = percent_decode(path.split(['?', '#']).next().unwrap_or_default());
    let segments = normalized_segments(&decoded);

    if let Some(route) = gemini_route(&segments) {
        return route;
    }
    let api = openai_or_anthropic_api(&segments);
    let model = match api {
        Api::Unknown => None,
        _ => azure::deployment(&segments).map(str::to_owned),
    };
    Route { api, model }
}

/// The segments of `path` (a query, if any, is ignored), percent-decoded and
/// normalised as for routing (see [`normalized_segments`]).
pub fn segments(path: &str) -> Vec<String> {
    let decoded = percent_decode(path.split(['?', '#']).next().unwrap_or_default());
    normalized_segments(&decoded)
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// The path's segments as a server that normalises would see them: empty
/// segments (`//`, a trailing slash) dropped, matrix parameters (`;x`)
/// removed, `.` and `..` resolved.
fn normalized_segments(decoded: &str) -> Vec<&str> {
    let mut segments = Vec::new();
    for segment in decoded.split('/') {
        let segment = segment.split(';').next().unwrap_or_default();
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            segment => segments.push(segment),
        }
    }
    segments
}

/// Gemini (and Vertex AI) `…/{model}:{method}`.
fn gemini_route(segments: &[&str]) -> Option<Route> {
    let (last, parents) = segments.split_last()?;
    let (name, method) = last.rsplit_once(':')?;
    let api = match method.to_ascii_lowercase().as_str() {
        "generatecontent" => Api::GeminiGenerateContent,
        "streamgeneratecontent" => Api::GeminiStreamGenerateContent,
        "counttokens" => Api::GeminiCountTokens,
        "embedcontent" | "batchembedcontents" => Api::GeminiEmbed,
        _ => Api::Unknown,
    };
    let model = match parents.last() {
        _ if name.is_empty() => None,
        // Tuned models keep their collection so a policy can tell them apart.
        Some(parent) if parent.eq_ignore_ascii_case("tunedModels") => {
            Some(format!("tunedModels/{name}"))
        }
        _ => Some(name.to_owned()),
    };
    Some(Route { api, model })
}

/// OpenAI-family endpoints by suffix, and Anthropic Messages.
fn openai_or_anthropic_api(segments: &[&str]) -> Api {
    let lower: Vec<String> = segments.iter().map(|s| s.to_ascii_lowercase()).collect();
    let ends_with = |tail: &[&str]| {
        lower.len() >= tail.len()
            && lower[lower.len() - tail.len()..]
                .iter()
                .zip(tail)
                .all(|(a, b)| a == b)
    };
    if ends_with(&["chat", "completions"]) {
        Api::ChatCompletions
    } else if ends_with(&["agents", "completions"]) {
        // Mistral's agents endpoint: a chat-shaped body under a `completions` name.
        Api::ChatCompletions
    } else if ends_with(&["completions"]) {
        Api::Completions
    } else if ends_with(&["embeddings"]) {
        Api::Embeddings
    } else if ends_with(&["responses"]) {
        Api::Responses
    } else if ends_with(&["v1", "messages"]) {
        // Only directly under `v1`: OpenAI's `/v1/threads/{id}/messages` is another API.
        Api::AnthropicMessages
    } else if ends_with(&["v1", "messages", "count_tokens"]) {
        Api::AnthropicCountTokens
    } else if ends_with(&["v1", "messages", "batches"]) {
        Api::AnthropicBatch
    } else {
        Api::Unknown
    }
}

/// Decodes `%XX` escapes; invalid escapes stay as written and invalid UTF-8
/// becomes U+FFFD (such a path names no endpoint we know anyway).
fn percent_decode(path: &str) -> String {
    percent_encoding::percent_decode_str(path)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(method: &str, path: &str) -> Api {
        route(method, path).api
    }

    #[test]
    fn openai_compatible_paths_route_by_suffix() {
        assert_eq!(api("POST", "/v1/chat/completions"), Api::ChatCompletions);
        assert_eq!(
            api("POST", "/openai/v1/chat/completions"),
            Api::ChatCompletions
        );
        assert_eq!(
            api("POST", "/api/v1/chat/completions"),
            Api::ChatCompletions
        );
        assert_eq!(
            api("POST", "/inference/v1/chat/completions"),
            Api::ChatCompletions
        );
        assert_eq!(api("POST", "/chat/completions"), Api::ChatCompletions);
        assert_eq!(
            api("POST", "/v1beta/openai/chat/completions"),
            Api::ChatCompletions
        );
        assert_eq!(api("POST", "/v1/completions"), Api::Completions);
        assert_eq!(api("POST", "/v1/fim/completions"), Api::Completions);
        assert_eq!(api("POST", "/v1/agents/completions"), Api::ChatCompletions);
        assert_eq!(api("POST", "/v1/embeddings"), Api::Embeddings);
        assert_eq!(api("POST", "/v1/responses"), Api::Responses);
        assert_eq!(api("POST", "/v1/messages"), Api::AnthropicMessages);
        assert_eq!(
            api("POST", "/anthropic/v1/messages"),
            Api::AnthropicMessages
        );
        assert_eq!(
            api("POST", "/v1/messages/count_tokens"),
            Api::AnthropicCountTokens
        );
    }

    #[test]
    fn other_paths_and_reads_are_not_prompts() {
        assert_eq!(api("GET", "/v1/models"), Api::NoPrompt);
        assert_eq!(api("GET", "/v1/chat/completions"), Api::NoPrompt);
        assert_eq!(api("DELETE", "/v1/responses/resp_1"), Api::NoPrompt);
        assert_eq!(api("POST", "/v1/threads/t_1/messages"), Api::Unknown);
        assert_eq!(api("POST", "/v1/files"), Api::Unknown);
        assert_eq!(api("POST", "/v1/responses/resp_1/cancel"), Api::Unknown);
        assert_eq!(api("POST", "/"), Api::Unknown);
    }

    #[test]
    fn evasive_spellings_still_route() {
        assert_eq!(api("POST", "//v1//chat/completions/"), Api::ChatCompletions);
        assert_eq!(api("POST", "/v1/Chat/Completions"), Api::ChatCompletions);
        assert_eq!(api("POST", "/v1/chat%2Fcompletions"), Api::ChatCompletions);
        let gemini = route("POST", "/v1beta/models/gemini-2.0-flash%3AgenerateContent");
        assert_eq!(gemini.api, Api::GeminiGenerateContent);
        assert_eq!(gemini.model.as_deref(), Some("gemini-2.0-flash"));
        // A query is not part of the path.
        assert_eq!(
            api("POST", "/v1/chat/completions?x=/embeddings"),
            Api::ChatCompletions
        );
        // Lower-case methods are not the bodyless ones.
        assert_eq!(api("get", "/v1/chat/completions"), Api::ChatCompletions);
    }

    #[test]
    fn gemini_paths_carry_the_model() {
        let r = route(
            "POST",
            "/v1beta/models/gemini-1.5-pro:streamGenerateContent",
        );
        assert_eq!(r.api, Api::GeminiStreamGenerateContent);
        assert_eq!(r.model.as_deref(), Some("gemini-1.5-pro"));
        let r = route("POST", "/v1/models/gemini-pro:generateContent");
        assert_eq!(
            (r.api, r.model.as_deref()),
            (Api::GeminiGenerateContent, Some("gemini-pro"))
        );
        let r = route("POST", "/v1beta/tunedModels/my-model-7:generateContent");
        assert_eq!(r.model.as_deref(), Some("tunedModels/my-model-7"));
        let r = route(
            "POST",
            "/v1beta/models/text-embedding-004:batchEmbedContents",
        );
        assert_eq!(r.api, Api::GeminiEmbed);
        let r = route("POST", "/v1beta/models/gemini-pro:countTokens");
        assert_eq!(r.api, Api::GeminiCountTokens);
        let r = route(
            "POST",
            "/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.0-flash:generateContent",
        );
        assert_eq!(
            (r.api, r.model.as_deref()),
            (Api::GeminiGenerateContent, Some("gemini-2.0-flash"))
        );
        assert_eq!(
            api("POST", "/v1beta/models/gemini-pro:predict"),
            Api::Unknown
        );
    }

    #[test]
    fn azure_deployment_paths_name_the_model() {
        let r = route("POST", "/openai/deployments/gpt-4o-prod/chat/completions");
        assert_eq!(
            (r.api, r.model.as_deref()),
            (Api::ChatCompletions, Some("gpt-4o-prod"))
        );
        let r = route("POST", "/openai/deployments/emb/embeddings");
        assert_eq!((r.api, r.model.as_deref()), (Api::Embeddings, Some("emb")));
        let r = route("POST", "/openai/v1/chat/completions");
        assert_eq!((r.api, r.model), (Api::ChatCompletions, None));
    }

    #[test]
    fn matrix_parameters_and_dot_segments_do_not_hide_an_endpoint() {
        assert_eq!(api("POST", "/v1/chat/completions;x"), Api::ChatCompletions);
        assert_eq!(
            api("POST", "/v1;a=b/chat;c/completions"),
            Api::ChatCompletions
        );
        assert_eq!(
            api("POST", "/v1/x/../chat/./completions"),
            Api::ChatCompletions
        );
        assert_eq!(api("POST", "/v1/x/%2e%2e/messages"), Api::AnthropicMessages);
        assert_eq!(api("POST", "/v1/messages/batches"), Api::AnthropicBatch);
        assert_eq!(api("POST", "/v1/messages/batches/"), Api::AnthropicBatch);
    }

    #[test]
    fn percent_decoding_keeps_bad_escapes() {
        assert_eq!(percent_decode("/a%2"), "/a%2");
        assert_eq!(percent_decode("/a%zz%41"), "/a%zzA");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }
}
