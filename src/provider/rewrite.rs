//! Replacing strings inside a JSON body: how a redaction reaches the bytes
//! that are forwarded.
//!
//! The body is parsed, the strings at the edits' paths are replaced, and the
//! document is serialised again. Key order is kept (serde_json's
//! `preserve_order`), so apart from the edited strings the output means what
//! the input meant. What can change, none of which changes meaning: whitespace
//! (output is compact), string escapes (`\u00e9` becomes `é`), number spelling
//! (`1e2` becomes `100.0`; integers within 64 bits are exact), and a key
//! that appears twice keeps only its last value, which is the one every
//! JSON reader the providers use acts on, and the one the adapters scanned.
//!
//! A path that does not lead to a string is an error, never a silent
//! no-op: a redaction that did not happen must not look like one that did.

use serde_json::Value;

use super::json_path::JsonPath;
use super::shape::{parse_json, ParseError};

/// `body` with the string at each edit's path replaced by the edit's text.
/// Later edits of the same path win.
pub fn rewrite_texts(body: &[u8], edits: &[(JsonPath, String)]) -> Result<Vec<u8>, ParseError> {
    let mut root = parse_json(body)?;
    apply_edits(&mut root, edits)?;
    Ok(to_json(&root))
}

/// Replaces the strings at the edits' paths in `root`.
pub(crate) fn apply_edits(
    root: &mut Value,
    edits: &[(JsonPath, String)],
) -> Result<(), ParseError> {
    for (path, text) in edits {
        match path.lookup_mut(root) {
            Some(Value::String(target)) => target.clone_from(text),
            _ => return Err(ParseError::EditTarget { path: path.clone() }),
        }
    }
    Ok(())
}

/// Compact JSON for `value`.
pub(crate) fn to_json(value: &Value) -> Vec<u8> {
    // Serialising a `Value` into memory cannot fail: its map keys are
    // strings and a Vec writer has no I/O errors.
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_only_the_named_string_and_keeps_key_order() {
        let body = br#"{"z": 1, "a": {"list": ["keep", "secret 4111"]}, "m": 2.5}"#;
        let path = JsonPath::root().key("a").key("list").index(1);
        let out = rewrite_texts(body, &[(path, "secret [REDACTED]".into())]).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"z":1,"a":{"list":["keep","secret [REDACTED]"]},"m":2.5}"#
        );
    }

    #[test]
    fn a_path_to_a_non_string_is_an_error() {
        let body = br#"{"a": {"b": 3}}"#;
        for path in [
            JsonPath::root().key("a").key("b"),
            JsonPath::root().key("a"),
            JsonPath::root().key("missing"),
            JsonPath::root().key("a").index(0),
        ] {
            let err = rewrite_texts(body, &[(path.clone(), "x".into())]).unwrap_err();
            assert_eq!(err, ParseError::EditTarget { path });
        }
    }

    #[test]
    fn new_text_is_escaped() {
        let body = br#"{"t": "x"}"#;
        let out = rewrite_texts(body, &[(JsonPath::root().key("t"), "a\"b\n".into())]).unwrap();
        assert_eq!(out, br#"{"t":"a\"b\n"}"#);
    }
}
