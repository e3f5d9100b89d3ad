//! Helpers shared by this module's unit tests: parse a fixture, list its
//! spans as `(path, role, text)` so expectations read like the body.

use super::{parse_request, ApiCall, Provider, TextRole, TextSpan};

/// `POST path` with `body` on a `provider` host; panics on a parse error.
pub(crate) fn post(provider: Provider, path: &str, body: &str) -> ApiCall {
    match parse_request(provider, "POST", path, body.as_bytes()) {
        Ok(call) => call,
        Err(err) => panic!("{path}: {err}"),
    }
}

/// The error for `POST path` with `body`, as text.
pub(crate) fn post_err(provider: Provider, path: &str, body: &str) -> String {
    match parse_request(provider, "POST", path, body.as_bytes()) {
        Ok(call) => panic!("{path}: expected an error, parsed {call:?}"),
        Err(err) => err.to_string(),
    }
}

/// Spans as `(displayed path, role, text)`.
pub(crate) fn spans(texts: &[TextSpan]) -> Vec<(String, TextRole, &str)> {
    texts
        .iter()
        .map(|span| (span.path.to_string(), span.role, span.text.as_str()))
        .collect()
}

/// Expected spans, written compactly.
pub(crate) fn expect(
    list: &[(&str, TextRole, &'static str)],
) -> Vec<(String, TextRole, &'static str)> {
    list.iter()
        .map(|(path, role, text)| (path.to_string(), *role, *text))
        .collect()
}
