//! Storage: the narrow traits the engine and the API use, with SQLite and PostgreSQL
//! implementations that share their SQL text and one contract test suite.
//!
//! Architecture invariant: one transition is one transaction. [`Store::commit`] writes everything a
//! transition produces (history events, the execution row, output chunks, task and timer rows)
//! atomically, and checks the transition's preconditions (the row version and the reporting
//! attempt's fence) inside the same transaction. It takes a slice so that several transitions can
//! share one commit (group commit). Each gets its own outcome: a transition refused by its
//! version, a fence or its request id writes nothing (every check comes before its first write),
//! so it leaves the others as they are; a database error fails the whole call.

mod backend;
mod output_page;
mod records;

use async_trait::async_trait;
use uuid::Uuid;

use crate::domain::{Agent, Millis, Team};

pub use backend::{Durability, PgStore, SqliteStore, open};
pub use output_page::{OutputPage, OutputReads};
pub use records::*;

/// Every table of the schema, in both dialects: what `count_rows` may count, and what the tests'
/// "a refused request wrote nothing" checks compare. A contract test holds this list equal to the
/// database's own catalog, so a table added by a migration cannot be missing here.
pub const TABLES: &[&str] = &[
    "agents",
    "executions",
    "execution_labels",
    "history_events",
    "tasks",
    "timers",
    "output_chunks",
    "workers",
    "teams",
    "team_members",
];

/// What went wrong in storage.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused the write (e.g. an active agent with that name exists).
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The database URL is not one Cairn understands.
    #[error("unsupported database URL `{0}`: use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    /// Stored data could not be decoded (a bug or a manual edit).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// A progress report's first chunk lies beyond the chunks its lease has stored: storing it
    /// would leave a gap in the output. Nothing was written.
    #[error(
        "first_chunk_index {first} but only {stored} chunks of this lease are stored; \
         send every chunk from index {stored} on"
    )]
    ChunkGap {
        /// The index the report named.
        first: u64,
        /// How many chunks of the lease are stored.
        stored: u64,
    },
    /// An update of an agent or team was made from a version that is no longer the stored one
    /// (someone changed it meanwhile). Nothing was written.
    #[error("{}", version_conflict_message(kind, name, *expected, *current))]
    VersionConflict {
        /// `agent` or `team`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The version the change was made from.
        expected: u64,
        /// The stored version; `None` when the row no longer exists.
        current: Option<u64>,
    },
    /// The database failed; retryable when the cause is transient.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

fn version_conflict_message(kind: &str, name: &str, expected: u64, current: Option<u64>) -> String {
    match current {
        Some(current) => format!(
            "{kind} `{name}` changed since version {expected} (now {current}); \
             read it again and retry"
        ),
        None => format!("{kind} `{name}` no longer exists; nothing was written"),
    }
}

/// How an agent is named in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentKey {
    /// By id.
    Id(Uuid),
    /// By name (among active agents).
    Name(String),
}

/// Storage of agents, executions, history, output, tasks and timers.
#[async_trait]
pub trait Store: OutputReads + Send + Sync + 'static {
    /// Applies pending migrations.
    async fn migrate(&self) -> Result<(), StoreError>;

    /// Inserts an agent (with the version it carries, 1 for a new one); `AlreadyExists` when an
    /// active agent of the namespace has its name.
    async fn insert_agent(&self, agent: &Agent) -> Result<(), StoreError>;
    /// Overwrites an agent's mutable fields (runtime, model, configuration, status, updated_at)
    /// if its stored version is still `agent.version`, the version the change was made from,
    /// and increments the stored version to `agent.version + 1`. `VersionConflict` when the
    /// stored version differs, `AlreadyExists` when the change would make a second active agent
    /// of the name; either way nothing is written.
    async fn update_agent(&self, agent: &Agent) -> Result<(), StoreError>;
    /// One agent by id (whatever its status) or by active name.
    async fn get_agent(&self, namespace: &str, key: &AgentKey)
    -> Result<Option<Agent>, StoreError>;
    /// The agents of a namespace with the given ids, whatever their status, in id order; ids
    /// with no agent are left out. One read however many ids (for names in views of teams).
    async fn get_agents(&self, namespace: &str, ids: &[Uuid]) -> Result<Vec<Agent>, StoreError>;
    /// The newest agent (highest id) of a namespace named `name`, whatever its status: names
    /// resolve among active agents only, and this says whether a name that does not resolve is
    /// an archived agent's.
    async fn newest_agent_named(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Agent>, StoreError>;
    /// Agents of a namespace ordered by id, after `after`.
    async fn list_agents(
        &self,
        namespace: &str,
        include_archived: bool,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Agent>, StoreError>;

    /// Writes transitions; each gets its own outcome, in the order given. Transitions of one
    /// execution apply in their order; those of different executions are independent. See the
    /// module comment.
    async fn commit(&self, transitions: &[Transition]) -> Result<Vec<CommitOutcome>, StoreError>;
    /// One execution row.
    async fn get_execution(&self, id: Uuid) -> Result<Option<ExecutionRecord>, StoreError>;
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
    /// Tasks whose schedule-to-start, start-to-close or heartbeat deadline passed at `now`.
    async fn expired_tasks(&self, now: Millis, limit: u32) -> Result<Vec<TaskRecord>, StoreError>;
    /// Timers due at `now`.
    async fn due_timers(&self, now: Millis, limit: u32) -> Result<Vec<TimerRecord>, StoreError>;
    /// The earliest future moment a timer fires or a deadline passes, if any.
    async fn next_deadline(&self) -> Result<Option<Millis>, StoreError>;
    /// Deletes one timer (an inbox input its receiver can no longer take).
    async fn delete_timer(&self, execution_id: Uuid, timer_id: &str) -> Result<(), StoreError>;

    /// Inserts a team with its members (and the version it carries, 1 for a new one);
    /// `AlreadyExists` when an active team has its name.
    async fn insert_team(&self, team: &Team) -> Result<(), StoreError>;
    /// Overwrites a team's strategy, configuration, status, updated_at and members if its
    /// stored version is still `team.version`, and increments the stored version to
    /// `team.version + 1`; `VersionConflict` (nothing written) when the stored version differs.
    async fn update_team(&self, team: &Team) -> Result<(), StoreError>;
    /// One team by id or by active name, with its members in order.
    async fn get_team(&self, namespace: &str, key: &AgentKey) -> Result<Option<Team>, StoreError>;
    /// Teams of a namespace ordered by id, after `after`.
    async fn list_teams(
        &self,
        namespace: &str,
        include_archived: bool,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Team>, StoreError>;

    /// How many `commit` calls may run at once: 1 for SQLite (one writer), more for PostgreSQL.
    fn concurrent_commits(&self) -> usize;

    /// Rows in `table` (for tests and operators: "bad input writes nothing").
    async fn count_rows(&self, table: &str) -> Result<i64, StoreError>;

    /// Hands a leased attempt back (graceful drain): appends its last output, saves its
    /// checkpoint and makes the task claimable again at once, the same attempt, all fenced by the
    /// lease. `None` when the lease is no longer held.
    async fn release_task(
        &self,
        release: &ReleaseRecord,
    ) -> Result<Option<ReleaseOutcome>, StoreError>;
    /// Fails an open execution whose row or machine state cannot be decoded, without decoding
    /// it: marks the row `FAILED` with `q.failure`, replaces the unreadable state by a readable
    /// note that quotes its beginning, appends `ExecutionFailed`, deletes its tasks and timers
    /// (so polls and sweeps never meet it again) and tells its parent, if any, that it closed.
    /// False when the execution is missing or already closed (nothing is written).
    async fn quarantine_execution(&self, q: &Quarantine) -> Result<bool, StoreError>;
    /// Records that a worker polled (insert or update of its `workers` row).
    async fn upsert_worker(&self, worker: &WorkerUpsert) -> Result<(), StoreError>;
    /// Workers last seen (polling or heartbeating, on any server) at or after `seen_since`,
    /// ordered by id.
    async fn list_workers(&self, seen_since: Millis) -> Result<Vec<WorkerRecord>, StoreError>;
    /// Changes committed by any process on this database, for cross-server wake-ups.
    /// `None` when the store has no such feed: SQLite has one server, whose in-process wake-ups
    /// already see every change.
    async fn changes(&self) -> Result<Option<ChangeFeed>, StoreError> {
        Ok(None)
    }
}

/// A stream of [`Change`]s; it ends only when the store is closed.
pub type ChangeFeed = std::pin::Pin<Box<dyn futures::Stream<Item = Change> + Send>>;
