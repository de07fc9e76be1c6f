//! Hostile input at the edge: every field of every RPC, client and worker side, is bounded
//! before anything is written, and SQLite and PostgreSQL answer alike. The table in
//! `hostile_input/table.rs` (and `worker_table.rs`) is run against both stores, each asserting the same code per row
//! and that no table gained or lost a row; the per-defect tests below show that the engine keeps
//! claiming, completing and cancelling after a hostile request.

mod common;

#[path = "hostile_input/calls.rs"]
mod calls;
#[path = "hostile_input/conversation_table.rs"]
mod conversation_table;
#[path = "hostile_input/table.rs"]
mod table;
#[path = "hostile_input/worker_table.rs"]
mod worker_table;

use cairn::api::pb;
use calls::{Call, send};
use common::client::{lease_of, poll_one, start_request};
use common::{Db, Server, TestClient};
use serde_json::json;
use table::Fixture;
use tonic::Code;

async fn complete(c: &mut TestClient, task: &pb::Task) {
    c.workers
        .complete_task(pb::CompleteTaskRequest {
            lease: Some(lease_of(task)),
            output_json: json!({ "text": "done" }).to_string(),
            ..Default::default()
        })
        .await
        .expect("complete");
}

/// A server without a worker of its own (the test is the worker), an echo agent, a team, a
/// closed execution and a running one whose lease the test holds.
async fn fixture(c: &mut TestClient) -> Fixture {
    c.create_agent("e", "echo", json!({})).await;
    pb::team_service_client::TeamServiceClient::new(c.channel.clone())
        .create_team(pb::CreateTeamRequest {
            name: "t".into(),
            strategy: "sequential".into(),
            members: vec![pb::TeamMember {
                agent: "e".into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .expect("create team");
    let done = c.start_simple("e", "first").await;
    let task = poll_one(c).await;
    complete(c, &task).await;
    c.wait_until(&done, "the first execution to close", |e| {
        e.status == "COMPLETED"
    })
    .await;
    let live = c.start_simple("e", "second").await;
    let task = poll_one(c).await;
    assert_eq!(task.execution_id, live);
    Fixture {
        agent: "e".into(),
        team: "t".into(),
        done,
        live,
        lease: lease_of(&task),
    }
}

/// The messages quote at most a short prefix of a bad value.
const MAX_MESSAGE: usize = 400;

async fn every_field_of_every_rpc_is_bounded(db: Db) {
    let server = Server::start(&db, "server", &[]);
    let mut c = server.client().await;
    let f = fixture(&mut c).await;
    let before = db.row_counts().await;
    let cases = table::cases(&f);
    assert!(
        cases.len() > 150,
        "the table covers every field: {} rows",
        cases.len()
    );
    let mut wrong = Vec::new();
    for case in cases {
        match send(&mut c, case.call).await {
            Ok(()) => wrong.push(format!("{}: accepted", case.what)),
            Err(status) => {
                let message = status.message();
                if status.code() != case.code
                    || !message.contains(&case.hint)
                    || message.len() > MAX_MESSAGE
                {
                    wrong.push(format!(
                        "{}: {:?} `{}` (want {:?} mentioning `{}`)",
                        case.what,
                        status.code(),
                        message.chars().take(MAX_MESSAGE).collect::<String>(),
                        case.code,
                        case.hint
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} rows answered wrongly:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert_eq!(
        db.row_counts().await,
        before,
        "refused requests write nothing"
    );

    // The lease survived all of it: the attempt can still report and complete.
    let task = pb::Task {
        task_id: f.lease.task_id.clone(),
        attempt: f.lease.attempt,
        lease_token: f.lease.lease_token.clone(),
        ..Default::default()
    };
    complete(&mut c, &task).await;
    assert_eq!(c.watch(&f.live, 0).await.closed.status, "COMPLETED");
}

/// Values at the edge that are valid: 0 meaning "the default", the largest values within each
/// limit, and counts the server clamps rather than refuses.
async fn values_at_the_edge_that_are_valid_are_accepted(db: Db) {
    let server = Server::start(&db, "server", &[]);
    let mut c = server.client().await;
    c.create_agent("e", "echo", json!({})).await;
    let max = 365 * 24 * 60 * 60 * 1000;
    let mut request = start_request("e", &["hi"]);
    // 0 means the default heartbeat and interval; 365 days is the largest duration.
    request.timeouts = Some(pb::Timeouts {
        heartbeat_ms: 0,
        start_to_close_ms: max,
        schedule_to_start_ms: max,
    });
    request.retry_policy = Some(pb::RetryPolicy {
        initial_interval_ms: max,
        backoff_coefficient: 0.0,
        maximum_interval_ms: 0,
        maximum_attempts: 10_000,
        non_retryable_codes: vec![],
    });
    request.request_id = "r".repeat(256);
    let id = c.start(request).await;
    // max_tasks u32::MAX is clamped (to 256) and wait_ms u64::MAX to the longest poll; a task
    // is ready, so the poll answers at once.
    let tasks = c
        .workers
        .poll_tasks(pb::PollTasksRequest {
            worker_id: "w".repeat(256),
            runtimes: vec!["echo".into()],
            max_tasks: u32::MAX,
            wait_ms: u64::MAX,
            ..Default::default()
        })
        .await
        .expect("a clamped poll")
        .into_inner()
        .tasks;
    assert_eq!(tasks.len(), 1);
    let lease = lease_of(&tasks[0]);
    // first_chunk_index 0 and the largest usage within the limits.
    c.workers
        .complete_task(pb::CompleteTaskRequest {
            lease: Some(lease),
            chunks: vec![pb::ChunkIn {
                kind: "text".into(),
                data_json: json!({ "text": "ok" }).to_string(),
            }],
            first_chunk_index: Some(0),
            output_json: "{}".into(),
            usage: Some(pb::Usage {
                input_tokens: 1_000_000_000_000,
                output_tokens: 0,
                cost_usd: 0.0,
                tool_calls: 1_000_000_000,
            }),
            ..Default::default()
        })
        .await
        .expect("usage within the limits");
    let closed = c.watch(&id, 0).await.closed;
    assert_eq!(closed.status, "COMPLETED");
    assert_eq!(closed.usage.unwrap().input_tokens, 1_000_000_000_000);
    // after_seq i64::MAX is the highest seq: nothing after it. created_after_ms i64::MAX: none.
    let events = c
        .executions
        .get_history(pb::GetHistoryRequest {
            id: id.clone(),
            after_seq: i64::MAX as u64,
        })
        .await
        .expect("after_seq i64::MAX")
        .into_inner()
        .events;
    assert!(events.is_empty());
    let listed = c
        .executions
        .list_executions(pb::ListExecutionsRequest {
            created_after_ms: i64::MAX,
            ..Default::default()
        })
        .await
        .expect("created_after_ms i64::MAX")
        .into_inner()
        .executions;
    assert!(listed.is_empty());
    // page_size 0 means the default page.
    let listed = c
        .executions
        .list_executions(pb::ListExecutionsRequest::default())
        .await
        .expect("page_size 0")
        .into_inner()
        .executions;
    assert_eq!(listed.len(), 1);
}

/// Defect 1: a huge heartbeat used to be stored, and then every poll failed on both stores.
async fn a_huge_heartbeat_is_refused_and_claiming_goes_on(db: Db) {
    let server = Server::start(&db, "server", &[]);
    let mut c = server.client().await;
    c.create_agent("e4", "echo", json!({})).await;
    let before = db.row_counts().await;
    for heartbeat_ms in [i64::MAX as u64, u64::MAX] {
        let mut request = start_request("e4", &["x"]);
        request.timeouts = Some(pb::Timeouts {
            heartbeat_ms,
            ..Default::default()
        });
        let status = c.executions.start_execution(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
        assert!(
            status.message().contains("timeouts.heartbeat_ms")
                && status.message().contains("the limit is 31536000000 ms"),
            "{}",
            status.message()
        );
    }
    assert_eq!(db.row_counts().await, before, "nothing was written");
    let id = c.start_simple("e4", "after").await;
    let task = poll_one(&mut c).await;
    assert_eq!(task.execution_id, id, "polling still claims");
    complete(&mut c, &task).await;
    assert_eq!(c.watch(&id, 0).await.closed.status, "COMPLETED");
}

/// Defect 2: a NaN cost used to poison the execution; u64::MAX tokens were stored as −1.
async fn a_hostile_usage_is_refused_and_the_execution_stays_usable(db: Db) {
    let server = Server::start(&db, "server", &[]);
    let mut c = server.client().await;
    c.create_agent("e4", "echo", json!({})).await;
    let id = c.start_simple("e4", "x").await;
    let task = poll_one(&mut c).await;
    let before = db.row_counts().await;
    for usage in [
        pb::Usage {
            cost_usd: f64::NAN,
            ..Default::default()
        },
        pb::Usage {
            input_tokens: u64::MAX,
            ..Default::default()
        },
        pb::Usage {
            output_tokens: u64::MAX,
            ..Default::default()
        },
        pb::Usage {
            tool_calls: u64::MAX,
            ..Default::default()
        },
    ] {
        let status = c
            .workers
            .complete_task(pb::CompleteTaskRequest {
                lease: Some(lease_of(&task)),
                usage: Some(usage),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
        assert!(status.message().contains("usage."), "{}", status.message());
    }
    assert_eq!(db.row_counts().await, before, "nothing was written");
    let cancelled = c
        .executions
        .cancel_execution(pb::CancelExecutionRequest {
            id: id.clone(),
            reason: String::new(),
        })
        .await
        .expect("cancel works")
        .into_inner();
    assert!(matches!(cancelled.status.as_str(), "RUNNING" | "CANCELED"));
    // The worker acknowledges the cancel, as a real one does; the execution closes.
    c.workers
        .cancel_task(pb::CancelTaskRequest {
            lease: Some(lease_of(&task)),
            ..Default::default()
        })
        .await
        .expect("cancel task");
    assert_eq!(c.watch(&id, 0).await.closed.status, "CANCELED");
    let history = c.history(&id).await;
    assert!(
        history.iter().any(|e| e.kind == "ExecutionCanceled"),
        "history is readable"
    );
    c.executions
        .replay_execution(pb::ReplayExecutionRequest { id })
        .await
        .expect("replay works");
}

/// Defect 4: NUL bytes used to reach PostgreSQL and come back as UNAVAILABLE.
async fn nul_bytes_are_invalid_argument(db: Db) {
    let server = Server::start(&db, "server", &[]);
    let mut c = server.client().await;
    c.create_agent("e4", "echo", json!({})).await;
    let before = db.row_counts().await;
    let nul = "a\0b".to_string();
    let calls = vec![
        ("prompt", Call::Start(start_request("e4", &[&nul]))),
        (
            "request_id",
            Call::Start(pb::StartExecutionRequest {
                request_id: nul.clone(),
                ..start_request("e4", &["x"])
            }),
        ),
        (
            "label",
            Call::Start(pb::StartExecutionRequest {
                labels: [("k".to_string(), nul.clone())].into_iter().collect(),
                ..start_request("e4", &["x"])
            }),
        ),
        (
            "name",
            Call::CreateAgent(pb::CreateAgentRequest {
                name: nul.clone(),
                runtime: "echo".into(),
                ..Default::default()
            }),
        ),
        (
            "model_id",
            Call::CreateAgent(pb::CreateAgentRequest {
                name: "m".into(),
                runtime: "echo".into(),
                model_id: nul.clone(),
                ..Default::default()
            }),
        ),
        (
            "configuration_json",
            Call::CreateAgent(pb::CreateAgentRequest {
                name: "m".into(),
                runtime: "echo".into(),
                configuration_json: json!({ "runtime_config": { "chunks": [nul] } }).to_string(),
                ..Default::default()
            }),
        ),
        (
            "agent",
            Call::List(pb::ListExecutionsRequest {
                agent: nul.clone(),
                ..Default::default()
            }),
        ),
        (
            "runtime",
            Call::List(pb::ListExecutionsRequest {
                runtime: nul.clone(),
                ..Default::default()
            }),
        ),
        (
            "worker_id",
            Call::Poll(pb::PollTasksRequest {
                worker_id: nul.clone(),
                runtimes: vec!["echo".into()],
                ..Default::default()
            }),
        ),
    ];
    for (field, call) in calls {
        let status = send(&mut c, call).await.expect_err(field);
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{field}: {}",
            status.message()
        );
        assert!(
            status.message().contains("NUL") || status.message().contains("\\0"),
            "{field}: {}",
            status.message()
        );
    }
    assert_eq!(db.row_counts().await, before, "nothing was written");
    assert!(
        !server.log().contains("database error"),
        "no NUL reached the database"
    );
}

/// Defect 5: `after_seq` ≥ 2^63 used to wrap and return everything from the start.
async fn after_seq_past_i64_is_refused(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    c.create_agent("e4", "echo", json!({})).await;
    let id = c.start_simple("e4", "one two three").await;
    c.watch(&id, 0).await;
    for after_seq in [1u64 << 63, u64::MAX] {
        let status = c
            .executions
            .stream_execution(pb::StreamExecutionRequest {
                id: id.clone(),
                after_seq,
                include_superseded: false,
            })
            .await
            .map(drop)
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
        assert!(
            status.message().contains("after_seq"),
            "{}",
            status.message()
        );
        let status = c
            .executions
            .get_history(pb::GetHistoryRequest {
                id: id.clone(),
                after_seq,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
        assert!(
            status.message().contains("after_seq"),
            "{}",
            status.message()
        );
    }
}

on_both_stores!(
    every_field_of_every_rpc_is_bounded,
    values_at_the_edge_that_are_valid_are_accepted,
    a_huge_heartbeat_is_refused_and_claiming_goes_on,
    a_hostile_usage_is_refused_and_the_execution_stays_usable,
    nul_bytes_are_invalid_argument,
    after_seq_past_i64_is_refused,
);
