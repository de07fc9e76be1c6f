//! Why an activity or an execution failed.

use serde::{Deserialize, Serialize};

use super::HistoryEvent;

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

impl HistoryEvent {
    /// For an input that ends the execution at a limit of its own (not of an attempt), the
    /// failure it ends with: not retryable, since no retry policy of its attempts applies (a
    /// client may still retry the execution, which starts it afresh).
    pub fn limit_failure(&self) -> Option<Failure> {
        match self {
            HistoryEvent::ExecutionTimedOut {
                execution_timeout_ms,
            } => Some(Failure::new(
                "execution_timeout",
                format!(
                    "the execution ran longer than its execution_timeout of {execution_timeout_ms} \
                     ms; retry it (the retry gets the whole timeout again) or start it with a \
                     longer one"
                ),
                false,
            )),
            HistoryEvent::HistoryLimitReached { max_history_events } => Some(Failure::new(
                "max_history_events",
                format!(
                    "the execution's history reached {max_history_events} events, this \
                     server's limit (server setting --max-history-events)"
                ),
                false,
            )),
            _ => None,
        }
    }
}
