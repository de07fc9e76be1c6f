//! What a retry refuses, with a message that says why, before it writes anything.

use cairn::api::pb;
use serde_json::json;
use tonic::Code;

use crate::common::client::{TestClient, start_request};
use crate::common::{Db, Server};
use crate::{on_both_stores, plain};

async fn claim(c: &mut TestClient) -> pb::Task {
    let request = pb::PollTasksRequest {
        worker_id: "test-worker".into(),
        runtimes: vec!["echo".into()],
        max_tasks: 1,
        wait_ms: 20_000,
        policy_json: String::new(),
        ..Default::default()
    };
    let mut tasks = c
        .workers
        .poll_tasks(request)
        .await
        .unwrap()
        .into_inner()
        .tasks;
    assert_eq!(tasks.len(), 1, "a task within the poll's wait");
    tasks.remove(0)
}

fn lease(task: &pb::Task) -> Option<pb::Lease> {
    Some(pb::Lease {
        task_id: task.task_id.clone(),
        attempt: task.attempt,
        lease_token: task.lease_token.clone(),
    })
}

async fn refused(c: &mut TestClient, request: pb::RetryExecutionRequest) -> tonic::Status {
    c.executions
        .retry_execution(request)
        .await
        .expect_err("the retry is refused")
}

async fn running_completed_and_missing_executions_are_not_retried(db: Db) {
    // No worker: the test claims, completes and fails tasks itself, so nothing moves unless
    // it says so.
    let server = Server::start(&db, "server", &[]);
    let mut c = server.client().await;
    c.create_agent("held", "echo", json!({})).await;
    let mut request = start_request("held", &["one ", "two"]);
    request.timeouts = Some(pb::Timeouts {
        heartbeat_ms: 600_000,
        ..Default::default()
    });
    let running = c.start(request.clone()).await;
    claim(&mut c).await;
    let completed = c.start(request.clone()).await;
    let task = claim(&mut c).await;
    let done = pb::CompleteTaskRequest {
        lease: lease(&task),
        output_json: json!({ "text": "done" }).to_string(),
        ..Default::default()
    };
    c.workers.complete_task(done).await.unwrap();
    let task = claim(&mut c).await;
    c.workers
        .complete_task(pb::CompleteTaskRequest {
            lease: lease(&task),
            output_json: json!({ "text": "done" }).to_string(),
            ..Default::default()
        })
        .await
        .unwrap();
    let failed = c.start(request).await;
    let task = claim(&mut c).await;
    let failure = pb::Failure {
        code: "boom".into(),
        retryable: false,
        ..Default::default()
    };
    c.workers
        .fail_task(pb::FailTaskRequest {
            lease: lease(&task),
            failure: Some(failure),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(c.get(&running).await.status, "RUNNING");
    assert_eq!(c.get(&completed).await.status, "COMPLETED");
    assert_eq!(c.get(&failed).await.status, "FAILED");
    let before = db.row_counts().await;

    let status = refused(&mut c, plain(&running)).await;
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("is RUNNING")
            && status.message().contains("only FAILED or CANCELED"),
        "{}",
        status.message()
    );
    let status = refused(&mut c, plain(&completed)).await;
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("is COMPLETED"),
        "{}",
        status.message()
    );
    let missing = uuid::Uuid::now_v7().to_string();
    let status = refused(&mut c, plain(&missing)).await;
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), format!("no execution with id {missing}"));
    let status = refused(&mut c, plain("turn-3")).await;
    assert_eq!(status.code(), Code::InvalidArgument);

    let mut no_such_turn = plain(&failed);
    no_such_turn.prompts = [(5, "five".to_string())].into();
    let status = refused(&mut c, no_such_turn).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("turn 5 does not exist"),
        "{}",
        status.message()
    );
    let mut no_such_seq = plain(&failed);
    no_such_seq.from_seq = 99;
    let status = refused(&mut c, no_such_seq).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("from_seq 99"),
        "{}",
        status.message()
    );
    let mut empty_prompt = plain(&failed);
    empty_prompt.prompts = [(1, " ".to_string())].into();
    assert_eq!(
        refused(&mut c, empty_prompt).await.code(),
        Code::InvalidArgument
    );

    // The request ids of retries are the server's to give.
    let mut squatter = start_request("held", &["x"]);
    squatter.request_id = format!("retry-of:{failed}");
    let status = c.executions.start_execution(squatter).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    assert_eq!(
        db.row_counts().await,
        before,
        "refused retries write nothing"
    );
}

on_both_stores!(running_completed_and_missing_executions_are_not_retried);
