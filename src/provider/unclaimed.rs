//! Every string of a request body that its adapter did not read as text.
//!
//! The adapters know where the prompt lives (messages, system, tools) and
//! report it with roles. Everything else in the body reaches the provider
//! too: `metadata`, `user`, ids, enum values, image URLs, the member names
//! of free-form objects. A guardrail must see all of it, or a secret placed
//! in `metadata` walks past the scan, so these strings are reported here:
//! values with [`TextRole::Other`], member names with [`TextRole::Key`]
//! (whose path is the member's own). The body of an endpoint no adapter
//! knows is all unclaimed.

use std::collections::HashSet;

use serde_json::Value;

use super::call::{TextRole, TextSpan};
use super::json_path::JsonPath;
use super::shape::push_text;

/// The strings and member names of `root` not at a path in `claimed`.
/// Recursion depth is bounded by the parser's nesting limit (128).
pub fn unclaimed_strings(root: &Value, claimed: &[TextSpan]) -> Vec<TextSpan> {
    let claimed: HashSet<&JsonPath> = claimed.iter().map(|span| &span.path).collect();
    let mut out = Vec::new();
    walk(root, &JsonPath::root(), &claimed, &mut out);
    out
}

fn walk(value: &Value, at: &JsonPath, claimed: &HashSet<&JsonPath>, out: &mut Vec<TextSpan>) {
    match value {
        Value::String(text) if !claimed.contains(at) => {
            push_text(out, at.clone(), TextRole::Other, text);
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, &at.index(i), claimed, out);
            }
        }
        Value::Object(members) => {
            for (key, member) in members {
                let member_at = at.key(key);
                push_text(out, member_at.clone(), TextRole::Key, key);
                walk(member, &member_at, claimed, out);
            }
        }
        Value::String(_) | Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_every_string_and_name_the_adapter_did_not_claim() {
        let body = json!({
            "messages": [{"role": "user", "content": "hello"}],
            "metadata": {"note": "AKIA…", "n": 3},
            "user": "u-1",
        });
        let claimed = vec![TextSpan {
            path: JsonPath::root().key("messages").index(0).key("content"),
            role: TextRole::User,
            text: "hello".into(),
        }];
        let found: Vec<(String, TextRole, String)> = unclaimed_strings(&body, &claimed)
            .into_iter()
            .map(|s| (s.path.to_string(), s.role, s.text))
            .collect();
        let expect = |p: &str, r, t: &str| (p.to_string(), r, t.to_string());
        assert_eq!(
            found,
            [
                expect("messages", TextRole::Key, "messages"),
                expect("messages[0].role", TextRole::Key, "role"),
                expect("messages[0].role", TextRole::Other, "user"),
                expect("messages[0].content", TextRole::Key, "content"),
                expect("metadata", TextRole::Key, "metadata"),
                expect("metadata.note", TextRole::Key, "note"),
                expect("metadata.note", TextRole::Other, "AKIA…"),
                expect("metadata.n", TextRole::Key, "n"),
                expect("user", TextRole::Key, "user"),
                expect("user", TextRole::Other, "u-1"),
            ]
        );
    }

    #[test]
    fn a_bare_string_body_is_one_unclaimed_string() {
        let found = unclaimed_strings(&json!("top"), &[]);
        assert_eq!(found.len(), 1);
        assert!(found[0].path.is_root());
    }
}
