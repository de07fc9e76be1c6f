//! Agent executions end to end through a real `cairn dev` process: output streaming, retries,
//! cancellation and idempotent starts, on SQLite and on PostgreSQL.

mod common;

use std::time::Duration;

use cairn::api::pb;
use common::client::{assert_gapless, fast_retries, kinds, start_request, text_of};
use common::{Db, Server};
use serde_json::json;

fn words(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("w{i} ")).collect()
}

async fn streams_agree_for_live_late_resumed_and_replayed_subscribers(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    c.create_agent(
        "streamer",
        "echo",
        json!({ "chunks": words(30), "delay_ms": 15 }),
    )
    .await;
    let id = c.start_simple("streamer", "ignored").await;

    let mut live = c.clone();
    let live_id = id.clone();
    let live = tokio::spawn(async move { live.watch(&live_id, 0).await });
    c.wait_until(&id, "ten chunks", |e| e.output_length >= 10)
        .await;
    let mut late = c.clone();
    let late_id = id.clone();
    let late = tokio::spawn(async move { late.watch(&late_id, 0).await });
    let mut resumed = c.clone();
    let resumed_id = id.clone();
    let resumed = tokio::spawn(async move { resumed.watch(&resumed_id, 5).await });

    let live = live.await.unwrap();
    let late = late.await.unwrap();
    let resumed = resumed.await.unwrap();
    let replayed = c.watch(&id, 0).await;

    assert_eq!(replayed.closed.status, "COMPLETED");
    assert_eq!(replayed.chunks.len(), 30);
    assert_gapless(&replayed.chunks, 1);
    assert_eq!(replayed.text(), words(30).concat());
    assert_eq!(
        live.chunks, replayed.chunks,
        "a live subscriber sees exactly what a replay sees"
    );
    assert_eq!(
        late.chunks, replayed.chunks,
        "a subscriber joining mid-run misses nothing"
    );
    assert_eq!(
        resumed.chunks,
        replayed.chunks[5..],
        "resuming from seq 5 sees every later chunk once"
    );
    assert!(
        replayed
            .chunks
            .iter()
            .all(|ch| ch.activity_id == "turn-1" && ch.attempt == 1)
    );
}

async fn retryable_failures_are_retried_from_the_checkpoint(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    let config = json!({ "chunks": words(6), "fail_attempts": [1, 2], "fail_after_chunks": 2 });
    c.create_agent("flaky", "echo", config).await;
    let mut request = start_request("flaky", &["x"]);
    request.retry_policy = Some(fast_retries(5));
    let id = c.start(request).await;
    let watched = c.watch(&id, 0).await;

    assert_eq!(watched.closed.status, "COMPLETED");
    let history = c.history(&id).await;
    assert_eq!(
        kinds(&history),
        [
            "ExecutionStarted",
            "ActivityScheduled",
            "ActivityStarted",
            "ActivityFailed",
            "TimerStarted",
            "TimerFired",
            "ActivityScheduled",
            "ActivityStarted",
            "ActivityFailed",
            "TimerStarted",
            "TimerFired",
            "ActivityScheduled",
            "ActivityStarted",
            "ActivityCompleted",
            "ExecutionCompleted",
        ]
    );
    let timers: Vec<&serde_json::Value> = history
        .iter()
        .filter(|e| e.kind == "TimerStarted")
        .map(|e| &e.payload)
        .collect();
    assert_eq!(timers[0]["purpose"]["attempt"], 2);
    assert_eq!(timers[1]["purpose"]["attempt"], 3);
    assert!(
        timers[0]["delay_ms"].as_u64().unwrap() >= 50,
        "the back-off is recorded: {}",
        timers[0]
    );
    assert!(
        timers[1]["delay_ms"].as_u64().unwrap() >= 100,
        "the back-off grows: {}",
        timers[1]
    );
    let completed = history
        .iter()
        .find(|e| e.kind == "ActivityCompleted")
        .unwrap();
    assert_eq!(completed.payload["attempt"], 3);

    // Each attempt resumed where the last one's checkpoint left off: no text twice.
    assert_eq!(watched.text(), words(6).concat());
    let attempts: Vec<u32> = watched.chunks.iter().map(|ch| ch.attempt).collect();
    assert_eq!(attempts, [1, 1, 2, 2, 3, 3]);
    assert_gapless(&watched.chunks, 1);
}

async fn exhausted_and_non_retryable_failures_fail_the_execution(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    c.create_agent(
        "always-fails",
        "echo",
        json!({ "fail_attempts": [1, 2, 3], "fail_code": "model_down" }),
    )
    .await;
    c.create_agent(
        "fatal",
        "echo",
        json!({ "fail_attempts": [1], "fail_retryable": false, "fail_code": "bad_request" }),
    )
    .await;

    let mut request = start_request("always-fails", &["x"]);
    request.retry_policy = Some(fast_retries(2));
    let exhausted = c.start(request).await;
    let mut request = start_request("fatal", &["x"]);
    request.retry_policy = Some(fast_retries(5));
    let fatal = c.start(request).await;

    let closed = c.watch(&exhausted, 0).await.closed;
    assert_eq!(closed.status, "FAILED");
    let failure = closed.failure.expect("a failure");
    assert_eq!(
        failure.code, "model_down",
        "the runtime's error is the execution's failure"
    );
    assert!(failure.message.contains("attempt 2"), "{}", failure.message);
    let history = c.history(&exhausted).await;
    assert_eq!(
        history
            .iter()
            .filter(|e| e.kind == "ActivityFailed")
            .count(),
        2
    );
    assert_eq!(kinds(&history).last(), Some(&"ExecutionFailed"));

    let closed = c.watch(&fatal, 0).await.closed;
    assert_eq!(closed.status, "FAILED");
    assert_eq!(closed.failure.unwrap().code, "bad_request");
    let history = c.history(&fatal).await;
    assert_eq!(
        kinds(&history),
        [
            "ExecutionStarted",
            "ActivityScheduled",
            "ActivityStarted",
            "ActivityFailed",
            "ExecutionFailed"
        ]
    );
}

async fn multi_turn_executions_hand_the_checkpoint_to_the_next_turn(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    c.create_agent("talker", "echo", json!({})).await;
    let id = c
        .start(start_request("talker", &["one ", "two ", "three"]))
        .await;
    let watched = c.watch(&id, 0).await;
    assert_eq!(watched.closed.status, "COMPLETED");
    assert_eq!(watched.text(), "one two three");
    let result: serde_json::Value = serde_json::from_str(&watched.closed.result_json).unwrap();
    assert_eq!(result["turn"], 3);
    assert_eq!(
        result["turns_completed_before"], 2,
        "turn 3 resumed the conversation of turns 1-2"
    );
    let turns: Vec<String> = c
        .history(&id)
        .await
        .iter()
        .filter(|e| e.kind == "ActivityCompleted")
        .map(|e| e.payload["activity_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(turns, ["turn-1", "turn-2", "turn-3"]);
}

async fn cancelling_stops_the_runtime_promptly(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    c.create_agent(
        "slow",
        "echo",
        json!({ "chunks": words(400), "delay_ms": 50 }),
    )
    .await;
    let id = c.start_simple("slow", "x").await;
    c.wait_until(&id, "output", |e| e.output_length >= 3).await;
    let asked = std::time::Instant::now();
    c.executions
        .cancel_execution(pb::CancelExecutionRequest {
            id: id.clone(),
            reason: "test".into(),
        })
        .await
        .unwrap();
    let watched = c.watch_within(&id, 0, Duration::from_secs(10)).await;
    assert_eq!(watched.closed.status, "CANCELED");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "cancelled in {:?}",
        asked.elapsed()
    );
    assert!(watched.chunks.len() < 400, "the runtime stopped early");
    let history = c.history(&id).await;
    let canceled = history
        .iter()
        .find(|e| e.kind == "ActivityCanceled")
        .expect("ActivityCanceled");
    assert_eq!(
        canceled.payload["abandoned"], false,
        "the runtime honoured its token"
    );
    assert_eq!(
        kinds(&history)[history.len() - 5..],
        [
            "CancelRequested",
            "ActivityCancelRequested",
            "ActivityStarted",
            "ActivityCanceled",
            "ExecutionCanceled"
        ]
    );

    let again = c
        .executions
        .cancel_execution(pb::CancelExecutionRequest {
            id: id.clone(),
            reason: String::new(),
        })
        .await
        .expect_err("cancelling a closed execution is refused");
    assert_eq!(again.code(), tonic::Code::FailedPrecondition);
    assert!(again.message().contains("CANCELED"), "{}", again.message());
}

async fn a_runtime_that_ignores_cancellation_is_abandoned(db: Db) {
    let server = Server::dev(&db, &["--cancel-grace-ms", "300"]);
    let mut c = server.client().await;
    c.create_agent(
        "stubborn",
        "echo",
        json!({ "chunks": words(400), "delay_ms": 50, "ignore_cancel_ms": 600000 }),
    )
    .await;
    let id = c.start_simple("stubborn", "x").await;
    c.wait_until(&id, "output", |e| e.output_length >= 2).await;
    c.executions
        .cancel_execution(pb::CancelExecutionRequest {
            id: id.clone(),
            reason: "test".into(),
        })
        .await
        .unwrap();
    let watched = c.watch_within(&id, 0, Duration::from_secs(15)).await;
    assert_eq!(watched.closed.status, "CANCELED");
    let history = c.history(&id).await;
    let canceled = history
        .iter()
        .find(|e| e.kind == "ActivityCanceled")
        .expect("ActivityCanceled");
    assert_eq!(
        canceled.payload["abandoned"], true,
        "the worker gave up on the runtime"
    );
}

async fn cancelling_an_unclaimed_execution_closes_it_at_once(db: Db) {
    // A server without a worker: the task waits, and `exec get` says why.
    let server = Server::start(&db, "server", &[]);
    let mut c = server.client().await;
    c.create_agent("idle", "echo", json!({})).await;
    let id = c.start_simple("idle", "x").await;
    let pending = c.get(&id).await;
    assert_eq!(pending.status, "PENDING");
    let activity = pending.activity.expect("an open activity");
    assert!(
        activity
            .state
            .contains("waiting for a worker with runtime `echo`"),
        "{}",
        activity.state
    );

    let canceled = c
        .executions
        .cancel_execution(pb::CancelExecutionRequest {
            id: id.clone(),
            reason: "no longer needed".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(canceled.status, "CANCELED");
    assert_eq!(
        db.store().await.count_rows("tasks").await.unwrap(),
        0,
        "no task is left behind"
    );
}

async fn the_same_request_id_starts_one_execution(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    c.create_agent("idem", "echo", json!({})).await;
    let mut request = start_request("idem", &["hello"]);
    request.request_id = "order-42".into();
    let first = c
        .executions
        .start_execution(request.clone())
        .await
        .unwrap()
        .into_inner();
    let second = c
        .executions
        .start_execution(request)
        .await
        .unwrap()
        .into_inner();
    assert!(first.created);
    assert!(!second.created);
    assert_eq!(first.execution_id, second.execution_id);
    c.watch(&first.execution_id, 0).await;
    assert_eq!(db.store().await.count_rows("executions").await.unwrap(), 1);
}

/// Asks reflection in protocol version `$v` (a module of `tonic_reflection::pb`) for the
/// services it lists and for the file that declares the service named `$symbol`; returns the
/// names and that file's size in bytes. (A macro, not a function: each version has its own
/// generated client and message types.)
macro_rules! ask_reflection {
    ($v:ident, $channel:expr, $symbol:expr) => {{
        use tonic_reflection::pb::$v::ServerReflectionRequest;
        use tonic_reflection::pb::$v::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$v::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$v::server_reflection_response::MessageResponse;
        let ask = |request| ServerReflectionRequest {
            host: String::new(),
            message_request: Some(request),
        };
        let requests = vec![
            ask(MessageRequest::ListServices(String::new())),
            ask(MessageRequest::FileContainingSymbol($symbol.into())),
        ];
        let mut replies = ServerReflectionClient::new($channel)
            .server_reflection_info(tokio_stream::iter(requests))
            .await
            .expect(concat!("reflection ", stringify!($v), " is served"))
            .into_inner();
        let (mut listed, mut bytes) = (Vec::<String>::new(), 0usize);
        while let Some(reply) = replies.message().await.unwrap() {
            match reply.message_response {
                Some(MessageResponse::ListServicesResponse(list)) => {
                    listed.extend(list.service.into_iter().map(|s| s.name))
                }
                Some(MessageResponse::FileDescriptorResponse(files)) => {
                    bytes += files
                        .file_descriptor_proto
                        .iter()
                        .map(Vec::len)
                        .sum::<usize>()
                }
                other => panic!("reflection {} answered {other:?}", stringify!($v)),
            }
        }
        (listed, bytes)
    }};
}

async fn health_and_reflection_are_served(db: Db) {
    let server = Server::dev(&db, &[]);
    let c = server.client().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(c.channel.clone());
    let reply = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "cairn.v1.ExecutionService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        reply.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );

    // Reflection, in both protocol versions: every served service listed, and a service's file
    // descriptor found by symbol (what `grpcurl list` and `grpcurl describe` ask).
    let services = [
        pb::agent_service_server::SERVICE_NAME,
        pb::execution_service_server::SERVICE_NAME,
        pb::team_service_server::SERVICE_NAME,
        pb::worker_service_server::SERVICE_NAME,
        tonic_health::pb::health_server::SERVICE_NAME,
    ];
    let described = pb::execution_service_server::SERVICE_NAME;
    let v1 = ask_reflection!(v1, c.channel.clone(), described);
    let v1alpha = ask_reflection!(v1alpha, c.channel.clone(), described);
    for (version, (listed, descriptor_bytes)) in [("v1", v1), ("v1alpha", v1alpha)] {
        for service in services {
            assert!(
                listed.iter().any(|s| s == service),
                "reflection {version} lists {listed:?}, not {service}"
            );
        }
        assert!(
            descriptor_bytes > 0,
            "reflection {version} found no file for {described}"
        );
    }
}

async fn chunks_are_tagged_with_their_activity_and_attempt(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    c.create_agent(
        "tagger",
        "echo",
        json!({ "fail_attempts": [1], "fail_after_chunks": 1 }),
    )
    .await;
    let mut request = start_request("tagger", &["a b ", "c d"]);
    request.retry_policy = Some(fast_retries(3));
    let id = c.start(request).await;
    let watched = c.watch(&id, 0).await;
    let tags: Vec<(String, u32)> = watched
        .chunks
        .iter()
        .map(|ch| (ch.activity_id.clone(), ch.attempt))
        .collect();
    let expected: Vec<(String, u32)> = [("turn-1", 1), ("turn-1", 2), ("turn-2", 1), ("turn-2", 2)]
        .iter()
        .map(|(a, n)| (a.to_string(), *n))
        .collect();
    assert_eq!(tags, expected);
    assert_eq!(text_of(&watched.chunks), "a b c d");
}

on_both_stores!(
    streams_agree_for_live_late_resumed_and_replayed_subscribers,
    retryable_failures_are_retried_from_the_checkpoint,
    exhausted_and_non_retryable_failures_fail_the_execution,
    multi_turn_executions_hand_the_checkpoint_to_the_next_turn,
    cancelling_stops_the_runtime_promptly,
    a_runtime_that_ignores_cancellation_is_abandoned,
    cancelling_an_unclaimed_execution_closes_it_at_once,
    the_same_request_id_starts_one_execution,
    health_and_reflection_are_served,
    chunks_are_tagged_with_their_activity_and_attempt,
);
