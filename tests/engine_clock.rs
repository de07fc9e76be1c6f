//! The engine on a manual clock, in-process (a real store, no network, no processes): every
//! timeout kind and the retry back-off, driven by moving time by hand and calling the sweeper,
//! with no sleeps. The black-box versions of these (tests/timeouts.rs) run on the wall clock.

#[allow(
    unused_imports,
    reason = "these tests use only the databases of the shared test code"
)]
mod common;

use std::sync::Arc;

use cairn::clock::{Clock, ManualClock};
use cairn::contract::{ActivityOutcome, Assignment, Progress, Report};
use cairn::domain::{
    ExecutionStatus, Failure, HistoryEvent, Millis, RetryPolicy, TimeoutKind, Timeouts, Usage,
};
use cairn::engine::{Engine, EngineOptions, StartRequest};
use cairn::store::AgentKey;
use serde_json::json;
use uuid::Uuid;

use common::Db;
use common::engine::{claim, claim_one};

crate::on_both_stores!(
    a_heartbeat_timeout_fires_exactly_when_the_lease_expires_and_is_retried_from_the_checkpoint,
    progress_extends_the_lease_by_the_heartbeat_timeout,
    a_start_to_close_timeout_ends_a_busy_attempt_and_is_retried,
    a_schedule_to_start_timeout_fails_the_execution_without_a_retry,
    a_retry_waits_for_its_back_off_timer_to_the_millisecond,
);

const T0: Millis = 1_800_000_000_000;

/// An engine on `db` whose clock reads [`T0`] until moved, with an `echo` agent `e`.
async fn engine(db: &Db) -> (Arc<Engine>, Arc<ManualClock>) {
    let store = db.store().await;
    common::db::insert_echo_agent(&*store, "e", T0).await;
    let clock = ManualClock::new(T0);
    let engine = Engine::new(store, clock.clone(), EngineOptions::default());
    (engine, clock)
}

fn policy(maximum_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        initial_interval_ms: 1_000,
        backoff_coefficient: 2.0,
        maximum_interval_ms: 10_000,
        maximum_attempts,
        non_retryable_codes: Vec::new(),
    }
}

async fn start(engine: &Engine, timeouts: Timeouts, retry: RetryPolicy) -> Uuid {
    let (id, created) = engine
        .start(StartRequest {
            namespace: "default".into(),
            agent: Some(AgentKey::Name("e".into())),
            prompts: vec!["hello".into()],
            retry_policy: Some(retry),
            timeouts: Some(timeouts),
            ..StartRequest::default()
        })
        .await
        .unwrap();
    assert!(created);
    id
}

async fn history(engine: &Engine, id: Uuid) -> Vec<HistoryEvent> {
    engine.full_history(id).await.unwrap()
}

fn timed_out(events: &[HistoryEvent]) -> Vec<(u32, TimeoutKind)> {
    events
        .iter()
        .filter_map(|e| match e {
            HistoryEvent::ActivityTimedOut { attempt, kind, .. } => Some((*attempt, *kind)),
            _ => None,
        })
        .collect()
}

fn timer_fire_at(events: &[HistoryEvent]) -> Option<Millis> {
    events.iter().rev().find_map(|e| match e {
        HistoryEvent::TimerStarted { fire_at, .. } => Some(*fire_at),
        _ => None,
    })
}

async fn status(engine: &Engine, id: Uuid) -> ExecutionStatus {
    engine.execution(id).await.unwrap().status
}

async fn a_heartbeat_timeout_fires_exactly_when_the_lease_expires_and_is_retried_from_the_checkpoint(
    db: Db,
) {
    let (engine, clock) = engine(&db).await;
    let timeouts = Timeouts {
        heartbeat_ms: 5_000,
        ..Timeouts::default()
    };
    let id = start(&engine, timeouts, policy(3)).await;
    let first = claim_one(&engine).await;
    assert_eq!(first.lease.attempt, 1);
    engine
        .progress(Progress {
            lease: first.lease.clone(),
            first_chunk: Some(0),
            chunks: Vec::new(),
            checkpoint: Some(json!({ "next": 3 })),
            workspace: None,
            asks: Vec::new(),
            awaiting: false,
        })
        .await
        .unwrap();

    clock.advance(4_999);
    engine.sweep(64).await.unwrap();
    assert!(
        timed_out(&history(&engine, id).await).is_empty(),
        "1 ms before the lease expires nothing happens"
    );
    clock.advance(1);
    engine.sweep(64).await.unwrap();
    let events = history(&engine, id).await;
    assert_eq!(timed_out(&events), [(1, TimeoutKind::Heartbeat)]);

    // The retry waits for its back-off, then resumes from the checkpoint the attempt saved.
    let fire_at = timer_fire_at(&events).expect("a back-off timer");
    clock.set(fire_at);
    engine.sweep(64).await.unwrap();
    let second = claim_one(&engine).await;
    assert_eq!(second.lease.attempt, 2);
    assert_eq!(second.checkpoint, Some(json!({ "next": 3 })));
    assert_ne!(second.lease.lease_token, first.lease.lease_token);

    // The timed-out attempt is fenced off: its report changes nothing.
    let late = engine.report(completed(&first)).await;
    assert!(late.is_err(), "the first attempt's lease is gone");
    engine.report(completed(&second)).await.unwrap();
    assert_eq!(status(&engine, id).await, ExecutionStatus::Completed);
}

async fn progress_extends_the_lease_by_the_heartbeat_timeout(db: Db) {
    let (engine, clock) = engine(&db).await;
    let timeouts = Timeouts {
        heartbeat_ms: 5_000,
        ..Timeouts::default()
    };
    let id = start(&engine, timeouts, policy(3)).await;
    let attempt = claim_one(&engine).await;
    for _ in 0..4 {
        clock.advance(4_000);
        heartbeat(&engine, &attempt).await.unwrap();
        engine.sweep(64).await.unwrap();
    }
    assert!(
        timed_out(&history(&engine, id).await).is_empty(),
        "16 s with a heartbeat every 4 s never times out a 5 s lease"
    );
    clock.advance(5_000);
    engine.sweep(64).await.unwrap();
    assert_eq!(
        timed_out(&history(&engine, id).await),
        [(1, TimeoutKind::Heartbeat)]
    );
}

async fn a_start_to_close_timeout_ends_a_busy_attempt_and_is_retried(db: Db) {
    let (engine, clock) = engine(&db).await;
    let timeouts = Timeouts {
        start_to_close_ms: 10_000,
        heartbeat_ms: 3_000,
        ..Timeouts::default()
    };
    let id = start(&engine, timeouts, policy(3)).await;
    let attempt = claim_one(&engine).await;
    // A worker that heartbeats faithfully but never finishes.
    for _ in 0..4 {
        clock.advance(2_000);
        heartbeat(&engine, &attempt).await.unwrap();
        engine.sweep(64).await.unwrap();
    }
    clock.advance(1_999);
    engine.sweep(64).await.unwrap();
    assert!(
        timed_out(&history(&engine, id).await).is_empty(),
        "9.999 s in"
    );
    clock.advance(1);
    engine.sweep(64).await.unwrap();
    let events = history(&engine, id).await;
    assert_eq!(timed_out(&events), [(1, TimeoutKind::StartToClose)]);
    assert_eq!(status(&engine, id).await, ExecutionStatus::Running);
    let reply = heartbeat(&engine, &attempt).await;
    assert!(reply.is_err(), "the timed-out attempt is fenced off");
    clock.set(timer_fire_at(&events).expect("a back-off timer"));
    engine.sweep(64).await.unwrap();
    assert_eq!(claim_one(&engine).await.lease.attempt, 2);
}

async fn a_schedule_to_start_timeout_fails_the_execution_without_a_retry(db: Db) {
    let (engine, clock) = engine(&db).await;
    let timeouts = Timeouts {
        schedule_to_start_ms: 60_000,
        ..Timeouts::default()
    };
    let id = start(&engine, timeouts, policy(5)).await;
    clock.advance(59_999);
    engine.sweep(64).await.unwrap();
    assert_eq!(status(&engine, id).await, ExecutionStatus::Pending);
    clock.advance(1);
    engine.sweep(64).await.unwrap();
    let events = history(&engine, id).await;
    assert_eq!(timed_out(&events), [(1, TimeoutKind::ScheduleToStart)]);
    assert_eq!(
        status(&engine, id).await,
        ExecutionStatus::Failed,
        "no worker came: retrying would not help"
    );
    assert!(timer_fire_at(&events).is_none(), "no back-off timer");
    assert!(claim(&engine).await.is_empty(), "nothing is left to claim");
}

async fn a_retry_waits_for_its_back_off_timer_to_the_millisecond(db: Db) {
    let (engine, clock) = engine(&db).await;
    let id = start(&engine, Timeouts::default(), policy(3)).await;
    let mut fire_times = Vec::new();
    for attempt in 1..=2 {
        let claimed = claim_one(&engine).await;
        assert_eq!(claimed.lease.attempt, attempt);
        engine.report(failed(&claimed)).await.unwrap();
        let events = history(&engine, id).await;
        let fire_at = timer_fire_at(&events).expect("a back-off timer");
        let failed_at = clock.now_ms();
        fire_times.push(fire_at - failed_at);

        clock.set(fire_at - 1);
        engine.sweep(64).await.unwrap();
        assert!(
            claim(&engine).await.is_empty(),
            "attempt {} is not ready 1 ms before its timer",
            attempt + 1
        );
        clock.set(fire_at);
        engine.sweep(64).await.unwrap();
    }
    let last = claim_one(&engine).await;
    assert_eq!(last.lease.attempt, 3);
    engine.report(failed(&last)).await.unwrap();
    assert_eq!(
        status(&engine, id).await,
        ExecutionStatus::Failed,
        "maximum_attempts 3"
    );
    // Back-off grows with the policy (1 s, then 2 s, each plus its recorded jitter).
    assert!(
        fire_times[0] >= 1_000 && fire_times[1] >= 2_000,
        "{fire_times:?}"
    );
    assert!(fire_times[1] > fire_times[0], "{fire_times:?}");
}

/// A progress report with no output: it only extends the lease.
async fn heartbeat(
    engine: &Engine,
    attempt: &Assignment,
) -> Result<cairn::contract::ProgressReply, cairn::engine::EngineError> {
    engine
        .progress(Progress {
            lease: attempt.lease.clone(),
            first_chunk: Some(0),
            chunks: Vec::new(),
            checkpoint: None,
            workspace: None,
            asks: Vec::new(),
            awaiting: false,
        })
        .await
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
        accept_next: false,
        workspace: None,
    }
}

fn failed(attempt: &Assignment) -> Report {
    Report {
        lease: attempt.lease.clone(),
        first_chunk: Some(0),
        chunks: Vec::new(),
        outcome: ActivityOutcome::Failed {
            failure: Failure {
                code: "flaky".into(),
                message: "try again".into(),
                retryable: true,
                details: json!({}),
            },
            retry_after_ms: None,
            checkpoint: None,
        },
        accept_next: false,
        workspace: None,
    }
}
