//! Runtime adapters: the code that runs one agent turn.
//!
//! A runtime receives a [`Turn`] and a [`TurnIo`]: a cancellation token, a sink for output
//! chunks, the checkpoint the previous attempt (or the previous turn) saved, and a way to save a
//! new one. The worker persists chunks and checkpoints together, in order, so after a crash the
//! next attempt resumes from the last checkpoint whose chunks are durable.
//!
//! Adding a runtime is one module implementing [`AgentRuntime`] and one line in
//! [`RuntimeRegistry::builtin`].

mod approval;
mod claude_code;
mod default;
mod echo;
mod io;
pub mod policy;
mod registry;

use std::time::Duration;

use async_trait::async_trait;

use crate::domain::{AgentSpec, Turn, Usage};

pub use approval::{Answer, Approver, Decision, NO_APPROVER_MESSAGE, ToolAsk};
pub use claude_code::ClaudeCodeRuntime;
pub use default::{
    DEFAULT_OPENAI_API_KEY_ENV, DEFAULT_OPENAI_BASE_URL, DEFAULT_OPENAI_REQUEST_TIMEOUT,
    DefaultRuntime, OpenAiSettings,
};
pub use echo::EchoRuntime;
pub use io::{AttemptInfo, Progress, TurnIo, Workspace};
pub use registry::{RuntimeRegistry, RuntimeSettings};

/// One configuration key a runtime accepts under `configuration.runtime_config`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigKeyInfo {
    /// The key as written under `runtime_config` (e.g. `max_turns`).
    pub name: &'static str,
    /// Its JSON type, for people: `string`, `integer`, `boolean`, `array<string>`, `object`.
    pub ty: &'static str,
    /// What it does.
    pub description: &'static str,
}

/// What `ListRuntimes` shows about a runtime.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeDescription {
    /// The runtime's name, as agents name it.
    pub name: &'static str,
    /// One sentence.
    pub description: &'static str,
    /// The keys of `configuration.runtime_config` it accepts.
    pub config_keys: Vec<ConfigKeyInfo>,
}

/// An agent's configuration does not suit its runtime. Found at CreateAgent/UpdateAgent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    /// What is wrong and how to fix it; names the key.
    pub message: String,
}

impl ConfigError {
    /// A configuration error with its message.
    pub fn new(message: impl Into<String>) -> Self {
        ConfigError {
            message: message.into(),
        }
    }
}

/// What a successful turn returns.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TurnOutput {
    /// The turn's result (for most runtimes `{"text": ...}` plus runtime facts).
    pub output: serde_json::Value,
    /// Tokens, cost, tool calls.
    pub usage: Usage,
    /// The state to hand to the next turn (the session id, the transcript, ...).
    pub checkpoint: Option<serde_json::Value>,
}

/// A failed turn. Every error says whether trying again may help.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct RuntimeError {
    /// A stable code (`rate_limited`, `http_500`, `cli_not_found`, `canceled`, ...).
    pub code: String,
    /// What happened, naming the model, endpoint or command involved.
    pub message: String,
    /// Whether another attempt may succeed.
    pub retryable: bool,
    /// The earliest moment a retry makes sense (e.g. from HTTP `retry-after`).
    pub retry_after: Option<Duration>,
    /// Structured facts for the history (HTTP status, exit code, ...).
    pub details: serde_json::Value,
}

/// The code a runtime returns when it stopped because its token was cancelled.
pub const CANCELED_CODE: &str = "canceled";

/// The code a runtime returns when it stopped at a tool call nobody answered in time
/// ([`Answer::Hold`]); the approval id is in `details.approval_id`.
pub const HELD_CODE: &str = "held";

impl RuntimeError {
    /// An error that another attempt may fix.
    pub fn retryable(code: impl Into<String>, message: impl Into<String>) -> Self {
        RuntimeError {
            code: code.into(),
            message: message.into(),
            retryable: true,
            retry_after: None,
            details: serde_json::Value::Null,
        }
    }

    /// An error that no retry will fix.
    pub fn fatal(code: impl Into<String>, message: impl Into<String>) -> Self {
        RuntimeError {
            retryable: false,
            ..RuntimeError::retryable(code, message)
        }
    }

    /// The runtime saw its cancellation token fire and stopped.
    pub fn canceled() -> Self {
        RuntimeError::fatal(CANCELED_CODE, "the attempt was cancelled")
    }

    /// Whether this is the answer to a cancellation.
    pub fn is_canceled(&self) -> bool {
        self.code == CANCELED_CODE
    }

    /// The runtime saved a checkpoint at the tool call `approval_id` and stopped, waiting for a
    /// decision ([`Answer::Hold`]). Neither retryable nor fatal: the worker parks the task, and
    /// consumes no retry.
    pub fn held(approval_id: impl Into<String>) -> Self {
        let approval_id = approval_id.into();
        RuntimeError::fatal(
            HELD_CODE,
            format!("the tool call {approval_id} waits for a decision"),
        )
        .with_details(serde_json::json!({ "approval_id": approval_id }))
    }

    /// The approval id this attempt stopped at, if it stopped waiting for a decision.
    pub fn is_held(&self) -> Option<&str> {
        if self.code != HELD_CODE {
            return None;
        }
        self.details.get("approval_id")?.as_str()
    }

    /// Sets the earliest retry time.
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// Attaches structured details.
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// An adapter that runs agent turns.
#[async_trait]
pub trait AgentRuntime: Send + Sync {
    /// The name agents use to pick this runtime.
    fn name(&self) -> &'static str;

    /// What `ListRuntimes` shows.
    fn describe(&self) -> RuntimeDescription;

    /// Checks an agent's configuration; called at CreateAgent and UpdateAgent, never at run time.
    fn validate(&self, agent: &AgentSpec) -> Result<(), ConfigError>;

    /// Runs one turn. Must return soon after `io.cancel` fires (with [`RuntimeError::canceled`]);
    /// a runtime that does not is abandoned after the worker's grace period.
    async fn run(&self, turn: Turn, io: TurnIo) -> Result<TurnOutput, RuntimeError>;
}

/// The `runtime_config` object of an agent's configuration (empty if absent).
pub fn runtime_config(
    agent: &AgentSpec,
) -> Result<serde_json::Map<String, serde_json::Value>, ConfigError> {
    match agent.configuration.get("runtime_config") {
        None | Some(serde_json::Value::Null) => Ok(serde_json::Map::new()),
        Some(serde_json::Value::Object(map)) => Ok(map.clone()),
        Some(other) => Err(ConfigError::new(format!(
            "configuration.runtime_config must be a JSON object, got {other}"
        ))),
    }
}

/// Rejects keys of `runtime_config` that `runtime` does not know, naming the key and listing the
/// known ones.
pub fn reject_unknown_keys(
    runtime: &RuntimeDescription,
    config: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), ConfigError> {
    for key in config.keys() {
        if !runtime.config_keys.iter().any(|k| k.name == key) {
            let known: Vec<&str> = runtime.config_keys.iter().map(|k| k.name).collect();
            return Err(ConfigError::new(format!(
                "runtime_config key `{key}` is not known to runtime `{}`; known keys: {}",
                runtime.name,
                known.join(", ")
            )));
        }
    }
    Ok(())
}
