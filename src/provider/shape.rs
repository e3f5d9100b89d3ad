//! Typed access to a parsed JSON body, with errors that say what and where.
//!
//! The adapters walk a `serde_json::Value` parsed once from the body. Every
//! step that expects a type goes through these helpers, so a body of the
//! wrong shape fails with `messages[2].content: expected string or array,
//! found number` instead of being skipped: a guardrail must not pass text it
//! could not see. "Absent" means missing *or* `null`, as the providers treat
//! optional members.
//!
//! Whose fault a [`ParseError`] is depends on the direction: on a request it
//! is the client's (answer 400), on a response or stream event the
//! upstream's.

use serde_json::{Map, Value};

use super::call::{TextRole, TextSpan};
use super::json_path::JsonPath;

/// A JSON object as serde_json holds it (insertion-ordered: `preserve_order`).
pub(crate) type Object = Map<String, Value>;

/// A body, event or edit that does not have the shape its API promises.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The bytes are not JSON; carries serde_json's message (with line and column).
    #[error("not valid JSON: {0}")]
    InvalidJson(String),
    /// A value has the wrong type for its place.
    #[error("{path}: expected {expected}, found {found}")]
    WrongShape {
        /// Where the value is.
        path: JsonPath,
        /// What the API allows there.
        expected: &'static str,
        /// The JSON type that was there.
        found: &'static str,
    },
    /// A member the API requires is absent (or `null`).
    #[error("{path}: missing (expected {expected})")]
    Missing {
        /// Where the member should be.
        path: JsonPath,
        /// What the API requires there.
        expected: &'static str,
    },
    /// An edit names a place that does not hold a string.
    #[error("{path}: no string there to replace")]
    EditTarget {
        /// The edit's path.
        path: JsonPath,
    },
    /// An SSE event without a `data` field cannot have its data rewritten.
    #[error("the event has no data to rewrite")]
    NoEventData,
    /// An object names the same member twice. JSON readers disagree on
    /// which one counts, so Outpost would scan one and the provider might
    /// act on the other: such a body is refused, never guessed at.
    #[error("{0}")]
    DuplicateKey(String),
}

impl ParseError {
    /// This error, for a document found at `prefix` of a larger one.
    pub(crate) fn under(self, prefix: &JsonPath) -> ParseError {
        match self {
            ParseError::WrongShape {
                path,
                expected,
                found,
            } => ParseError::WrongShape {
                path: prefix.join(&path),
                expected,
                found,
            },
            ParseError::Missing { path, expected } => ParseError::Missing {
                path: prefix.join(&path),
                expected,
            },
            ParseError::EditTarget { path } => ParseError::EditTarget {
                path: prefix.join(&path),
            },
            other => other,
        }
    }
}

/// Parses a whole body (or an event's data) once.
pub(crate) fn parse_json(bytes: &[u8]) -> Result<Value, ParseError> {
    serde_json::from_slice(bytes).map_err(|err| ParseError::InvalidJson(err.to_string()))
}

/// Parses a request body, refusing an object that names a member twice
/// (serde_json's own `Value` keeps the last one silently).
pub(crate) fn parse_json_strict(bytes: &[u8]) -> Result<Value, ParseError> {
    match serde_json::from_slice::<Strict>(bytes) {
        Ok(Strict(value)) => Ok(value),
        // The visitor's only own error is the duplicate; serde_json's
        // syntax and EOF errors are classified as such.
        Err(err) if err.classify() == serde_json::error::Category::Data => {
            Err(ParseError::DuplicateKey(err.to_string()))
        }
        Err(err) => Err(ParseError::InvalidJson(err.to_string())),
    }
}

/// A `Value` read by a visitor that rejects duplicate member names.
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Strict, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // serde_json never hands a JSON reader a non-finite number.
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                let shown = Value::String(key).to_string();
                return Err(serde::de::Error::custom(format_args!(
                    "the body names member {shown} twice in one object"
                )));
            }
            let Strict(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// The JSON type name of `value`, for error messages.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The error for `value` at `path` not being `expected`.
pub(crate) fn wrong_shape(path: &JsonPath, expected: &'static str, value: &Value) -> ParseError {
    ParseError::WrongShape {
        path: path.clone(),
        expected,
        found: type_name(value),
    }
}

/// `value` as an object.
pub(crate) fn as_object<'v>(value: &'v Value, path: &JsonPath) -> Result<&'v Object, ParseError> {
    value
        .as_object()
        .ok_or_else(|| wrong_shape(path, "object", value))
}

/// `value` as an array.
pub(crate) fn as_array<'v>(value: &'v Value, path: &JsonPath) -> Result<&'v [Value], ParseError> {
    match value {
        Value::Array(items) => Ok(items),
        other => Err(wrong_shape(path, "array", other)),
    }
}

/// The member `key`, unless it is missing or `null`.
pub(crate) fn present<'v>(object: &'v Object, key: &str) -> Option<&'v Value> {
    object.get(key).filter(|value| !value.is_null())
}

/// An optional string member.
pub(crate) fn opt_str<'v>(
    object: &'v Object,
    key: &str,
    at: &JsonPath,
) -> Result<Option<&'v str>, ParseError> {
    match present(object, key) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(wrong_shape(&at.key(key), "string", other)),
    }
}

/// An optional boolean member.
pub(crate) fn opt_bool(
    object: &Object,
    key: &str,
    at: &JsonPath,
) -> Result<Option<bool>, ParseError> {
    match present(object, key) {
        None => Ok(None),
        Some(Value::Bool(flag)) => Ok(Some(*flag)),
        Some(other) => Err(wrong_shape(&at.key(key), "boolean", other)),
    }
}

/// An optional token count: a non-negative integer. `1000.0` is accepted as
/// 1000 because lax JSON producers write integers that way and the providers
/// accept it.
pub(crate) fn opt_count(
    object: &Object,
    key: &str,
    at: &JsonPath,
) -> Result<Option<u64>, ParseError> {
    match present(object, key) {
        None => Ok(None),
        Some(value) => count(value)
            .map(Some)
            .ok_or_else(|| wrong_shape(&at.key(key), "non-negative integer", value)),
    }
}

/// `value` as a non-negative integer, if it is one.
pub(crate) fn count(value: &Value) -> Option<u64> {
    if let Some(n) = value.as_u64() {
        return Some(n);
    }
    let float = value.as_f64()?;
    // The range check keeps the cast exact; `fract` rejects 1.5.
    if float >= 0.0 && float.fract() == 0.0 && float <= u64::MAX as f64 {
        Some(float as u64)
    } else {
        None
    }
}

/// An optional object member.
pub(crate) fn opt_object<'v>(
    object: &'v Object,
    key: &str,
    at: &JsonPath,
) -> Result<Option<&'v Object>, ParseError> {
    present(object, key)
        .map(|value| as_object(value, &at.key(key)))
        .transpose()
}

/// An optional array member.
pub(crate) fn opt_array<'v>(
    object: &'v Object,
    key: &str,
    at: &JsonPath,
) -> Result<Option<&'v [Value]>, ParseError> {
    present(object, key)
        .map(|value| as_array(value, &at.key(key)))
        .transpose()
}

/// A required array member.
pub(crate) fn required_array<'v>(
    object: &'v Object,
    key: &str,
    at: &JsonPath,
) -> Result<&'v [Value], ParseError> {
    opt_array(object, key, at)?.ok_or_else(|| ParseError::Missing {
        path: at.key(key),
        expected: "array",
    })
}

/// Records `text` at `path` (empty strings carry nothing to scan).
pub(crate) fn push_text(out: &mut Vec<TextSpan>, path: JsonPath, role: TextRole, text: &str) {
    if !text.is_empty() {
        out.push(TextSpan {
            path,
            role,
            text: text.to_owned(),
        });
    }
}

/// Records an optional string member `key` of `object` as text.
pub(crate) fn push_opt_str(
    out: &mut Vec<TextSpan>,
    object: &Object,
    key: &str,
    at: &JsonPath,
    role: TextRole,
) -> Result<(), ParseError> {
    if let Some(text) = opt_str(object, key, at)? {
        push_text(out, at.key(key), role, text);
    }
    Ok(())
}

/// Records every string value (not key) under `value`: tool-call arguments
/// and tool results are free-form JSON whose strings are all user-reachable.
/// Recursion depth is bounded by serde_json's nesting limit (128).
pub(crate) fn string_leaves(value: &Value, at: &JsonPath, role: TextRole, out: &mut Vec<TextSpan>) {
    match value {
        Value::String(text) => push_text(out, at.clone(), role, text),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                string_leaves(item, &at.index(i), role, out);
            }
        }
        Value::Object(members) => {
            for (key, member) in members {
                string_leaves(member, &at.key(key), role, out);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Records every `description` string in a JSON Schema (tool parameters):
/// the model reads them, so they are prompt text too.
pub(crate) fn schema_descriptions(value: &Value, at: &JsonPath, out: &mut Vec<TextSpan>) {
    match value {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                schema_descriptions(item, &at.index(i), out);
            }
        }
        Value::Object(members) => {
            for (key, member) in members {
                match member {
                    Value::String(text) if key == "description" => {
                        push_text(out, at.key(key), TextRole::ToolDefinition, text);
                    }
                    _ => schema_descriptions(member, &at.key(key), out),
                }
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_accept_integral_floats_only() {
        assert_eq!(count(&json!(1000)), Some(1000));
        assert_eq!(count(&json!(1000.0)), Some(1000));
        assert_eq!(count(&json!(1.5)), None);
        assert_eq!(count(&json!(-3)), None);
        assert_eq!(count(&json!("10")), None);
    }

    #[test]
    fn wrong_shapes_name_the_place_and_both_types() {
        let body = json!({"n": "x"});
        let object = body.as_object().unwrap();
        let err = opt_count(object, "n", &JsonPath::root().key("generationConfig")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "generationConfig.n: expected non-negative integer, found string"
        );
        let err = required_array(object, "messages", &JsonPath::root()).unwrap_err();
        assert_eq!(err.to_string(), "messages: missing (expected array)");
    }

    #[test]
    fn strict_parsing_refuses_duplicate_members_at_any_depth() {
        let err = parse_json_strict(br#"{"model":"m","messages":[1],"messages":[2]}"#).unwrap_err();
        assert!(
            matches!(&err, ParseError::DuplicateKey(m) if m.contains("\"messages\" twice") && m.contains("column")),
            "{err}"
        );
        let nested = parse_json_strict(br#"{"a":[{"b":1,"b":2}]}"#).unwrap_err();
        assert!(matches!(nested, ParseError::DuplicateKey(_)), "{nested}");
        // The same name in sibling objects is not a duplicate.
        let value =
            parse_json_strict(br#"{"a":{"x":1},"b":{"x":2.5e0},"c":[null,true,"s",-3]}"#).unwrap();
        assert_eq!(
            value,
            json!({"a":{"x":1},"b":{"x":2.5},"c":[null,true,"s",-3]})
        );
        let syntax = parse_json_strict(b"{\"a\":").unwrap_err();
        assert!(matches!(syntax, ParseError::InvalidJson(_)), "{syntax}");
    }

    #[test]
    fn null_counts_as_absent() {
        let body = json!({"max_tokens": null});
        let object = body.as_object().unwrap();
        assert_eq!(
            opt_count(object, "max_tokens", &JsonPath::root()).unwrap(),
            None
        );
    }
}
