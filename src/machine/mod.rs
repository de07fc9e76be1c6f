//! Pure, deterministic state machines: event in → state and commands out.
//!
//! Architecture invariant: nothing here imports tokio, sqlx, tonic or prost, reads the clock or
//! draws randomness. Time arrives in event fields; jitter is derived from the execution id.

mod agent;
mod replay;
mod resume;

pub use agent::{ActivityPhase, AgentState, OpenActivity, activity_id_for_turn};
pub use replay::{Nondeterminism, ReplayError, Replayed, replay, replay_kind};
pub use resume::reusable;

/// A completed turn (a domain type; re-exported here, where it was first defined).
pub use crate::domain::TurnResult;

use uuid::Uuid;

use crate::domain::HistoryEvent;

/// What a machine may know besides the history: the execution it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineContext {
    /// The execution's id; seeds retry jitter.
    pub execution_id: Uuid,
}

/// An input the machine has no transition for. Always a bug or a stale report, never ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no transition for {event} in state {state}")]
pub struct InvalidTransition {
    /// The state the machine was in.
    pub state: String,
    /// The event it could not take.
    pub event: String,
}

/// Applies one input: folds it into the state, then asks the machine for its commands.
/// Returns the new state (with the commands applied too) and the commands.
pub fn step(
    ctx: MachineContext,
    state: Option<AgentState>,
    input: &HistoryEvent,
) -> Result<(AgentState, Vec<HistoryEvent>), InvalidTransition> {
    let mut state = AgentState::apply(state, input)?;
    let commands = state.decide(ctx, input)?;
    for command in &commands {
        state = AgentState::apply(Some(state), command)?;
    }
    Ok((state, commands))
}
