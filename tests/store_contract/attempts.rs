//! Attempts of an activity, deadlines and timers.

use std::collections::BTreeSet;

use cairn::domain::Millis;
use cairn::store::{Change, NewTask, TaskOp, TimerKind, TimerOp, Transition};
use futures::StreamExt;
use serde_json::json;
use uuid::Uuid;

use crate::common::Db;
use crate::support::{T0, advance, claim, commit_one, create, execution_with, on, progress, task};

crate::on_both_stores!(
    an_activity_keeps_its_checkpoint_from_attempt_to_attempt,
    expired_tasks_are_those_whose_lease_attempt_or_schedule_deadline_passed,
    timers_fall_due_in_fire_order_and_bound_the_next_deadline,
    a_commit_that_writes_timers_announces_its_earliest_deadline,
);

async fn an_activity_keeps_its_checkpoint_from_attempt_to_attempt(db: Db) {
    let store = db.store().await;
    let first = NewTask {
        checkpoint: Some(json!({ "turn": 0 })),
        ..task("turn-1")
    };
    let id = execution_with(&*store, vec![first]).await;
    let lease = store
        .claim_tasks(&claim("w-1", &["echo"], T0))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        lease.checkpoint,
        Some(json!({ "turn": 0 })),
        "the previous turn's checkpoint"
    );

    let failed = Transition {
        tasks: vec![TaskOp::Park {
            activity_id: "turn-1".into(),
            checkpoint: Some(json!({ "turn": 0, "partial": 1 })),
        }],
        ..advance(id, 3)
    };
    commit_one(&*store, failed).await;
    let parked = store.get_task(id, "turn-1").await.unwrap().unwrap();
    assert_eq!(
        (parked.status.as_str(), parked.lease_owner),
        ("backoff", None)
    );
    assert!(
        store
            .claim_tasks(&claim("w-2", &["echo"], T0))
            .await
            .unwrap()
            .is_empty(),
        "an attempt in back-off is not claimable"
    );

    let retry = Transition {
        tasks: vec![TaskOp::Reschedule {
            activity_id: "turn-1".into(),
            attempt: 2,
            schedule_deadline: Some(T0 + 5_000),
        }],
        ..advance(id, 4)
    };
    commit_one(&*store, retry).await;
    let second = store
        .claim_tasks(&claim("w-2", &["echo"], T0 + 10))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        (second.attempt, second.lease_owner.as_deref()),
        (2, Some("w-2"))
    );
    assert_eq!(second.schedule_deadline, Some(T0 + 5_000));
    assert_eq!(
        second.checkpoint,
        Some(json!({ "turn": 0, "partial": 1 })),
        "the retry resumes"
    );
    assert_ne!(
        second.lease_token, lease.lease_token,
        "each lease has its own token"
    );

    let parked_again = Transition {
        tasks: vec![TaskOp::Park {
            activity_id: "turn-1".into(),
            checkpoint: None,
        }],
        ..advance(id, 5)
    };
    commit_one(&*store, parked_again).await;
    let parked = store.get_task(id, "turn-1").await.unwrap().unwrap();
    assert_eq!(
        parked.checkpoint,
        Some(json!({ "turn": 0, "partial": 1 })),
        "kept without a new one"
    );

    let done = Transition {
        tasks: vec![TaskOp::Delete {
            activity_id: "turn-1".into(),
        }],
        ..advance(id, 6)
    };
    commit_one(&*store, done).await;
    assert_eq!(store.get_task(id, "turn-1").await.unwrap(), None);
}

async fn expired_tasks_are_those_whose_lease_attempt_or_schedule_deadline_passed(db: Db) {
    let store = db.store().await;
    // One runtime per task, so that each claim below takes exactly the task meant.
    let heartbeat = execution_with(&*store, vec![on("rt-heartbeat", "default")]).await;
    let deadline = NewTask {
        heartbeat_ms: 10_000,
        start_to_close_ms: 3_000,
        ..on("rt-deadline", "default")
    };
    let deadline = execution_with(&*store, vec![deadline]).await;
    let unclaimed = NewTask {
        schedule_deadline: Some(T0 + 2_000),
        ..on("rt-unclaimed", "default")
    };
    let unclaimed = execution_with(&*store, vec![unclaimed]).await;
    let patient = execution_with(&*store, vec![on("rt-patient", "default")]).await;
    let parked = execution_with(&*store, vec![on("rt-parked", "default")]).await;
    let leases = store
        .claim_tasks(&claim(
            "w-1",
            &["rt-heartbeat", "rt-deadline", "rt-parked"],
            T0,
        ))
        .await
        .unwrap();
    assert_eq!(leases.len(), 3);
    let park = Transition {
        tasks: vec![TaskOp::Park {
            activity_id: "turn-1".into(),
            checkpoint: None,
        }],
        ..advance(parked, 3)
    };
    commit_one(&*store, park).await;

    let expired = |now| {
        let store = store.clone();
        async move {
            let tasks = store.expired_tasks(now, 100).await.unwrap();
            tasks
                .into_iter()
                .map(|t| t.execution_id)
                .collect::<BTreeSet<_>>()
        }
    };
    assert_eq!(expired(T0 + 999).await, BTreeSet::new());
    assert_eq!(
        expired(T0 + 1_000).await,
        BTreeSet::from([heartbeat]),
        "its lease ran out"
    );
    assert_eq!(
        expired(T0 + 2_000).await,
        BTreeSet::from([heartbeat, unclaimed])
    );
    assert_eq!(
        expired(T0 + 3_000).await,
        BTreeSet::from([heartbeat, unclaimed, deadline])
    );
    assert_eq!(
        store.expired_tasks(T0 + 3_000, 2).await.unwrap().len(),
        2,
        "at most `limit`"
    );
    assert_eq!(store.next_deadline().await.unwrap(), Some(T0 + 1_000));

    let lease = leases.iter().find(|t| t.execution_id == heartbeat).unwrap();
    store
        .record_progress(&progress(lease, &[], T0 + 1_500))
        .await
        .unwrap();
    assert_eq!(
        expired(T0 + 2_000).await,
        BTreeSet::from([unclaimed]),
        "progress renewed it"
    );
    assert_eq!(store.next_deadline().await.unwrap(), Some(T0 + 2_000));
    assert!(
        !expired(Millis::MAX).await.contains(&patient),
        "no deadline, no expiry"
    );
    assert!(
        !expired(Millis::MAX).await.contains(&parked),
        "an ended attempt has no deadline"
    );
}

async fn timers_fall_due_in_fire_order_and_bound_the_next_deadline(db: Db) {
    let store = db.store().await;
    assert_eq!(
        store.next_deadline().await.unwrap(),
        None,
        "nothing is waiting"
    );
    let timer = |timer_id: &str, fire_at| TimerOp::Insert {
        timer_id: timer_id.into(),
        fire_at,
        kind: TimerKind::RetryActivity,
        payload: json!({}),
    };
    let mine = Uuid::now_v7();
    let start = Transition {
        timers: vec![timer("late", T0 + 5_000), timer("early", T0 + 1_000)],
        ..create(mine)
    };
    commit_one(&*store, start).await;
    let other = Uuid::now_v7();
    commit_one(
        &*store,
        Transition {
            timers: vec![timer("middle", T0 + 3_000)],
            ..create(other)
        },
    )
    .await;

    let due = |now, limit| {
        let store = store.clone();
        async move {
            let timers = store.due_timers(now, limit).await.unwrap();
            timers
                .into_iter()
                .map(|t| (t.timer_id, t.fire_at))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(due(T0 + 999, 10).await, []);
    assert_eq!(
        due(T0 + 1_000, 10).await,
        [("early".to_string(), T0 + 1_000)]
    );
    let all = due(T0 + 10_000, 10).await;
    let names: Vec<_> = all.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["early", "middle", "late"]);
    assert_eq!(due(T0 + 10_000, 2).await, all[..2]);
    assert_eq!(store.next_deadline().await.unwrap(), Some(T0 + 1_000));

    let fired = Transition {
        timers: vec![TimerOp::Delete {
            timer_id: "early".into(),
        }],
        ..advance(mine, 3)
    };
    commit_one(&*store, fired).await;
    assert_eq!(store.next_deadline().await.unwrap(), Some(T0 + 3_000));
    let closed = Transition {
        timers: vec![TimerOp::DeleteAll],
        ..advance(mine, 4)
    };
    commit_one(&*store, closed).await;
    let left = due(Millis::MAX, 10).await;
    assert_eq!(
        left,
        [("middle".to_string(), T0 + 3_000)],
        "another execution's timer stays"
    );
}

/// PostgreSQL's change feed says when the earliest deadline a group commit wrote is due (one
/// notification, the minimum), so another server's sweeper wakes only if that is before its
/// planned look; and it skips what the listening server's own connections sent (that server woke
/// its waiters in-process when it committed). SQLite has one server and no feed.
async fn a_commit_that_writes_timers_announces_its_earliest_deadline(db: Db) {
    let store = db.store().await;
    let Some(mut feed) = store.changes().await.unwrap() else {
        assert!(db.url.starts_with("sqlite"), "PostgreSQL has a change feed");
        return;
    };
    // Another server, on the same database.
    let other = db.store().await;
    let timer = |timer_id: &str, fire_at| TimerOp::Insert {
        timer_id: timer_id.into(),
        fire_at,
        kind: TimerKind::RetryActivity,
        payload: json!({}),
    };
    // A new execution's transition that writes `timers`.
    let with_timers = |timers| Transition {
        timers,
        ..create(Uuid::now_v7())
    };
    // The listening server's own commit: not heard back.
    commit_one(&*store, with_timers(vec![timer("own", T0 + 1_000)])).await;
    // Its notifications go out after the commit; let them reach the feed first.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let group = [
        with_timers(vec![timer("late", T0 + 5_000), timer("early", T0 + 2_000)]),
        with_timers(vec![timer("middle", T0 + 3_000)]),
    ];
    other.commit(&group).await.unwrap();
    // The first deadline heard is the group's earliest: the listening server's own commit (T0 +
    // 1000), sent before it, is skipped.
    assert_eq!(next_deadline(&mut feed).await, Some(T0 + 2_000));
    // A third commit, after the group's notification went out (notifications of commits that
    // finish together are merged into one, the earliest): heard on its own.
    commit_one(&*other, with_timers(vec![timer("last", T0 + 9_000)])).await;
    assert_eq!(next_deadline(&mut feed).await, Some(T0 + 9_000));
}

/// The next deadline the feed announces, past its other changes.
async fn next_deadline(feed: &mut cairn::store::ChangeFeed) -> Option<i64> {
    loop {
        // A hang guard, not a time bound: the feed delivers within milliseconds.
        let change = tokio::time::timeout(std::time::Duration::from_secs(60), feed.next())
            .await
            .expect("the feed delivers the commits' notifications")
            .expect("the feed stays open");
        if let Change::DeadlineAdded(at) = change {
            return at;
        }
    }
}
