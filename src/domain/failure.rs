//! Why an activity or an execution failed.

use serde::{Deserialize, Serialize};

/// A failure as recorded in history and shown to users.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// A stable, machine-readable code (`rate_limited`, `timeout`, `cli_not_found`, ...).
    pub code: String,
    /// What happened, for people.
    pub message: String,
    /// Whether trying again may succeed.
    pub retryable: bool,
    /// Extra structured facts (HTTP status, model, endpoint, ...).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

impl Failure {
    /// A failure without details.
    pub fn new(code: impl Into<String>, message: impl Into<String>, retryable: bool) -> Self {
        Failure {
            code: code.into(),
            message: message.into(),
            retryable,
            details: serde_json::Value::Null,
        }
    }
}
