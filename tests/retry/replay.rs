//! `ReplayExecution` against stored histories: a history the code reproduces is OK, and one
//! changed behind the engine's back — what code that emits other commands would have written —
//! is reported at the exact seq, with both versions.

use cairn::api::pb;
use serde_json::{Value, json};
use sqlx::types::Json;
use uuid::Uuid;

use crate::common::client::{TestClient, fast_retries, kinds, start_request};
use crate::common::{Db, Server};
use crate::on_both_stores;

/// Overwrites the stored payload of event `seq`, as other code writing the history would have.
async fn tamper(db: &Db, id: &str, seq: i64, payload: &Value) {
    let id = Uuid::parse_str(id).unwrap();
    let sql = "UPDATE history_events SET payload = $1 WHERE execution_id = $2 AND seq = $3";
    let updated = if db.url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        let done = sqlx::query(sql).bind(Json(payload)).bind(id).bind(seq);
        done.execute(&pool).await.unwrap().rows_affected()
    } else {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        let done = sqlx::query(sql).bind(Json(payload)).bind(id).bind(seq);
        done.execute(&pool).await.unwrap().rows_affected()
    };
    assert_eq!(updated, 1, "event {seq} exists");
}

async fn replay(c: &mut TestClient, id: &str) -> pb::ReplayExecutionResponse {
    c.executions
        .replay_execution(pb::ReplayExecutionRequest { id: id.into() })
        .await
        .expect("replay")
        .into_inner()
}

async fn replay_reports_the_exact_seq_where_a_tampered_history_diverges(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    c.create_agent("once-flaky", "echo", json!({ "fail_attempts": [1] }))
        .await;
    let mut request = start_request("once-flaky", &["x"]);
    request.retry_policy = Some(fast_retries(3));
    let id = c.start(request).await;
    assert_eq!(c.watch(&id, 0).await.closed.status, "COMPLETED");
    let history = c.history(&id).await;
    assert_eq!(kinds(&history)[4], "TimerStarted");
    let verdict = replay(&mut c, &id).await;
    assert!(verdict.ok, "{verdict:?}");
    assert_eq!(
        (verdict.events, verdict.status.as_str()),
        (history.len() as u64, "COMPLETED")
    );

    // A back-off one millisecond longer than the code computes.
    let mut timer = history[4].payload.clone();
    let recorded_delay = timer["delay_ms"].as_u64().unwrap();
    timer["delay_ms"] = json!(recorded_delay + 1);
    tamper(&db, &id, 5, &timer).await;
    let verdict = replay(&mut c, &id).await;
    assert!(!verdict.ok);
    let divergence = verdict.divergence.expect("a divergence");
    assert_eq!(divergence.seq, 5);
    assert_eq!(divergence.kind, "nondeterminism");
    let has: Value = serde_json::from_str(&divergence.history_has).unwrap();
    let would: Value = serde_json::from_str(&divergence.code_would).unwrap();
    assert_eq!(has["delay_ms"], recorded_delay + 1);
    assert_eq!(
        would, history[4].payload,
        "the code would emit what was recorded"
    );
    assert!(
        divergence.message.contains("seq 5"),
        "{}",
        divergence.message
    );

    // An event the code has no transition for: a completion of an attempt never scheduled.
    let mut completion = history[history.len() - 2].payload.clone();
    assert_eq!(completion["type"], "ActivityCompleted");
    completion["attempt"] = json!(7);
    let seq = history.len() as i64 - 1;
    tamper(&db, &id, 5, &history[4].payload).await;
    tamper(&db, &id, seq, &completion).await;
    let divergence = replay(&mut c, &id).await.divergence.expect("a divergence");
    assert_eq!(
        (divergence.seq, divergence.kind.as_str()),
        (seq as u64, "invalid_transition")
    );
    assert_eq!(divergence.history_has, "ActivityCompleted");

    let missing = Uuid::now_v7().to_string();
    let status = c
        .executions
        .replay_execution(pb::ReplayExecutionRequest { id: missing })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
}

on_both_stores!(replay_reports_the_exact_seq_where_a_tampered_history_diverges);
