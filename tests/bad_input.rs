//! Bad input gets INVALID_ARGUMENT / NOT_FOUND / FAILED_PRECONDITION with a message that says what
//! to fix, and writes nothing.

mod common;

use cairn::api::pb;
use common::client::start_request;
use common::{Db, Server};
use serde_json::json;
use tonic::Code;

/// Asserts the call failed with `code` and a message containing `hint`.
fn refused<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, tonic::Status>,
    code: Code,
    hint: &str,
) {
    let status = result.expect_err("the call must be refused");
    assert_eq!(status.code(), code, "{}", status.message());
    assert!(
        status.message().contains(hint),
        "`{}` should mention `{hint}`",
        status.message()
    );
}

async fn bad_input_is_refused_and_writes_nothing(db: Db) {
    let server = Server::dev(&db, &["--max-prompt-bytes", "64"]);
    let mut c = server.client().await;
    c.create_agent("good", "echo", json!({})).await;
    let id = c.start_simple("good", "hello").await;
    c.watch(&id, 0).await;
    let before = db.row_counts().await;

    let agent = |name: &str, runtime: &str, configuration: &str| pb::CreateAgentRequest {
        name: name.into(),
        runtime: runtime.into(),
        configuration_json: configuration.into(),
        ..Default::default()
    };
    let a = &mut c.agents;
    refused(
        a.create_agent(agent("x", "gpt-agent", "{}")).await,
        Code::InvalidArgument,
        "supported runtimes: claude_code, default, echo",
    );
    refused(
        a.create_agent(agent("x", "echo", "{not json")).await,
        Code::InvalidArgument,
        "configuration_json is not valid JSON",
    );
    refused(
        a.create_agent(agent("x", "echo", "[1]")).await,
        Code::InvalidArgument,
        "must be a JSON object",
    );
    refused(
        a.create_agent(agent("x", "echo", r#"{"runtime_config":{"delay":5}}"#))
            .await,
        Code::InvalidArgument,
        "runtime_config key `delay`",
    );
    refused(
        a.create_agent(agent(
            "x",
            "echo",
            r#"{"runtime_config":{"delay_ms":"soon"}}"#,
        ))
        .await,
        Code::InvalidArgument,
        "delay_ms",
    );
    refused(
        a.create_agent(agent("", "echo", "{}")).await,
        Code::InvalidArgument,
        "name is required",
    );
    refused(
        a.create_agent(agent("two  spaces", "echo", "{}")).await,
        Code::InvalidArgument,
        "name `two  spaces` is invalid",
    );
    refused(
        a.create_agent(agent(" leading", "echo", "{}")).await,
        Code::InvalidArgument,
        "name ` leading` is invalid",
    );
    refused(
        a.create_agent(agent("has/slash", "echo", "{}")).await,
        Code::InvalidArgument,
        "name `has/slash` is invalid",
    );
    refused(
        a.create_agent(agent("good", "echo", "{}")).await,
        Code::AlreadyExists,
        "already exists",
    );
    refused(
        a.create_agent(pb::CreateAgentRequest {
            namespace: "Bad NS".into(),
            ..agent("x", "echo", "{}")
        })
        .await,
        Code::InvalidArgument,
        "namespace",
    );
    refused(
        a.get_agent(pb::GetAgentRequest {
            agent: "nobody".into(),
            ..Default::default()
        })
        .await,
        Code::NotFound,
        "nobody",
    );
    refused(
        a.update_agent(pb::UpdateAgentRequest {
            agent: "good".into(),
            runtime: Some("nope".into()),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "unknown runtime `nope`",
    );
    refused(
        a.list_agents(pb::ListAgentsRequest {
            page_token: "garbage".into(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "page_token",
    );

    let e = &mut c.executions;
    refused(
        e.start_execution(start_request("nobody", &["hi"])).await,
        Code::NotFound,
        "no active agent named `nobody`",
    );
    refused(
        e.start_execution(start_request("good", &[])).await,
        Code::InvalidArgument,
        "prompt is required",
    );
    refused(
        e.start_execution(start_request("good", &["  "])).await,
        Code::InvalidArgument,
        "prompt 1 is empty",
    );
    refused(
        e.start_execution(start_request("good", &[&"x".repeat(65)]))
            .await,
        Code::InvalidArgument,
        "the limit is 64 bytes",
    );
    let mut both = start_request("good", &["a"]);
    both.prompt = "b".into();
    refused(
        e.start_execution(both).await,
        Code::InvalidArgument,
        "not both",
    );
    let mut policy = start_request("good", &["a"]);
    policy.retry_policy = Some(pb::RetryPolicy {
        initial_interval_ms: 10,
        backoff_coefficient: 0.5,
        ..Default::default()
    });
    refused(
        e.start_execution(policy).await,
        Code::InvalidArgument,
        "backoff_coefficient",
    );
    let mut timeouts = start_request("good", &["a"]);
    timeouts.timeouts = Some(pb::Timeouts {
        heartbeat_ms: 5,
        ..Default::default()
    });
    refused(
        e.start_execution(timeouts).await,
        Code::InvalidArgument,
        "heartbeat_ms",
    );

    refused(
        e.get_execution(pb::GetExecutionRequest { id: "42".into() })
            .await,
        Code::InvalidArgument,
        "not a valid id",
    );
    let unknown = uuid::Uuid::now_v7().to_string();
    refused(
        e.get_execution(pb::GetExecutionRequest {
            id: unknown.clone(),
        })
        .await,
        Code::NotFound,
        "no execution",
    );
    refused(
        e.cancel_execution(pb::CancelExecutionRequest {
            id: unknown.clone(),
            reason: String::new(),
        })
        .await,
        Code::NotFound,
        "no execution",
    );
    refused(
        e.get_history(pb::GetHistoryRequest {
            id: "x".into(),
            after_seq: 0,
        })
        .await,
        Code::InvalidArgument,
        "not a valid id",
    );
    refused(
        e.stream_execution(pb::StreamExecutionRequest {
            id: unknown,
            after_seq: 0,
            include_superseded: false,
        })
        .await,
        Code::NotFound,
        "no execution",
    );
    let list = |f: fn(&mut pb::ListExecutionsRequest)| {
        let mut r = pb::ListExecutionsRequest::default();
        f(&mut r);
        r
    };
    refused(
        e.list_executions(list(|r| r.page_token = "p1.nope".into()))
            .await,
        Code::InvalidArgument,
        "page_token",
    );
    refused(
        e.list_executions(list(|r| r.status = vec!["DONE".into()]))
            .await,
        Code::InvalidArgument,
        "status `DONE`",
    );
    refused(
        e.list_executions(list(|r| r.page_size = 100_000)).await,
        Code::InvalidArgument,
        "page_size",
    );
    refused(
        e.list_executions(list(|r| r.agent = "nobody".into())).await,
        Code::NotFound,
        "nobody",
    );
    refused(
        e.list_executions(list(|r| r.parent_id = "up".into())).await,
        Code::InvalidArgument,
        "parent_id",
    );
    refused(
        e.list_executions(list(|r| r.created_after_ms = -1)).await,
        Code::InvalidArgument,
        "negative",
    );

    let w = &mut c.workers;
    refused(
        w.poll_tasks(pb::PollTasksRequest {
            worker_id: "w".into(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "runtimes is required",
    );
    let lease = pb::Lease {
        task_id: format!("{id}/turn-1"),
        attempt: 1,
        lease_token: "stale".into(),
    };
    refused(
        w.report_progress(pb::ReportProgressRequest {
            lease: Some(lease.clone()),
            ..Default::default()
        })
        .await,
        Code::FailedPrecondition,
        "no longer holds its lease",
    );
    refused(
        w.complete_task(pb::CompleteTaskRequest {
            lease: Some(lease),
            ..Default::default()
        })
        .await,
        Code::FailedPrecondition,
        "no longer holds its lease",
    );
    refused(
        w.report_progress(pb::ReportProgressRequest {
            lease: Some(pb::Lease {
                task_id: "nonsense".into(),
                attempt: 1,
                lease_token: "t".into(),
            }),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "task_id",
    );

    assert_eq!(
        db.row_counts().await,
        before,
        "refused requests wrote nothing"
    );
}

async fn archived_agents_cannot_start_and_free_their_name(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    let first = c.create_agent("helper", "echo", json!({})).await;
    let archived = c
        .agents
        .archive_agent(pb::ArchiveAgentRequest {
            agent: "helper".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(archived.status, "archived");
    refused(
        c.executions
            .start_execution(start_request(&first.id, &["hi"]))
            .await,
        Code::FailedPrecondition,
        "archived",
    );
    let second = c.create_agent("helper", "echo", json!({})).await;
    assert_ne!(first.id, second.id, "the name is free again");
}

on_both_stores!(
    bad_input_is_refused_and_writes_nothing,
    archived_agents_cannot_start_and_free_their_name
);
