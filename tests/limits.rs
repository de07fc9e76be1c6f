//! The limits a server sets on what clients and workers send (`--max-turns`, `--max-attempts`,
//! `--max-chunk-bytes`, `--max-batch-bytes`, `--max-checkpoint-bytes`): a request over one is
//! refused naming the limit and writes nothing (row counts over every table), and an attempt
//! whose checkpoint is over the limit fails once, for good, instead of sending it forever.

mod common;

use cairn::api::pb;
use common::client::{fast_retries, lease_of, poll_one, start_request, text_chunk};
use common::{Db, Server};
use serde_json::json;
use tonic::Code;

crate::on_both_stores!(
    limit_refusals_write_nothing,
    an_oversized_checkpoint_fails_the_attempt_once_for_good,
    a_remote_worker_refused_for_a_checkpoint_fails_the_attempt_once,
);

const LIMITS: [&str; 10] = [
    "--max-turns",
    "2",
    "--max-attempts",
    "3",
    "--max-chunk-bytes",
    "300",
    "--max-batch-bytes",
    "500",
    "--max-checkpoint-bytes",
    "100",
];

fn refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>, setting: &str) {
    let status = result.expect_err("the request is over a limit");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains(setting), "{status:?}");
}

async fn limit_refusals_write_nothing(db: Db) {
    let server = Server::start(&db, "server", &LIMITS);
    let mut c = server.client().await;
    c.create_agent("e", "echo", json!({})).await;
    // No limit means the server's: the policy stored asks for at most 3 attempts.
    let id = c
        .start(pb::StartExecutionRequest {
            retry_policy: Some(fast_retries(0)),
            ..start_request("e", &["one"])
        })
        .await;
    let started = c.history(&id).await;
    assert_eq!(started[0].payload["retry_policy"]["maximum_attempts"], 3);
    let task = poll_one(&mut c).await;
    let before = db.row_counts().await;

    let three = start_request("e", &["a", "b", "c"]);
    refused(c.executions.start_execution(three).await, "--max-turns");
    let greedy = pb::StartExecutionRequest {
        retry_policy: Some(fast_retries(4)),
        ..start_request("e", &["a"])
    };
    refused(c.executions.start_execution(greedy).await, "--max-attempts");
    let lease = || Some(lease_of(&task));
    let progress = |chunks: Vec<pb::ChunkIn>, checkpoint: String| pb::ReportProgressRequest {
        lease: lease(),
        chunks,
        checkpoint_json: checkpoint,
        first_chunk_index: Some(0),
        ..Default::default()
    };
    let big = json!({"state": "x".repeat(200)}).to_string();
    let w = &mut c.workers;
    refused(
        w.report_progress(progress(vec![], big.clone())).await,
        "--max-checkpoint-bytes",
    );
    let long = text_chunk(&"y".repeat(400));
    refused(
        w.report_progress(progress(vec![long], String::new())).await,
        "--max-chunk-bytes",
    );
    let many = vec![text_chunk(&"z".repeat(200)); 3];
    refused(
        w.report_progress(progress(many, String::new())).await,
        "--max-batch-bytes",
    );
    let complete = pb::CompleteTaskRequest {
        lease: lease(),
        output_json: json!({"text": "done"}).to_string(),
        checkpoint_json: big.clone(),
        ..Default::default()
    };
    refused(w.complete_task(complete).await, "--max-checkpoint-bytes");
    let release = pb::ReleaseTaskRequest {
        lease: lease(),
        chunks: vec![],
        checkpoint_json: big,
    };
    refused(w.release_task(release).await, "--max-checkpoint-bytes");

    assert_eq!(
        db.row_counts().await,
        before,
        "a refused request writes nothing"
    );
    assert_eq!(c.get(&id).await.history_length, started.len() as u64);
}

async fn an_oversized_checkpoint_fails_the_attempt_once_for_good(db: Db) {
    // Every echo checkpoint is over 16 bytes.
    let server = Server::start(
        &db,
        "server",
        &[
            "--worker",
            "--runtimes",
            "echo",
            "--max-checkpoint-bytes",
            "16",
        ],
    );
    let mut c = server.client().await;
    let failure = fails_once_for_its_checkpoint(&mut c).await;
    assert_eq!(failure.code, "output_too_large");
}

/// A `cairn worker` process does not know the server's limits: the server refuses its progress,
/// and the worker ends the attempt for good with the refusal, once.
async fn a_remote_worker_refused_for_a_checkpoint_fails_the_attempt_once(db: Db) {
    let limit = ["--max-checkpoint-bytes", "16"];
    let (_server, url) = common::fleet::Proc::server(&db, "127.0.0.1:0", &limit, &[]);
    let _worker = common::fleet::Proc::worker("w", &[&url], &["--runtimes", "echo"], &[]);
    let mut c = common::TestClient::connect(&url).await;
    fails_once_for_its_checkpoint(&mut c).await;
}

/// Starts an echo execution (whose checkpoints are over 16 bytes) with retries to spare, and
/// checks it failed for its checkpoint in one attempt, never retried; returns the failure.
async fn fails_once_for_its_checkpoint(c: &mut common::TestClient) -> pb::Failure {
    c.create_agent("e", "echo", json!({"chunks": ["a", "b"]}))
        .await;
    let id = c
        .start(pb::StartExecutionRequest {
            retry_policy: Some(fast_retries(3)),
            ..start_request("e", &["go"])
        })
        .await;
    let closed = c
        .wait_until(&id, "the execution to fail", |e| e.status == "FAILED")
        .await;
    let failure = closed.failure.expect("a failure");
    assert!(!failure.retryable, "{failure:?}");
    assert!(
        failure.message.contains("--max-checkpoint-bytes"),
        "{failure:?}"
    );
    let history = c.history(&id).await;
    let failed: Vec<_> = history
        .iter()
        .filter(|e| e.kind == "ActivityFailed")
        .collect();
    assert_eq!(failed.len(), 1, "one attempt, never retried: {history:?}");
    assert_eq!(failed[0].payload["failure"]["retryable"], false);
    failure
}
