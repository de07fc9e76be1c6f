//! Asking a person before a tool runs.
//!
//! A runtime that must not run a tool on its own (claude_code in `default` permission mode, the
//! `default` runtime's `require_approval` tools) hands a [`ToolAsk`] to [`super::TurnIo::ask`].
//! The worker's [`Approver`] records it and waits for a decision; when nobody answers within the
//! worker's `approval_hold` it answers [`Answer::Hold`], and the runtime saves a checkpoint from
//! which asking again is the next step, stops everything it started, and returns
//! [`super::RuntimeError::held`]. The next attempt resumes from that checkpoint and asks again
//! with the same id, which the engine then answers at once from the recorded decision.

/// A tool call the runtime asks a person about before running it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolAsk {
    /// Stable across attempts and resumes: the tool_use id (claude_code) or the model's tool call
    /// id (default). The engine's approval id is derived from it, so asking again after a resume
    /// finds the same approval.
    pub id: String,
    /// The tool as the runtime names it, e.g. `Bash` or `mcp__files__write`.
    pub tool: String,
    /// The arguments the model gave the tool.
    pub input: serde_json::Value,
}

/// What a person decided about a [`ToolAsk`].
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Run the tool, with `updated_input` instead of the model's input when given.
    Allow {
        /// Arguments that replace the model's.
        updated_input: Option<serde_json::Value>,
    },
    /// Do not run it; the model receives `message` as the tool's result.
    Deny {
        /// Why, for the model.
        message: String,
    },
}

/// The answer to [`Approver::ask`].
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Someone decided (now, or in an earlier attempt for the same id).
    Decided(Decision),
    /// Nobody answered within the worker's `approval_hold`: the runtime must save a checkpoint
    /// from which asking again (same [`ToolAsk::id`]) is the next step, stop without side effects
    /// (no process left running), and return `Err(RuntimeError::held(ask.id))`.
    Hold,
}

/// Who answers a runtime's asks: the worker (through the engine), or a test.
#[async_trait::async_trait]
pub trait Approver: Send + Sync + std::fmt::Debug {
    /// Asks about one tool call; resolves when it is decided or held.
    async fn ask(&self, ask: ToolAsk) -> Answer;
}

/// The message a runtime's tool call gets when its attempt has no [`Approver`].
pub const NO_APPROVER_MESSAGE: &str = "no one can approve tool calls here";

/// The approver of a [`super::TurnIo`] built without one: it denies every ask at once, so a
/// runtime never waits for an answer that cannot come.
#[derive(Debug)]
pub(crate) struct NoApprover;

#[async_trait::async_trait]
impl Approver for NoApprover {
    async fn ask(&self, _ask: ToolAsk) -> Answer {
        Answer::Decided(Decision::Deny {
            message: NO_APPROVER_MESSAGE.to_string(),
        })
    }
}
