//! What the engine reads, in-process on a manual clock (a real store, no network): a transition
//! of an execution this engine committed last reads nothing; a cached state another engine has
//! moved past is caught by the commit's version check, read again, and never written over; and
//! an output follower coalesces the wake-ups that arrive while its reader is slow, and takes what
//! a commit on its own server made of the row instead of reading it (unless that commit does not
//! continue what it saw); and claims and reports do not wake (and so make read) a sweeper that
//! already plans to wake sooner.

#[allow(
    unused_imports,
    reason = "these tests use only the databases of the shared test code"
)]
mod common;

use cairn::contract::{ActivityOutcome, Assignment, ChunkIn, Progress, Report};
use cairn::domain::{ExecutionStatus, HistoryEvent, RetryPolicy, Timeouts, Usage};
use cairn::engine::{Engine, OutputEvent, StartRequest};
use cairn::store::AgentKey;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use common::Db;
use common::engine::{T0, claim_one, echo_agent_at_t0, engine_on};

crate::on_both_stores!(
    the_second_transition_of_an_execution_reads_nothing,
    a_stale_cached_state_conflicts_and_is_read_again_without_overwriting_the_newer_row,
    what_a_stale_cached_state_refuses_is_decided_again_from_a_fresh_read,
    wakes_during_a_slow_send_coalesce_into_one_read,
    a_follower_takes_its_own_servers_commits_without_reading,
    a_follower_woken_once_for_several_commits_takes_them_in_turn,
    a_commit_that_does_not_continue_what_a_follower_saw_is_read,
    claims_and_reports_do_not_wake_a_sweeper_that_wakes_before_their_deadlines,
);

async fn start(engine: &Engine, prompts: &[&str], timeouts: Timeouts) -> Uuid {
    let (id, created) = engine
        .start(StartRequest {
            namespace: "default".into(),
            agent: Some(AgentKey::Name("e".into())),
            prompts: prompts.iter().map(|p| p.to_string()).collect(),
            retry_policy: Some(RetryPolicy {
                initial_interval_ms: 1_000,
                backoff_coefficient: 2.0,
                maximum_interval_ms: 10_000,
                maximum_attempts: 3,
                non_retryable_codes: Vec::new(),
            }),
            timeouts: Some(timeouts),
            ..StartRequest::default()
        })
        .await
        .unwrap();
    assert!(created);
    id
}

fn completed(attempt: &Assignment) -> Report {
    Report {
        lease: attempt.lease.clone(),
        first_chunk: Some(0),
        chunks: Vec::new(),
        outcome: ActivityOutcome::Completed {
            output: json!("done"),
            usage: Usage::default(),
            checkpoint: None,
        },
        // These tests count reads of the queue path; eager dispatch has its own tests.
        accept_next: false,
        workspace: None,
    }
}

/// `attempt` completed, with `texts` as its last output.
fn completed_with(attempt: &Assignment, texts: &[&str]) -> Report {
    Report {
        chunks: texts
            .iter()
            .map(|t| ChunkIn {
                kind: "text".into(),
                data: json!({ "text": t }),
            })
            .collect(),
        ..completed(attempt)
    }
}

/// The next event of `follower`: the chunks' texts, or `None` for `Closed` (with its view).
async fn next_texts(
    follower: &mut cairn::engine::OutputFollower,
) -> Result<Vec<String>, Box<cairn::engine::ExecutionView>> {
    match follower.recv().await.unwrap().unwrap() {
        OutputEvent::Chunks(chunks) => Ok(chunks
            .iter()
            .map(|c| c.data["text"].as_str().unwrap().to_string())
            .collect()),
        OutputEvent::Closed(view) => Err(view),
        other => panic!("unexpected {other:?}"),
    }
}

/// Every chunk's text the follower sends until the execution closes, which it must as
/// `COMPLETED`.
async fn texts_until_completed(follower: &mut cairn::engine::OutputFollower) -> Vec<String> {
    let mut texts = Vec::new();
    loop {
        match next_texts(follower).await {
            Ok(chunk_texts) => texts.extend(chunk_texts),
            Err(closed) => {
                assert_eq!(closed.record.status, ExecutionStatus::Completed);
                return texts;
            }
        }
    }
}

fn kinds(events: &[HistoryEvent]) -> Vec<&'static str> {
    events.iter().map(|e| e.event_type()).collect()
}

async fn the_second_transition_of_an_execution_reads_nothing(db: Db) {
    let clock = echo_agent_at_t0(&db).await;
    let engine = engine_on(&db, &clock).await;
    let id = start(&engine, &["one", "two", "three"], Timeouts::default()).await;
    assert_eq!(engine.reads().cached_executions, 1, "the start is cached");
    let before = engine.reads().executions;
    for turn in 0..3 {
        let attempt = claim_one(&engine).await;
        engine.report(completed(&attempt)).await.unwrap();
        assert_eq!(
            engine.reads().executions,
            before,
            "turn {turn}: the report's transition folded the cached state, reading no row"
        );
    }
    assert_eq!(
        engine.reads().cached_executions,
        0,
        "a closed execution leaves the cache"
    );
    let record = engine.execution(id).await.unwrap();
    assert_eq!(record.status, ExecutionStatus::Completed);
    // The row the cached transitions wrote is the one a replay of the history gives.
    let history = engine.full_history(id).await.unwrap();
    assert_eq!(record.next_seq, history.len() as u64 + 1);
    let report = engine.replay(id).await.unwrap();
    assert!(report.verdict.is_ok(), "{report:?}");
}

async fn a_stale_cached_state_conflicts_and_is_read_again_without_overwriting_the_newer_row(
    db: Db,
) {
    let clock = echo_agent_at_t0(&db).await;
    let a = engine_on(&db, &clock).await;
    let b = engine_on(&db, &clock).await;
    let id = start(&a, &["one", "two"], Timeouts::default()).await;
    let attempt = claim_one(&a).await;
    // Another server moves the row on behind a's cache.
    b.cancel(id, "stop".into()).await.unwrap();
    let reads = a.reads().executions;
    a.report(completed(&attempt)).await.unwrap();
    assert_eq!(
        a.reads().executions,
        reads + 1,
        "the cached state conflicted and was read once again"
    );
    let history = a.full_history(id).await.unwrap();
    let kinds = kinds(&history);
    assert_eq!(
        kinds.iter().filter(|k| **k == "CancelRequested").count(),
        1,
        "the other server's cancel stays in the history: {kinds:?}"
    );
    let cancel = kinds.iter().position(|k| *k == "CancelRequested").unwrap();
    let started = kinds.iter().position(|k| *k == "ActivityStarted").unwrap();
    assert!(
        cancel < started,
        "the report was recomputed after the cancel: {kinds:?}"
    );
    let record = a.execution(id).await.unwrap();
    assert_eq!(
        record.status,
        ExecutionStatus::Canceled,
        "the recomputed transition saw the cancel and did not schedule turn 2: {kinds:?}"
    );
    assert_eq!(record.next_seq, history.len() as u64 + 1);
    assert!(a.replay(id).await.unwrap().verdict.is_ok());
}

async fn what_a_stale_cached_state_refuses_is_decided_again_from_a_fresh_read(db: Db) {
    let clock = echo_agent_at_t0(&db).await;
    let a = engine_on(&db, &clock).await;
    let b = engine_on(&db, &clock).await;
    let timeouts = Timeouts {
        heartbeat_ms: 5_000,
        ..Timeouts::default()
    };
    let id = start(&a, &["one"], timeouts).await;
    let first = claim_one(&a).await;
    // On b: attempt 1 times out and attempt 2 is scheduled after its back-off. a's cache still
    // holds the state in which attempt 1 is the open one.
    clock.advance(5_000);
    b.sweep(64).await.unwrap();
    clock.advance(10_000);
    b.sweep(64).await.unwrap();
    let second = claim_one(&b).await;
    assert_eq!(second.lease.attempt, 2);
    // The cached state says attempt 2 is not open; the stored one says it is.
    a.report(completed(&second)).await.unwrap();
    assert_eq!(
        a.execution(id).await.unwrap().status,
        ExecutionStatus::Completed
    );
    // And the first attempt's report is refused, from a fresh read: it is stale.
    assert!(a.report(completed(&first)).await.is_err());
}

async fn wakes_during_a_slow_send_coalesce_into_one_read(db: Db) {
    const N: usize = 20;
    let clock = echo_agent_at_t0(&db).await;
    let engine = engine_on(&db, &clock).await;
    let id = start(&engine, &["one"], Timeouts::default()).await;
    let attempt = claim_one(&engine).await;
    let mut index = 0;
    let mut emit = async |engine: &Engine| {
        engine
            .progress(Progress {
                lease: attempt.lease.clone(),
                first_chunk: Some(index),
                chunks: vec![ChunkIn {
                    kind: "text".into(),
                    data: json!({ "text": format!("chunk {index}") }),
                }],
                checkpoint: None,
                workspace: None,
                asks: Vec::new(),
                awaiting: false,
            })
            .await
            .unwrap();
        index += 1;
    };
    let mut follower = engine
        .follow_output(id, 0, false, |_| true, CancellationToken::new())
        .await
        .unwrap();
    let mut seen = Vec::new();
    let take = async |follower: &mut cairn::engine::OutputFollower| match follower
        .recv()
        .await
        .unwrap()
        .unwrap()
    {
        OutputEvent::Chunks(chunks) => chunks.iter().map(|c| c.seq).collect::<Vec<_>>(),
        OutputEvent::Closed(_) => Vec::new(),
        other => panic!("unexpected {other:?}"),
    };
    emit(&engine).await;
    seen.extend(take(&mut follower).await);
    // One more page fills the follower's channel of one, which the reader does not empty: the
    // follower now waits to send, and every notification below arrives meanwhile.
    emit(&engine).await;
    while follower.is_empty() {
        tokio::task::yield_now().await;
    }
    let reads = engine.reads().output_pages;
    for _ in 0..N {
        emit(&engine).await;
    }
    // The reader takes the pending page, then the page of everything written meanwhile.
    seen.extend(take(&mut follower).await);
    seen.extend(take(&mut follower).await);
    assert_eq!(
        seen,
        (1..=(N as u64 + 2)).collect::<Vec<_>>(),
        "every chunk once, in order"
    );
    // Closing wakes it once more. The report is committed by this engine, which hands the
    // follower what it made of the row (closed, with the whole row): no row read on either
    // store, and no page (`a_follower_takes_its_own_servers_commits_without_reading`).
    let rows_read = engine.reads().executions;
    engine.report(completed(&attempt)).await.unwrap();
    loop {
        match follower
            .recv()
            .await
            .expect("the follower ends with Closed")
        {
            Ok(OutputEvent::Closed(_)) => break,
            Ok(OutputEvent::Chunks(chunks)) => assert!(chunks.is_empty(), "{chunks:?}"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        engine.reads().executions,
        rows_read,
        "the report reads no row, nor does the follower"
    );
    let after = engine.reads().output_pages - reads;
    // The page of everything written while it waited, and at most one coalesced wake-up: N
    // notifications cost at most one read of their own.
    assert!(
        (1..=2).contains(&after),
        "{N} notifications during one slow send: {after} reads, expected the page and at most \
         one coalesced wake-up"
    );
}

/// Whether the sweeper's wait would return at once (a wake-up is pending), taking it.
fn sweeper_woken(engine: &Engine) -> bool {
    use futures::FutureExt;
    engine.notifier().deadline().now_or_never().is_some()
}

async fn claims_and_reports_do_not_wake_a_sweeper_that_wakes_before_their_deadlines(db: Db) {
    let clock = echo_agent_at_t0(&db).await;
    let engine = engine_on(&db, &clock).await;
    // What a sweeper with the default longest sleep (500 ms) publishes before it sleeps.
    engine.notifier().sweeper_reading();
    engine.notifier().sweeper_plans(T0 + 500);
    let id = start(&engine, &["one", "two"], Timeouts::default()).await;
    for turn in 0..2 {
        let attempt = claim_one(&engine).await;
        engine.report(completed(&attempt)).await.unwrap();
        assert!(
            !sweeper_woken(&engine),
            "turn {turn}: a 30 s lease is not due before the sweeper's next look"
        );
    }
    let record = engine.execution(id).await.unwrap();
    assert_eq!(record.status, ExecutionStatus::Completed);
    // A lease that expires before the planned look does wake it.
    let timeouts = Timeouts {
        heartbeat_ms: 100,
        ..Timeouts::default()
    };
    start(&engine, &["short"], timeouts).await;
    assert!(
        !sweeper_woken(&engine),
        "no deadline yet: the task waits unclaimed"
    );
    claim_one(&engine).await;
    assert!(sweeper_woken(&engine), "a lease due at T0 + 100 wakes it");
}

async fn a_follower_takes_its_own_servers_commits_without_reading(db: Db) {
    let clock = echo_agent_at_t0(&db).await;
    let engine = engine_on(&db, &clock).await;
    // Labels, so the row handed over must carry them as a read would.
    let (id, _) = engine
        .start(StartRequest {
            namespace: "default".into(),
            agent: Some(AgentKey::Name("e".into())),
            prompts: vec!["one".into(), "two".into()],
            labels: [
                ("team".to_string(), "a".to_string()),
                ("k".into(), "v".into()),
            ]
            .into(),
            ..StartRequest::default()
        })
        .await
        .unwrap();
    let mut follower = engine
        .follow_output(id, 0, false, |_| true, CancellationToken::new())
        .await
        .unwrap();
    let (pages, rows) = (engine.reads().output_pages, engine.reads().executions);
    let first = claim_one(&engine).await;
    engine
        .report(completed_with(&first, &["a", "b"]))
        .await
        .unwrap();
    let mut handed = chunks_of(follower.recv().await.unwrap().unwrap());
    let second = claim_one(&engine).await;
    engine
        .report(completed_with(&second, &["c"]))
        .await
        .unwrap();
    handed.extend(chunks_of(follower.recv().await.unwrap().unwrap()));
    let Ok(OutputEvent::Closed(closed)) = follower.recv().await.unwrap() else {
        panic!("the execution closed");
    };
    assert_eq!(
        (engine.reads().output_pages, engine.reads().executions),
        (pages, rows),
        "after its first page, the follower read neither a page nor the row"
    );
    // What it was handed is what a read finds: the closed row, and the chunks as stored.
    assert_eq!(closed.record.status, ExecutionStatus::Completed);
    assert_eq!(closed.record.labels.len(), 2);
    assert_eq!(*closed, engine.summary(engine.execution(id).await.unwrap()));
    let mut fresh = engine
        .follow_output(id, 0, false, |_| true, CancellationToken::new())
        .await
        .unwrap();
    let read = chunks_of(fresh.recv().await.unwrap().unwrap());
    assert_eq!(handed.iter().map(|c| c.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(handed, read);
}

async fn a_follower_woken_once_for_several_commits_takes_them_in_turn(db: Db) {
    let clock = echo_agent_at_t0(&db).await;
    let engine = engine_on(&db, &clock).await;
    let id = start(&engine, &["one", "two", "three"], Timeouts::default()).await;
    let mut follower = engine
        .follow_output(id, 0, false, |_| true, CancellationToken::new())
        .await
        .unwrap();
    let pages = engine.reads().output_pages;
    let first = claim_one(&engine).await;
    engine.report(completed_with(&first, &["a"])).await.unwrap();
    // The page of turn 1 fills the follower's channel of one, which the reader does not empty:
    // turns 2 and 3 commit while the follower waits to send.
    while follower.is_empty() {
        tokio::task::yield_now().await;
    }
    for text in ["b", "c"] {
        let next = claim_one(&engine).await;
        engine.report(completed_with(&next, &[text])).await.unwrap();
    }
    let texts = texts_until_completed(&mut follower).await;
    assert_eq!(texts, ["a", "b", "c"], "every chunk once, in order");
    assert_eq!(
        engine.reads().output_pages,
        pages,
        "the three commits' pages were taken from the commits, one after another"
    );
}

/// The chunks of a follower's event.
fn chunks_of(event: OutputEvent) -> Vec<cairn::store::StoredChunk> {
    match event {
        OutputEvent::Chunks(chunks) => chunks,
        other => panic!("chunks expected, got {other:?}"),
    }
}

async fn a_commit_that_does_not_continue_what_a_follower_saw_is_read(db: Db) {
    let clock = echo_agent_at_t0(&db).await;
    let engine = engine_on(&db, &clock).await;
    let id = start(&engine, &["one"], Timeouts::default()).await;
    let attempt = claim_one(&engine).await;
    let mut follower = engine
        .follow_output(id, 0, false, |_| true, CancellationToken::new())
        .await
        .unwrap();
    // A progress (which hands no tail) and then the report, while the follower waits: the
    // report's tail starts after the progress's chunk, which the follower has not seen.
    engine
        .progress(Progress {
            lease: attempt.lease.clone(),
            first_chunk: Some(0),
            chunks: vec![ChunkIn {
                kind: "text".into(),
                data: json!({ "text": "p" }),
            }],
            checkpoint: None,
            workspace: None,
            asks: Vec::new(),
            awaiting: false,
        })
        .await
        .unwrap();
    let report = Report {
        first_chunk: Some(1),
        ..completed_with(&attempt, &["r"])
    };
    engine.report(report).await.unwrap();
    let texts = texts_until_completed(&mut follower).await;
    assert_eq!(texts, ["p", "r"], "every chunk once, in order");
}

/// Holds execution `id`'s row (locked in a transaction of another connection) until released,
/// so a commit that moves it waits.
struct Hold(sqlx::PgConnection);

impl Hold {
    async fn take(db: &Db, id: Uuid) -> Hold {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
        sqlx::query("SELECT id FROM executions WHERE id = $1 FOR UPDATE")
            .bind(id)
            .execute(&mut conn)
            .await
            .unwrap();
        Hold(conn)
    }

    /// Returns once a backend of the database waits for a lock.
    async fn until_a_commit_waits(&mut self) {
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(&mut self.0)
            .await
            .unwrap();
            if waiting > 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    async fn release(mut self) {
        sqlx::query("COMMIT").execute(&mut self.0).await.unwrap();
    }
}

/// A client that starts an execution and then streams it is often still opening its stream
/// while the execution's only turn commits (the benchmarks' W1 and W2). The closing commit
/// hands its page, with the whole row, to the follower that arrived meanwhile, which reads only
/// its first page. On PostgreSQL, where a commit can be held midway by a row lock (SQLite
/// answers a writer that would wait on another connection's write lock with `SQLITE_BUSY`); the
/// engine's code under test is the same on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_arrives_during_the_closing_commit_reads_no_page_for_it() {
    let Some(db) = Db::postgres().await else {
        return;
    };
    let clock = echo_agent_at_t0(&db).await;
    let engine = engine_on(&db, &clock).await;
    let id = start(&engine, &["one"], Timeouts::default()).await;
    let attempt = claim_one(&engine).await;
    let mut hold = Hold::take(&db, id).await;
    let report = tokio::spawn({
        let engine = engine.clone();
        async move { engine.report(completed_with(&attempt, &["a"])).await }
    });
    hold.until_a_commit_waits().await;
    assert!(!report.is_finished(), "the report's commit waits");
    let pages = engine.reads().output_pages;
    let mut follower = engine
        .follow_output(id, 0, false, |_| true, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(
        engine.reads().output_pages,
        pages + 1,
        "the follower's first page, read before the commit"
    );
    hold.release().await;
    report.await.unwrap().unwrap();
    let rows = engine.reads().executions;
    let texts = texts_until_completed(&mut follower).await;
    assert_eq!(texts, ["a"]);
    assert_eq!(
        (engine.reads().output_pages, engine.reads().executions),
        (pages + 1, rows),
        "the closing commit's page and row came from the commit: no second page, no row read"
    );
}
