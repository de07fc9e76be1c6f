//! What one transition writes, as [`super::Executions::commit`] takes it: the execution row (new
//! or moved forward), the fences it must pass, and the output, task and timer changes that go
//! with it in the same transaction.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::TimerKind;
use crate::domain::{ExecutionKind, ExecutionStatus, Failure, HistoryEvent, Millis, Usage};

/// A new execution row, written by the transition that starts it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewExecution {
    /// Namespace.
    pub namespace: String,
    /// Agent or team.
    pub kind: ExecutionKind,
    /// The agent.
    pub agent_id: Option<Uuid>,
    /// The runtime.
    pub runtime: String,
    /// The start input.
    pub input: serde_json::Value,
    /// Parent execution.
    pub parent_id: Option<Uuid>,
    /// Root execution.
    pub root_id: Uuid,
    /// Retried execution.
    pub retry_of: Option<Uuid>,
    /// Idempotency key.
    pub request_id: Option<String>,
    /// The team (team executions).
    pub team_id: Option<Uuid>,
    /// Its key within its parent (child executions).
    pub child_key: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// Whether the transition creates the execution row or moves an existing one forward.
#[derive(Debug, Clone, PartialEq)]
pub enum RowWrite {
    /// Insert the row; a duplicate `request_id` makes the outcome [`CommitOutcome::Duplicate`].
    Create(Box<NewExecution>),
    /// Update the row if its `next_seq` still equals this (optimistic concurrency).
    Update {
        /// The version the transition was computed from.
        expected_next_seq: u64,
    },
}

/// The fields of the execution row every transition sets.
#[derive(Debug, Clone, PartialEq)]
pub struct RowState {
    /// The machine's status. `Pending` leaves a `RUNNING` row (set by a claim) as it is.
    pub status: ExecutionStatus,
    /// The machine's snapshot.
    pub state: SnapshotJson,
    /// The result when completed.
    pub result: Option<serde_json::Value>,
    /// The failure when failed.
    pub failure: Option<Failure>,
    /// Summed usage.
    pub usage: Usage,
    /// When it closed, if it did in this transition.
    pub closed_at: Option<Millis>,
}

/// A machine snapshot as the JSON text the row stores: serialized once from the machine's state
/// and written as it is, with no `serde_json::Value` tree built in between (a perf profile of W3
/// found building, re-serializing and dropping that tree in every transition).
#[derive(Debug, Clone)]
pub struct SnapshotJson(Box<serde_json::value::RawValue>);

impl SnapshotJson {
    /// The snapshot of `state`.
    pub fn of(state: &impl serde::Serialize) -> Result<SnapshotJson, serde_json::Error> {
        serde_json::value::to_raw_value(state).map(SnapshotJson)
    }

    /// Its JSON text.
    pub fn text(&self) -> &str {
        self.0.get()
    }

    /// Its JSON, parsed.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(self.text()).expect("a snapshot is JSON")
    }
}

/// Equal when they hold the same JSON (whatever the order of their keys).
impl PartialEq for SnapshotJson {
    fn eq(&self, other: &SnapshotJson) -> bool {
        self.text() == other.text() || self.to_value() == other.to_value()
    }
}

impl serde::Serialize for SnapshotJson {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// What must still hold for a transition to apply; checked inside its transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum Fence {
    /// The reporting attempt still holds its lease.
    Lease {
        /// The activity.
        activity_id: String,
        /// The attempt.
        attempt: u32,
        /// The token handed out with the lease.
        lease_token: String,
    },
    /// The activity's task row still holds what the engine remembered of it instead of reading
    /// it: how many chunks its lease has stored and the working directory its progress named;
    /// and the execution's stored output is at most `output_bytes_at_most` (what the transition's
    /// chunks leave of the output limit). A report made from a lease the engine handed out itself
    /// carries it beside `Lease`: a progress through another server since (which would change
    /// what the report writes), or output that the report would take past the limit, fences it,
    /// and the engine makes it again from a read (which refuses the latter, naming the limit).
    TaskAsKnown {
        /// The activity.
        activity_id: String,
        /// The chunks its lease has stored.
        chunks_sent: u64,
        /// The working directory its progress named.
        workspace: Option<String>,
        /// The most output bytes the execution may have stored.
        output_bytes_at_most: u64,
    },
    /// The attempt is still waiting for a worker (for timeouts and cancels of unclaimed tasks).
    Unclaimed {
        /// The activity.
        activity_id: String,
        /// The attempt.
        attempt: u32,
    },
    /// The timer still exists (so it fires once, whichever server sees it first).
    Timer {
        /// The timer.
        timer_id: String,
    },
    /// The agent a start was made from is still active at this version: a start made from an
    /// agent the engine remembered is refused when the agent changed since, through any server.
    Agent {
        /// The agent.
        agent_id: Uuid,
        /// Its version the start was made from.
        version: u64,
    },
}

/// An output chunk to append; it gets the execution's next output seq.
#[derive(Debug, Clone, PartialEq)]
pub struct NewChunk {
    /// The activity that produced it.
    pub activity_id: String,
    /// The attempt that produced it.
    pub attempt: u32,
    /// `text`, `tool_use`, ...
    pub kind: String,
    /// Its content.
    pub data: serde_json::Value,
    /// The execution that produced it, when a retry copies it from the execution it retries;
    /// `None` for output this execution produced.
    pub reused_from: Option<Uuid>,
    /// For a team's output: the child that produced it and the child's key. Set on chunks a
    /// retried team copies from the failed one; a child's own chunks get it from the store.
    pub source: Option<(Uuid, String)>,
}

/// The bytes `chunks` add to their execution's `output_bytes` (held to `--max-output-bytes`):
/// each one's kind and its data as JSON, as a worker's batch weighs them.
pub fn chunk_bytes(chunks: &[NewChunk]) -> i64 {
    let bytes: usize = chunks
        .iter()
        .map(|c| c.kind.len() + crate::contract::encoded_len(&c.data))
        .sum();
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

/// A new task row: the first attempt of an activity.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    /// The activity.
    pub activity_id: String,
    /// The runtime that runs it.
    pub runtime: String,
    /// The queue it waits in.
    pub queue: String,
    /// The turn (agent snapshot, prompt, index) as JSON.
    pub turn: serde_json::Value,
    /// The checkpoint the previous turn ended with.
    pub checkpoint: Option<serde_json::Value>,
    /// Deadline for a worker to claim it.
    pub schedule_deadline: Option<Millis>,
    /// Lease length without progress.
    pub heartbeat_ms: u64,
    /// Longest an attempt may run (0 = unlimited).
    pub start_to_close_ms: u64,
    /// A worker the task is leased to as it is inserted (eager dispatch), instead of waiting
    /// in the queue; `None` inserts it ready.
    pub lease: Option<NewLease>,
}

/// The lease of a task inserted already leased: as a claim at the transition's `now` would
/// write it (expiry after the heartbeat, attempt deadline after start-to-close, no chunks).
#[derive(Debug, Clone, PartialEq)]
pub struct NewLease {
    /// The worker that holds it.
    pub owner: String,
    /// The fence every later message about the attempt carries, drawn by the engine.
    pub token: String,
}

/// A change to task rows.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskOp {
    /// Insert the first attempt of an activity.
    Insert(NewTask),
    /// Make the next attempt of an activity ready.
    Reschedule {
        /// The activity.
        activity_id: String,
        /// The new attempt.
        attempt: u32,
        /// Deadline for a worker to claim it.
        schedule_deadline: Option<Millis>,
    },
    /// Take an attempt off its worker (it ended); keep the row and its checkpoint.
    Park {
        /// The activity.
        activity_id: String,
        /// A checkpoint the ending attempt reported, if any.
        checkpoint: Option<serde_json::Value>,
    },
    /// Ask the running attempt to stop (seen by its worker in the next progress reply).
    RequestCancel {
        /// The activity.
        activity_id: String,
    },
    /// The activity closed.
    Delete {
        /// The activity.
        activity_id: String,
    },
    /// The execution closed: no task of it stays.
    DeleteAll,
}

/// A change to timer rows.
#[derive(Debug, Clone, PartialEq)]
pub enum TimerOp {
    /// Start a timer.
    Insert {
        /// Unique within the execution.
        timer_id: String,
        /// When it fires.
        fire_at: Millis,
        /// What it is for.
        kind: TimerKind,
        /// The event that started it.
        payload: serde_json::Value,
    },
    /// Drop a timer.
    Delete {
        /// The timer.
        timer_id: String,
    },
    /// The execution closed: no timer of it stays.
    DeleteAll,
    /// Deliver an input to another execution (a parent or a child): a timer row on *that*
    /// execution, due now, whose payload is the input. Written in this transition's transaction;
    /// the sweeper applies it, fenced by the row, exactly once.
    Inbox {
        /// The receiving execution.
        execution_id: Uuid,
        /// Unique within the receiver.
        timer_id: String,
        /// The input (a history event).
        payload: serde_json::Value,
    },
}

/// Everything one transition of one execution writes. See [`super::Executions::commit`].
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The execution.
    pub execution_id: Uuid,
    /// Create or update the row.
    pub row_write: RowWrite,
    /// The new row fields.
    pub row: RowState,
    /// Preconditions besides the row version.
    pub fences: Vec<Fence>,
    /// Events to append, from the row's `next_seq` on.
    pub events: Vec<HistoryEvent>,
    /// Output that came with the report that caused the transition.
    pub chunks: Vec<NewChunk>,
    /// Task changes, applied in order.
    pub tasks: Vec<TaskOp>,
    /// Timer changes, applied in order.
    pub timers: Vec<TimerOp>,
    /// The transition's time (event and chunk `created_at`).
    pub now: Millis,
    /// Child executions this transition starts, created in the same transaction.
    pub children: Vec<Transition>,
    /// Stored objects (checkpoints) its events, state or task rows refer to, written with it.
    pub objects: Vec<super::NewObject>,
}

/// How one transition of a commit ended.
#[derive(Debug, Clone, PartialEq)]
pub enum CommitOutcome {
    /// Written.
    Committed,
    /// The row moved on since the transition was computed; recompute and try again.
    Conflict,
    /// A fence failed: the report is stale, the timer already fired, the task was claimed.
    Fenced,
    /// A `Create` found an execution with the same `request_id`: this one.
    Duplicate(Uuid),
}

impl Transition {
    /// The chunks this transition appends, as they are stored once committed, their seqs left
    /// 0 (the commit's [`super::RowAfter`] says where the output ends).
    pub fn stored_chunks(&self) -> Vec<super::StoredChunk> {
        self.chunks
            .iter()
            .map(|chunk| super::StoredChunk {
                execution_id: self.execution_id,
                seq: 0,
                activity_id: chunk.activity_id.clone(),
                attempt: chunk.attempt,
                kind: chunk.kind.clone(),
                data: chunk.data.clone(),
                reused_from: chunk.reused_from,
                created_at: self.now,
                source_id: chunk.source.as_ref().map(|s| s.0),
                source_key: chunk.source.as_ref().map(|s| s.1.clone()),
                superseded: false,
            })
            .collect()
    }

    /// The earliest deadline this transition writes (its children's included): a timer's
    /// `fire_at`, an inbox row's (`now`), a task's schedule deadline, and the lease expiry and
    /// attempt deadline of a task inserted leased (as `committed.rs` writes them, which caps the
    /// durations at ten years: a later estimate than the stored value only for deadlines years
    /// away, which no sweeper's plan reaches). `None` when it writes none. The sweeper is woken
    /// only when this is earlier than the wake-up it planned.
    pub fn earliest_deadline(&self) -> Option<Millis> {
        let timers = self.timers.iter().filter_map(|op| match op {
            TimerOp::Insert { fire_at, .. } => Some(*fire_at),
            TimerOp::Inbox { .. } => Some(self.now),
            TimerOp::Delete { .. } | TimerOp::DeleteAll => None,
        });
        let tasks = self
            .tasks
            .iter()
            .flat_map(|op| task_deadlines(op, self.now));
        let children = self
            .children
            .iter()
            .filter_map(Transition::earliest_deadline);
        timers.chain(tasks).chain(children).min()
    }
}

/// The deadlines one task change writes, at a transition's `now`.
fn task_deadlines(op: &TaskOp, now: Millis) -> Vec<Millis> {
    match op {
        TaskOp::Insert(task) => {
            let mut at: Vec<Millis> = task.schedule_deadline.into_iter().collect();
            if task.lease.is_some() {
                at.push(crate::domain::after(now, task.heartbeat_ms));
                if task.start_to_close_ms > 0 {
                    at.push(crate::domain::after(now, task.start_to_close_ms));
                }
            }
            at
        }
        TaskOp::Reschedule {
            schedule_deadline, ..
        } => schedule_deadline.iter().copied().collect(),
        TaskOp::Park { .. }
        | TaskOp::RequestCancel { .. }
        | TaskOp::Delete { .. }
        | TaskOp::DeleteAll => Vec::new(),
    }
}
