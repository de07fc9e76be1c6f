//! What runs the store rather than one table: migrations, how many commits may run at once, row
//! counts for operators and tests, and the change feed. The SQL is in `backend/admin.rs`.

use async_trait::async_trait;
use uuid::Uuid;

use super::StoreError;
use crate::domain::Millis;

/// Migrations, commit concurrency, row counts and the change feed.
#[async_trait]
pub trait Admin: Send + Sync {
    /// Applies pending migrations.
    async fn migrate(&self) -> Result<(), StoreError>;
    /// How many `commit` calls may run at once: 1 for SQLite (one writer), more for PostgreSQL.
    fn concurrent_commits(&self) -> usize;
    /// Whether group commits run on a thread of their own rather than among the server's other
    /// tasks. SQLite's statements are messages to its database thread, and each answer wakes
    /// the commit that waits for it: on a thread that waits for nothing else it goes on at once
    /// instead of queuing behind request handlers and followers. PostgreSQL's connections are
    /// sockets driven by the server's runtime, where its commits stay (a thread of their own
    /// adds a hop to every answer).
    fn commits_on_own_thread(&self) -> bool;
    /// How many statements the commit path (`Executions::commit`) has sent to the database
    /// since the store was opened, BEGIN and COMMIT included: a group commit costs a fixed
    /// number of them however many transitions it carries, which tests check with this.
    fn statements_issued(&self) -> u64;
    /// How many times the commit path has waited on the database since the store was opened:
    /// queries sent to PostgreSQL, calls to SQLite's database thread (each a thread hop there
    /// and back). On SQLite several statements go in one call (`backend/held.rs`).
    fn round_trips_issued(&self) -> u64;
    /// Rows in `table` (for tests and operators: "bad input writes nothing").
    async fn count_rows(&self, table: &str) -> Result<i64, StoreError>;
    /// Changes committed by any process on this database, for cross-server wake-ups.
    /// `None` when the store has no such feed: SQLite has one server, whose in-process wake-ups
    /// already see every change.
    async fn changes(&self) -> Result<Option<ChangeFeed>, StoreError> {
        Ok(None)
    }
}

/// A stream of [`Change`]s; it ends only when the store is closed.
pub type ChangeFeed = std::pin::Pin<Box<dyn futures::Stream<Item = Change> + Send>>;

/// A change some server committed, as the store's change feed reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A task became claimable.
    TaskReady,
    /// A timer or deadline was written, due at the time given (epoch milliseconds; the earliest
    /// of its transaction), or `None` when the sender did not say.
    DeadlineAdded(Option<Millis>),
    /// An execution's row, history or output changed.
    Execution(Uuid),
    /// The feed lost its connection: changes may have been missed, so wake everything.
    Missed,
}
