//! Eager dispatch on the worker's side: a report offers the attempt's slot, the task the reply
//! carries runs at once on that slot without a poll, and a draining worker offers nothing and
//! hands back what it was given anyway.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio_util::sync::CancellationToken;

use super::*;

/// The assignment of `turn-<n>`, with a token of its own.
fn turn(n: u32) -> Assignment {
    let mut next = assignment(30_000);
    next.lease.activity_id = format!("turn-{n}");
    next.lease.lease_token = format!("token-{n}");
    next.turn.index = n - 1;
    next
}

#[tokio::test]
async fn the_task_a_report_reply_carries_runs_at_once_on_the_same_slot() {
    let api = Arc::new(FakeApi::default());
    api.answer_report_with_next(turn(2));
    api.answer_report_with_next(turn(3));
    let options = options(emitting(1, 0));
    let stats = WorkerStats::default();
    let api_dyn: Arc<dyn WorkerApi> = api.clone();
    attempt::run(
        api_dyn,
        &options,
        assignment(30_000),
        CancellationToken::new(),
        CancellationToken::new(),
        &stats,
    )
    .await;
    let reports = api.reports();
    let leases: Vec<_> = reports
        .iter()
        .map(|r| r.lease.activity_id.as_str())
        .collect();
    assert_eq!(leases, ["turn-1", "turn-2", "turn-3"]);
    assert!(
        reports.iter().all(|r| r.accept_next),
        "every report offers its slot"
    );
    assert_eq!(reports[2].lease.lease_token, "token-3");
    assert_eq!(stats.eager_tasks.load(Ordering::Relaxed), 2);
    assert_eq!(stats.polls.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_draining_worker_offers_no_slot_and_hands_back_a_task_it_gets_anyway() {
    let api = Arc::new(FakeApi::default());
    // A server that leases the next task regardless (an old or buggy one).
    api.answer_report_with_next(turn(2));
    let options = options(emitting(1, 0));
    let draining = CancellationToken::new();
    draining.cancel();
    let api_dyn: Arc<dyn WorkerApi> = api.clone();
    attempt::run(
        api_dyn,
        &options,
        assignment(30_000),
        CancellationToken::new(),
        draining,
        &WorkerStats::default(),
    )
    .await;
    let reports = api.reports();
    assert_eq!(reports.len(), 1, "turn 2 never ran");
    assert!(!reports[0].accept_next);
    let releases = api.releases();
    assert_eq!(releases.len(), 1);
    assert_eq!(releases[0].lease, turn(2).lease);
    assert!(releases[0].chunks.is_empty());
}
