//! Executions: the commit of transitions, execution rows and their request ids, lists, history
//! and output. The SQL is in `backend/executions.rs` (reads and the commit) and
//! `backend/transition.rs` (what one transition writes).

use std::collections::BTreeMap;

use async_trait::async_trait;
use uuid::Uuid;

use super::{CommitOutcome, StoreError, Transition};
use crate::domain::{ExecutionKind, ExecutionStatus, Failure, HistoryEvent, Millis, Usage};

/// Executions, their history and their output.
#[async_trait]
pub trait Executions: Send + Sync {
    /// Writes transitions; each gets its own outcome, in the order given. Transitions of one
    /// execution apply in their order; those of different executions are independent. See the
    /// module comment of [`crate::store`].
    async fn commit(&self, transitions: &[Transition]) -> Result<Vec<CommitOutcome>, StoreError> {
        let watched = vec![false; transitions.len()];
        let outcomes = self.commit_watched(transitions, &watched).await?;
        Ok(outcomes.into_iter().map(|(outcome, _)| outcome).collect())
    }
    /// [`Executions::commit`], also saying what each committed update made of its execution's
    /// row ([`RowAfter`]), for the followers on the committing server: with the whole row when
    /// `watched[i]` and the row closed or waits, so that their last event needs no read.
    async fn commit_watched(
        &self,
        transitions: &[Transition],
        watched: &[bool],
    ) -> Result<Vec<(CommitOutcome, Option<RowAfter>)>, StoreError>;
    /// One execution row.
    async fn get_execution(&self, id: Uuid) -> Result<Option<ExecutionRecord>, StoreError>;
    /// The bytes of output stored for an execution (see `chunk_bytes`); 0 when there is none.
    async fn output_bytes(&self, id: Uuid) -> Result<u64, StoreError>;
    /// The id of the execution started with `request_id` in `namespace`.
    async fn find_request(
        &self,
        namespace: &str,
        request_id: &str,
    ) -> Result<Option<Uuid>, StoreError>;
    /// Executions matching `filter`, newest first, before `before` (exclusive).
    async fn list_executions(
        &self,
        filter: &ExecutionFilter,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<ExecutionRecord>, StoreError>;
    /// History events with seq > `after_seq`, in order, at most `limit`.
    async fn history(
        &self,
        id: Uuid,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError>;
    /// Output chunks with seq > `after_seq`, in order, at most `limit`.
    async fn output(
        &self,
        id: Uuid,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<StoredChunk>, StoreError>;
    /// Fails an open execution whose row or machine state cannot be decoded, without decoding
    /// it: marks the row `FAILED` with `q.failure`, replaces the unreadable state by a readable
    /// note that quotes its beginning, appends `ExecutionFailed`, deletes its tasks and timers
    /// (so polls and sweeps never meet it again) and tells its parent, if any, that it closed.
    /// False when the execution is missing or already closed (nothing is written).
    async fn quarantine_execution(&self, q: &Quarantine) -> Result<bool, StoreError>;
}

/// What a committed update made of its execution's row, as the commit's own statement returned
/// it: the followers on the committing server take it instead of reading a page.
#[derive(Debug, Clone, PartialEq)]
pub struct RowAfter {
    /// The row's status after the commit.
    pub status: ExecutionStatus,
    /// The seq of the execution's last chunk after the commit.
    pub output_seq: u64,
    /// The whole row (labels included) when the commit was asked for it and the execution
    /// closed or waits.
    pub record: Option<Box<ExecutionRecord>>,
}

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
    /// Emitted again by the attempt that resumed after the one that emitted it (readers skip
    /// it unless they ask for every chunk).
    pub superseded: bool,
}

/// An execution whose stored row or state cannot be decoded, to be failed in place
/// ([`Executions::quarantine_execution`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Quarantine {
    /// The execution.
    pub execution_id: Uuid,
    /// The failure it ends with (code `corrupt_state`).
    pub failure: Failure,
    /// When.
    pub now: Millis,
}
