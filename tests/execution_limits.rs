//! The limits on a whole execution, on the engine in-process with a manual clock (no sleeps):
//! `execution_timeout` (a durable timer that fails the execution to the millisecond, fences the
//! running attempt, and starts again with a retry), `--max-history-events` (a worker's report
//! past it fails the execution, a client's message past it is refused with nothing written) and
//! `--max-output-bytes` (output past it is refused with nothing written). The black-box versions
//! are in tests/limits.rs.

#[allow(
    unused_imports,
    reason = "these tests use only the databases of the shared test code"
)]
mod common;

use std::sync::Arc;

use cairn::clock::ManualClock;
use cairn::contract::{ActivityOutcome, Assignment, ChunkIn, Progress, Report};
use cairn::domain::{Conversation, ExecutionStatus, Millis, Usage};
use cairn::engine::{Engine, EngineError, EngineOptions, RetryRequest, StartRequest};
use cairn::store::AgentKey;
use serde_json::json;
use uuid::Uuid;

use common::Db;
use common::engine::claim_one;

crate::on_both_stores!(
    an_execution_timeout_fails_the_execution_when_its_timer_fires,
    a_retry_of_a_timed_out_execution_gets_the_whole_timeout_again,
    a_report_past_the_history_limit_fails_the_execution,
    a_message_past_the_history_limit_is_refused_and_writes_nothing,
    output_past_the_limit_is_refused_and_writes_nothing,
);

const T0: Millis = 1_800_000_000_000;

/// An engine on `db` whose clock reads [`T0`] until moved, with an `echo` agent `e`.
async fn engine(db: &Db, options: EngineOptions) -> (Arc<Engine>, Arc<ManualClock>) {
    let store = db.store().await;
    common::db::insert_echo_agent(&*store, "e", T0).await;
    let clock = ManualClock::new(T0);
    (Engine::new(store, clock.clone(), options), clock)
}

async fn start(engine: &Engine, request: StartRequest) -> Uuid {
    let (id, created) = engine
        .start(StartRequest {
            namespace: "default".into(),
            agent: Some(AgentKey::Name("e".into())),
            ..request
        })
        .await
        .unwrap();
    assert!(created);
    id
}

fn prompts(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("turn {i}")).collect()
}

fn completed(attempt: &Assignment, chunks: Vec<ChunkIn>) -> Report {
    Report {
        lease: attempt.lease.clone(),
        first_chunk: Some(0),
        chunks,
        outcome: ActivityOutcome::Completed {
            output: json!("done"),
            usage: Usage::default(),
            checkpoint: None,
        },
        accept_next: false,
        workspace: None,
    }
}

fn progress(attempt: &Assignment, first_chunk: u64, chunks: Vec<ChunkIn>) -> Progress {
    Progress {
        lease: attempt.lease.clone(),
        first_chunk: Some(first_chunk),
        chunks,
        checkpoint: None,
        workspace: None,
        asks: Vec::new(),
        awaiting: false,
    }
}

/// A text chunk of exactly `bytes` bytes as the limit weighs it (kind and JSON data).
fn chunk_of(bytes: usize) -> ChunkIn {
    // `text` plus `{"text":""}` is 15 bytes.
    ChunkIn {
        kind: "text".into(),
        data: json!({ "text": "x".repeat(bytes - 15) }),
    }
}

async fn failure_code(engine: &Engine, id: Uuid) -> (ExecutionStatus, String) {
    let record = engine.execution(id).await.unwrap();
    let code = record.failure.map(|f| f.code).unwrap_or_default();
    (record.status, code)
}

async fn an_execution_timeout_fails_the_execution_when_its_timer_fires(db: Db) {
    let (engine, clock) = engine(&db, EngineOptions::default()).await;
    let id = start(
        &engine,
        StartRequest {
            prompts: prompts(1),
            execution_timeout_ms: Some(10_000),
            ..StartRequest::default()
        },
    )
    .await;
    let attempt = claim_one(&engine).await;
    assert_eq!(attempt.lease.execution_id, id);
    let untimed = start(
        &engine,
        StartRequest {
            prompts: prompts(1),
            ..StartRequest::default()
        },
    )
    .await;
    let started = engine.full_history(id).await.unwrap();
    let recorded = serde_json::to_value(&started[0]).unwrap();
    assert_eq!(recorded["execution_timeout_ms"], 10_000);
    let plain = serde_json::to_value(&engine.full_history(untimed).await.unwrap()[0]).unwrap();
    assert!(
        plain.get("execution_timeout_ms").is_none(),
        "omitted when unset, so older histories read the same: {plain}"
    );

    clock.set(T0 + 9_999);
    engine.sweep(64).await.unwrap();
    assert_eq!(
        engine.execution(id).await.unwrap().status,
        ExecutionStatus::Running,
        "1 ms before its timeout the execution runs"
    );
    clock.set(T0 + 10_000);
    engine.sweep(64).await.unwrap();
    let (status, code) = failure_code(&engine, id).await;
    assert_eq!(
        (status, code.as_str()),
        (ExecutionStatus::Failed, "execution_timeout")
    );
    let failure = engine.execution(id).await.unwrap().failure.unwrap();
    assert!(!failure.retryable, "{failure:?}");
    let events = engine.full_history(id).await.unwrap();
    let tail: Vec<_> = events
        .iter()
        .rev()
        .take(2)
        .map(|e| e.event_type())
        .collect();
    assert_eq!(tail, ["ExecutionFailed", "ExecutionTimedOut"]);

    // The running attempt's task went with the execution: its progress and its late report
    // are fenced, and change nothing.
    let heartbeat = engine.progress(progress(&attempt, 0, Vec::new())).await;
    assert!(
        matches!(heartbeat, Err(EngineError::Stale(_))),
        "{heartbeat:?}"
    );
    let late = engine.report(completed(&attempt, Vec::new())).await;
    assert!(late.is_err(), "the late report is fenced: {late:?}");
    assert_eq!(engine.full_history(id).await.unwrap(), events);
    let (status, _) = failure_code(&engine, untimed).await;
    assert_eq!(status, ExecutionStatus::Pending, "no timeout, no timer");
}

async fn a_retry_of_a_timed_out_execution_gets_the_whole_timeout_again(db: Db) {
    let (engine, clock) = engine(&db, EngineOptions::default()).await;
    let id = start(
        &engine,
        StartRequest {
            prompts: prompts(1),
            execution_timeout_ms: Some(10_000),
            ..StartRequest::default()
        },
    )
    .await;
    clock.set(T0 + 10_000);
    engine.sweep(64).await.unwrap();
    assert_eq!(failure_code(&engine, id).await.1, "execution_timeout");

    clock.set(T0 + 50_000);
    let retry = engine
        .retry(RetryRequest {
            id,
            from_seq: None,
            prompts: Default::default(),
            retry_policy: None,
            force: false,
        })
        .await
        .unwrap();
    let started = serde_json::to_value(&engine.full_history(retry.id).await.unwrap()[0]).unwrap();
    assert_eq!(started["execution_timeout_ms"], 10_000);
    clock.set(T0 + 59_999);
    engine.sweep(64).await.unwrap();
    assert!(
        !engine.execution(retry.id).await.unwrap().status.is_closed(),
        "the retry's timer runs from the retry's start"
    );
    clock.set(T0 + 60_000);
    engine.sweep(64).await.unwrap();
    assert_eq!(
        failure_code(&engine, retry.id).await,
        (ExecutionStatus::Failed, "execution_timeout".to_string())
    );
}

fn history_limit(events: u64) -> EngineOptions {
    EngineOptions {
        max_history_events: Some(events),
        ..EngineOptions::default()
    }
}

async fn a_report_past_the_history_limit_fails_the_execution(db: Db) {
    // Started and the first turn scheduled (2), each completed turn adds ActivityStarted,
    // ActivityCompleted and the next ActivityScheduled (3): the second report would reach 8.
    let (engine, _clock) = engine(&db, history_limit(6)).await;
    let id = start(
        &engine,
        StartRequest {
            prompts: prompts(5),
            ..StartRequest::default()
        },
    )
    .await;
    let first = claim_one(&engine).await;
    engine.report(completed(&first, Vec::new())).await.unwrap();
    assert_eq!(engine.full_history(id).await.unwrap().len(), 5);
    let second = claim_one(&engine).await;
    let refused = engine.report(completed(&second, Vec::new())).await;
    match refused {
        Err(EngineError::FailedPrecondition(message)) => {
            assert!(message.contains("--max-history-events"), "{message}")
        }
        other => panic!("the report is not taken: {other:?}"),
    }
    let (status, code) = failure_code(&engine, id).await;
    assert_eq!(
        (status, code.as_str()),
        (ExecutionStatus::Failed, "max_history_events")
    );
    let events = engine.full_history(id).await.unwrap();
    let types: Vec<_> = events[5..].iter().map(|e| e.event_type()).collect();
    assert_eq!(types, ["HistoryLimitReached", "ExecutionFailed"]);
}

async fn a_message_past_the_history_limit_is_refused_and_writes_nothing(db: Db) {
    // Started, turn 1 scheduled, then started and completed: 4 events, waiting for a message
    // whose MessageReceived and ActivityScheduled would make 6.
    let (engine, _clock) = engine(&db, history_limit(5)).await;
    let id = start(
        &engine,
        StartRequest {
            prompts: prompts(1),
            conversation: Some(Conversation {
                idle_timeout_ms: 60_000,
            }),
            ..StartRequest::default()
        },
    )
    .await;
    let first = claim_one(&engine).await;
    engine.report(completed(&first, Vec::new())).await.unwrap();
    assert_eq!(
        engine.execution(id).await.unwrap().status,
        ExecutionStatus::Waiting
    );
    let before = db.row_counts().await;
    let refused = engine
        .send_message(id, "one more".into(), "m-1".into())
        .await;
    match refused {
        Err(EngineError::FailedPrecondition(message)) => {
            assert!(message.contains("--max-history-events"), "{message}")
        }
        other => panic!("the message is refused: {other:?}"),
    }
    assert_eq!(
        db.row_counts().await,
        before,
        "a refused message writes nothing"
    );
    assert_eq!(
        engine.execution(id).await.unwrap().status,
        ExecutionStatus::Waiting,
        "the conversation still waits"
    );
}

async fn output_past_the_limit_is_refused_and_writes_nothing(db: Db) {
    let options = EngineOptions {
        max_output_bytes: Some(100),
        ..EngineOptions::default()
    };
    let (engine, _clock) = engine(&db, options).await;
    let id = start(
        &engine,
        StartRequest {
            prompts: prompts(1),
            ..StartRequest::default()
        },
    )
    .await;
    let attempt = claim_one(&engine).await;
    engine
        .progress(progress(&attempt, 0, vec![chunk_of(60)]))
        .await
        .unwrap();
    let before = db.row_counts().await;
    let over = engine
        .progress(progress(&attempt, 1, vec![chunk_of(20), chunk_of(21)]))
        .await;
    let refused = |result: Result<_, EngineError>| match result {
        Err(EngineError::InvalidArgument(message)) => {
            assert!(message.contains("--max-output-bytes"), "{message}");
            assert!(message.contains("101 bytes"), "{message}");
        }
        other => panic!("output over the limit is refused: {other:?}"),
    };
    refused(over.map(|_| ()));
    // The report's chunks follow the one progress stored.
    let last = |chunk| Report {
        first_chunk: Some(1),
        ..completed(&attempt, vec![chunk])
    };
    let report = engine.report(last(chunk_of(41))).await;
    refused(report.map(|_| ()));
    assert_eq!(db.row_counts().await, before, "a refusal writes nothing");

    // Up to the limit exactly is taken.
    engine.report(last(chunk_of(40))).await.unwrap();
    assert_eq!(
        engine.execution(id).await.unwrap().status,
        ExecutionStatus::Completed
    );
    assert_eq!(engine.store().output_bytes(id).await.unwrap(), 100);
}
