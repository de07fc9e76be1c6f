//! A turn as handed to a runtime, and what a task row stores of it.

use serde::{Deserialize, Serialize};

use super::AgentSpec;

/// One turn of an agent execution, as handed to a runtime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    /// The agent as it was when the execution started.
    pub agent: AgentSpec,
    /// 0-based turn number.
    pub index: u32,
    /// The prompt of this turn.
    pub prompt: String,
    /// The W3C `traceparent` of the request that started the execution, so every attempt's
    /// span joins that trace, on whichever worker and after whatever crash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl Turn {
    /// What a task row stores of this turn: its index and prompt. The agent and the trace are
    /// those of the execution's `ExecutionStarted` (named alike there), which the row's reads
    /// put back ([`complete_from_start`] with [`Turn::FIXED_AT_START`]).
    pub fn stored(&self) -> serde_json::Value {
        serde_json::json!({ "index": self.index, "prompt": self.prompt })
    }

    /// The fields of a turn its execution's start event fixed.
    pub const FIXED_AT_START: [&str; 2] = ["agent", "traceparent"];

    /// The turn a task row stored (`stored`), with the agent and trace of its execution.
    pub fn of_stored(
        stored: &serde_json::Value,
        agent: &AgentSpec,
        traceparent: Option<&str>,
    ) -> Option<Turn> {
        Some(Turn {
            agent: agent.clone(),
            index: u32::try_from(stored.get("index")?.as_u64()?).ok()?,
            prompt: stored.get("prompt")?.as_str()?.to_owned(),
            traceparent: traceparent.map(str::to_owned),
        })
    }
}

/// Completes a stored value that leaves out what its execution's start event fixed: each of
/// `keys` the value lacks is taken from `start` (an `ExecutionStarted`, as stored), where it
/// has it. A value that has them (written before they were left out) keeps its own.
pub fn complete_from_start(
    value: &mut serde_json::Value,
    start: &serde_json::Value,
    keys: &[&str],
) {
    let (Some(value), Some(start)) = (value.as_object_mut(), start.as_object()) else {
        return;
    };
    for &key in keys {
        if !value.contains_key(key)
            && let Some(fixed) = start.get(key)
        {
            value.insert(key.to_owned(), fixed.clone());
        }
    }
}
