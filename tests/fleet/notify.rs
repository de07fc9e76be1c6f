//! Two servers over one PostgreSQL: a long-poll and an output stream on one server wake for
//! changes committed through the other (LISTEN/NOTIFY), with no polling delay.

use std::time::{Duration, Instant};

use cairn::api::pb;
use serde_json::json;

use crate::common::fleet::{Proc, wait_for_workers};
use crate::common::{Db, TestClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_and_streams_wake_for_changes_committed_through_another_server() {
    let Some(db) = Db::postgres().await else {
        return;
    };
    let (_a, url_a) = Proc::server(&db, "127.0.0.1:0", &[], &[]);
    let (_b, url_b) = Proc::server(&db, "127.0.0.1:0", &["--no-migrate"], &[]);
    let mut a = TestClient::connect(&url_a).await;
    let b = TestClient::connect(&url_b).await;
    a.create_agent("relay", "echo", json!({})).await;

    // A worker long-polls B for 30 s; the execution is started through A.
    let mut poller = b.clone();
    let poll = tokio::spawn(async move {
        let polled = poller
            .workers
            .poll_tasks(pb::PollTasksRequest {
                worker_id: "remote".into(),
                runtimes: vec!["echo".into()],
                max_tasks: 1,
                wait_ms: 30_000,
                policy_json: String::new(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        (polled, Instant::now())
    });
    // The poll has reached B once A lists its worker (B wrote it to the shared table).
    wait_for_workers(&mut a, &["remote"]).await;
    let started = Instant::now();
    let id = a.start_simple("relay", "x").await;
    let (polled, returned) = poll.await.unwrap();
    assert_eq!(
        polled.tasks.len(),
        1,
        "the poll on B got the task started on A"
    );
    let woke_after = returned - started;
    assert!(
        woke_after < Duration::from_secs(3),
        "B's long-poll woke {woke_after:?} after the start (its wait was 30 s)"
    );
    let task = &polled.tasks[0];
    let lease = Some(pb::Lease {
        task_id: task.task_id.clone(),
        attempt: task.attempt,
        lease_token: task.lease_token.clone(),
    });

    // A subscriber on B sees each chunk reported to A at once; its safety-net re-read is 10 s
    // apart, so five chunks all arriving within 2 s cannot be that.
    let mut subscriber = b.clone();
    let mut stream = subscriber
        .executions
        .stream_execution(pb::StreamExecutionRequest {
            id: id.clone(),
            after_seq: 0,
            include_superseded: false,
        })
        .await
        .unwrap()
        .into_inner();
    for i in 0..5 {
        let sent = Instant::now();
        a.workers
            .report_progress(pb::ReportProgressRequest {
                lease: lease.clone(),
                chunks: vec![pb::ChunkIn {
                    kind: "text".into(),
                    data_json: json!({ "text": format!("{i} ") }).to_string(),
                }],
                checkpoint_json: String::new(),
                first_chunk_index: Some(i),
                workspace: String::new(),
                asks: Vec::new(),
                awaiting_decisions: false,
            })
            .await
            .unwrap();
        let message = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .expect("a chunk within 30 s")
            .unwrap()
            .unwrap();
        let Some(pb::stream_execution_response::Event::Chunk(chunk)) = message.event else {
            panic!("expected a chunk, got {message:?}");
        };
        assert_eq!(chunk.seq, i + 1);
        let delay = sent.elapsed();
        assert!(
            delay < Duration::from_secs(2),
            "chunk {i} reached B's subscriber {delay:?} after A stored it"
        );
    }
}
