//! The limits a server sets on what clients and workers send (`--max-turns`, `--max-attempts`,
//! `--max-chunk-bytes`, `--max-batch-bytes`, `--max-checkpoint-bytes`, `--max-output-bytes`): a
//! request over one is refused naming the limit and writes nothing (row counts over every
//! table), and an attempt whose checkpoint or output is over the limit fails once, for good,
//! instead of sending it forever. And a client's `execution_timeout` (`cairn run
//! --execution-timeout`): a run that outlasts it ends FAILED naming it. The engine tests of
//! these limits on a manual clock are in tests/execution_limits.rs.

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
    output_over_the_limit_fails_the_attempt_once_for_good,
    an_execution_timeout_fails_a_slow_run_naming_the_limit,
    a_team_execution_timeout_stops_its_children,
);

const LIMITS: [&str; 12] = [
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
    "--max-output-bytes",
    "600",
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
    // 215 bytes of output stored (kind and JSON data); two more such chunks would make 645.
    let first = pb::ReportProgressRequest {
        lease: Some(lease_of(&task)),
        chunks: vec![text_chunk(&"o".repeat(200))],
        first_chunk_index: Some(0),
        ..Default::default()
    };
    c.workers.report_progress(first).await.unwrap();
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
    let more = pb::ReportProgressRequest {
        first_chunk_index: Some(1),
        ..progress(vec![text_chunk(&"p".repeat(200)); 2], String::new())
    };
    refused(w.report_progress(more).await, "--max-output-bytes");
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
    let failure = fails_once_naming(&mut c, "--max-checkpoint-bytes").await;
    assert_eq!(failure.code, "output_too_large");
}

/// The in-process worker's output past `--max-output-bytes` is refused by the engine; the
/// attempt fails once, for good, naming the limit.
async fn output_over_the_limit_fails_the_attempt_once_for_good(db: Db) {
    // Each echo chunk here weighs 16 bytes: the second is over the limit.
    let limit = ["--worker", "--runtimes", "echo", "--max-output-bytes", "20"];
    let server = Server::start(&db, "server", &limit);
    let mut c = server.client().await;
    fails_once_naming(&mut c, "--max-output-bytes").await;
}

/// `cairn run --execution-timeout 1s` of a turn that takes seconds: the execution fails naming
/// `execution_timeout`, its attempt is stopped, not retried, and the history says why.
async fn an_execution_timeout_fails_a_slow_run_naming_the_limit(db: Db) {
    let server = Server::start(&db, "server", &["--worker", "--runtimes", "echo"]);
    let mut c = server.client().await;
    let slow = json!({"chunks": ["a", "b", "c", "d"], "delay_ms": 2_000});
    c.create_agent("slow", "echo", slow).await;
    let run = std::process::Command::new(common::server::cairn_bin())
        .args(["run", "slow", "go", "--execution-timeout", "1s"])
        .args(["--max-attempts", "3"])
        .env("CAIRN_SERVER", &server.url)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run cairn");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "a failed run exits 1: {stderr}");
    assert!(stderr.contains("execution_timeout"), "{stderr}");

    let listed = c
        .executions
        .list_executions(pb::ListExecutionsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .executions;
    let [execution] = listed.as_slice() else {
        panic!("one execution: {listed:?}")
    };
    assert_eq!(execution.status, "FAILED");
    let failure = execution.failure.clone().expect("a failure");
    assert_eq!(failure.code, "execution_timeout", "{failure:?}");
    assert!(!failure.retryable, "{failure:?}");
    let history = c.history(&execution.id).await;
    let kinds: Vec<&str> = history.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds[0], "ExecutionStarted");
    assert_eq!(history[0].payload["execution_timeout_ms"], 1_000);
    assert_eq!(
        &kinds[kinds.len() - 2..],
        ["ExecutionTimedOut", "ExecutionFailed"]
    );
    assert!(
        !kinds.contains(&"ActivityFailed") && !kinds.contains(&"TimerStarted"),
        "the attempt is not retried: {kinds:?}"
    );
}

/// A `cairn worker` process does not know the server's limits: the server refuses its progress,
/// and the worker ends the attempt for good with the refusal, once.
async fn a_remote_worker_refused_for_a_checkpoint_fails_the_attempt_once(db: Db) {
    let limit = ["--max-checkpoint-bytes", "16"];
    let (_server, url) = common::fleet::Proc::server(&db, "127.0.0.1:0", &limit, &[]);
    let _worker = common::fleet::Proc::worker("w", &[&url], &["--runtimes", "echo"], &[]);
    let mut c = common::TestClient::connect(&url).await;
    fails_once_naming(&mut c, "--max-checkpoint-bytes").await;
}

/// Starts an echo execution (whose checkpoints are over 16 bytes, and whose two chunks weigh 16
/// bytes each) with retries to spare, and checks it failed for the limit `setting` names in one
/// attempt, never retried; returns the failure.
async fn fails_once_naming(c: &mut common::TestClient, setting: &str) -> pb::Failure {
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
    assert!(failure.message.contains(setting), "{failure:?}");
    let history = c.history(&id).await;
    let failed: Vec<_> = history
        .iter()
        .filter(|e| e.kind == "ActivityFailed")
        .collect();
    assert_eq!(failed.len(), 1, "one attempt, never retried: {history:?}");
    assert_eq!(failed[0].payload["failure"]["retryable"], false);
    failure
}

/// A parallel team of two slow members, started with a 1 s `execution_timeout`: the team fails
/// naming it as the timer fires, and both children are asked to stop and end CANCELED.
async fn a_team_execution_timeout_stops_its_children(db: Db) {
    let server = Server::start(&db, "server", &["--worker", "--runtimes", "echo"]);
    let mut c = server.client().await;
    let slow = json!({"chunks": ["a", "b", "c", "d"], "delay_ms": 2_000});
    c.create_agent("slow", "echo", slow).await;
    let member = |role: &str| pb::TeamMember {
        agent: "slow".into(),
        role: role.into(),
        agent_id: String::new(),
    };
    let team = pb::CreateTeamRequest {
        name: "crew".into(),
        strategy: "parallel".into(),
        members: vec![member("one"), member("two")],
        ..Default::default()
    };
    pb::team_service_client::TeamServiceClient::new(c.channel.clone())
        .create_team(team)
        .await
        .expect("create team");
    let id = c
        .start(pb::StartExecutionRequest {
            team: "crew".into(),
            prompt: "go".into(),
            execution_timeout_ms: 1_000,
            ..Default::default()
        })
        .await;
    let closed = c
        .wait_until(&id, "the team to fail", |e| e.status == "FAILED")
        .await;
    assert_eq!(closed.failure.expect("a failure").code, "execution_timeout");
    let children = pb::ListExecutionsRequest {
        parent_id: id.clone(),
        ..Default::default()
    };
    let kids = common::wait_for("both children to stop", || {
        let mut executions = c.executions.clone();
        let children = children.clone();
        async move {
            let kids = executions
                .list_executions(children)
                .await
                .unwrap()
                .into_inner()
                .executions;
            (kids.len() == 2 && kids.iter().all(|k| k.status == "CANCELED")).then_some(kids)
        }
    })
    .await;
    assert!(kids.iter().all(|k| k.parent_id == id), "{kids:?}");
}
