//! The worker's side of approvals: recording the tool calls a running attempt asks about,
//! handing it the decisions made so far, and telling an attempt that stopped at an unanswered
//! ask (held) from one that failed.

use super::apply::{ApplyError, Plan};
use super::worker_side::stale;
use super::{Engine, EngineError};
use crate::contract::Ask;
use crate::domain::{ApprovalDecision, Failure, HistoryEvent, Lease, Millis};
use crate::machine::{AgentState, ExecutionState};
use crate::runtime::HELD_CODE;
use crate::store::Fence;

impl Engine {
    /// Records the asks of a progress report the turn does not have yet (fenced by the lease),
    /// and, when the attempt asked or waits, returns the decisions of its turn so far. The
    /// decisions are read from the store, not the cache: another server may have recorded them.
    pub(super) async fn asked(
        &self,
        lease: &Lease,
        asks: Vec<Ask>,
        awaiting: bool,
    ) -> Result<Vec<(String, ApprovalDecision)>, EngineError> {
        if asks.is_empty() && !awaiting {
            return Ok(Vec::new());
        }
        if !asks.is_empty() {
            let recorded = self
                .apply_with(lease.execution_id, |state| {
                    let ExecutionState::Agent(agent) = state else {
                        return Err(stale(lease));
                    };
                    let inputs: Vec<HistoryEvent> = asks
                        .iter()
                        .filter(|a| agent.approval(&a.id).is_none())
                        .map(|a| HistoryEvent::ApprovalRequested {
                            approval_id: a.id.clone(),
                            activity_id: lease.activity_id.clone(),
                            attempt: lease.attempt,
                            tool: a.tool.clone(),
                            input: a.input.clone(),
                        })
                        .collect();
                    if inputs.is_empty() {
                        return Ok(None);
                    }
                    Ok(Some(Plan {
                        inputs,
                        fences: vec![Fence::Lease {
                            activity_id: lease.activity_id.clone(),
                            attempt: lease.attempt,
                            lease_token: lease.lease_token.clone(),
                        }],
                        ..Default::default()
                    }))
                })
                .await;
            match recorded {
                Ok(_) => {}
                Err(ApplyError::Fenced) => return Err(stale(lease)),
                Err(ApplyError::Conflict) => {
                    return Err(EngineError::Internal(
                        "conflict escaped the apply loop".into(),
                    ));
                }
                Err(ApplyError::Engine(e) | ApplyError::Final(e)) => return Err(e),
            }
        }
        let current = self.load(lease.execution_id).await?;
        let ExecutionState::Agent(agent) = &current.state else {
            return Err(stale(lease));
        };
        Ok(agent
            .approvals
            .iter()
            .filter(|a| a.activity_id == lease.activity_id)
            .filter_map(|a| Some((a.approval_id.clone(), a.decision.clone()?)))
            .collect())
    }
}

/// The input for an attempt that ended with `failure`: `ActivityHeld` when it stopped at a tool
/// call its turn asked about (the runtime's `held` error), `ActivityFailed` otherwise.
pub(super) fn failed_or_held(
    state: &AgentState,
    lease: &Lease,
    failure: &Failure,
    retry_after_ms: Option<u64>,
    at: Millis,
) -> HistoryEvent {
    let asked = failure
        .details
        .get("approval_id")
        .and_then(|id| id.as_str())
        .filter(|id| state.approval(id).is_some());
    match asked {
        Some(approval_id) if failure.code == HELD_CODE => HistoryEvent::ActivityHeld {
            activity_id: lease.activity_id.clone(),
            attempt: lease.attempt,
            approval_id: approval_id.to_string(),
        },
        _ => HistoryEvent::ActivityFailed {
            activity_id: lease.activity_id.clone(),
            attempt: lease.attempt,
            failure: failure.clone(),
            retry_after_ms,
            at,
        },
    }
}
