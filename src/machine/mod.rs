//! Pure, deterministic state machines: event in → state and commands out.
//!
//! Architecture invariant: nothing here imports tokio, sqlx, tonic or prost, reads the clock or
//! draws randomness. Time arrives in event fields; jitter is derived from the execution id.

mod agent;
mod replay;
mod resume;
mod team;

pub use agent::{
    ActivityPhase, AgentState, Approval, OpenActivity, Turns, WaitingFor, activity_id_for_turn,
    with_start,
};
pub use replay::{
    Nondeterminism, ReplayError, Replayed, replay, replay_any, replay_as, replay_kind,
};
pub use resume::reusable;
pub use team::{Child, TeamState, result_text};

/// A completed turn (a domain type; re-exported here, where it was first defined).
pub use crate::domain::TurnResult;

use serde::Deserialize;
use uuid::Uuid;

use crate::domain::{ExecutionKind, ExecutionStatus, HistoryEvent, Usage};

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

/// A pure state machine of one execution kind.
pub trait Machine: Sized + Clone {
    /// Folds one event (input or command) into the state.
    fn apply(state: Option<Self>, event: &HistoryEvent) -> Result<Self, InvalidTransition>;
    /// The commands after `input` was folded into the state.
    fn decide(
        &self,
        ctx: MachineContext,
        input: &HistoryEvent,
    ) -> Result<Vec<HistoryEvent>, InvalidTransition>;
}

impl Machine for AgentState {
    fn apply(state: Option<Self>, event: &HistoryEvent) -> Result<Self, InvalidTransition> {
        AgentState::apply(state, event)
    }

    fn decide(
        &self,
        ctx: MachineContext,
        input: &HistoryEvent,
    ) -> Result<Vec<HistoryEvent>, InvalidTransition> {
        AgentState::decide(self, ctx, input)
    }
}

impl Machine for TeamState {
    fn apply(state: Option<Self>, event: &HistoryEvent) -> Result<Self, InvalidTransition> {
        TeamState::apply(state, event)
    }

    fn decide(
        &self,
        _ctx: MachineContext,
        input: &HistoryEvent,
    ) -> Result<Vec<HistoryEvent>, InvalidTransition> {
        TeamState::decide(self, input)
    }
}

/// The snapshot of an execution of any kind.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecutionState {
    /// An agent execution.
    Agent(AgentState),
    /// A team execution.
    Team(TeamState),
}

/// Serializes as the snapshot of its kind (`to_json` without the `Value` in between).
impl serde::Serialize for ExecutionState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ExecutionState::Agent(s) => s.serialize(serializer),
            ExecutionState::Team(s) => s.serialize(serializer),
        }
    }
}

impl Machine for ExecutionState {
    fn apply(state: Option<Self>, event: &HistoryEvent) -> Result<Self, InvalidTransition> {
        match state {
            Some(ExecutionState::Agent(s)) => {
                AgentState::apply(Some(s), event).map(ExecutionState::Agent)
            }
            Some(ExecutionState::Team(s)) => {
                TeamState::apply(Some(s), event).map(ExecutionState::Team)
            }
            None if matches!(event, HistoryEvent::TeamStarted { .. }) => {
                TeamState::apply(None, event).map(ExecutionState::Team)
            }
            None => AgentState::apply(None, event).map(ExecutionState::Agent),
        }
    }

    fn decide(
        &self,
        ctx: MachineContext,
        input: &HistoryEvent,
    ) -> Result<Vec<HistoryEvent>, InvalidTransition> {
        match self {
            ExecutionState::Agent(s) => s.decide(ctx, input),
            ExecutionState::Team(s) => s.decide(input),
        }
    }
}

impl ExecutionState {
    /// Reads a stored snapshot of an execution of `kind`.
    pub fn from_json(
        kind: ExecutionKind,
        value: &serde_json::Value,
    ) -> Result<Self, serde_json::Error> {
        Ok(match kind {
            ExecutionKind::Agent => ExecutionState::Agent(AgentState::deserialize(value)?),
            ExecutionKind::Team => ExecutionState::Team(TeamState::deserialize(value)?),
        })
    }

    /// The snapshot to store.
    pub fn to_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::to_value(self)
    }

    /// The execution's status.
    pub fn status(&self) -> ExecutionStatus {
        match self {
            ExecutionState::Agent(s) => s.status,
            ExecutionState::Team(s) => s.status,
        }
    }

    /// Its usage so far.
    pub fn usage(&self) -> Usage {
        match self {
            ExecutionState::Agent(s) => s.usage,
            ExecutionState::Team(s) => s.usage,
        }
    }

    /// Whether a client asked to cancel it.
    pub fn cancel_requested(&self) -> bool {
        match self {
            ExecutionState::Agent(s) => s.cancel_reason.is_some(),
            ExecutionState::Team(s) => s.cancel_reason.is_some(),
        }
    }
}

/// Applies one input to an execution of any kind: folds it in, asks for commands, folds them in.
pub fn step_any(
    ctx: MachineContext,
    state: Option<ExecutionState>,
    input: &HistoryEvent,
) -> Result<(ExecutionState, Vec<HistoryEvent>), InvalidTransition> {
    let mut state = ExecutionState::apply(state, input)?;
    let commands = state.decide(ctx, input)?;
    for command in &commands {
        state = ExecutionState::apply(Some(state), command)?;
    }
    Ok((state, commands))
}
