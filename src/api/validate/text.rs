//! Checks of text fields and JSON documents: lengths, NUL bytes (PostgreSQL refuses them in TEXT
//! and JSONB, so both stores refuse them here alike), control characters, and the short quotes
//! of bad values that error messages carry.

use tonic::Status;

use super::super::error::invalid;

/// How many characters of a bad value an error message quotes.
const QUOTE_CHARS: usize = 32;

/// A bad value as an error message quotes it: control characters escaped, and cut after a short
/// prefix (saying how long it really was), so a huge value never fills a log or a terminal.
pub(crate) fn quote(s: &str) -> String {
    let mut chars = s.chars();
    let prefix: String = chars.by_ref().take(QUOTE_CHARS).collect();
    let escaped: String = prefix.chars().flat_map(char::escape_debug).collect();
    if chars.next().is_some() {
        format!("{escaped}… ({} bytes)", s.len())
    } else {
        escaped
    }
}

/// A text field within `max` bytes and without NUL.
pub(crate) fn text(field: &str, s: &str, max: usize) -> Result<(), Status> {
    if s.len() > max {
        return Err(invalid(format!(
            "{field} is {} bytes; the limit is {max} bytes",
            s.len()
        )));
    }
    no_nul(field, s)
}

/// A text field within `max` bytes and without any control character (names, keys, ids).
pub(crate) fn plain(field: &str, s: &str, max: usize) -> Result<(), Status> {
    text(field, s, max)?;
    if s.chars().any(char::is_control) {
        return Err(invalid(format!(
            "{field} `{}` contains a control character; use printable characters only",
            quote(s)
        )));
    }
    Ok(())
}

/// A text field without NUL.
pub(crate) fn no_nul(field: &str, s: &str) -> Result<(), Status> {
    match s.find('\0') {
        Some(at) => Err(invalid(format!(
            "{field} contains a NUL character (at byte {at}); text cannot hold NUL"
        ))),
        None => Ok(()),
    }
}

/// Parses a JSON document of at most `max` bytes whose strings and keys hold no NUL.
pub(crate) fn json(field: &str, s: &str, max: usize) -> Result<serde_json::Value, Status> {
    if s.len() > max {
        return Err(invalid(format!(
            "{field} is {} bytes; the limit is {max} bytes",
            s.len()
        )));
    }
    let value: serde_json::Value =
        serde_json::from_str(s).map_err(|e| invalid(format!("{field} is not valid JSON: {e}")))?;
    json_strings(field, &value)?;
    Ok(value)
}

/// Refuses a NUL in any string or key anywhere inside `value`. JSON numbers are always finite,
/// so strings are all that can carry what a store refuses.
pub(crate) fn json_strings(field: &str, value: &serde_json::Value) -> Result<(), Status> {
    // An explicit stack: a deep document must not exhaust the server's own stack.
    let mut pending = vec![value];
    while let Some(v) = pending.pop() {
        match v {
            serde_json::Value::String(s) => no_nul(&format!("a string in {field}"), s)?,
            serde_json::Value::Array(items) => pending.extend(items),
            serde_json::Value::Object(map) => {
                for (key, item) in map {
                    no_nul(&format!("a key in {field}"), key)?;
                    pending.push(item);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_short_and_escaped() {
        assert_eq!(quote("short"), "short");
        assert_eq!(quote("a\0b"), "a\\0b");
        let long = "x".repeat(10_000);
        let quoted = quote(&long);
        assert!(quoted.len() < 60, "{quoted}");
        assert!(quoted.ends_with("(10000 bytes)"));
    }

    #[test]
    fn nul_is_found_inside_json() {
        let value = serde_json::json!({ "a": [1, { "b\u{0}": "c" }] });
        assert!(json_strings("x", &value).is_err());
        let value = serde_json::json!({ "a": [1, { "b": "c\u{0}" }] });
        assert!(json_strings("x", &value).is_err());
        assert!(json_strings("x", &serde_json::json!({ "a": ["ok"] })).is_ok());
    }
}
