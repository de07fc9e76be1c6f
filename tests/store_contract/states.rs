//! States stored as text (a task's status, a timer's kind) read back as their enums, and a value
//! the store does not know (a manual edit, a newer version's row) is `Corrupt`, naming what could
//! not be read and quoting the value, rather than a guess or a database failure. Also: each
//! concern's narrow trait serves on its own.

use cairn::domain::Millis;
use cairn::store::{
    CommitOutcome, Executions, StoreError, TaskOp, TaskQueue, TaskStatus, TimerKind, TimerOp,
    Timers, Transition,
};
use serde_json::json;
use sqlx::Connection;
use uuid::Uuid;

use crate::common::Db;
use crate::support::{T0, advance, claim, commit_one, execution_with, task};

crate::on_both_stores!(
    task_statuses_read_back_as_their_enum,
    an_unknown_task_status_is_corrupt,
    an_unknown_timer_kind_is_corrupt,
);

/// Runs one statement on the test database, outside the store (as an operator's edit would).
async fn edit(db: &Db, sql: &'static str, id: Uuid) {
    if db.url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        sqlx::query(sql).bind(id).execute(&mut conn).await.unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query(sql).bind(id).execute(&mut conn).await.unwrap();
    }
}

/// The status of one task, read through the task queue's trait alone.
async fn status(queue: &dyn TaskQueue, id: Uuid) -> TaskStatus {
    queue.get_task(id, "turn-1").await.unwrap().unwrap().status
}

async fn task_statuses_read_back_as_their_enum(db: Db) {
    let store = db.store().await;
    let id = execution_with(&*store, vec![task("turn-1")]).await;
    assert_eq!(status(&*store, id).await, TaskStatus::Ready);
    let claimed = store.claim_tasks(&claim("w-1", &["echo"], T0 + 1)).await;
    assert_eq!(claimed.unwrap().len(), 1);
    assert_eq!(status(&*store, id).await, TaskStatus::Leased);
    let park = Transition {
        tasks: vec![TaskOp::Park {
            activity_id: "turn-1".into(),
            checkpoint: None,
        }],
        ..advance(id, 3)
    };
    assert_eq!(commit_one(&*store, park).await, CommitOutcome::Committed);
    assert_eq!(status(&*store, id).await, TaskStatus::Backoff);
}

async fn an_unknown_task_status_is_corrupt(db: Db) {
    let store = db.store().await;
    let id = execution_with(&*store, vec![task("turn-1")]).await;
    edit(
        &db,
        "UPDATE tasks SET status = 'paused' WHERE execution_id = $1",
        id,
    )
    .await;
    match store.get_task(id, "turn-1").await {
        Err(StoreError::Corrupt(message)) => assert!(
            message.contains("task status") && message.contains("paused"),
            "the error names the field and the value: {message}"
        ),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

async fn an_unknown_timer_kind_is_corrupt(db: Db) {
    let store = db.store().await;
    let id = execution_with(&*store, vec![]).await;
    let fire_at: Millis = T0 + 5;
    let start_timer = Transition {
        timers: vec![TimerOp::Insert {
            timer_id: "retry-turn-1-2".into(),
            fire_at,
            kind: TimerKind::RetryActivity,
            payload: json!({ "attempt": 2 }),
        }],
        ..advance(id, 3)
    };
    assert_eq!(
        commit_one(&*store, start_timer).await,
        CommitOutcome::Committed
    );
    let timers: &dyn Timers = &*store;
    let due = timers.due_timers(fire_at, 10).await.unwrap();
    assert_eq!(
        due.iter().map(|t| t.kind).collect::<Vec<_>>(),
        [TimerKind::RetryActivity]
    );

    edit(
        &db,
        "UPDATE timers SET kind = 'alarm' WHERE execution_id = $1",
        id,
    )
    .await;
    match timers.due_timers(fire_at, 10).await {
        Err(StoreError::Corrupt(message)) => assert!(
            message.contains("timer kind") && message.contains("alarm"),
            "the error names the field and the value: {message}"
        ),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // The execution itself is untouched and still readable through its own trait.
    let executions: &dyn Executions = &*store;
    assert!(executions.get_execution(id).await.unwrap().is_some());
}
