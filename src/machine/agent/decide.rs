//! What the agent machine emits for each input: the next turn, a back-off timer, the end.

use super::{ActivityPhase, AgentState, activity_id_for_turn};
use crate::domain::{HistoryEvent, TimerPurpose, retry_delay, stable_hash};
use crate::machine::{InvalidTransition, MachineContext};

impl AgentState {
    /// The commands the machine emits after `input` was folded into the state.
    pub fn decide(
        &self,
        ctx: MachineContext,
        input: &HistoryEvent,
    ) -> Result<Vec<HistoryEvent>, InvalidTransition> {
        use HistoryEvent as E;
        let commands = match input {
            E::ExecutionStarted { .. } => self.next_turn_or_end(),
            E::ActivityStarted { .. }
            | E::ActivityScheduled { .. }
            | E::TimerStarted { .. }
            | E::TimerCanceled { .. } => vec![],
            E::ActivityCompleted { .. } => self.next_turn_or_end(),
            E::ActivityFailed { .. } | E::ActivityTimedOut { .. } => {
                self.after_failed_attempt(ctx, input)?
            }
            E::ActivityCanceled { .. } => vec![self.cancel_execution()],
            E::TimerFired { .. } => {
                let a = self
                    .activity
                    .as_ref()
                    .ok_or_else(|| AgentState::invalid(Some(self), input))?;
                let ActivityPhase::BackingOff { next_attempt, .. } = a.phase else {
                    return Err(AgentState::invalid(Some(self), input));
                };
                vec![E::ActivityScheduled {
                    activity_id: a.activity_id.clone(),
                    turn: a.turn,
                    attempt: next_attempt,
                }]
            }
            E::CancelRequested { .. } => match &self.activity {
                Some(a) => match &a.phase {
                    ActivityPhase::Scheduled => vec![E::ActivityCancelRequested {
                        activity_id: a.activity_id.clone(),
                        attempt: a.attempt,
                    }],
                    ActivityPhase::BackingOff { timer_id, .. } => {
                        vec![
                            E::TimerCanceled {
                                timer_id: timer_id.clone(),
                            },
                            self.cancel_execution(),
                        ]
                    }
                    ActivityPhase::Started { .. } | ActivityPhase::Ended { .. } => {
                        return Err(AgentState::invalid(Some(self), input));
                    }
                },
                None => vec![self.cancel_execution()],
            },
            E::MessageReceived { .. }
            | E::CloseRequested
            | E::IdleTimedOut { .. }
            | E::ApprovalRequested { .. }
            | E::ApprovalResolved { .. }
            | E::ActivityHeld { .. } => self.decide_conversation(input),
            E::ExecutionTimedOut { .. } | E::HistoryLimitReached { .. } => {
                // Reached in any phase: the execution fails at once, and the closing transition
                // deletes its task and timers (a running attempt's next report is fenced).
                let failure = input
                    .limit_failure()
                    .ok_or_else(|| AgentState::invalid(Some(self), input))?;
                vec![E::ExecutionFailed { failure }]
            }
            E::ActivityResumed { .. } => return Err(AgentState::invalid(Some(self), input)),
            E::ActivityCancelRequested { .. }
            | E::ExecutionCompleted { .. }
            | E::ExecutionFailed { .. }
            | E::ExecutionCanceled { .. }
            | E::TeamStarted { .. }
            | E::ChildScheduled { .. }
            | E::ChildCancelRequested { .. }
            | E::ChildClosed { .. } => {
                return Err(AgentState::invalid(Some(self), input));
            }
        };
        Ok(commands)
    }

    /// After the start (which may bring reused turns) or a completed turn: run the next turn,
    /// or stop when a cancel was asked for, or wait when an open conversation has run every
    /// message, or complete when no turn is left.
    pub(super) fn next_turn_or_end(&self) -> Vec<HistoryEvent> {
        let next = self.turns.len() as u32;
        if (next as usize) < self.prompts.len() && self.cancel_reason.is_none() {
            vec![self.schedule_turn(next)]
        } else if (next as usize) < self.prompts.len() {
            vec![self.cancel_execution()]
        } else if self.awaits_message() {
            vec![]
        } else {
            let last = self.turns.last.clone().unwrap_or_default();
            vec![HistoryEvent::ExecutionCompleted {
                result: last,
                usage: self.usage,
            }]
        }
    }

    fn schedule_turn(&self, turn: u32) -> HistoryEvent {
        HistoryEvent::ActivityScheduled {
            activity_id: activity_id_for_turn(turn),
            turn,
            attempt: 1,
        }
    }

    fn cancel_execution(&self) -> HistoryEvent {
        HistoryEvent::ExecutionCanceled {
            reason: self.cancel_reason.clone().unwrap_or_default(),
        }
    }

    /// After a failed or timed-out attempt, which `apply` has just ended with its failure: stop
    /// when a cancel was asked for, fail when the policy allows no retry, else back off.
    fn after_failed_attempt(
        &self,
        ctx: MachineContext,
        input: &HistoryEvent,
    ) -> Result<Vec<HistoryEvent>, InvalidTransition> {
        let ended = self.activity.as_ref().and_then(|a| match &a.phase {
            ActivityPhase::Ended {
                failure: Some(failure),
                at,
                not_before,
                ..
            } => Some((a, failure, *at, *not_before)),
            _ => None,
        });
        let Some((a, failure, at, not_before)) = ended else {
            return Err(AgentState::invalid(Some(self), input));
        };
        if self.cancel_reason.is_some() {
            return Ok(vec![self.cancel_execution()]);
        }
        if !self
            .retry_policy
            .allows_retry(a.attempt, &failure.code, failure.retryable)
        {
            return Ok(vec![HistoryEvent::ExecutionFailed {
                failure: failure.clone(),
            }]);
        }
        let seed = stable_hash(&format!("{}/{}", ctx.execution_id, a.activity_id));
        let (delay_ms, jitter_ms) = retry_delay(&self.retry_policy, a.attempt, seed);
        // A runtime's `retry-after` can push the retry later than the policy would. Saturating:
        // the edge bounds every interval, but no stored value may ever make a time wrap.
        let fire_at = crate::domain::after(at, delay_ms).max(not_before);
        Ok(vec![HistoryEvent::TimerStarted {
            timer_id: format!("retry-{}-{}", a.activity_id, a.attempt + 1),
            fire_at,
            purpose: TimerPurpose::RetryActivity {
                activity_id: a.activity_id.clone(),
                attempt: a.attempt + 1,
            },
            delay_ms: fire_at.saturating_sub(at).max(0) as u64,
            jitter_ms,
        }])
    }
}
