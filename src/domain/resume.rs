//! What a retried execution reuses from the execution it retries.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Usage;

/// A completed turn: what the runtime returned and what it cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnResult {
    /// What the runtime returned.
    pub output: serde_json::Value,
    /// Tokens, cost and tool calls of that turn, counted again in the retry's usage.
    pub usage: Usage,
}

/// The completed prefix a retry starts from, recorded in its `ExecutionStarted` so that the
/// retried execution replays from its own history alone, without reading the one it retries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resume {
    /// The execution this one retries.
    pub retry_of: Uuid,
    /// The turns reused instead of run again: turns `0..turns.len()`, in order.
    pub turns: Vec<TurnResult>,
    /// The checkpoint the last reused turn ended with, handed to the first turn that runs.
    /// `None` when no turn is reused, or when the retry runs on another runtime than the turns
    /// it reuses (a checkpoint only means something to the runtime that wrote it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<serde_json::Value>,
}
