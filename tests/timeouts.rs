//! Timeouts and fencing, with the test itself acting as a worker over the real WorkerService:
//! an attempt past start-to-close, and one that stops heartbeating, is timed out and retried
//! with its checkpoint; the stale attempt can no longer report.

mod common;

use cairn::api::pb;
use common::client::{fast_retries, lease_of, poll_one, start_request, text_chunk};
use common::{Db, Server};
use serde_json::json;
use tonic::Code;

fn lease(task: &pb::Task) -> Option<pb::Lease> {
    Some(lease_of(task))
}

async fn an_attempt_past_start_to_close_is_timed_out_and_retried(db: Db) {
    let server = Server::start(&db, "server", &[]);
    let mut c = server.client().await;
    c.create_agent("slowpoke", "echo", json!({})).await;
    let mut request = start_request("slowpoke", &["x"]);
    request.retry_policy = Some(fast_retries(3));
    request.timeouts = Some(pb::Timeouts {
        start_to_close_ms: 400,
        heartbeat_ms: 60_000,
        ..Default::default()
    });
    let id = c.start(request).await;

    let first = poll_one(&mut c).await;
    assert_eq!(first.attempt, 1);
    let progress = pb::ReportProgressRequest {
        lease: lease(&first),
        chunks: vec![text_chunk("from attempt 1 ")],
        checkpoint_json: json!({ "step": 1 }).to_string(),
        first_chunk_index: Some(0),
        workspace: String::new(),
        asks: Vec::new(),
        awaiting_decisions: false,
    };
    let reply = c
        .workers
        .report_progress(progress.clone())
        .await
        .unwrap()
        .into_inner();
    // The same batch again, as a worker whose reply was lost sends it: stored once.
    c.workers.report_progress(progress).await.unwrap();
    assert_eq!(
        c.get(&id).await.output_length,
        1,
        "a resent batch is not stored twice"
    );
    assert!(!reply.cancel_requested);

    // The attempt keeps heartbeating but runs too long: the server times it out and retries.
    let second = poll_one(&mut c).await;
    assert_eq!(second.attempt, 2);
    assert_eq!(
        second.checkpoint_json,
        json!({ "step": 1 }).to_string(),
        "the retry gets the last checkpoint"
    );
    let history = c.history(&id).await;
    let timed_out = history
        .iter()
        .find(|e| e.kind == "ActivityTimedOut")
        .expect("ActivityTimedOut");
    assert_eq!(timed_out.payload["kind"], "start_to_close");

    // The stale attempt is fenced off: it can neither add output nor complete.
    let stale = pb::ReportProgressRequest {
        lease: lease(&first),
        chunks: vec![text_chunk("late")],
        checkpoint_json: String::new(),
        first_chunk_index: None,
        workspace: String::new(),
        asks: Vec::new(),
        awaiting_decisions: false,
    };
    assert_eq!(
        c.workers.report_progress(stale).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    let stale = pb::CompleteTaskRequest {
        lease: lease(&first),
        output_json: "{}".into(),
        ..Default::default()
    };
    assert_eq!(
        c.workers.complete_task(stale).await.unwrap_err().code(),
        Code::FailedPrecondition
    );

    let done = pb::CompleteTaskRequest {
        lease: lease(&second),
        chunks: vec![text_chunk("from attempt 2")],
        output_json: json!({ "text": "ok" }).to_string(),
        ..Default::default()
    };
    c.workers.complete_task(done).await.unwrap();
    let watched = c.watch(&id, 0).await;
    assert_eq!(watched.closed.status, "COMPLETED");
    assert_eq!(
        watched.text(),
        "from attempt 1 from attempt 2",
        "the stale report added nothing"
    );
    assert_eq!(
        watched
            .chunks
            .iter()
            .map(|ch| ch.attempt)
            .collect::<Vec<_>>(),
        [1, 2]
    );
}

async fn an_attempt_that_stops_heartbeating_is_timed_out_and_retried(db: Db) {
    let server = Server::start(&db, "server", &[]);
    let mut c = server.client().await;
    c.create_agent("silent", "echo", json!({})).await;
    let mut request = start_request("silent", &["x"]);
    request.retry_policy = Some(fast_retries(3));
    request.timeouts = Some(pb::Timeouts {
        heartbeat_ms: 300,
        ..Default::default()
    });
    let id = c.start(request).await;

    let first = poll_one(&mut c).await;
    let running = c.get(&id).await;
    assert_eq!(running.status, "RUNNING");
    assert!(
        running
            .activity
            .unwrap()
            .state
            .contains("running on test-worker")
    );
    // ...and then says nothing: the lease expires.
    let second = poll_one(&mut c).await;
    assert_eq!(second.attempt, 2);
    let history = c.history(&id).await;
    let timed_out = history
        .iter()
        .find(|e| e.kind == "ActivityTimedOut")
        .expect("ActivityTimedOut");
    assert_eq!(timed_out.payload["kind"], "heartbeat");
    let started = history
        .iter()
        .find(|e| e.kind == "ActivityStarted")
        .unwrap();
    assert_eq!(started.payload["worker"], "test-worker");

    let stale = pb::CompleteTaskRequest {
        lease: lease(&first),
        output_json: "{}".into(),
        ..Default::default()
    };
    assert_eq!(
        c.workers.complete_task(stale).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    let failure = pb::FailTaskRequest {
        lease: lease(&second),
        failure: Some(pb::Failure {
            code: "boom".into(),
            message: "no".into(),
            retryable: false,
            details_json: String::new(),
        }),
        ..Default::default()
    };
    c.workers.fail_task(failure).await.unwrap();
    let closed = c.watch(&id, 0).await.closed;
    assert_eq!(closed.status, "FAILED");
    assert_eq!(closed.failure.unwrap().code, "boom");
}

async fn a_task_nobody_claims_in_time_fails_without_retry(db: Db) {
    let server = Server::start(&db, "server", &[]);
    let mut c = server.client().await;
    c.create_agent("lonely", "echo", json!({})).await;
    let mut request = start_request("lonely", &["x"]);
    request.retry_policy = Some(fast_retries(5));
    request.timeouts = Some(pb::Timeouts {
        schedule_to_start_ms: 300,
        ..Default::default()
    });
    let id = c.start(request).await;
    let closed = c.watch(&id, 0).await.closed;
    assert_eq!(closed.status, "FAILED");
    assert_eq!(closed.failure.unwrap().code, "schedule_to_start_timeout");
    assert_eq!(
        c.history(&id)
            .await
            .iter()
            .filter(|e| e.kind == "ActivityScheduled")
            .count(),
        1
    );
}

async fn a_final_report_skips_chunks_a_lost_progress_reply_already_stored(db: Db) {
    let server = Server::start(&db, "server", &[]);
    let mut c = server.client().await;
    c.create_agent("resender", "echo", json!({})).await;
    let id = c.start(start_request("resender", &["x"])).await;
    let task = poll_one(&mut c).await;
    let progress = pb::ReportProgressRequest {
        lease: lease(&task),
        chunks: vec![text_chunk("a ")],
        checkpoint_json: String::new(),
        first_chunk_index: Some(0),
        workspace: String::new(),
        asks: Vec::new(),
        awaiting_decisions: false,
    };
    c.workers.report_progress(progress).await.unwrap();
    // The worker never saw that reply, so its last report carries the chunk again.
    let done = pb::CompleteTaskRequest {
        lease: lease(&task),
        chunks: vec![text_chunk("a "), text_chunk("b")],
        output_json: json!({ "text": "a b" }).to_string(),
        first_chunk_index: Some(0),
        ..Default::default()
    };
    c.workers.complete_task(done).await.unwrap();
    let watched = c.watch(&id, 0).await;
    assert_eq!(watched.closed.status, "COMPLETED");
    assert_eq!(watched.text(), "a b", "every chunk once");
}

on_both_stores!(
    a_final_report_skips_chunks_a_lost_progress_reply_already_stored,
    an_attempt_past_start_to_close_is_timed_out_and_retried,
    an_attempt_that_stops_heartbeating_is_timed_out_and_retried,
    a_task_nobody_claims_in_time_fails_without_retry,
);
