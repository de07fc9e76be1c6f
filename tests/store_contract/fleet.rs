//! What the worker fleet needs of a store: releasing a leased attempt (fenced, with its output
//! and checkpoint) and the `workers` table.

use cairn::store::{ReleaseOutcome, ReleaseRecord, TaskOp, TaskRecord, Transition, WorkerUpsert};
use serde_json::json;

use super::support::*;
use crate::common::Db;

crate::on_both_stores!(
    a_release_saves_output_and_checkpoint_and_readies_the_same_attempt,
    a_release_without_the_lease_or_after_a_cancel_request_writes_nothing,
    workers_are_listed_with_their_leases_and_latest_heartbeat,
);

fn release(lease: &TaskRecord, texts: &[&str], now: i64) -> ReleaseRecord {
    ReleaseRecord {
        lease: crate::support::lease_of(lease),
        chunks: texts.iter().map(|t| chunk(&lease.activity_id, t)).collect(),
        checkpoint: Some(json!({ "emitted": 2 })),
        objects: Vec::new(),
        now,
        max_output_bytes: u64::MAX,
    }
}

async fn a_release_saves_output_and_checkpoint_and_readies_the_same_attempt(db: Db) {
    let store = db.store().await;
    let id = execution_with(&*store, vec![task("turn-1")]).await;
    let lease = store
        .claim_tasks(&claim("w-1", &["echo"], T0))
        .await
        .unwrap()
        .remove(0);
    store
        .record_progress(&progress(&lease, &["a"], T0 + 100))
        .await
        .unwrap()
        .unwrap();

    let outcome = store
        .release_task(&release(&lease, &["b"], T0 + 200))
        .await
        .unwrap();
    assert_eq!(outcome, Some(ReleaseOutcome::Released));
    assert_eq!(texts(&*store, id).await, ["a", "b"]);
    let t = store.get_task(id, "turn-1").await.unwrap().unwrap();
    assert_eq!(
        (
            t.status.as_str(),
            t.attempt,
            t.lease_token.as_deref(),
            t.lease_owner.as_deref()
        ),
        ("ready", 1, None, None)
    );
    assert_eq!(t.checkpoint, Some(json!({ "emitted": 2 })));
    assert_eq!(
        store.expired_tasks(T0 + 10_000_000, 10).await.unwrap(),
        [],
        "a released task has no deadline left to miss"
    );

    // Another worker claims the same attempt with a new token; the old lease is dead.
    let again = store
        .claim_tasks(&claim("w-2", &["echo"], T0 + 300))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        (again.attempt, again.lease_owner.as_deref()),
        (1, Some("w-2"))
    );
    assert_ne!(again.lease_token, lease.lease_token);
    assert_eq!(again.checkpoint, Some(json!({ "emitted": 2 })));
    assert_eq!(
        store
            .record_progress(&progress(&lease, &["late"], T0 + 400))
            .await
            .unwrap(),
        None
    );
    assert_eq!(texts(&*store, id).await, ["a", "b"]);
}

async fn a_release_without_the_lease_or_after_a_cancel_request_writes_nothing(db: Db) {
    let store = db.store().await;
    let id = execution_with(&*store, vec![task("turn-1")]).await;
    let lease = store
        .claim_tasks(&claim("w-1", &["echo"], T0))
        .await
        .unwrap()
        .remove(0);
    let mut forged = release(&lease, &["x"], T0 + 100);
    forged.lease.lease_token = "forged".into();
    let before = snapshot(&*store, id).await;
    assert_eq!(store.release_task(&forged).await.unwrap(), None);
    assert_eq!(snapshot(&*store, id).await, before);

    let cancel = Transition {
        tasks: vec![TaskOp::RequestCancel {
            activity_id: "turn-1".into(),
        }],
        ..advance(id, 3)
    };
    commit_one(&*store, cancel).await;
    let before = snapshot(&*store, id).await;
    assert_eq!(
        store
            .release_task(&release(&lease, &["x"], T0 + 200))
            .await
            .unwrap(),
        Some(ReleaseOutcome::CancelRequested)
    );
    assert_eq!(
        snapshot(&*store, id).await,
        before,
        "the caller reports a cancel instead"
    );
}

async fn workers_are_listed_with_their_leases_and_latest_heartbeat(db: Db) {
    let store = db.store().await;
    let upsert = |id: &str, queue: &str, now| WorkerUpsert {
        worker_id: id.into(),
        runtimes: vec!["echo".into()],
        queue: queue.into(),
        slots: 4,
        policy: None,
        now,
    };
    store
        .upsert_worker(&upsert("w-1", "default", T0))
        .await
        .unwrap();
    store
        .upsert_worker(&upsert("w-2", "gpu", T0))
        .await
        .unwrap();
    store
        .upsert_worker(&upsert("w-2", "gpu", T0 + 50))
        .await
        .unwrap();
    execution_with(&*store, vec![task("turn-1"), task("turn-2")]).await;
    let leases = store
        .claim_tasks(&cairn::store::ClaimRequest {
            max: 2,
            ..claim("w-1", &["echo"], T0 + 100)
        })
        .await
        .unwrap();
    assert_eq!(leases.len(), 2);
    store
        .record_progress(&progress(&leases[0], &[], T0 + 700))
        .await
        .unwrap()
        .unwrap();

    let workers = store.list_workers(T0).await.unwrap();
    let view: Vec<_> = workers
        .iter()
        .map(|w| {
            (
                w.worker_id.as_str(),
                w.queue.as_str(),
                w.slots,
                w.slots_in_use,
                w.first_seen,
                w.last_seen,
            )
        })
        .collect();
    assert_eq!(
        view,
        [
            ("w-1", "default", 4, 2, T0, T0 + 700),
            ("w-2", "gpu", 4, 0, T0, T0 + 50)
        ],
        "w-1's last heartbeat is later than its last poll"
    );
    assert_eq!(workers[0].runtimes, ["echo"]);
    let recent = store.list_workers(T0 + 600).await.unwrap();
    assert_eq!(recent.len(), 1, "w-2 has not been seen since T0 + 50");
}
