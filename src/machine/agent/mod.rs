//! The `agent` machine: one or more turns, each an activity, with retries, timeouts and
//! cancellation.

use serde::{Deserialize, Serialize};

use super::InvalidTransition;
use crate::domain::{
    AgentSpec, Conversation, ExecutionStatus, Failure, HistoryEvent, Millis, RetryPolicy,
    TimeoutKind, Timeouts, TimerPurpose, Usage,
};

mod conversation;
mod decide;
mod snapshot;
mod turns;

pub use conversation::{Approval, WaitingFor};
pub use snapshot::with_start;
pub use turns::Turns;

/// The activity id of turn `index` (0-based): `turn-1`, `turn-2`, ...
pub fn activity_id_for_turn(index: u32) -> String {
    format!("turn-{}", index + 1)
}

/// Where the open activity is in its lifecycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum ActivityPhase {
    /// Waiting for a worker, or running on one (a claim is not a history event).
    Scheduled,
    /// Its attempt is being recorded as started (only between ActivityStarted and its outcome).
    Started {
        /// The worker running it.
        worker: String,
    },
    /// The attempt ended without success; the machine decides next.
    Ended {
        /// Why, when it failed or timed out.
        failure: Option<Failure>,
        /// When it ended.
        at: Millis,
        /// The earliest retry time the runtime asked for.
        not_before: Millis,
        /// True when it ended because it was cancelled.
        canceled: bool,
    },
    /// Waiting for a back-off timer before the next attempt.
    BackingOff {
        /// `retry-turn-N-M`: the timer whose firing starts attempt `next_attempt`.
        timer_id: String,
        /// When it fires.
        fire_at: Millis,
        /// The attempt it will start.
        next_attempt: u32,
    },
}

/// The activity of the current turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenActivity {
    /// `turn-N`.
    pub activity_id: String,
    /// 0-based turn.
    pub turn: u32,
    /// The current (or last) attempt.
    pub attempt: u32,
    /// Lifecycle position.
    pub phase: ActivityPhase,
    /// Whether the running attempt was asked to stop.
    pub cancel_requested: bool,
    /// Set while its attempt is held at an unanswered tool call (see `ActivityHeld`): scheduled,
    /// but its task waits without a lease until the answer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
}

/// The state of an agent execution, rebuilt by replay; the execution row stores what changes
/// of it (`snapshot.rs`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AgentState {
    /// The agent as it was at start.
    pub agent: AgentSpec,
    /// One prompt per turn.
    pub prompts: Vec<String>,
    /// How activities are retried.
    pub retry_policy: RetryPolicy,
    /// Limits per attempt.
    pub timeouts: Timeouts,
    /// The execution's status as the machine sees it.
    pub status: ExecutionStatus,
    /// The activity of the current turn, if one is open.
    pub activity: Option<OpenActivity>,
    /// The turns completed so far.
    pub turns: Turns,
    /// The checkpoint the last completed turn ended with, handed to the next turn.
    pub checkpoint: Option<serde_json::Value>,
    /// Summed over completed turns.
    pub usage: Usage,
    /// Set once a client asked to cancel.
    pub cancel_reason: Option<String>,
    /// The task queue of its activities (snapshots from before queues lack it: the default).
    #[serde(default = "default_queue")]
    pub queue: String,
    /// The trace its attempts join (see `ExecutionStarted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// Set for a conversation (see `ExecutionStarted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<Conversation>,
    /// Set once a conversation was closed (by a client or its idle timeout): it takes no more
    /// messages and completes after the turns it has.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub closing: bool,
    /// The request ids of the messages received, in order (so a message sent again is found).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub message_ids: Vec<String>,
    /// The approvals the current turn asked for, answered or not, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<Approval>,
}

fn default_queue() -> String {
    crate::domain::DEFAULT_QUEUE.into()
}

impl AgentState {
    fn name(state: Option<&AgentState>) -> String {
        match state {
            None => "<not started>".into(),
            Some(s) => match &s.activity {
                Some(a) => format!(
                    "{} with {} attempt {} {:?}",
                    s.status.as_str(),
                    a.activity_id,
                    a.attempt,
                    a.phase
                ),
                None => s.status.as_str().into(),
            },
        }
    }

    fn invalid(state: Option<&AgentState>, event: &HistoryEvent) -> InvalidTransition {
        InvalidTransition {
            state: AgentState::name(state),
            event: event.event_type().into(),
        }
    }

    /// Folds one event (input or command) into the state. This is the transition table of the
    /// execution and of its activity; an event with no row here is an [`InvalidTransition`].
    pub fn apply(
        state: Option<AgentState>,
        event: &HistoryEvent,
    ) -> Result<AgentState, InvalidTransition> {
        use ActivityPhase as P;
        use HistoryEvent as E;
        let Some(mut s) = state else {
            return match event {
                E::ExecutionStarted {
                    agent,
                    prompts,
                    retry_policy,
                    timeouts,
                    resume,
                    queue,
                    traceparent,
                    conversation,
                    execution_timeout_ms: _,
                } => {
                    // A retry starts with the turns it reuses already completed, as if they
                    // had run here; it cannot reuse more turns than it has prompts.
                    let (turns, checkpoint) = match resume {
                        Some(r) if r.turns.len() > prompts.len() => {
                            return Err(AgentState::invalid(None, event));
                        }
                        Some(r) => (r.turns.as_slice(), r.checkpoint.clone()),
                        None => (&[][..], None),
                    };
                    let mut s = AgentState {
                        agent: agent.clone(),
                        prompts: prompts.clone(),
                        retry_policy: retry_policy.clone(),
                        timeouts: timeouts.clone(),
                        status: ExecutionStatus::Pending,
                        activity: None,
                        usage: turns.iter().fold(Usage::default(), |sum, t| sum + t.usage),
                        turns: Turns::of(turns),
                        checkpoint,
                        cancel_reason: None,
                        queue: queue.clone(),
                        traceparent: traceparent.clone(),
                        conversation: *conversation,
                        closing: false,
                        message_ids: Vec::new(),
                        approvals: Vec::new(),
                    };
                    s.refresh_waiting();
                    Ok(s)
                }
                _ => Err(AgentState::invalid(None, event)),
            };
        };
        if s.status.is_closed() {
            return Err(AgentState::invalid(Some(&s), event));
        }
        let invalid = |s: &AgentState| AgentState::invalid(Some(s), event);
        let open = |s: &AgentState, id: &str, attempt: u32| {
            s.activity
                .as_ref()
                .is_some_and(|a| a.activity_id == id && a.attempt == attempt)
        };
        match event {
            // Team events never reach an agent execution.
            E::ExecutionStarted { .. }
            | E::TeamStarted { .. }
            | E::ChildScheduled { .. }
            | E::ChildCancelRequested { .. }
            | E::ChildClosed { .. } => return Err(invalid(&s)),
            E::ActivityScheduled {
                activity_id,
                turn,
                attempt,
            } => {
                let next_turn = s.turns.len() as u32;
                let ok = match &s.activity {
                    None => *attempt == 1 && *turn == next_turn,
                    Some(a) => {
                        matches!(&a.phase, P::BackingOff { next_attempt, .. } if next_attempt == attempt)
                            && a.turn == *turn
                    }
                };
                if !ok {
                    return Err(invalid(&s));
                }
                if *attempt == 1 {
                    s.approvals.clear();
                }
                s.activity = Some(OpenActivity {
                    activity_id: activity_id.clone(),
                    turn: *turn,
                    attempt: *attempt,
                    phase: P::Scheduled,
                    cancel_requested: false,
                    held: false,
                });
            }
            E::ActivityStarted {
                activity_id,
                attempt,
                worker,
                ..
            } => {
                let a = s
                    .activity
                    .as_mut()
                    .filter(|a| a.activity_id == *activity_id && a.attempt == *attempt);
                match a {
                    Some(a) if a.phase == P::Scheduled => {
                        a.phase = P::Started {
                            worker: worker.clone(),
                        }
                    }
                    _ => return Err(invalid(&s)),
                }
                s.status = ExecutionStatus::Running;
            }
            E::ActivityCompleted {
                activity_id,
                attempt,
                output,
                usage,
                checkpoint,
            } => {
                if !open(&s, activity_id, *attempt) || !s.activity_running() {
                    return Err(invalid(&s));
                }
                s.activity = None;
                s.turns.push(output.clone());
                s.usage = s.usage + *usage;
                s.checkpoint = checkpoint.clone();
                s.status = ExecutionStatus::Running;
                s.approvals.clear();
            }
            E::ActivityFailed {
                activity_id,
                attempt,
                failure,
                retry_after_ms,
                at,
            } => {
                if !open(&s, activity_id, *attempt) || !s.activity_running() {
                    return Err(invalid(&s));
                }
                let not_before = crate::domain::after(*at, retry_after_ms.unwrap_or(0));
                s.end_activity(Some(failure.clone()), *at, not_before, false);
            }
            E::ActivityTimedOut {
                activity_id,
                attempt,
                kind,
                at,
            } => {
                if !open(&s, activity_id, *attempt) || !s.activity_running() {
                    return Err(invalid(&s));
                }
                let retryable = *kind != TimeoutKind::ScheduleToStart;
                let failure = Failure::new(
                    kind.code(),
                    format!(
                        "attempt {attempt} of {activity_id} exceeded its {} timeout",
                        kind.code().trim_end_matches("_timeout").replace('_', "-")
                    ),
                    retryable,
                );
                s.end_activity(Some(failure), *at, *at, false);
            }
            E::ActivityCancelRequested {
                activity_id,
                attempt,
            } => match s.activity.as_mut() {
                Some(a)
                    if a.activity_id == *activity_id
                        && a.attempt == *attempt
                        && a.phase == P::Scheduled =>
                {
                    a.cancel_requested = true
                }
                _ => return Err(invalid(&s)),
            },
            E::ActivityCanceled {
                activity_id,
                attempt,
                ..
            } => {
                let requested = s.activity.as_ref().is_some_and(|a| a.cancel_requested);
                if !open(&s, activity_id, *attempt) || !s.activity_running() || !requested {
                    return Err(invalid(&s));
                }
                s.end_activity(None, 0, 0, true);
            }
            E::TimerStarted {
                timer_id,
                fire_at,
                purpose:
                    TimerPurpose::RetryActivity {
                        activity_id,
                        attempt,
                    },
                ..
            } => match s.activity.as_mut() {
                Some(a)
                    if a.activity_id == *activity_id
                        && matches!(a.phase, P::Ended { .. })
                        && *attempt == a.attempt + 1 =>
                {
                    a.phase = P::BackingOff {
                        timer_id: timer_id.clone(),
                        fire_at: *fire_at,
                        next_attempt: *attempt,
                    };
                }
                _ => return Err(invalid(&s)),
            },
            E::TimerFired { timer_id } | E::TimerCanceled { timer_id } => {
                let pending = s.activity.as_ref().is_some_and(
                    |a| matches!(&a.phase, P::BackingOff { timer_id: t, .. } if t == timer_id),
                );
                if !pending {
                    return Err(invalid(&s));
                }
            }
            E::CancelRequested { reason } => {
                if s.cancel_reason.is_some() {
                    return Err(invalid(&s));
                }
                s.cancel_reason = Some(reason.clone());
            }
            E::ExecutionCompleted { .. } => {
                s.status = ExecutionStatus::Completed;
                s.activity = None;
            }
            E::ExecutionFailed { .. } => {
                s.status = ExecutionStatus::Failed;
                s.activity = None;
            }
            // An open execution takes its own limits in any phase; `decide` fails it.
            E::ExecutionTimedOut { .. } | E::HistoryLimitReached { .. } => {}
            E::ExecutionCanceled { .. } => {
                s.status = ExecutionStatus::Canceled;
                s.activity = None;
            }
            E::MessageReceived { .. }
            | E::CloseRequested
            | E::IdleTimedOut { .. }
            | E::ApprovalRequested { .. }
            | E::ApprovalResolved { .. }
            | E::ActivityHeld { .. }
            | E::ActivityResumed { .. } => s.apply_conversation(event)?,
        }
        s.refresh_waiting();
        Ok(s)
    }

    /// Whether the open activity's attempt is scheduled or started (it may be running).
    fn activity_running(&self) -> bool {
        self.activity.as_ref().is_some_and(|a| {
            matches!(
                a.phase,
                ActivityPhase::Scheduled | ActivityPhase::Started { .. }
            )
        })
    }

    fn end_activity(
        &mut self,
        failure: Option<Failure>,
        at: Millis,
        not_before: Millis,
        canceled: bool,
    ) {
        if let Some(a) = self.activity.as_mut() {
            a.phase = ActivityPhase::Ended {
                failure,
                at,
                not_before,
                canceled,
            };
        }
    }
}
