//! JSON Pointers (RFC 6901), the `path` of a filter: checked when a subscription is made, split
//! into tokens when it is compiled, followed into an event's payload when it is matched.

use serde_json::Value;

/// A JSON Pointer (RFC 6901): empty, or `/`-separated tokens where `~` is followed by 0 or 1.
pub fn valid_pointer(p: &str) -> bool {
    if p.is_empty() {
        return true;
    }
    if !p.starts_with('/') {
        return false;
    }
    let b = p.as_bytes();
    b.iter().enumerate().all(|(i, c)| *c != b'~' || matches!(b.get(i + 1), Some(b'0' | b'1')))
}

/// The reference tokens of a JSON Pointer, unescaped (`~1` is `/`, `~0` is `~`).
pub(super) fn pointer_tokens(pointer: &str) -> Vec<String> {
    if pointer.is_empty() {
        return Vec::new();
    }
    pointer.split('/').skip(1).map(|t| t.replace("~1", "/").replace("~0", "~")).collect()
}

/// Follows pointer tokens into a value: object members by name, array items by index.
pub(super) fn resolve<'v>(mut value: &'v Value, tokens: &[String]) -> Option<&'v Value> {
    for token in tokens {
        value = match value {
            Value::Object(map) => map.get(token)?,
            Value::Array(items) => {
                if token.len() > 1 && token.starts_with('0') {
                    return None;
                }
                items.get(token.parse::<usize>().ok()?)?
            }
            _ => return None,
        };
    }
    Some(value)
}
