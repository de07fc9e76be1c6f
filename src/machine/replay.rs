//! Replay: fold a recorded history through the current machine code and check that the code
//! emits exactly the commands the history recorded.

use serde::Serialize;

use super::{AgentState, ExecutionState, InvalidTransition, Machine, MachineContext};
use crate::domain::{ExecutionKind, ExecutionStatus, HistoryEvent};

/// The current code disagrees with a recorded history.
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
#[error("nondeterminism at seq {seq}: the code would emit {expected}, the history has {found}")]
pub struct Nondeterminism {
    /// The first event where code and history diverge.
    pub seq: u64,
    /// What the current code emits there (an event type with its fields, or "nothing").
    pub expected: String,
    /// What the history has there.
    pub found: String,
}

/// Why a replay did not reproduce the history.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReplayError {
    /// The code emits different commands.
    #[error(transparent)]
    Nondeterminism(#[from] Nondeterminism),
    /// The history has an event the code cannot take at that point.
    #[error("at seq {seq}: {source}")]
    Invalid {
        /// The event's seq.
        seq: u64,
        /// What the machine said.
        source: InvalidTransition,
    },
}

/// What a replay that reproduced its history found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    /// How many events were replayed.
    pub events: u64,
    /// The status the rebuilt state is in (`None` for an empty history).
    pub status: Option<ExecutionStatus>,
}

/// Replays the history of an execution of `kind` with the machine of that kind. This is the one
/// switch on the kind: the team machine plugs in here, beside the agent machine.
pub fn replay_kind(
    kind: ExecutionKind,
    ctx: MachineContext,
    events: &[HistoryEvent],
) -> Result<Replayed, ReplayError> {
    let status = match kind {
        ExecutionKind::Agent => replay(ctx, events)?.map(|state| state.status),
        ExecutionKind::Team => {
            replay_as::<super::TeamState>(ctx, events)?.map(|state| state.status)
        }
    };
    Ok(Replayed {
        events: events.len() as u64,
        status,
    })
}

fn describe(event: &HistoryEvent) -> String {
    serde_json::to_string(event).unwrap_or_else(|_| event.event_type().to_string())
}

/// Replays an agent execution's `events` (numbered from 1, in order) and returns the state they
/// lead to.
pub fn replay(
    ctx: MachineContext,
    events: &[HistoryEvent],
) -> Result<Option<AgentState>, ReplayError> {
    replay_as::<AgentState>(ctx, events)
}

/// Replays any execution's events; the first event says which machine runs it.
pub fn replay_any(
    ctx: MachineContext,
    events: &[HistoryEvent],
) -> Result<Option<ExecutionState>, ReplayError> {
    replay_as::<ExecutionState>(ctx, events)
}

/// Replays `events` through machine `M`.
pub fn replay_as<M: Machine>(
    ctx: MachineContext,
    events: &[HistoryEvent],
) -> Result<Option<M>, ReplayError> {
    let mut state: Option<M> = None;
    let mut expected: std::collections::VecDeque<HistoryEvent> = Default::default();
    for (i, event) in events.iter().enumerate() {
        let seq = i as u64 + 1;
        let invalid = |source| ReplayError::Invalid { seq, source };
        if event.is_command() {
            match expected.pop_front() {
                Some(want) if want == *event => {}
                Some(want) => {
                    return Err(Nondeterminism {
                        seq,
                        expected: describe(&want),
                        found: describe(event),
                    }
                    .into());
                }
                None => {
                    return Err(Nondeterminism {
                        seq,
                        expected: "nothing".into(),
                        found: describe(event),
                    }
                    .into());
                }
            }
            state = Some(M::apply(state, event).map_err(invalid)?);
        } else {
            if let Some(want) = expected.pop_front() {
                return Err(Nondeterminism {
                    seq,
                    expected: describe(&want),
                    found: describe(event),
                }
                .into());
            }
            let next = M::apply(state, event).map_err(invalid)?;
            expected = next.decide(ctx, event).map_err(invalid)?.into();
            state = Some(next);
        }
    }
    if let Some(want) = expected.pop_front() {
        return Err(Nondeterminism {
            seq: events.len() as u64 + 1,
            expected: describe(&want),
            found: "the end of the history".into(),
        }
        .into());
    }
    Ok(state)
}
