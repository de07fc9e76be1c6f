//! Storage: the narrow traits the engine and the API use, with SQLite and PostgreSQL
//! implementations that share their SQL text and one contract test suite.
//!
//! One trait per concern, each in its own file with its records, its SQL in the file of the same
//! name under `backend/`: [`Catalog`] (agents and teams), [`Executions`] (the commit of
//! transitions, execution rows, history, output), [`TaskQueue`] (claims and leases), [`Timers`],
//! [`Workers`], [`Runtimes`] (external runtimes), [`Admin`] (migrations, row counts, the change
//! feed), [`OutputReads`] (paged output for followers), [`Stats`] (grouped counts for `GetStats`)
//! and [`Objects`] (stored checkpoints). [`Store`] is all of them at once.
//!
//! Architecture invariant: one transition is one transaction. [`Executions::commit`] writes everything a
//! transition produces (history events, the execution row, output chunks, task and timer rows)
//! atomically, and checks the transition's preconditions (the row version and the reporting
//! attempt's fence) inside the same transaction. It takes a slice so that several transitions can
//! share one commit (group commit). Each gets its own outcome: a transition refused by its
//! version, a fence or its request id writes nothing (every check comes before its first write),
//! so it leaves the others as they are; a database error fails the whole call.

mod admin;
mod backend;
mod catalog;
mod executions;
mod metrics;
mod objects;
mod output_page;
mod retention;
mod runtimes;
mod stats;
mod tasks;
mod timers;
mod transition;
mod workers;

pub use admin::{Admin, Change, ChangeFeed};
pub use backend::{Durability, PgStore, SqliteStore, open};
pub use catalog::{AgentKey, Catalog};
pub use executions::{
    ExecutionFilter, ExecutionRecord, Executions, Quarantine, RowAfter, StoredChunk, StoredEvent,
};
pub use metrics::{Gauges, TasksWaiting};
pub use objects::{NewObject, Objects, StoredObject};
pub use output_page::{OutputPage, OutputReads};
pub use retention::{Deleted, NamespaceFilter, Retention};
pub use runtimes::{RuntimeRecord, RuntimeUpsert, Runtimes};
pub use stats::{AgentCounts, ExecutionStats, Stats, StatsGroup};
pub use tasks::{
    ClaimRequest, ProgressOutcome, ProgressRecord, ReleaseOutcome, ReleaseRecord, TaskQueue,
    TaskRecord, TaskStatus, lease_deadline,
};
pub use timers::{TimerKind, TimerRecord, Timers};
pub use transition::{
    CommitOutcome, Fence, NewChunk, NewExecution, NewLease, NewTask, RowState, RowWrite,
    SnapshotJson, TaskOp, TimerOp, Transition, chunk_bytes,
};
pub use workers::{WorkerRecord, WorkerUpsert, Workers};

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
    "runtimes",
    "objects",
    "object_refs",
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
    /// Progress or a release whose chunks would take the execution's stored output past the
    /// server's `--max-output-bytes`. Nothing was written.
    #[error(
        "these chunks would bring the execution's output to {total} bytes; the limit is {limit} \
         bytes per execution (server setting --max-output-bytes); nothing was written"
    )]
    OutputLimit {
        /// The execution's output in bytes with these chunks.
        total: u64,
        /// The limit.
        limit: u64,
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

/// Every concern of the store together: what the engine and the API hold as `Arc<dyn Store>`.
/// Code that needs one concern can take its narrow trait instead.
pub trait Store:
    Catalog
    + Executions
    + TaskQueue
    + Timers
    + Workers
    + Runtimes
    + Admin
    + OutputReads
    + Gauges
    + Stats
    + Objects
    + Retention
    + Send
    + Sync
    + 'static
{
}

impl<T> Store for T where
    T: Catalog
        + Executions
        + TaskQueue
        + Timers
        + Workers
        + Runtimes
        + Admin
        + OutputReads
        + Gauges
        + Stats
        + Objects
        + Retention
        + Send
        + Sync
        + 'static
{
}
