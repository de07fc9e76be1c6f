//! Performing commands: the task and timer rows each history event implies.

use crate::domain::{HistoryEvent, Millis, TimerPurpose, Turn};
use crate::machine::AgentState;
use crate::store::{NewTask, TaskOp, TimerOp};

/// The task and timer changes that `events` (inputs and commands of one transition) imply, in
/// order. `state` is the state after the transition; `checkpoint` came with an ending attempt.
pub(crate) fn rows_for(
    state: &AgentState,
    events: &[HistoryEvent],
    checkpoint: Option<serde_json::Value>,
    now: Millis,
) -> (Vec<TaskOp>, Vec<TimerOp>) {
    use HistoryEvent as E;
    let mut tasks = Vec::new();
    let mut timers = Vec::new();
    let schedule_deadline = match state.timeouts.schedule_to_start_ms {
        0 => None,
        ms => Some(now + ms as i64),
    };
    for event in events {
        match event {
            E::ActivityScheduled {
                activity_id,
                turn,
                attempt: 1,
            } => {
                let turn = Turn {
                    agent: state.agent.clone(),
                    index: *turn,
                    prompt: state
                        .prompts
                        .get(*turn as usize)
                        .cloned()
                        .unwrap_or_default(),
                };
                tasks.push(TaskOp::Insert(NewTask {
                    activity_id: activity_id.clone(),
                    runtime: state.agent.runtime.clone(),
                    queue: state.queue.clone(),
                    turn: serde_json::to_value(&turn).unwrap_or_default(),
                    checkpoint: state.checkpoint.clone(),
                    schedule_deadline,
                    heartbeat_ms: state.timeouts.heartbeat_ms,
                    start_to_close_ms: state.timeouts.start_to_close_ms,
                }));
            }
            E::ActivityScheduled {
                activity_id,
                attempt,
                ..
            } => tasks.push(TaskOp::Reschedule {
                activity_id: activity_id.clone(),
                attempt: *attempt,
                schedule_deadline,
            }),
            E::ActivityCompleted { activity_id, .. } => tasks.push(TaskOp::Delete {
                activity_id: activity_id.clone(),
            }),
            E::ActivityFailed { activity_id, .. }
            | E::ActivityTimedOut { activity_id, .. }
            | E::ActivityCanceled { activity_id, .. } => tasks.push(TaskOp::Park {
                activity_id: activity_id.clone(),
                checkpoint: checkpoint.clone(),
            }),
            E::ActivityCancelRequested { activity_id, .. } => tasks.push(TaskOp::RequestCancel {
                activity_id: activity_id.clone(),
            }),
            E::TimerStarted {
                timer_id,
                fire_at,
                purpose,
                ..
            } => timers.push(TimerOp::Insert {
                timer_id: timer_id.clone(),
                fire_at: *fire_at,
                kind: match purpose {
                    TimerPurpose::RetryActivity { .. } => "retry_activity".into(),
                },
                payload: serde_json::to_value(event).unwrap_or_default(),
            }),
            E::TimerFired { timer_id } | E::TimerCanceled { timer_id } => {
                timers.push(TimerOp::Delete {
                    timer_id: timer_id.clone(),
                })
            }
            E::ExecutionCompleted { .. }
            | E::ExecutionFailed { .. }
            | E::ExecutionCanceled { .. } => {
                tasks.push(TaskOp::DeleteAll);
                timers.push(TimerOp::DeleteAll);
            }
            E::ExecutionStarted { .. } | E::ActivityStarted { .. } | E::CancelRequested { .. } => {}
        }
    }
    (tasks, timers)
}

/// Whether the changes make a task claimable.
pub(crate) fn readies_task(tasks: &[TaskOp]) -> bool {
    tasks
        .iter()
        .any(|op| matches!(op, TaskOp::Insert(_) | TaskOp::Reschedule { .. }))
}
