//! Patches between two JSON values: what a checkpoint added to the one before it. A transcript
//! grows by appending messages, a session file by appending lines, so a patch says "append these
//! items / this text" where it can and "replace with this" where it cannot:
//!
//! - `{"=": v}`: the value becomes `v`;
//! - `{"+": [items]}`: an array gets `items` appended;
//! - `{"+s": "text"}`: a string gets `text` appended;
//! - `{"{}": {key: patch, ...}, "-": [keys]}`: an object's keys are patched, the listed keys
//!   removed.

use serde_json::{Map, Value, json};

/// The patch that turns `old` into `new`; `None` when they are equal.
pub(crate) fn diff(old: &Value, new: &Value) -> Option<Value> {
    if old == new {
        return None;
    }
    Some(match (old, new) {
        (Value::Object(old), Value::Object(new)) => {
            let mut patches = Map::new();
            for (key, value) in new {
                let patch = match old.get(key) {
                    Some(was) => diff(was, value),
                    None => Some(json!({ "=": value })),
                };
                if let Some(patch) = patch {
                    patches.insert(key.clone(), patch);
                }
            }
            let removed: Vec<&String> = old.keys().filter(|k| !new.contains_key(*k)).collect();
            if removed.is_empty() {
                json!({ "{}": patches })
            } else {
                json!({ "{}": patches, "-": removed })
            }
        }
        (Value::Array(old), Value::Array(new))
            if new.len() > old.len() && new[..old.len()] == old[..] =>
        {
            json!({ "+": new[old.len()..] })
        }
        (Value::String(old), Value::String(new)) if new.starts_with(old.as_str()) => {
            json!({ "+s": new[old.len()..] })
        }
        _ => json!({ "=": new }),
    })
}

/// Applies `patch` to `value`; an error names what did not fit (a corrupt object).
pub(crate) fn apply(value: &mut Value, patch: &Value) -> Result<(), String> {
    let Some(op) = patch.as_object() else {
        return Err(format!("a patch must be a JSON object, got {patch}"));
    };
    if let Some(new) = op.get("=") {
        *value = new.clone();
    } else if let Some(items) = op.get("+") {
        let (Value::Array(array), Value::Array(items)) = (&mut *value, items) else {
            return Err("an array append applied to something else".into());
        };
        array.extend(items.iter().cloned());
    } else if let Some(text) = op.get("+s") {
        let (Value::String(string), Value::String(text)) = (&mut *value, text) else {
            return Err("a text append applied to something else".into());
        };
        string.push_str(text);
    } else if let Some(Value::Object(patches)) = op.get("{}") {
        let Value::Object(object) = value else {
            return Err("an object patch applied to something else".into());
        };
        for (key, patch) in patches {
            let slot = object.entry(key.clone()).or_insert(Value::Null);
            apply(slot, patch)?;
        }
        for key in op.get("-").and_then(Value::as_array).into_iter().flatten() {
            object.remove(key.as_str().unwrap_or_default());
        }
    } else {
        return Err(format!("unknown patch {patch}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(old: Value, new: Value) -> Value {
        let patch = diff(&old, &new).expect("they differ");
        let mut value = old;
        apply(&mut value, &patch).unwrap();
        assert_eq!(value, new);
        patch
    }

    #[test]
    fn a_grown_transcript_patches_to_its_new_messages() {
        let patch = round_trip(
            json!({ "turn": 0, "messages": [{ "role": "user" }], "usage": 1 }),
            json!({ "turn": 1, "messages": [{ "role": "user" }, { "role": "assistant" }], "usage": 1 }),
        );
        assert_eq!(
            patch,
            json!({ "{}": { "turn": { "=": 1 }, "messages": { "+": [{ "role": "assistant" }] } } })
        );
    }

    #[test]
    fn appended_text_removed_keys_and_replaced_values_round_trip() {
        let patch = round_trip(
            json!({ "file": "line 1\n", "gone": true, "list": [1, 2] }),
            json!({ "file": "line 1\nline 2\n", "list": [2], "new": null }),
        );
        assert_eq!(patch["{}"]["file"], json!({ "+s": "line 2\n" }));
        assert_eq!(patch["-"], json!(["gone"]));
        round_trip(json!([1]), json!("other"));
        assert_eq!(diff(&json!({ "a": 1 }), &json!({ "a": 1 })), None);
    }

    #[test]
    fn a_patch_that_does_not_fit_is_an_error() {
        let mut value = json!(3);
        assert!(apply(&mut value, &json!({ "+": [1] })).is_err());
        assert!(apply(&mut value, &json!({ "?": 1 })).is_err());
    }
}
