//! The rows the store reads and the writes it performs, as plain Rust types (no sqlx types in
//! public signatures).

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::domain::{ExecutionKind, ExecutionStatus, Failure, HistoryEvent, Millis, Usage};

/// A stored execution row.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionRecord {
    /// The id (UUIDv7).
    pub id: Uuid,
    /// Its namespace.
    pub namespace: String,
    /// Agent or team.
    pub kind: ExecutionKind,
    /// The agent it runs (agent executions).
    pub agent_id: Option<Uuid>,
    /// The runtime it runs on.
    pub runtime: String,
    /// Its status.
    pub status: ExecutionStatus,
    /// What it was started with (`{"prompts": [...]}`).
    pub input: serde_json::Value,
    /// The result, once completed.
    pub result: Option<serde_json::Value>,
    /// The failure, once failed.
    pub failure: Option<Failure>,
    /// The parent (child executions).
    pub parent_id: Option<Uuid>,
    /// The top of its tree (itself for a top-level execution).
    pub root_id: Uuid,
    /// The execution this one retries.
    pub retry_of: Option<Uuid>,
    /// The client's idempotency key.
    pub request_id: Option<String>,
    /// The team it runs (team executions).
    pub team_id: Option<Uuid>,
    /// Its key within its parent (child executions).
    pub child_key: Option<String>,
    /// Labels set at start.
    pub labels: BTreeMap<String, String>,
    /// The machine's snapshot.
    pub state: serde_json::Value,
    /// The seq the next history event gets.
    pub next_seq: u64,
    /// The seq of the last output chunk.
    pub output_seq: u64,
    /// Summed usage.
    pub usage: Usage,
    /// When it was accepted.
    pub created_at: Millis,
    /// When its first attempt was claimed.
    pub started_at: Option<Millis>,
    /// When it closed.
    pub closed_at: Option<Millis>,
}

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
    pub state: serde_json::Value,
    /// The result when completed.
    pub result: Option<serde_json::Value>,
    /// The failure when failed.
    pub failure: Option<Failure>,
    /// Summed usage.
    pub usage: Usage,
    /// When it closed, if it did in this transition.
    pub closed_at: Option<Millis>,
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
        kind: String,
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

/// Everything one transition of one execution writes. See [`super::Store::commit`].
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

/// Filters of `ListExecutions`; empty fields do not filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecutionFilter {
    /// Namespace (always set).
    pub namespace: String,
    /// Any of these statuses.
    pub statuses: Vec<ExecutionStatus>,
    /// This agent.
    pub agent_id: Option<Uuid>,
    /// This runtime.
    pub runtime: Option<String>,
    /// Children of this execution.
    pub parent_id: Option<Uuid>,
    /// Created at or after.
    pub created_after: Option<Millis>,
    /// Created before.
    pub created_before: Option<Millis>,
    /// Every one of these labels.
    pub labels: BTreeMap<String, String>,
}

/// A stored history event.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Its position, from 1.
    pub seq: u64,
    /// The event.
    pub event: HistoryEvent,
    /// When it was written.
    pub created_at: Millis,
}

/// A stored output chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredChunk {
    /// The execution it belongs to.
    pub execution_id: Uuid,
    /// Its position, from 1, gapless.
    pub seq: u64,
    /// The activity that produced it.
    pub activity_id: String,
    /// The attempt that produced it.
    pub attempt: u32,
    /// `text`, `tool_use`, ...
    pub kind: String,
    /// Its content.
    pub data: serde_json::Value,
    /// The execution that produced it, when it was reused by a retry (see [`NewChunk`]).
    pub reused_from: Option<Uuid>,
    /// When it was written.
    pub created_at: Millis,
    /// For a team's output: the child that produced it.
    pub source_id: Option<Uuid>,
    /// For a team's output: that child's key.
    pub source_key: Option<String>,
}

/// A task row.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    /// The execution.
    pub execution_id: Uuid,
    /// The activity.
    pub activity_id: String,
    /// The current attempt.
    pub attempt: u32,
    /// The runtime.
    pub runtime: String,
    /// The queue.
    pub queue: String,
    /// `ready`, `leased` or `backoff`.
    pub status: String,
    /// The lease token while leased.
    pub lease_token: Option<String>,
    /// The worker holding the lease.
    pub lease_owner: Option<String>,
    /// When the lease was taken.
    pub leased_at: Option<Millis>,
    /// When the lease expires without progress.
    pub lease_expires_at: Option<Millis>,
    /// When the attempt's start-to-close timeout fires.
    pub attempt_deadline: Option<Millis>,
    /// When the schedule-to-start timeout fires.
    pub schedule_deadline: Option<Millis>,
    /// Lease length without progress.
    pub heartbeat_ms: u64,
    /// Whether the attempt was asked to stop.
    pub cancel_requested: bool,
    /// How many output chunks the current lease has stored.
    pub chunks_sent: u64,
    /// The turn.
    pub turn: serde_json::Value,
    /// The last saved checkpoint.
    pub checkpoint: Option<serde_json::Value>,
}

/// A worker asking for work.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimRequest {
    /// Who asks; recorded as the lease owner.
    pub worker_id: String,
    /// The runtimes it has.
    pub runtimes: Vec<String>,
    /// The queue it serves.
    pub queue: String,
    /// How many tasks at most.
    pub max: u32,
    /// The claim time.
    pub now: Millis,
}

/// Progress of a leased attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressRecord {
    /// The index of `chunks[0]` among the chunks this lease has sent; chunks below the count
    /// already stored are a resent batch and are skipped. `None` appends every chunk.
    pub first_chunk: Option<u64>,
    /// The execution.
    pub execution_id: Uuid,
    /// The activity.
    pub activity_id: String,
    /// The attempt.
    pub attempt: u32,
    /// The lease token.
    pub lease_token: String,
    /// Chunks to append.
    pub chunks: Vec<NewChunk>,
    /// A new checkpoint, if any.
    pub checkpoint: Option<serde_json::Value>,
    /// The report time; the lease is extended by the task's heartbeat timeout from here.
    pub now: Millis,
}

/// What a progress report learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgressOutcome {
    /// The attempt must stop.
    pub cancel_requested: bool,
    /// The seq of the last chunk written (0 if none so far).
    pub output_seq: u64,
    /// The execution's parent, whose output also received the chunks.
    pub parent_id: Option<Uuid>,
}

/// A timer row.
#[derive(Debug, Clone, PartialEq)]
pub struct TimerRecord {
    /// The execution.
    pub execution_id: Uuid,
    /// The timer.
    pub timer_id: String,
    /// When it fires.
    pub fire_at: Millis,
    /// `retry_activity`, or `inbox` for an input delivered from another execution.
    pub kind: String,
    /// For `inbox`: the input.
    pub payload: serde_json::Value,
}

/// A worker as its poll announces it; upserted into `workers`.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerUpsert {
    /// Its identity (the lease owner of what it claims).
    pub worker_id: String,
    /// The runtimes it has.
    pub runtimes: Vec<String>,
    /// The queue it serves.
    pub queue: String,
    /// How many attempts it runs at once (0 when it did not say).
    pub slots: u32,
    /// When it polled.
    pub now: Millis,
}

/// A worker as operators see it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerRecord {
    /// Its identity.
    pub worker_id: String,
    /// The runtimes it has.
    pub runtimes: Vec<String>,
    /// The queue it serves.
    pub queue: String,
    /// How many attempts it runs at once (0 when it did not say).
    pub slots: u32,
    /// How many leases it holds now.
    pub slots_in_use: u32,
    /// When a server first heard from it.
    pub first_seen: Millis,
    /// Its latest poll or heartbeat, on any server.
    pub last_seen: Millis,
}

/// A leased attempt handed back by its worker (graceful drain), with its last output.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseRecord {
    /// The execution.
    pub execution_id: Uuid,
    /// The activity.
    pub activity_id: String,
    /// The attempt.
    pub attempt: u32,
    /// The lease token.
    pub lease_token: String,
    /// Chunks to append before the hand-over.
    pub chunks: Vec<NewChunk>,
    /// The checkpoint the next worker resumes from, if newer than the stored one.
    pub checkpoint: Option<serde_json::Value>,
    /// The release time.
    pub now: Millis,
}

/// How a release ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// The attempt is claimable again, with its checkpoint and output saved.
    Released,
    /// Cancellation was requested meanwhile: nothing was written; report the attempt cancelled
    /// instead (a released task would never be claimed again, since claims skip cancelled tasks).
    CancelRequested,
}

/// A change some server committed, as the store's change feed reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A task became claimable.
    TaskReady,
    /// A timer or deadline was written.
    DeadlineAdded,
    /// An execution's row, history or output changed.
    Execution(Uuid),
    /// The feed lost its connection: changes may have been missed, so wake everything.
    Missed,
}

/// An execution whose stored row or state cannot be decoded, to be failed in place
/// ([`crate::store::Store::quarantine_execution`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Quarantine {
    /// The execution.
    pub execution_id: Uuid,
    /// The failure it ends with (code `corrupt_state`).
    pub failure: Failure,
    /// When.
    pub now: Millis,
}
