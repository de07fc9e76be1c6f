//! Stored objects (checkpoints): written once per id in the transaction that carries them,
//! never by a transition, progress report or release that is refused, and read back as chains.

use cairn::store::{CommitOutcome, Fence, NewObject, TaskOp, Transition};
use serde_json::json;
use uuid::Uuid;

use crate::common::Db;
use crate::support::{T0, advance, claim, commit_one, create, progress, task};

crate::on_both_stores!(
    equal_objects_are_stored_once,
    a_refused_transition_or_progress_writes_no_object,
    a_chain_reads_back_newest_first_to_its_whole_value,
);

fn object(id: &str, base: Option<&str>, data: &str) -> NewObject {
    NewObject {
        id: id.into(),
        base: base.map(str::to_owned),
        data: data.into(),
    }
}

async fn leased(store: &dyn cairn::store::Store) -> (Uuid, cairn::store::TaskRecord) {
    let id = Uuid::now_v7();
    let start = Transition {
        tasks: vec![TaskOp::Insert(task("turn-1"))],
        ..create(id)
    };
    assert_eq!(commit_one(store, start).await, CommitOutcome::Committed);
    let lease = store
        .claim_tasks(&claim("w-1", &["echo"], T0))
        .await
        .unwrap();
    (id, lease.into_iter().next().unwrap())
}

async fn equal_objects_are_stored_once(db: Db) {
    let store = db.store().await;
    let big = json!({ "messages": ["x".repeat(2_000)] }).to_string();
    let same = object("sha256:same", None, &big);
    // Two executions, one commit each, and a progress report: the same object three times.
    for _ in 0..2 {
        let t = Transition {
            objects: vec![same.clone(), same.clone()],
            ..create(Uuid::now_v7())
        };
        assert_eq!(commit_one(&*store, t).await, CommitOutcome::Committed);
    }
    let (_, lease) = leased(&*store).await;
    let mut report = progress(&lease, &[], T0 + 1);
    report.checkpoint = Some(json!({ "$object": "sha256:same" }));
    report.objects = vec![same.clone()];
    store
        .record_progress(&report)
        .await
        .unwrap()
        .expect("the lease holds");
    assert_eq!(
        store.object_totals().await.unwrap(),
        (1, big.len() as u64),
        "one row"
    );
    assert_eq!(store.count_rows("objects").await.unwrap(), 1);
}

async fn a_refused_transition_or_progress_writes_no_object(db: Db) {
    let store = db.store().await;
    let (id, lease) = leased(&*store).await;
    let fenced = Transition {
        fences: vec![Fence::Lease {
            activity_id: "turn-1".into(),
            attempt: 1,
            lease_token: "another-token".into(),
        }],
        objects: vec![object("sha256:fenced", None, "{}")],
        ..advance(id, 3)
    };
    assert_eq!(commit_one(&*store, fenced).await, CommitOutcome::Fenced);
    let mut stale = progress(&lease, &["late"], T0 + 1);
    stale.lease.lease_token = "another-token".into();
    stale.objects = vec![object("sha256:stale", None, "{}")];
    assert!(store.record_progress(&stale).await.unwrap().is_none());
    // A transition refused in a commit with others that go through: theirs are written.
    let ok = Transition {
        objects: vec![object("sha256:ok", None, "{}")],
        ..create(Uuid::now_v7())
    };
    let duplicate_version = Transition {
        objects: vec![object("sha256:conflict", None, "{}")],
        ..advance(id, 99)
    };
    let outcomes = store.commit(&[ok, duplicate_version]).await.unwrap();
    assert_eq!(
        outcomes,
        [CommitOutcome::Committed, CommitOutcome::Conflict]
    );
    assert_eq!(store.object_totals().await.unwrap().0, 1);
    assert_eq!(store.object_chain("sha256:ok").await.unwrap().len(), 1);
    for refused in ["sha256:fenced", "sha256:stale", "sha256:conflict"] {
        assert!(
            store.object_chain(refused).await.unwrap().is_empty(),
            "{refused}"
        );
    }
}

async fn a_chain_reads_back_newest_first_to_its_whole_value(db: Db) {
    let store = db.store().await;
    let t = Transition {
        objects: vec![
            object("sha256:c", Some("sha256:b"), "{\"+\":[3]}"),
            object("sha256:a", None, "[1]"),
            object("sha256:b", Some("sha256:a"), "{\"+\":[2]}"),
        ],
        ..create(Uuid::now_v7())
    };
    assert_eq!(commit_one(&*store, t).await, CommitOutcome::Committed);
    let chain = store.object_chain("sha256:c").await.unwrap();
    let ids: Vec<&str> = chain.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, ["sha256:c", "sha256:b", "sha256:a"]);
    assert_eq!(chain[2].data, "[1]");
    assert_eq!(chain[2].base, None);
    assert!(store.object_chain("sha256:none").await.unwrap().is_empty());
}
