//! The snapshot an agent execution's row stores: what changes as it runs, not what its start
//! fixed. The agent, retry policy, timeouts, queue, trace and conversation settings (and, but in
//! a conversation, whose messages add to them, the prompts) are those of its `ExecutionStarted`,
//! which the history keeps as event 1; writing them again with every transition was about half
//! of the snapshot (a W1 execution's: 842 bytes of JSON, each written twice). The store reads
//! the row with that event and hands the engine the two put together ([`with_start`]), so a
//! snapshot read back is the whole `AgentState` again; snapshots written before, which carry
//! everything, read as they are.

use serde::{Serialize, Serializer};

use super::{AgentState, Approval, OpenActivity, Turns};
use crate::domain::{ExecutionStatus, Usage};

/// The fields of the snapshot its start event fixes, by the name both give them.
const FIXED_AT_START: [&str; 7] = [
    "agent",
    "prompts",
    "retry_policy",
    "timeouts",
    "queue",
    "traceparent",
    "conversation",
];

/// What the row stores of an agent's state.
#[derive(Serialize)]
struct Stored<'a> {
    /// A conversation's prompts, which its messages add to.
    #[serde(skip_serializing_if = "Option::is_none")]
    prompts: Option<&'a [String]>,
    status: ExecutionStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    activity: Option<&'a OpenActivity>,
    turns: &'a Turns,
    #[serde(skip_serializing_if = "Option::is_none")]
    checkpoint: Option<&'a serde_json::Value>,
    usage: Usage,
    #[serde(skip_serializing_if = "Option::is_none")]
    cancel_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    closing: bool,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    message_ids: &'a [String],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    approvals: &'a [Approval],
}

/// Serializes the snapshot the row stores (see the module note); read it back through
/// [`with_start`].
impl Serialize for AgentState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Stored {
            prompts: self
                .conversation
                .is_some()
                .then_some(self.prompts.as_slice()),
            status: self.status,
            activity: self.activity.as_ref(),
            turns: &self.turns,
            checkpoint: self.checkpoint.as_ref(),
            usage: self.usage,
            cancel_reason: self.cancel_reason.as_deref(),
            closing: self.closing,
            message_ids: &self.message_ids,
            approvals: &self.approvals,
        }
        .serialize(serializer)
    }
}

/// Completes a stored agent snapshot with what its start event (`ExecutionStarted`, as stored)
/// fixed: each of those fields the snapshot lacks is taken from the event. A snapshot that has
/// them (written before they were left out, or a conversation's prompts) keeps its own.
pub fn with_start(snapshot: &mut serde_json::Value, start: &serde_json::Value) {
    crate::domain::complete_from_start(snapshot, start, &FIXED_AT_START);
}
