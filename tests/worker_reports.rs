//! Worker reports the engine refuses before writing anything, whatever the API edge lets
//! through: a batch whose `first_chunk_index` lies beyond the chunks its lease has stored (a gap
//! in the output), and a usage whose cost is not a finite number (it would make the execution's
//! state unreadable). The test acts as the worker over the real WorkerService.

mod common;

use cairn::api::pb;
use common::client::{lease_of, poll_one, start_request, text_chunk};
use common::{Db, Server};
use serde_json::json;
use tonic::Code;

fn lease(task: &pb::Task) -> Option<pb::Lease> {
    Some(lease_of(task))
}

async fn gaps_and_unstorable_usage_are_refused_and_write_nothing(db: Db) {
    let server = Server::start(&db, "server", &[]);
    let mut c = server.client().await;
    c.create_agent("e4", "echo", json!({})).await;
    let id = c.start(start_request("e4", &["x"])).await;
    let task = poll_one(&mut c).await;
    let first = pb::ReportProgressRequest {
        lease: lease(&task),
        chunks: vec![text_chunk("a"), text_chunk("b")],
        checkpoint_json: String::new(),
        first_chunk_index: Some(0),
        workspace: String::new(),
        asks: Vec::new(),
        awaiting_decisions: false,
    };
    c.workers.report_progress(first).await.unwrap();
    let before = db.row_counts().await;

    let gap = pb::ReportProgressRequest {
        lease: lease(&task),
        chunks: vec![text_chunk("x")],
        checkpoint_json: json!({ "step": 9 }).to_string(),
        first_chunk_index: Some(7),
        workspace: String::new(),
        asks: Vec::new(),
        awaiting_decisions: false,
    };
    let err = c.workers.report_progress(gap).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message()
            .contains("first_chunk_index 7 but only 2 chunks of this lease are stored"),
        "{}",
        err.message()
    );

    let gap_at_end = pb::CompleteTaskRequest {
        lease: lease(&task),
        chunks: vec![text_chunk("x")],
        output_json: json!({ "text": "ab" }).to_string(),
        first_chunk_index: Some(3),
        ..Default::default()
    };
    let err = c.workers.complete_task(gap_at_end).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("first_chunk_index 3"),
        "{}",
        err.message()
    );

    for cost in [f64::NAN, f64::INFINITY, -1.0] {
        let done = pb::CompleteTaskRequest {
            lease: lease(&task),
            output_json: json!({ "text": "ab" }).to_string(),
            usage: Some(pb::Usage {
                input_tokens: 1,
                output_tokens: 1,
                cost_usd: cost,
                tool_calls: 0,
            }),
            first_chunk_index: Some(2),
            ..Default::default()
        };
        let err = c.workers.complete_task(done).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "cost {cost}: {err:?}");
        assert!(err.message().contains("cost_usd"), "{}", err.message());
    }
    assert_eq!(db.row_counts().await, before, "nothing written");
    let execution = c.get(&id).await;
    assert_eq!(execution.status, "RUNNING");
    assert_eq!(execution.output_length, 2);

    // The lease still holds: the right report completes the execution with every chunk once.
    let done = pb::CompleteTaskRequest {
        lease: lease(&task),
        chunks: vec![text_chunk("b"), text_chunk("c")],
        output_json: json!({ "text": "abc" }).to_string(),
        // (u64::MAX tokens are refused at the edge: tests/hostile_input.rs.)
        usage: Some(pb::Usage {
            input_tokens: 1,
            output_tokens: 1,
            cost_usd: 0.25,
            tool_calls: 0,
        }),
        first_chunk_index: Some(1),
        ..Default::default()
    };
    c.workers.complete_task(done).await.unwrap();
    let watched = c.watch(&id, 0).await;
    assert_eq!(watched.closed.status, "COMPLETED");
    assert_eq!(watched.text(), "abc");
}

on_both_stores!(gaps_and_unstorable_usage_are_refused_and_write_nothing);
