//! Tasks: claims, and progress under a lease.

use std::collections::BTreeSet;
use std::sync::Arc;

use cairn::domain::ExecutionStatus;
use cairn::store::{
    ClaimRequest, CommitOutcome, ExecutionFilter, Fence, NewTask, ProgressOutcome, TaskOp,
    Transition,
};
use serde_json::json;
use tokio::sync::Barrier;
use uuid::Uuid;

use crate::common::Db;
use crate::support::{
    HEARTBEAT_MS, NS, T0, advance, claim, commit_one, create, execution_with, on, progress,
    snapshot, task, texts,
};

crate::on_both_stores!(
    a_claim_leases_only_tasks_of_its_runtimes_and_queue,
    concurrent_claimers_take_every_task_exactly_once,
    progress_appends_gapless_output_saves_the_checkpoint_and_extends_the_lease,
    progress_without_the_lease_writes_nothing,
    concurrent_progress_on_one_execution_keeps_its_output_gapless,
    a_cancel_request_racing_progress_reports_leaves_both_applied,
);

async fn a_claim_leases_only_tasks_of_its_runtimes_and_queue(db: Db) {
    let store = db.store().await;
    let echo = execution_with(
        &*store,
        vec![NewTask {
            start_to_close_ms: 60_000,
            ..on("echo", "default")
        }],
    )
    .await;
    let claude = execution_with(&*store, vec![on("claude_code", "default")]).await;
    let gpu = execution_with(&*store, vec![on("echo", "gpu")]).await;

    let leased = store
        .claim_tasks(&claim("w-1", &["echo"], T0 + 100))
        .await
        .unwrap();
    assert_eq!(leased.len(), 1);
    let t = &leased[0];
    assert_eq!(
        (t.execution_id, t.status.as_str(), t.attempt),
        (echo, "leased", 1)
    );
    assert_eq!(
        (t.lease_owner.as_deref(), t.leased_at),
        (Some("w-1"), Some(T0 + 100))
    );
    assert_eq!(t.lease_expires_at, Some(T0 + 100 + HEARTBEAT_MS as i64));
    assert_eq!(t.attempt_deadline, Some(T0 + 100 + 60_000));
    assert!(t.lease_token.is_some());
    assert_eq!(
        store.get_task(echo, "turn-1").await.unwrap().as_ref(),
        Some(t)
    );

    let status = |id| {
        let store = store.clone();
        async move { store.get_execution(id).await.unwrap().unwrap() }
    };
    let record = status(echo).await;
    assert_eq!(
        (record.status, record.started_at),
        (ExecutionStatus::Running, Some(T0 + 100))
    );
    assert_eq!(status(claude).await.status, ExecutionStatus::Pending);
    assert_eq!(status(gpu).await.status, ExecutionStatus::Pending);

    let again = store
        .claim_tasks(&claim("w-2", &["echo"], T0 + 200))
        .await
        .unwrap();
    assert!(again.is_empty(), "a leased task is not claimed twice");
    let none = store
        .claim_tasks(&claim("w-2", &[], T0 + 200))
        .await
        .unwrap();
    assert!(none.is_empty(), "a worker without runtimes gets nothing");
    let zero = ClaimRequest {
        max: 0,
        ..claim("w-2", &["claude_code"], T0 + 200)
    };
    assert!(store.claim_tasks(&zero).await.unwrap().is_empty());

    let both = store
        .claim_tasks(&claim("w-2", &["echo", "claude_code"], T0 + 200))
        .await;
    let ids: Vec<_> = both.unwrap().iter().map(|t| t.execution_id).collect();
    assert_eq!(ids, [claude]);
    let gpu_claim = ClaimRequest {
        queue: "gpu".into(),
        ..claim("w-3", &["echo"], T0)
    };
    let ids: Vec<_> = store
        .claim_tasks(&gpu_claim)
        .await
        .unwrap()
        .iter()
        .map(|t| t.execution_id)
        .collect();
    assert_eq!(ids, [gpu]);

    // A task whose cancel was requested before any worker took it is not handed out.
    let canceled = execution_with(&*store, vec![task("turn-1")]).await;
    let cancel = Transition {
        tasks: vec![TaskOp::RequestCancel {
            activity_id: "turn-1".into(),
        }],
        ..advance(canceled, 3)
    };
    commit_one(&*store, cancel).await;
    assert!(
        store
            .claim_tasks(&claim("w-4", &["echo"], T0))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn concurrent_claimers_take_every_task_exactly_once(db: Db) {
    let store = db.store().await;
    let ids: Vec<_> = (0..50).map(|_| Uuid::now_v7()).collect();
    let starts: Vec<_> = ids
        .iter()
        .map(|id| Transition {
            tasks: vec![TaskOp::Insert(task("turn-1"))],
            ..create(*id)
        })
        .collect();
    let outcomes = store.commit(&starts).await.unwrap();
    assert!(outcomes.iter().all(|o| *o == CommitOutcome::Committed));

    let claimers = 8;
    let barrier = Arc::new(Barrier::new(claimers));
    let mut handles = Vec::new();
    for w in 0..claimers {
        let store = store.clone();
        let barrier = barrier.clone();
        handles.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut mine = Vec::new();
            loop {
                let request = ClaimRequest {
                    max: 3,
                    ..claim(&format!("w-{w}"), &["echo"], T0)
                };
                let batch = store.claim_tasks(&request).await.unwrap();
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch.into_iter().map(|t| t.execution_id));
            }
        }));
    }
    let mut claimed = Vec::new();
    for handle in handles {
        claimed.extend(handle.await.unwrap());
    }

    let distinct: BTreeSet<_> = claimed.iter().collect();
    assert_eq!(claimed.len(), 50, "no task went to two claimers");
    assert_eq!(distinct, ids.iter().collect(), "and every task was claimed");
    let filter = ExecutionFilter {
        namespace: NS.into(),
        statuses: vec![ExecutionStatus::Running],
        ..Default::default()
    };
    assert_eq!(
        store
            .list_executions(&filter, None, 100)
            .await
            .unwrap()
            .len(),
        50
    );
}

async fn progress_appends_gapless_output_saves_the_checkpoint_and_extends_the_lease(db: Db) {
    let store = db.store().await;
    let id = execution_with(&*store, vec![task("turn-1")]).await;
    let lease = store
        .claim_tasks(&claim("w-1", &["echo"], T0))
        .await
        .unwrap()
        .remove(0);

    let first = cairn::store::ProgressRecord {
        checkpoint: Some(json!({ "session": "s-1" })),
        objects: Vec::new(),
        workspace: Some("/work/agents/one".into()),
        ..progress(&lease, &["a", "b"], T0 + 500)
    };
    let outcome = store.record_progress(&first).await.unwrap();
    assert_eq!(
        outcome,
        Some(ProgressOutcome {
            cancel_requested: false,
            output_seq: 2,
            parent_id: None
        })
    );
    let t = store.get_task(id, "turn-1").await.unwrap().unwrap();
    assert_eq!(t.lease_expires_at, Some(T0 + 500 + HEARTBEAT_MS as i64));
    assert_eq!(t.checkpoint, Some(json!({ "session": "s-1" })));

    let outcome = store
        .record_progress(&progress(&lease, &["c"], T0 + 900))
        .await
        .unwrap();
    assert_eq!(outcome.map(|o| o.output_seq), Some(3));
    let heartbeat = store
        .record_progress(&progress(&lease, &[], T0 + 1_200))
        .await
        .unwrap();
    assert_eq!(
        heartbeat.map(|o| o.output_seq),
        Some(3),
        "a bare heartbeat appends nothing"
    );
    let t = store.get_task(id, "turn-1").await.unwrap().unwrap();
    assert_eq!(t.lease_expires_at, Some(T0 + 1_200 + HEARTBEAT_MS as i64));
    assert_eq!(
        t.checkpoint,
        Some(json!({ "session": "s-1" })),
        "no new checkpoint keeps the last"
    );
    assert_eq!(
        t.workspace.as_deref(),
        Some("/work/agents/one"),
        "the lease's directory is kept until the next claim"
    );

    let output = store.output(id, 0, 100).await.unwrap();
    let seqs: Vec<_> = output
        .iter()
        .map(|c| (c.seq, c.activity_id.as_str(), c.attempt))
        .collect();
    assert_eq!(seqs, [(1, "turn-1", 1), (2, "turn-1", 1), (3, "turn-1", 1)]);
    assert_eq!(texts(&*store, id).await, ["a", "b", "c"]);
    assert_eq!(output[2].created_at, T0 + 900);

    // The next report learns that the attempt must stop.
    let cancel = Transition {
        tasks: vec![TaskOp::RequestCancel {
            activity_id: "turn-1".into(),
        }],
        ..advance(id, 3)
    };
    commit_one(&*store, cancel).await;
    let outcome = store
        .record_progress(&progress(&lease, &[], T0 + 1_300))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        Some(ProgressOutcome {
            cancel_requested: true,
            output_seq: 3,
            parent_id: None
        })
    );
}

async fn progress_without_the_lease_writes_nothing(db: Db) {
    let store = db.store().await;
    let id = execution_with(&*store, vec![task("turn-1")]).await;
    let lease = store
        .claim_tasks(&claim("w-1", &["echo"], T0))
        .await
        .unwrap()
        .remove(0);
    let before = snapshot(&*store, id).await;

    let stale = [
        cairn::store::TaskRecord {
            lease_token: Some("another-token".into()),
            ..lease.clone()
        },
        cairn::store::TaskRecord {
            attempt: 2,
            ..lease.clone()
        },
        cairn::store::TaskRecord {
            activity_id: "turn-2".into(),
            ..lease.clone()
        },
    ];
    for other in stale {
        let report = cairn::store::ProgressRecord {
            checkpoint: Some(json!({ "session": "stale" })),
            objects: Vec::new(),
            ..progress(&other, &["stale"], T0 + 500)
        };
        assert_eq!(
            store.record_progress(&report).await.unwrap(),
            None,
            "{other:?}"
        );
        assert_eq!(
            snapshot(&*store, id).await,
            before,
            "{other:?} wrote nothing"
        );
    }

    // Once the attempt ended, its lease is gone too.
    let ended = Transition {
        fences: vec![Fence::Lease {
            activity_id: "turn-1".into(),
            attempt: 1,
            lease_token: lease.lease_token.clone().unwrap(),
        }],
        tasks: vec![TaskOp::Park {
            activity_id: "turn-1".into(),
            checkpoint: None,
        }],
        ..advance(id, 3)
    };
    commit_one(&*store, ended).await;
    let before = snapshot(&*store, id).await;
    let late = store
        .record_progress(&progress(&lease, &["late"], T0 + 600))
        .await;
    assert_eq!(late.unwrap(), None);
    assert_eq!(snapshot(&*store, id).await, before);
}

async fn concurrent_progress_on_one_execution_keeps_its_output_gapless(db: Db) {
    let store = db.store().await;
    let activities: Vec<_> = (1..=8).map(|i| format!("act-{i}")).collect();
    let id = execution_with(&*store, activities.iter().map(|a| task(a)).collect()).await;
    let leases = store
        .claim_tasks(&claim("w-1", &["echo"], T0))
        .await
        .unwrap();
    assert_eq!(leases.len(), 8);

    let reports = 20;
    let barrier = Arc::new(Barrier::new(leases.len()));
    let mut handles = Vec::new();
    for lease in leases {
        let store = store.clone();
        let barrier = barrier.clone();
        handles.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut last_seqs = Vec::new();
            for n in 0..reports {
                let texts = [
                    format!("{}:{n}:a", lease.activity_id),
                    format!("{}:{n}:b", lease.activity_id),
                ];
                let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
                let outcome = store
                    .record_progress(&progress(&lease, &texts, T0 + n))
                    .await
                    .unwrap();
                last_seqs.push(outcome.expect("the lease is held").output_seq);
            }
            last_seqs
        }));
    }
    let mut last_seqs = Vec::new();
    for handle in handles {
        last_seqs.extend(handle.await.unwrap());
    }

    let total = 8 * reports as u64 * 2;
    let output = store.output(id, 0, 10_000).await.unwrap();
    let seqs: Vec<_> = output.iter().map(|c| c.seq).collect();
    assert_eq!(
        seqs,
        (1..=total).collect::<Vec<_>>(),
        "seqs are 1..n, unique and gapless"
    );
    let distinct: BTreeSet<_> = last_seqs.iter().collect();
    assert_eq!(
        distinct.len(),
        last_seqs.len(),
        "every report got its own range of seqs"
    );
    for activity in &activities {
        // Each report's two chunks are adjacent, and reports keep their order.
        let mine: Vec<_> = output
            .iter()
            .filter(|c| c.activity_id == *activity)
            .map(|c| c.data["text"].as_str().unwrap().to_string())
            .collect();
        let sent: Vec<_> = (0..reports)
            .flat_map(|n| [format!("{activity}:{n}:a"), format!("{activity}:{n}:b")])
            .collect();
        assert_eq!(mine, sent);
    }
    assert_eq!(
        store.get_execution(id).await.unwrap().unwrap().output_seq,
        total
    );
}

/// A client's cancel (a transition that asks the running attempt to stop) and the attempt's
/// progress reports touch the same task and execution rows at the same time; neither may fail.
async fn a_cancel_request_racing_progress_reports_leaves_both_applied(db: Db) {
    let store = db.store().await;
    let id = execution_with(&*store, vec![task("turn-1")]).await;
    let lease = store
        .claim_tasks(&claim("w-1", &["echo"], T0))
        .await
        .unwrap()
        .remove(0);

    let rounds = 40;
    for round in 0..rounds {
        let cancel = Transition {
            tasks: vec![TaskOp::RequestCancel {
                activity_id: "turn-1".into(),
            }],
            ..advance(id, 3 + round)
        };
        let text = format!("chunk {round}");
        let report = progress(&lease, &[&text], T0 + round as i64);
        let cancel = [cancel];
        let (committed, reported) =
            tokio::join!(store.commit(&cancel), store.record_progress(&report));
        assert_eq!(
            committed.unwrap(),
            [CommitOutcome::Committed],
            "round {round}"
        );
        assert!(reported.unwrap().is_some(), "round {round}");
    }
    let record = store.get_execution(id).await.unwrap().unwrap();
    assert_eq!((record.next_seq, record.output_seq), (3 + rounds, rounds));
}
