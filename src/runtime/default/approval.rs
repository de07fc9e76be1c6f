//! Which tool calls of a `default` agent wait for a person: `runtime_config.require_approval`
//! and `auto_approve`, patterns over MCP tool names written `server__tool` (`*` matches any
//! run of characters, e.g. `files__write*`).
//!
//! A call whose name matches a `require_approval` pattern and no `auto_approve` pattern is asked
//! about ([`crate::runtime::TurnIo::ask`]) before it runs. The transcript is checkpointed after
//! every model call, so when an ask is held the model's tool call is already saved: the next
//! attempt resumes at that call, asks again with the same id (the model's tool call id), and runs
//! it or returns the denial, without calling the model again.

use serde_json::{Map, Value};

use crate::runtime::ConfigError;

/// The approval rules of one agent.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct ApprovalRules {
    /// Tools that wait for a decision.
    pub require: Vec<String>,
    /// Tools pre-approved even when `require` matches them.
    pub auto: Vec<String>,
}

impl ApprovalRules {
    /// Reads both keys from `runtime_config`, naming the key at fault.
    pub fn parse(map: &Map<String, Value>) -> Result<Self, ConfigError> {
        Ok(ApprovalRules {
            require: patterns(map, "require_approval")?,
            auto: patterns(map, "auto_approve")?,
        })
    }

    /// Whether a call of `server`'s tool `tool` must be asked about.
    pub fn needs_approval(&self, server: &str, tool: &str) -> bool {
        let name = format!("{server}__{tool}");
        self.require.iter().any(|p| matches(p, &name))
            && !self.auto.iter().any(|p| matches(p, &name))
    }
}

/// An optional array of non-empty pattern strings.
fn patterns(map: &Map<String, Value>, key: &str) -> Result<Vec<String>, ConfigError> {
    let wrong = |got: &Value| {
        ConfigError::new(format!(
            "runtime_config.{key} must be an array of tool name patterns such as \
             \"files__write*\", got {got}"
        ))
    };
    match map.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) if !s.trim().is_empty() => Ok(s.clone()),
                other => Err(wrong(other)),
            })
            .collect(),
        Some(other) => Err(wrong(other)),
    }
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters (also none).
fn matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*`: the whole name must be the pattern.
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn patterns_match_with_stars() {
        assert!(matches("files__write*", "files__write_file"));
        assert!(matches("files__write*", "files__write"));
        assert!(!matches("files__write*", "files__read_file"));
        assert!(matches("*__delete*", "db__delete_row"));
        assert!(matches("files__read_text_file", "files__read_text_file"));
        assert!(!matches("files__read", "files__read_text_file"));
        assert!(matches("*", "anything"));
        assert!(matches("a*b*c", "a-b-b-c"));
        assert!(!matches("a*bc", "abc-c"));
    }

    #[test]
    fn auto_approve_wins_and_bad_values_name_the_key() {
        let rules = ApprovalRules::parse(
            json!({"require_approval": ["files__*"], "auto_approve": ["files__read*"]})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        assert!(rules.needs_approval("files", "write_file"));
        assert!(!rules.needs_approval("files", "read_text_file"));
        assert!(!rules.needs_approval("db", "write"));
        let error = |v: Value| {
            ApprovalRules::parse(v.as_object().unwrap())
                .unwrap_err()
                .message
        };
        assert!(
            error(json!({"require_approval": "files__*"}))
                .contains("runtime_config.require_approval")
        );
        assert!(error(json!({"auto_approve": [""]})).contains("runtime_config.auto_approve"));
        assert!(error(json!({"auto_approve": [3]})).contains("runtime_config.auto_approve"));
    }
}
