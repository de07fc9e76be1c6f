//! Performing commands: the task and timer rows each history event implies.

use uuid::Uuid;

use super::notify::Wake;
use crate::contract::Assignment;
use crate::domain::{
    AgentSpec, ExecutionStatus, HistoryEvent, Lease, Millis, TimerPurpose, Turn, Usage,
};
use crate::machine::{AgentState, TeamState};
use crate::store::{NewLease, NewTask, TaskOp, TimerKind, TimerOp};

/// A worker offered for the task a transition schedules (eager dispatch): a worker reporting an
/// attempt with a slot to spare, or a poll waiting on this server. The task is inserted leased
/// to it when it serves the task's runtime and queue.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EagerOffer {
    /// The worker, recorded as the lease owner.
    pub worker_id: String,
    /// The runtimes it has.
    pub runtimes: Vec<String>,
    /// The queue it serves.
    pub queue: String,
    /// The lease token, drawn here as a claim would draw it in the database.
    pub lease_token: String,
}

impl EagerOffer {
    /// An offer of `worker_id`'s slot, with a fresh lease token.
    pub(crate) fn new(worker_id: String, runtimes: Vec<String>, queue: String) -> EagerOffer {
        EagerOffer {
            worker_id,
            runtimes,
            queue,
            lease_token: Uuid::new_v4().simple().to_string(),
        }
    }

    fn lease_for(&self, runtime: &str, queue: &str) -> Option<NewLease> {
        (self.queue == queue && self.runtimes.iter().any(|r| r == runtime)).then(|| NewLease {
            owner: self.worker_id.clone(),
            token: self.lease_token.clone(),
        })
    }
}

/// The task and timer changes that `events` (inputs and commands of one transition) imply, in
/// order. `state` is the state after the transition; `checkpoint` came with an ending attempt;
/// a first attempt the transition schedules is leased to `eager`'s worker if it can run it.
pub(crate) fn rows_for(
    state: &AgentState,
    events: &[HistoryEvent],
    checkpoint: Option<serde_json::Value>,
    now: Millis,
    eager: Option<&EagerOffer>,
) -> (Vec<TaskOp>, Vec<TimerOp>) {
    use HistoryEvent as E;
    let mut tasks = Vec::new();
    let mut timers = Vec::new();
    let schedule_deadline = match state.timeouts.schedule_to_start_ms {
        0 => None,
        ms => Some(crate::domain::after(now, ms)),
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
                    traceparent: state.traceparent.clone(),
                };
                tasks.push(TaskOp::Insert(NewTask {
                    activity_id: activity_id.clone(),
                    runtime: state.agent.runtime.clone(),
                    queue: state.queue.clone(),
                    turn: turn.stored(),
                    checkpoint: state.checkpoint.clone(),
                    schedule_deadline,
                    heartbeat_ms: state.timeouts.heartbeat_ms,
                    start_to_close_ms: state.timeouts.start_to_close_ms,
                    lease: eager.and_then(|o| o.lease_for(&state.agent.runtime, &state.queue)),
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
            // A held attempt's task waits without a lease, keeping its checkpoint, until the
            // answer reschedules the same attempt.
            E::ActivityResumed {
                activity_id,
                attempt,
            } => tasks.push(TaskOp::Reschedule {
                activity_id: activity_id.clone(),
                attempt: *attempt,
                schedule_deadline,
            }),
            E::ActivityFailed { activity_id, .. }
            | E::ActivityHeld { activity_id, .. }
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
                    TimerPurpose::RetryActivity { .. } => TimerKind::RetryActivity,
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
            // A message ends the wait for it: its idle timer goes (none is left when the
            // message queues behind a running turn, and deleting nothing costs nothing).
            E::MessageReceived { .. } => timers.push(TimerOp::Delete {
                timer_id: idle_timer_id(state.turns.len()),
            }),
            E::ExecutionStarted {
                execution_timeout_ms: Some(ms),
                ..
            } => timers.push(execution_timer(now, *ms)),
            E::ExecutionStarted { .. }
            | E::ExecutionTimedOut { .. }
            | E::HistoryLimitReached { .. }
            | E::ActivityStarted { .. }
            | E::CancelRequested { .. }
            | E::TeamStarted { .. }
            | E::ChildScheduled { .. }
            | E::ChildCancelRequested { .. }
            | E::ChildClosed { .. }
            | E::CloseRequested
            | E::IdleTimedOut { .. }
            | E::ApprovalRequested { .. }
            | E::ApprovalResolved { .. } => {}
        }
    }
    // A conversation that starts waiting for its next message gets its idle timer: a row that
    // delivers `IdleTimedOut` when due, fenced by the row like any timer.
    let began_waiting = events
        .iter()
        .any(|e| matches!(e, E::ExecutionStarted { .. } | E::ActivityCompleted { .. }));
    if began_waiting
        && state.awaits_message()
        && let Some(conversation) = state.conversation
    {
        let idle = E::IdleTimedOut {
            idle_timeout_ms: conversation.idle_timeout_ms,
        };
        timers.push(TimerOp::Insert {
            timer_id: idle_timer_id(state.turns.len()),
            fire_at: crate::domain::after(now, conversation.idle_timeout_ms),
            kind: TimerKind::IdleTimeout,
            payload: serde_json::to_value(&idle).unwrap_or_default(),
        });
    }
    (tasks, timers)
}

/// The timer row of an execution's `execution_timeout`, set as it starts (a retry is a new
/// execution, so it gets the whole timeout again): when due it delivers `ExecutionTimedOut`, as
/// an inbox row delivers its input, fenced by the row. Closing deletes it with the other timers.
fn execution_timer(now: Millis, execution_timeout_ms: u64) -> TimerOp {
    let input = HistoryEvent::ExecutionTimedOut {
        execution_timeout_ms,
    };
    TimerOp::Insert {
        timer_id: "execution-timeout".into(),
        fire_at: crate::domain::after(now, execution_timeout_ms),
        kind: TimerKind::ExecutionTimeout,
        payload: serde_json::to_value(&input).unwrap_or_default(),
    }
}

/// The idle timer of a conversation waiting after `turns` completed turns: one per wait, so a
/// stale one can never fire into a later wait.
fn idle_timer_id(turns: usize) -> String {
    format!("idle-{turns}")
}

/// The long-polls to wake for the tasks the changes make claimable: one per task inserted
/// ready (by its runtime and queue), and one of each kind for a rescheduled attempt, whose row
/// change does not name them. A task inserted leased wakes nobody.
pub(crate) fn wakes(tasks: &[TaskOp]) -> Vec<Wake> {
    tasks
        .iter()
        .filter_map(|op| match op {
            TaskOp::Insert(task) if task.lease.is_none() => Some(Wake::Task {
                runtime: task.runtime.clone(),
                queue: task.queue.clone(),
            }),
            TaskOp::Reschedule { .. } => Some(Wake::Any),
            _ => None,
        })
        .collect()
}

/// Whether the changes insert a task leased (eager dispatch).
pub(crate) fn leases_task(tasks: &[TaskOp]) -> bool {
    tasks
        .iter()
        .any(|op| matches!(op, TaskOp::Insert(task) if task.lease.is_some()))
}

/// A task a transition inserted leased (eager dispatch): its assignment, as a poll would have
/// handed it out, and what the engine knows of the task without reading it back.
#[derive(Debug, Clone)]
pub struct Eager {
    /// What the worker is handed.
    pub assignment: Assignment,
    /// The task as the transition wrote it.
    pub(crate) task: super::leases::KnownTask,
}

/// The task `transition` inserts leased (eager dispatch), if it does.
pub(crate) fn eager_assignment(
    transition: &crate::store::Transition,
    state: &crate::machine::ExecutionState,
) -> Option<Eager> {
    let crate::machine::ExecutionState::Agent(agent) = state else {
        return None;
    };
    transition.tasks.iter().find_map(|op| match op {
        TaskOp::Insert(task) => {
            let lease = task.lease.as_ref()?;
            // The turn was stored from a `Turn` by `rows_for` a moment ago.
            let turn = Turn::of_stored(&task.turn, &agent.agent, agent.traceparent.as_deref())?;
            Some(Eager {
                assignment: Assignment {
                    lease: Lease {
                        execution_id: transition.execution_id,
                        activity_id: task.activity_id.clone(),
                        attempt: 1,
                        lease_token: lease.token.clone(),
                    },
                    runtime: task.runtime.clone(),
                    turn,
                    checkpoint: task.checkpoint.clone(),
                    heartbeat_ms: task.heartbeat_ms,
                },
                task: super::leases::KnownTask {
                    runtime: task.runtime.clone(),
                    queue: task.queue.clone(),
                    owner: lease.owner.clone(),
                    // As the store writes an eager lease: at the transition's time.
                    leased_at: transition.now,
                    chunks_sent: 0,
                    workspace: None,
                },
            })
        }
        _ => None,
    })
}

/// A child execution a team transition starts.
pub(crate) struct ChildStart {
    /// Its id, derived from the parent's id and the key.
    pub execution_id: Uuid,
    /// Its key in the team.
    pub key: String,
    /// The member's agent, as the team recorded it at start.
    pub agent: AgentSpec,
    /// The member step's whole prompt: the team prompt, or for a later step the prompt built
    /// from earlier children's answers.
    pub prompt: String,
}

/// The id of a team's child: a UUIDv7 with the parent's timestamp and bits from a hash of the
/// parent id and the key, so the same command always names the same child.
pub(crate) fn child_id(parent: Uuid, key: &str) -> Uuid {
    let millis = parent
        .get_timestamp()
        .map(|t| {
            let (secs, nanos) = t.to_unix();
            secs * 1000 + u64::from(nanos) / 1_000_000
        })
        .unwrap_or(0);
    let a = crate::domain::stable_hash(&format!("{parent}/{key}")).to_be_bytes();
    let b = crate::domain::stable_hash(&format!("{key}/{parent}")).to_be_bytes();
    let mut random = [0u8; 10];
    random[..8].copy_from_slice(&a);
    random[8..].copy_from_slice(&b[..2]);
    uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
}

/// What a team transition's events imply: inbox rows asking children to stop, and the children
/// to start.
pub(crate) fn team_rows_for(
    id: Uuid,
    state: &TeamState,
    events: &[HistoryEvent],
    now: Millis,
) -> (Vec<TimerOp>, Vec<ChildStart>) {
    let mut timers = Vec::new();
    let mut starts = Vec::new();
    for event in events {
        match event {
            HistoryEvent::TeamStarted {
                execution_timeout_ms: Some(ms),
                ..
            } => timers.push(execution_timer(now, *ms)),
            HistoryEvent::ChildScheduled { key, slot, prompt } => {
                if let Some(member) = state.member(slot) {
                    starts.push(ChildStart {
                        execution_id: child_id(id, key),
                        key: key.clone(),
                        agent: member.agent.clone(),
                        prompt: prompt.clone(),
                    });
                }
            }
            HistoryEvent::ChildCancelRequested { key } => {
                let reason = state
                    .cancel_reason
                    .clone()
                    .unwrap_or_else(|| "the team is closing".into());
                timers.push(TimerOp::Inbox {
                    execution_id: child_id(id, key),
                    timer_id: "inbox-cancel".into(),
                    payload: serde_json::to_value(HistoryEvent::CancelRequested { reason })
                        .unwrap_or_default(),
                });
            }
            HistoryEvent::ExecutionCompleted { .. }
            | HistoryEvent::ExecutionFailed { .. }
            | HistoryEvent::ExecutionCanceled { .. } => timers.push(TimerOp::DeleteAll),
            _ => {}
        }
    }
    (timers, starts)
}

/// The inbox row that tells a parent its child closed, written in the child's closing
/// transition.
pub(crate) fn notify_parent(
    parent_id: Uuid,
    key: &str,
    events: &[HistoryEvent],
    status: ExecutionStatus,
    usage: Usage,
) -> TimerOp {
    let (result, failure) = match events.last() {
        Some(HistoryEvent::ExecutionCompleted { result, .. }) => (Some(result.clone()), None),
        Some(HistoryEvent::ExecutionFailed { failure }) => (None, Some(failure.clone())),
        _ => (None, None),
    };
    let closed = HistoryEvent::ChildClosed {
        key: key.to_string(),
        status,
        result,
        failure,
        usage,
    };
    TimerOp::Inbox {
        execution_id: parent_id,
        timer_id: format!("inbox-child-{key}"),
        payload: serde_json::to_value(closed).unwrap_or_default(),
    }
}

/// Drops row changes that a later `DeleteAll` of the same transition makes moot (a closing
/// execution deletes its task rows and timers anyway), saving a statement each.
pub(crate) fn prune(tasks: Vec<TaskOp>, timers: Vec<TimerOp>) -> (Vec<TaskOp>, Vec<TimerOp>) {
    let tasks = if tasks.contains(&TaskOp::DeleteAll) {
        vec![TaskOp::DeleteAll]
    } else {
        tasks
    };
    let timers = if timers.contains(&TimerOp::DeleteAll) {
        // Inbox rows go to other executions (a parent, a child) and stay.
        timers
            .into_iter()
            .filter(|op| matches!(op, TimerOp::DeleteAll | TimerOp::Inbox { .. }))
            .collect()
    } else {
        timers
    };
    (tasks, timers)
}
