//! The task queue: a task row per scheduled activity, claimed by workers under a lease that
//! progress reports extend, a release hands back and the sweeper expires. The SQL is in
//! `backend/tasks.rs`.

use async_trait::async_trait;
use uuid::Uuid;

use super::{NewChunk, StoreError};
use crate::domain::{Lease, Millis};

/// Claims, leases and the reads of task rows.
#[async_trait]
pub trait TaskQueue: Send + Sync {
    /// The task row of an execution's activity, with the bytes of output its execution has
    /// stored (`executions.output_bytes`), read together: what a worker's report is checked
    /// against before its transition, in one round trip.
    async fn get_task_for_report(
        &self,
        execution_id: Uuid,
        activity_id: &str,
    ) -> Result<Option<(TaskRecord, u64)>, StoreError>;

    /// The task row of an execution's activity.
    async fn get_task(
        &self,
        execution_id: Uuid,
        activity_id: &str,
    ) -> Result<Option<TaskRecord>, StoreError>;
    /// Leases up to `max` ready tasks of the given runtimes and queue to `worker`.
    async fn claim_tasks(&self, claim: &ClaimRequest) -> Result<Vec<TaskRecord>, StoreError>;
    /// Appends output chunks and saves a checkpoint for a leased attempt and extends its lease,
    /// all fenced by the lease. `None` when the lease is no longer held.
    async fn record_progress(
        &self,
        progress: &ProgressRecord,
    ) -> Result<Option<ProgressOutcome>, StoreError>;
    /// Hands a leased attempt back (graceful drain): appends its last output, saves its
    /// checkpoint and makes the task claimable again at once, the same attempt, all fenced by the
    /// lease. `None` when the lease is no longer held.
    async fn release_task(
        &self,
        release: &ReleaseRecord,
    ) -> Result<Option<ReleaseOutcome>, StoreError>;
    /// Tasks whose schedule-to-start, start-to-close or heartbeat deadline passed at `now`.
    async fn expired_tasks(&self, now: Millis, limit: u32) -> Result<Vec<TaskRecord>, StoreError>;
    /// The tasks `claim` would lease, without leasing them: the first `claim.max` ready ones
    /// of its runtimes and queue that its policy has not refused, so a worker's policy can be
    /// checked against them before the claim.
    async fn claimable_tasks(&self, claim: &ClaimRequest) -> Result<Vec<TaskRecord>, StoreError>;
    /// Records that the policy with `fingerprint` refuses a task, so claims under that policy
    /// skip it from now on (others still take it).
    async fn refuse_task(
        &self,
        execution_id: Uuid,
        activity_id: &str,
        fingerprint: &str,
    ) -> Result<(), StoreError>;
}

/// Where a task row stands; stored as its [`TaskStatus::as_str`] text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    /// Claimable (once visible) by a worker of its runtime and queue.
    Ready,
    /// Held by a worker under a lease.
    Leased,
    /// Waiting for its retry timer; not claimable.
    Backoff,
}

impl TaskStatus {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Ready => "ready",
            TaskStatus::Leased => "leased",
            TaskStatus::Backoff => "backoff",
        }
    }

    /// The status a stored text names; `None` for any other text.
    pub fn parse(s: &str) -> Option<TaskStatus> {
        match s {
            "ready" => Some(TaskStatus::Ready),
            "leased" => Some(TaskStatus::Leased),
            "backoff" => Some(TaskStatus::Backoff),
            _ => None,
        }
    }
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
    /// Ready, leased or waiting for its retry.
    pub status: TaskStatus,
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
    /// The directory the current lease's attempt works in, once its worker named it.
    pub workspace: Option<String>,
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
    /// The fingerprint of the worker's policy: tasks that policy refused are not claimed.
    /// `None` for a worker that advertises no policy.
    pub policy: Option<String>,
}

/// The earliest deadline of claimed (leased) tasks: a lease expiry or an attempt deadline.
/// `None` when one has no lease expiry (a claim always writes one) or there are none: then the
/// caller cannot say when, and wakes the sweeper.
pub fn lease_deadline(tasks: &[TaskRecord]) -> Option<Millis> {
    let each = tasks.iter().map(|task| {
        let expires = task.lease_expires_at?;
        Some(task.attempt_deadline.map_or(expires, |d| d.min(expires)))
    });
    // `None` sorts first, so one unknown deadline makes the whole unknown.
    each.min().flatten()
}

impl ClaimRequest {
    /// What a task's `refused_by` (`|fp|fp|...`) contains when this claim's policy refused it;
    /// empty without a policy, which matches no task. It is found with `instr`/`strpos`, not
    /// `LIKE`: SQLite re-prepares a statement whose `LIKE` pattern is a bound parameter every
    /// time the parameter is bound again, which made every claim parse and plan its SQL anew.
    pub fn refused_marker(&self) -> String {
        match &self.policy {
            Some(fingerprint) => format!("|{fingerprint}|"),
            None => String::new(),
        }
    }
}

/// Progress of a leased attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressRecord {
    /// The index of `chunks[0]` among the chunks this lease has sent; chunks below the count
    /// already stored are a resent batch and are skipped. `None` appends every chunk.
    pub first_chunk: Option<u64>,
    /// The attempt reporting, and the token it was handed: the write happens only while the
    /// task is still leased to exactly this attempt and token.
    pub lease: Lease,
    /// Chunks to append.
    pub chunks: Vec<NewChunk>,
    /// A new checkpoint, if any.
    pub checkpoint: Option<serde_json::Value>,
    /// The stored objects the checkpoint refers to, written only if the lease holds.
    pub objects: Vec<super::NewObject>,
    /// The directory the attempt works in, once named (kept when `None`).
    pub workspace: Option<String>,
    /// The report time; the lease is extended by the task's heartbeat timeout from here.
    pub now: Millis,
    /// Chunks that would take the execution's output past this many bytes are refused
    /// (`StoreError::OutputLimit`) and nothing is written.
    pub max_output_bytes: u64,
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

/// A leased attempt handed back by its worker (graceful drain), with its last output.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseRecord {
    /// The attempt reporting, and the token it was handed: the write happens only while the
    /// task is still leased to exactly this attempt and token.
    pub lease: Lease,
    /// Chunks to append before the hand-over.
    pub chunks: Vec<NewChunk>,
    /// The checkpoint the next worker resumes from, if newer than the stored one.
    pub checkpoint: Option<serde_json::Value>,
    /// The stored objects the checkpoint refers to, written only if the lease holds.
    pub objects: Vec<super::NewObject>,
    /// The release time.
    pub now: Millis,
    /// As for progress: chunks over the execution's output limit are refused.
    pub max_output_bytes: u64,
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
