//! Where a value lives inside a JSON document.
//!
//! The adapters report every piece of user text together with its
//! [`JsonPath`]: the object keys and array positions that lead from the root of
//! the body (or of one SSE event's `data`) to the string. The same path is what
//! a redaction hands back to [`rewrite_texts`](super::rewrite_texts), so a path
//! must name exactly one string: array *positions*, never a provider's own
//! `index` field.
//!
//! Displayed in the dotted form people read in error messages:
//! `messages[2].content[0].text`; keys that are not plain identifiers are
//! quoted (`input["user name"]`). The root displays as `body`.

use std::fmt;

use serde_json::Value;

/// One step of a [`JsonPath`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathSegment {
    /// A member of an object.
    Key(String),
    /// A position in an array (0-based).
    Index(usize),
}

impl From<&str> for PathSegment {
    fn from(key: &str) -> PathSegment {
        PathSegment::Key(key.to_owned())
    }
}

impl From<String> for PathSegment {
    fn from(key: String) -> PathSegment {
        PathSegment::Key(key)
    }
}

impl From<usize> for PathSegment {
    fn from(index: usize) -> PathSegment {
        PathSegment::Index(index)
    }
}

/// The keys and positions from a JSON root to one value. Empty = the root.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct JsonPath(Vec<PathSegment>);

impl JsonPath {
    /// The root of the document.
    pub fn root() -> JsonPath {
        JsonPath(Vec::new())
    }

    /// A path from its segments, root first.
    pub fn from_segments<I, S>(segments: I) -> JsonPath
    where
        I: IntoIterator<Item = S>,
        S: Into<PathSegment>,
    {
        JsonPath(segments.into_iter().map(Into::into).collect())
    }

    /// The segments, root first.
    pub fn segments(&self) -> &[PathSegment] {
        &self.0
    }

    /// True for the root path.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// This path extended by an object member.
    pub fn key(&self, key: &str) -> JsonPath {
        let mut segments = Vec::with_capacity(self.0.len() + 1);
        segments.extend_from_slice(&self.0);
        segments.push(PathSegment::Key(key.to_owned()));
        JsonPath(segments)
    }

    /// This path extended by an array position.
    pub fn index(&self, index: usize) -> JsonPath {
        let mut segments = Vec::with_capacity(self.0.len() + 1);
        segments.extend_from_slice(&self.0);
        segments.push(PathSegment::Index(index));
        JsonPath(segments)
    }

    /// `rest` read from the value at this path: this path, then `rest`'s segments.
    pub fn join(&self, rest: &JsonPath) -> JsonPath {
        let mut segments = Vec::with_capacity(self.0.len() + rest.0.len());
        segments.extend_from_slice(&self.0);
        segments.extend_from_slice(&rest.0);
        JsonPath(segments)
    }

    /// The value this path names in `root`, if there is one.
    pub fn lookup<'v>(&self, root: &'v Value) -> Option<&'v Value> {
        self.0
            .iter()
            .try_fold(root, |value, segment| match segment {
                PathSegment::Key(key) => value.as_object()?.get(key),
                PathSegment::Index(index) => value.as_array()?.get(*index),
            })
    }

    /// The value this path names in `root`, mutably, if there is one.
    pub fn lookup_mut<'v>(&self, root: &'v mut Value) -> Option<&'v mut Value> {
        self.0
            .iter()
            .try_fold(root, |value, segment| match segment {
                PathSegment::Key(key) => value.as_object_mut()?.get_mut(key),
                PathSegment::Index(index) => value.as_array_mut()?.get_mut(*index),
            })
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("body");
        }
        for (position, segment) in self.0.iter().enumerate() {
            match segment {
                PathSegment::Index(index) => write!(f, "[{index}]")?,
                PathSegment::Key(key) if is_plain_key(key) => {
                    if position > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(key)?;
                }
                PathSegment::Key(key) => {
                    // A JSON string literal is an unambiguous quoting.
                    let quoted = Value::String(key.clone()).to_string();
                    write!(f, "[{quoted}]")?;
                }
            }
        }
        Ok(())
    }
}

/// Keys that read unambiguously after a dot.
fn is_plain_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn displays_in_dotted_form_with_quoted_odd_keys() {
        let path = JsonPath::root()
            .key("messages")
            .index(2)
            .key("content")
            .index(0)
            .key("text");
        assert_eq!(path.to_string(), "messages[2].content[0].text");
        let odd = JsonPath::root().key("input").key("user name").key("x");
        assert_eq!(odd.to_string(), r#"input["user name"].x"#);
        assert_eq!(JsonPath::root().to_string(), "body");
    }

    #[test]
    fn lookup_follows_keys_and_positions() {
        let doc = json!({"a": [{"b": "x"}, {"b": "y"}]});
        let path = JsonPath::from_segments([PathSegment::from("a"), 1.into(), "b".into()]);
        assert_eq!(path.lookup(&doc), Some(&json!("y")));
        assert_eq!(JsonPath::root().key("a").index(5).lookup(&doc), None);
        assert_eq!(JsonPath::root().key("a").key("b").lookup(&doc), None);
    }
}
