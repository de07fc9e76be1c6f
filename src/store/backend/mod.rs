//! The SQLite and PostgreSQL stores. Both run the same SQL text (`$1..$N` placeholders,
//! `RETURNING` and `ON CONFLICT` work in both), generated into each by one macro per concern, in
//! the file of the same name: `catalog.rs` (agents, teams), `executions.rs` (commit, execution
//! rows, history, output, quarantine), `transition.rs`, `fences.rs` and `committed.rs` (what a group
//! commit checks and writes, set-based, cut into statements by `plan.rs`, the rows they carry
//! `packed.rs`'s; on PostgreSQL a round in
//! one statement by `single.rs`, and a whole group commit with its fences by `alone.rs`; on SQLite
//! the statements nobody reads back held for the next call, `held.rs`), `chunks.rs` (output writes of leases),
//! `tasks.rs` (claim, progress, release, expiry: the leases), `timers.rs`, `workers.rs`,
//! `runtimes.rs` (registrations of external runtimes), `objects.rs` (stored checkpoints: one
//! insert per write, chains read back), `admin.rs` (migrations, row counts, change feed),
//! `metrics.rs` (gauges read at scrape time),
//! `stats.rs` (grouped counts and percentiles for `GetStats`), `retention.rs` (deleting closed
//! trees and the objects only they referred to), with the shared columns and row decoders in
//! `rows.rs` and the paged output read in `output_page.rs`. The dialects differ in row locks
//! (`FOR UPDATE [SKIP LOCKED]` in PostgreSQL, where SQLite has its single writer instead), in how
//! a statement reads the rows of a JSON array parameter (`jsonb_each` / `jsonb_array_elements`)
//! and spells a UUID, in how many commits may run at once, in the change feed (PostgreSQL
//! `LISTEN`/`NOTIFY`) and in the column types of the migrations.

#[macro_use]
mod rows;
#[macro_use]
mod held;
#[macro_use]
mod chunks;
#[macro_use]
mod transition;
#[macro_use]
mod fences;
#[macro_use]
mod committed;
#[macro_use]
mod single;
#[macro_use]
mod alone;
#[macro_use]
mod objects;
#[macro_use]
mod executions;
#[macro_use]
mod tasks;
#[macro_use]
mod timers;
#[macro_use]
mod workers;
#[macro_use]
mod runtimes;
#[macro_use]
mod admin;
#[macro_use]
mod catalog;
#[macro_use]
mod metrics;
#[macro_use]
mod stats;
#[macro_use]
mod retention;
#[macro_use]
mod output_page;
mod json_param;
mod notify;
mod packed;
mod plan;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

use super::{ChangeFeed, Store, StoreError};

/// How hard a commit tries to survive a power loss. Every setting survives a crash of the Cairn
/// process itself; they differ on a crash of the machine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// Every acknowledged transition is on disk (SQLite `synchronous=FULL`, PostgreSQL
    /// `synchronous_commit=on`). The default.
    #[default]
    Full,
    /// SQLite `synchronous=NORMAL` / PostgreSQL `synchronous_commit=off`: the last transitions
    /// before a power loss may be lost (never corrupted), for fewer fsyncs.
    Relaxed,
}

impl FromStr for Durability {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "full" => Ok(Durability::Full),
            "relaxed" => Ok(Durability::Relaxed),
            other => Err(format!(
                "unknown durability `{other}`: use `full` or `relaxed`"
            )),
        }
    }
}

/// SQLite through sqlx: one writer connection (SQLite allows one writer) and a pool of readers,
/// in WAL mode so readers never block the writer.
#[derive(Clone)]
pub struct SqliteStore {
    write: SqlitePool,
    /// Where group commits run: the writer.
    commits: SqlitePool,
    read: SqlitePool,
    /// Statements the commit path has sent (BEGIN and COMMIT included).
    statements: Arc<AtomicU64>,
    /// Calls the commit path has made to the connection's database thread.
    round_trips: Arc<AtomicU64>,
}

/// PostgreSQL through sqlx.
#[derive(Clone)]
pub struct PgStore {
    write: PgPool,
    /// Where group commits run: connections planning every statement once (generic plans) and
    /// without sequential scans, for the whole session, since a batch written in one statement
    /// (`alone.rs`) has no transaction to set them in (see `begin_commit` below).
    commits: PgPool,
    read: PgPool,
    /// Statements the commit path has sent (BEGIN and COMMIT included; notifications go out
    /// after it, through `outbox`).
    statements: Arc<AtomicU64>,
    /// Queries the commit path has sent.
    round_trips: Arc<AtomicU64>,
    /// Sends the change notifications of committed group commits.
    outbox: notify::Outbox,
    /// The backends of this store's connections, whose notifications its change feed skips.
    own: notify::OwnBackends,
}

impl SqliteStore {
    /// Opens (creating if missing) the SQLite database at `url` (`sqlite://PATH`).
    pub async fn connect(url: &str, durability: Durability) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match durability {
                Durability::Full => SqliteSynchronous::Full,
                Durability::Relaxed => SqliteSynchronous::Normal,
            })
            .busy_timeout(Duration::from_secs(30));
        // No liveness ping before each use of a pooled connection: an SQLite connection is a
        // thread of this process that cannot go away, and the ping is one more message to that
        // thread and back for every transaction.
        let write = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        let read = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(8)
            .connect_with(options.read_only(true))
            .await?;
        Ok(SqliteStore {
            commits: write.clone(),
            write,
            read,
            statements: Arc::default(),
            round_trips: Arc::default(),
        })
    }

    /// Begins a write transaction on the writer, taking SQLite's write lock at `BEGIN`: a
    /// deferred transaction that reads before it writes, while another connection to the file
    /// holds the lock (a `sqlite3` shell, a backup), gets `SQLITE_BUSY` at once (SQLite skips
    /// the busy handler where waiting could deadlock); an immediate one waits `busy_timeout`.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.write.begin_with("BEGIN IMMEDIATE").await
    }
}

impl PgStore {
    /// Begins a write transaction (rows are locked as they are written).
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.write.begin().await
    }

    /// Connects to the PostgreSQL database at `url`.
    pub async fn connect(url: &str, durability: Durability) -> Result<Self, StoreError> {
        let mut options = PgConnectOptions::from_str(url)?;
        if durability == Durability::Relaxed {
            options = options.options([("synchronous_commit", "off")]);
        }
        let own = notify::OwnBackends::default();
        let pool = |size: u32| {
            PgPoolOptions::new()
                .max_connections(size)
                .acquire_timeout(Duration::from_secs(30))
                // Connections are kept (the pools are small), so the backends the change feed
                // knows as this store's own stay its own.
                .idle_timeout(None)
                .max_lifetime(None)
                .after_connect({
                    let own = own.clone();
                    move |conn, _| {
                        let own = own.clone();
                        Box::pin(async move { own.add(conn).await })
                    }
                })
        };
        // One more than the commits that run at once (`concurrent_commits`), for a commit made
        // outside the group committer.
        let commits = pool(5)
            .connect_with(options.clone().options([
                ("enable_seqscan", "off"),
                ("plan_cache_mode", "force_generic_plan"),
            ]))
            .await?;
        let pool = pool(16).connect_with(options).await?;
        Ok(PgStore {
            commits,
            outbox: notify::Outbox::start(pool.clone()),
            write: pool.clone(),
            read: pool,
            statements: Arc::default(),
            round_trips: Arc::default(),
            own,
        })
    }
}

/// Opens the store the URL names: `sqlite://PATH` (created if missing) or `postgres://...`.
pub async fn open(url: &str, durability: Durability) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url, durability).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect(url, durability).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_string()))
    }
}

/// SQLite has no change feed: its one server sees every change in-process.
async fn no_changes(_store: &SqliteStore) -> Result<Option<ChangeFeed>, StoreError> {
    Ok(None)
}

/// PostgreSQL's change feed: `LISTEN` on a connection of its own.
async fn pg_changes(store: &PgStore) -> Result<Option<ChangeFeed>, StoreError> {
    Ok(Some(
        notify::pg_changes(&store.write, store.own.clone()).await?,
    ))
}

/// The SQLite store's queries: every concern's macro, expanded with SQLite's dialect (no row
/// locks, since SQLite has its single writer).
mod sqlite {
    use super::{SqliteStore, no_changes, notify};

    sql_rows!(sqlx::Sqlite, row_locks = false);
    sql_held!(hold = true);
    sql_chunks!();
    // `jsonb_each`: each row's object is handed to `->>` as JSONB, not printed back to JSON text
    // and parsed again for every field a statement reads (which `json_each` did).
    sql_transition!(
        lock = "",
        rows = "jsonb_each($1)",
        uuid = ("unhex(", ", '-')"),
        // A row's JSON values nested: `->` hands each on as text (a TEXT column).
        json_as_text = false,
        infinity = ("9e999", "-9e999"),
        object_agg = "json_group_object"
    );
    sql_fences!(lock = "");
    sql_committed!();
    sql_single!();
    sql_alone!();
    sql_objects!(SqliteStore, octets = "length(CAST(data AS BLOB))");
    // SQLite keeps `data` as TEXT; its length in bytes is that of the same value as a BLOB. The
    // narrow page: a follower's read of the row is a call into this process, cheaper than
    // the wide page's columns on every page.
    sql_output_reads!(
        SqliteStore,
        query = narrow_page_query!("length(CAST(data AS BLOB))")
    );
    sql_executions!(
        SqliteStore,
        lock = "",
        begin_commit = "BEGIN IMMEDIATE",
        notify = notify::send_sqlite,
        notify_after = notify::after_sqlite,
        object_agg = "json_group_object"
    );
    sql_tasks!(
        SqliteStore,
        lock = "",
        skip_locked = "",
        notify = notify::send_sqlite,
        json_texts = ("SELECT value FROM json_each(", ")"),
        new_token = "lower(hex(randomblob(16)))",
        instr = "instr"
    );
    sql_timers!(SqliteStore);
    sql_workers!(SqliteStore);
    sql_runtimes!(SqliteStore);
    sql_admin!(
        SqliteStore,
        migrations = "./migrations/sqlite",
        concurrent_commits = 1,
        own_thread = true,
        changes = no_changes
    );
    sql_catalog!(SqliteStore);
    sql_metrics!(SqliteStore);
    sql_stats!(SqliteStore, percentiles = super::stats::SQLITE_PERCENTILES);
    sql_retention!(
        SqliteStore,
        skip_locked = "",
        texts = "SELECT value FROM json_each($1)"
    );
}

/// The PostgreSQL store's queries: every concern's macro, expanded with PostgreSQL's dialect
/// (row locks, `SKIP LOCKED` claims, `LISTEN`/`NOTIFY`).
mod postgres {
    use super::{PgStore, notify, pg_changes};

    sql_rows!(sqlx::Postgres, row_locks = true);
    sql_held!(hold = false);
    sql_chunks!();
    sql_transition!(
        lock = " FOR UPDATE",
        rows = "jsonb_array_elements(CAST($1 AS JSONB)) AS j(value)",
        uuid = ("CAST(", " AS UUID)"),
        // A row's JSON values as their text, checked and stored as it is (a JSON column,
        // `0016`): nested, they would be parsed into the array's JSONB and printed back.
        json_as_text = true,
        infinity = ("Infinity", "-Infinity"),
        object_agg = "jsonb_object_agg"
    );
    sql_fences!(lock = " FOR UPDATE");
    sql_committed!();
    sql_single!();
    sql_alone!();
    sql_objects!(PgStore, octets = "octet_length(data)");
    // PostgreSQL keeps `data` as JSONB; the size that matters is that of the JSON text sent on.
    // The wide page: the row at the end of the output saves a follower a round trip.
    sql_output_reads!(
        PgStore,
        query = wide_page_query!("octet_length(data::text)", "jsonb_object_agg")
    );
    sql_executions!(
        PgStore,
        lock = " FOR UPDATE",
        // Every statement of a group commit reaches rows by key from the JSON array it is
        // given, which an index does in O(batch); PostgreSQL cannot see into the array (it
        // assumes 100 rows), and while a table is small (or its statistics are older than its
        // growth) it plans a sequential scan with a hash join, and keeps that plan cached on
        // the connection as the table grows: in a W1 run, every update scanned all of
        // `executions` twice. And each statement is planned once per connection, not at every
        // bind: PostgreSQL plans a prepared statement afresh for its first five executions (and
        // for good if the generic plan looks no cheaper), which for a round's one statement
        // (`single.rs`) took up to 3.5 ms of a W2 commit's bind. In one round trip with the BEGIN.
        begin_commit =
            "BEGIN; SET LOCAL enable_seqscan = off; SET LOCAL plan_cache_mode = force_generic_plan",
        notify = notify::send_pg,
        notify_after = notify::after_pg,
        object_agg = "jsonb_object_agg"
    );
    sql_tasks!(
        PgStore,
        lock = " FOR UPDATE",
        skip_locked = " FOR UPDATE SKIP LOCKED",
        notify = notify::send_pg,
        json_texts = ("SELECT jsonb_array_elements_text(", ")"),
        new_token = "replace(gen_random_uuid()::text, '-', '')",
        instr = "strpos"
    );
    sql_timers!(PgStore);
    sql_workers!(PgStore);
    sql_runtimes!(PgStore);
    sql_admin!(
        PgStore,
        migrations = "./migrations/postgres",
        // 4 since a round is one statement (`single.rs`): a commit is shorter, and fewer at once
        // make larger batches (W1 4.4 transitions a commit against 2.6 with 8, PostgreSQL's CPU
        // per execution 1.6-1.8 ms against 2.1; 14 measured worse still).
        concurrent_commits = 4,
        own_thread = false,
        changes = pg_changes
    );
    sql_catalog!(PgStore);
    sql_metrics!(PgStore);
    sql_stats!(PgStore, percentiles = super::stats::PG_PERCENTILES);
    sql_retention!(
        PgStore,
        skip_locked = " FOR UPDATE SKIP LOCKED",
        texts = "SELECT jsonb_array_elements_text(CAST($1 AS JSONB))"
    );
}
