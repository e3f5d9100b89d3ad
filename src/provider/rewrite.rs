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

use super::json_path::{JsonPath, PathSegment};
use super::shape::{parse_json, ParseError};

/// `body` with the string at each edit's path replaced by the edit's text.
/// Later edits of the same path win.
pub fn rewrite_texts(body: &[u8], edits: &[(JsonPath, String)]) -> Result<Vec<u8>, ParseError> {
    let mut root = parse_json(body)?;
    apply_edits(&mut root, edits)?;
    Ok(to_json(&root))
}

/// Replaces the strings at the edits' paths in `root`.
pub fn apply_edits(root: &mut Value, edits: &[(JsonPath, String)]) -> Result<(), ParseError> {
    for (path, text) in edits {
        match path.lookup_mut(root) {
            Some(Value::String(target)) => target.clone_from(text),
            _ => return Err(ParseError::EditTarget { path: path.clone() }),
        }
    }
    Ok(())
}

/// Renames the object members at the renames' paths (a redaction in a
/// member name). Deepest first, so a renamed parent does not strand the
/// paths of its children; a member renamed onto an existing name replaces it.
pub fn apply_renames(root: &mut Value, renames: &[(JsonPath, String)]) -> Result<(), ParseError> {
    let mut ordered: Vec<&(JsonPath, String)> = renames.iter().collect();
    ordered.sort_by_key(|(path, _)| std::cmp::Reverse(path.segments().len()));
    for (path, name) in ordered {
        let target = || ParseError::EditTarget { path: path.clone() };
        let Some((PathSegment::Key(old), parent)) = path.segments().split_last() else {
            return Err(target());
        };
        let parent = JsonPath::from_segments(parent.iter().cloned());
        let object = parent
            .lookup_mut(root)
            .and_then(Value::as_object_mut)
            .ok_or_else(target)?;
        let value = object.remove(old).ok_or_else(target)?;
        object.insert(name.clone(), value);
    }
    Ok(())
}

/// A request document with redactions applied to its strings (`edits`) and
/// member names (`renames`): what the proxy serialises and sends, so the
/// provider gets exactly the document that was scanned.
pub fn redact_document(
    root: &mut Value,
    edits: &[(JsonPath, String)],
    renames: &[(JsonPath, String)],
) -> Result<(), ParseError> {
    apply_edits(root, edits)?;
    apply_renames(root, renames)
}

/// Compact JSON for `value`.
pub fn to_json(value: &Value) -> Vec<u8> {
    to_json_sized(value, 128)
}

/// [`to_json`] into a buffer that starts with room for `capacity` bytes: a
/// large document sized from the bytes it was read from is written without
/// the buffer growing (and being copied) on the way.
pub fn to_json_sized(value: &Value, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity);
    // Serialising a `Value` into memory cannot fail: its map keys are
    // strings and a Vec writer has no I/O errors.
    let _ = serde_json::to_writer(&mut out, value);
    out
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
    fn renames_reach_nested_member_names() {
        let mut doc = serde_json::json!({"meta": {"AKIA": {"AKIB": 1}}, "x": 2});
        let outer = JsonPath::root().key("meta").key("AKIA");
        let inner = outer.key("AKIB");
        apply_renames(&mut doc, &[(outer, "[R1]".into()), (inner, "[R2]".into())]).unwrap();
        assert_eq!(
            doc,
            serde_json::json!({"meta": {"[R1]": {"[R2]": 1}}, "x": 2})
        );
        let missing = JsonPath::root().key("nope");
        assert!(apply_renames(&mut doc, &[(missing, "y".into())]).is_err());
    }

    #[test]
    fn new_text_is_escaped() {
        let body = br#"{"t": "x"}"#;
        let out = rewrite_texts(body, &[(JsonPath::root().key("t"), "a\"b\n".into())]).unwrap();
        assert_eq!(out, br#"{"t":"a\"b\n"}"#);
    }
}
