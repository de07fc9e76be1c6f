//! Reports of leases the engine handed out itself (claimed through it, or granted by its own
//! transitions: eager dispatch), in-process on a manual clock over a real store: the report is
//! made from what the engine remembers of the task, reading no task row, and writes what a
//! report made from a read would; when a progress reached the task through another server since,
//! the remembered report is fenced and made again from a read, so no chunk is stored twice and
//! no gap is refused.

#[allow(
    unused_imports,
    reason = "these tests use only the databases of the shared test code"
)]
mod common;

use std::sync::Arc;

use cairn::contract::{ActivityOutcome, Assignment, ChunkIn, Progress, Report};
use cairn::domain::{ExecutionStatus, HistoryEvent, Millis, Usage};
use cairn::engine::{Engine, EngineOptions};
use serde_json::json;
use uuid::Uuid;

use common::Db;
use common::engine::{T0, claim_one, echo_agent_at_t0, engine_on, start_echo};

crate::on_both_stores!(
    a_report_of_a_lease_this_engine_granted_reads_no_task_row,
    a_progress_through_another_server_fences_the_remembered_report,
    a_batch_after_a_progress_through_another_server_is_not_refused_as_a_gap,
    a_remembered_report_past_the_output_limit_is_refused_from_a_read,
);

/// A chunk of exactly `bytes` toward the output limit (`text` and `{"text":""}` are 15).
fn chunk_of(bytes: usize) -> String {
    "x".repeat(bytes - 15)
}

fn text(s: &str) -> ChunkIn {
    ChunkIn {
        kind: "text".into(),
        data: json!({ "text": s }),
    }
}

/// A completed report of `attempt` with `chunks` from `first_chunk` on, taking the next turn.
fn completed(attempt: &Assignment, first_chunk: u64, chunks: &[&str]) -> Report {
    Report {
        lease: attempt.lease.clone(),
        first_chunk: Some(first_chunk),
        chunks: chunks.iter().map(|c| text(c)).collect(),
        outcome: ActivityOutcome::Completed {
            output: json!("done"),
            usage: Usage::default(),
            checkpoint: None,
        },
        accept_next: true,
        workspace: None,
    }
}

async fn texts(engine: &Engine, id: Uuid) -> Vec<String> {
    let page = engine
        .store()
        .output_page(id, 0, 512, u64::MAX, false)
        .await
        .unwrap()
        .unwrap();
    page.chunks
        .iter()
        .map(|c| c.data["text"].as_str().unwrap().to_string())
        .collect()
}

/// The `ActivityStarted` events of `id`: (activity, worker, started_at, workspace).
async fn starts(engine: &Engine, id: Uuid) -> Vec<(String, String, Millis, Option<String>)> {
    engine
        .full_history(id)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match e {
            HistoryEvent::ActivityStarted {
                activity_id,
                worker,
                started_at,
                workspace,
                ..
            } => Some((activity_id, worker, started_at, workspace)),
            _ => None,
        })
        .collect()
}

async fn a_report_of_a_lease_this_engine_granted_reads_no_task_row(db: Db) {
    let clock = echo_agent_at_t0(&db).await;
    let engine = engine_on(&db, &clock).await;
    let id = start_echo(&engine, &["one", "two", "three"]).await;
    // Turn 1 is claimed by a poll through this engine; turns 2 and 3 are leased by its own
    // transitions (eager dispatch). No report reads a task row.
    let first = claim_one(&engine).await;
    let before = engine.reads().tasks;
    clock.advance(5);
    let second = engine
        .report(completed(&first, 0, &["a"]))
        .await
        .unwrap()
        .expect("turn 2 is leased to the reporting worker");
    clock.advance(7);
    let third = engine
        .report(completed(&second, 0, &["b", "c"]))
        .await
        .unwrap()
        .expect("turn 3 is leased to the reporting worker");
    clock.advance(11);
    let last = engine.report(completed(&third, 0, &["d"])).await.unwrap();
    assert!(last.is_none(), "no turn after the third");
    assert_eq!(engine.reads().tasks, before, "no report read a task row");
    // What they wrote is what reports made from reads write: the output once, in order, and
    // each attempt started when its lease was granted, by the worker that held it.
    assert_eq!(texts(&engine, id).await, ["a", "b", "c", "d"]);
    let starts = starts(&engine, id).await;
    let when: Vec<Millis> = starts.iter().map(|s| s.2).collect();
    assert_eq!(when, [T0, T0 + 5, T0 + 12], "{starts:?}");
    assert!(starts.iter().all(|s| s.1 == "w"), "{starts:?}");
    let record = engine.execution(id).await.unwrap();
    assert_eq!(record.status, ExecutionStatus::Completed);
    assert!(engine.replay(id).await.unwrap().verdict.is_ok());
}

/// A two-turn execution on engine `a` whose turn 2 was leased eagerly to worker `w` after turn
/// 1's report, and then stored chunks `x` and `y` (and its directory) through engine `b`, as a
/// worker that failed over to another server would. Returns `a`, the execution and turn 2.
async fn turn_two_progressed_through_another_server(db: &Db) -> (Arc<Engine>, Uuid, Assignment) {
    let clock = echo_agent_at_t0(db).await;
    let a = engine_on(db, &clock).await;
    let b = engine_on(db, &clock).await;
    let id = start_echo(&a, &["one", "two"]).await;
    let first = claim_one(&a).await;
    let second = a
        .report(completed(&first, 0, &["one"]))
        .await
        .unwrap()
        .expect("turn 2 is leased to the reporting worker");
    assert_eq!(second.lease.execution_id, id);
    b.progress(Progress {
        lease: second.lease.clone(),
        first_chunk: Some(0),
        chunks: vec![text("x"), text("y")],
        checkpoint: None,
        workspace: Some("/work/turn-2".into()),
        asks: Vec::new(),
        awaiting: false,
    })
    .await
    .unwrap();
    (a, id, second)
}

async fn a_progress_through_another_server_fences_the_remembered_report(db: Db) {
    let (a, id, second) = turn_two_progressed_through_another_server(&db).await;
    // The worker did not hear back from b, so it sends x and y again with its last chunk, to a.
    // a remembers no chunks stored: made from memory, it would store x and y twice.
    let reads = a.reads().tasks;
    a.report(completed(&second, 0, &["x", "y", "z"]))
        .await
        .expect("made again from a read");
    assert_eq!(
        a.reads().tasks,
        reads + 1,
        "fenced, then made from one read"
    );
    assert_eq!(
        texts(&a, id).await,
        ["one", "x", "y", "z"],
        "each chunk once"
    );
    let starts = starts(&a, id).await;
    assert_eq!(
        starts[1].3.as_deref(),
        Some("/work/turn-2"),
        "the directory the progress named, from the read: {starts:?}"
    );
    assert_eq!(
        a.execution(id).await.unwrap().status,
        ExecutionStatus::Completed
    );
    assert!(a.replay(id).await.unwrap().verdict.is_ok());
}

async fn a_batch_after_a_progress_through_another_server_is_not_refused_as_a_gap(db: Db) {
    let (a, id, second) = turn_two_progressed_through_another_server(&db).await;
    // The worker heard back from b: its last batch starts at chunk 2, which a never saw stored.
    a.report(completed(&second, 2, &["z"]))
        .await
        .expect("not a gap: made again from a read");
    assert_eq!(texts(&a, id).await, ["one", "x", "y", "z"]);
    assert_eq!(
        a.execution(id).await.unwrap().status,
        ExecutionStatus::Completed
    );
}

/// The output limit of a report made from memory is its commit's fence: one over the limit is
/// fenced, made again from a read, and refused naming the limit, with nothing written; one up to
/// the limit exactly is taken without a read.
async fn a_remembered_report_past_the_output_limit_is_refused_from_a_read(db: Db) {
    let clock = echo_agent_at_t0(&db).await;
    let options = EngineOptions {
        max_output_bytes: Some(100),
        ..EngineOptions::default()
    };
    let engine = Engine::new(db.store().await, clock.clone(), options);
    start_echo(&engine, &["one"]).await;
    let attempt = claim_one(&engine).await;
    let rows = db.row_counts().await;
    let reads = engine.reads().tasks;
    let over = chunk_of(101);
    match engine
        .report(completed(&attempt, 0, &[over.as_str()]))
        .await
    {
        Err(cairn::engine::EngineError::InvalidArgument(message)) => {
            assert!(message.contains("--max-output-bytes"), "{message}");
            assert!(message.contains("101 bytes"), "{message}");
        }
        other => panic!("output over the limit is refused: {other:?}"),
    }
    assert_eq!(db.row_counts().await, rows, "a refusal writes nothing");
    assert_eq!(
        engine.reads().tasks,
        reads + 1,
        "fenced, then refused from a read"
    );

    let id = start_echo(&engine, &["two"]).await;
    let attempt = claim_one(&engine).await;
    let reads = engine.reads().tasks;
    let exact = chunk_of(100);
    engine
        .report(completed(&attempt, 0, &[exact.as_str()]))
        .await
        .expect("up to the limit exactly is taken");
    assert_eq!(engine.reads().tasks, reads, "taken from memory");
    assert_eq!(engine.store().output_bytes(id).await.unwrap(), 100);
}
