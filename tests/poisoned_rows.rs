//! No row can poison the engine: an execution whose stored state is corrupt, and an inbox row
//! whose input cannot be read, are quarantined (logged once, the execution failed with
//! `corrupt_state`), while the sweeper keeps timing out other executions and polls keep handing
//! out their tasks. The rows are corrupted with plain SQL in a real database, as a bug or a manual
//! edit would; the test acts as the worker over the real WorkerService.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use cairn::api::pb;
use common::client::{TestClient, fast_retries, start_request};
use common::{Db, Server};
use serde_json::json;
use tonic::Code;
use uuid::Uuid;

/// Runs one statement with `id` bound as `$1`, on whichever store `db` is.
async fn corrupt(db: &Db, sql: &str, id: &str) {
    let id: Uuid = id.parse().unwrap();
    let sql = sqlx::AssertSqlSafe(sql.to_string());
    if db.url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        let done = sqlx::query(sql).bind(id).execute(&pool).await.unwrap();
        assert_eq!(done.rows_affected(), 1);
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        let done = sqlx::query(sql).bind(id).execute(&pool).await.unwrap();
        assert_eq!(done.rows_affected(), 1);
        pool.close().await;
    }
}

/// Polls (as `worker`) until tasks of every execution in `want` were handed out.
async fn poll_until(c: &mut TestClient, want: &[&str]) -> Vec<pb::Task> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !want
        .iter()
        .all(|id| got.iter().any(|t: &pb::Task| t.execution_id == *id))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "polls handed out only {:?}",
            got.iter()
                .map(|t: &pb::Task| (&t.execution_id, t.attempt))
                .collect::<Vec<_>>()
        );
        let request = pb::PollTasksRequest {
            worker_id: "test-worker".into(),
            runtimes: vec!["echo".into()],
            queue: String::new(),
            max_tasks: 10,
            wait_ms: 1_000,
            policy_json: String::new(),
        };
        let reply = c
            .workers
            .poll_tasks(request)
            .await
            .expect("polls keep working");
        got.extend(reply.into_inner().tasks);
    }
    got
}

fn short_heartbeat(agent: &str) -> pb::StartExecutionRequest {
    let mut request = start_request(agent, &["x"]);
    request.retry_policy = Some(fast_retries(5));
    request.timeouts = Some(pb::Timeouts {
        heartbeat_ms: 300,
        ..Default::default()
    });
    request
}

async fn corrupt_rows_are_quarantined_and_stop_no_other_work(db: Db) {
    let mut server = Server::start(&db, "server", &[]);
    let mut c = server.client().await;
    c.create_agent("e4", "echo", json!({})).await;

    // Two running attempts whose leases will expire: `corrupted`'s state is then destroyed.
    let corrupted = c.start(short_heartbeat("e4")).await;
    let healthy = c.start(short_heartbeat("e4")).await;
    let first = poll_until(&mut c, &[&corrupted, &healthy]).await;
    assert_eq!(first.len(), 2);
    corrupt(
        &db,
        "UPDATE executions SET state = '{\"not\": \"a machine state\"}' WHERE id = $1",
        &corrupted,
    )
    .await;
    // An inbox row for `healthy` whose input cannot be read, due at once: the sweeper used to
    // stop at it on every look, before any timeout.
    corrupt(
        &db,
        "INSERT INTO timers (execution_id, timer_id, fire_at, kind, payload) \
         VALUES ($1, 'inbox-bogus', 0, 'inbox', '{\"no\": \"input\"}')",
        &healthy,
    )
    .await;
    // The rows went bad while no server held them: a running server keeps the state it last
    // committed (its execution cache) and would simply write over a row changed behind its back
    // at the same version, so the new server is the one that meets the corrupt rows.
    server.kill();
    let server = Server::start(&db, "server", &[]);
    let mut c = server.client().await;

    // The sweeper times out the healthy attempt, which is retried and handed out again.
    let retried = poll_until(&mut c, &[&healthy]).await;
    assert!(
        retried
            .iter()
            .any(|t| t.execution_id == healthy && t.attempt == 2),
        "the healthy execution's second attempt is handed out: {retried:?}"
    );
    let history = c.history(&healthy).await;
    assert!(
        history.iter().any(|e| e.kind == "ActivityTimedOut"),
        "the healthy attempt was timed out"
    );

    // The corrupt one ends FAILED with a clear code, and says so to every reader.
    let failed = c
        .wait_until(&corrupted, "the corrupt execution to fail", |e| {
            e.status == "FAILED"
        })
        .await;
    let failure = failed.failure.expect("a failure");
    assert_eq!(failure.code, "corrupt_state");
    assert!(failure.message.contains(&corrupted), "{}", failure.message);
    assert!(!failure.retryable);
    let cancel = c
        .executions
        .cancel_execution(pb::CancelExecutionRequest {
            id: corrupted.clone(),
            reason: "stop".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(cancel.code(), Code::FailedPrecondition, "{cancel:?}");
    let history = c.history(&corrupted).await;
    assert_eq!(
        history.last().map(|e| e.kind.as_str()),
        Some("ExecutionFailed")
    );

    // A task nobody claimed yet, whose execution row cannot be decoded: reading it quarantines
    // it, and polls never hand its task out.
    let pending = c.start(short_heartbeat("e4")).await;
    let fresh = c.start(short_heartbeat("e4")).await;
    corrupt(
        &db,
        "UPDATE executions SET status = 'NONSENSE' WHERE id = $1",
        &pending,
    )
    .await;
    let got = c.get(&pending).await;
    assert_eq!(got.status, "FAILED");
    assert_eq!(got.failure.unwrap().code, "corrupt_state");
    // A task whose turn cannot be read: the poll that claims it quarantines its execution and
    // hands out the others.
    let unreadable_turn = c.start(short_heartbeat("e4")).await;
    corrupt(
        &db,
        "UPDATE tasks SET turn = '{\"not\": \"a turn\"}' WHERE execution_id = $1",
        &unreadable_turn,
    )
    .await;
    let later = poll_until(&mut c, &[&fresh]).await;
    assert!(
        later
            .iter()
            .all(|t| t.execution_id != pending && t.execution_id != unreadable_turn),
        "a quarantined execution's task is never handed out"
    );
    let got = c
        .wait_until(
            &unreadable_turn,
            "the unreadable turn's execution to fail",
            |e| e.status == "FAILED",
        )
        .await;
    assert_eq!(got.failure.unwrap().code, "corrupt_state");

    // Each bad row was logged once, not at every look of the sweeper.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let log = server.log();
    let quarantined: BTreeSet<_> = log
        .lines()
        .filter(|l| l.contains("execution quarantined"))
        .collect();
    assert_eq!(
        log.matches("execution quarantined").count(),
        3,
        "once per corrupt execution: {quarantined:?}"
    );
    assert_eq!(log.matches("dropped an inbox row").count(), 1, "{log}");
    assert!(!log.contains("sweep failed"), "{log}");
}

on_both_stores!(corrupt_rows_are_quarantined_and_stop_no_other_work);
