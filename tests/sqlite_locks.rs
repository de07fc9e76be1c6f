//! The embedded SQLite database is a file others may open too (a `sqlite3` shell, a backup): a
//! write of the server's that meets another connection's write lock waits for it (the store's
//! `busy_timeout`) instead of failing at once. A deferred transaction that reads before it writes
//! got `SQLITE_BUSY` without waiting (SQLite skips the busy handler where waiting could
//! deadlock): a start or a claim then failed with "database is locked".

#[allow(
    unused_imports,
    reason = "these tests use only the databases of the shared test code"
)]
mod common;

use std::time::Duration;

use sqlx::Connection;

use common::Db;
use common::engine::{claim, echo_agent_at_t0, engine_on, start_echo};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_and_claims_wait_for_another_connections_write_lock() {
    let db = Db::sqlite().await;
    let clock = echo_agent_at_t0(&db).await;
    let engine = engine_on(&db, &clock).await;
    let first = start_echo(&engine, &["one"]).await;

    let mut other = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    // A start commits its transition (the group commit's transaction); a claim leases a task
    // in a transaction of its own.
    let start = tokio::spawn({
        let engine = engine.clone();
        async move { start_echo(&engine, &["two"]).await }
    });
    let claim = tokio::spawn({
        let engine = engine.clone();
        async move { claim(&engine).await }
    });
    // Failing at once took a few milliseconds; waiting takes until the lock is released.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !start.is_finished() && !claim.is_finished(),
        "the start and the claim wait for the lock (a finished one failed: {:?} {:?})",
        start.is_finished(),
        claim.is_finished()
    );
    sqlx::query("COMMIT").execute(&mut other).await.unwrap();

    let second = start
        .await
        .expect("the start succeeds once the lock is free");
    let claimed = claim
        .await
        .expect("the claim succeeds once the lock is free");
    // The start may commit before the claim's transaction once the lock is free: one task
    // ready, or both.
    assert!(
        claimed.iter().any(|a| a.lease.execution_id == first),
        "{claimed:?}"
    );
    assert_ne!(second, first);
}
