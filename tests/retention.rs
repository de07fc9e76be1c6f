//! Retention on both stores, in-process on a manual clock: a pass deletes exactly the closed
//! trees past their window, with every row of theirs (counted per table and execution) and the
//! stored checkpoints nothing else refers to; it keeps open executions, a closed member of an
//! open team, an execution that was retried, and an object a kept execution shares. A pass run
//! concurrently with live traffic loses nothing of what it keeps. `DeleteExecution` refuses
//! what retention would keep.

#[allow(
    unused_imports,
    reason = "these tests use only the databases of the shared test code"
)]
mod common;

#[path = "retention/rig.rs"]
mod rig;
#[path = "retention/server.rs"]
mod server;

use std::collections::BTreeMap;
use std::time::Duration;

use cairn::domain::ExecutionStatus;
use cairn::engine::{EngineError, RetentionPolicy, RetryRequest};
use uuid::Uuid;

use common::Db;
use rig::{DAY, Rig, T0};

crate::on_both_stores!(
    a_pass_deletes_exactly_the_closed_trees_past_the_window,
    a_pass_during_live_traffic_loses_nothing,
    delete_refuses_what_retention_keeps,
    the_server_deletes_on_its_own_and_the_cli_deletes_one,
);

async fn the_server_deletes_on_its_own_and_the_cli_deletes_one(db: Db) {
    server::the_server_deletes_on_its_own_and_the_cli_deletes_one(db).await;
}

#[test]
fn a_bad_retention_flag_is_refused() {
    server::a_bad_retention_flag_is_refused();
}

fn keep_for(window: Duration) -> RetentionPolicy {
    RetentionPolicy {
        default: Some(window),
        namespaces: BTreeMap::new(),
    }
}

async fn a_pass_deletes_exactly_the_closed_trees_past_the_window(db: Db) {
    let rig = Rig::new(&db).await;
    let big = rig::big_checkpoint("only a's");
    let shared = rig::big_checkpoint("shared");

    // At T0: what will be past a 7-day window ten days later.
    let old = rig.run_to_end("default", Some(big.clone())).await;
    let old_sharing = rig.run_to_end("default", Some(shared.clone())).await;
    let open = rig.start("default").await;
    let _lease = rig.claim_one().await;
    let open_team = rig.start_team("two").await;
    let first_member = rig.claim_one().await;
    rig.complete(&first_member, Some(rig::big_checkpoint("member")))
        .await;
    rig.deliver().await;
    let closed_team = rig.start_team("one").await;
    let member = rig.claim_one().await;
    rig.complete(&member, Some(rig::big_checkpoint("closed member")))
        .await;
    rig.deliver().await;
    let failed = rig.start("default").await;
    let attempt = rig.claim_one().await;
    rig.fail(&attempt).await;

    // Ten days later: what is within the window, and a retry of the failed one.
    rig.clock.set(T0 + 10 * DAY);
    let recent_sharing = rig.run_to_end("default", Some(shared.clone())).await;
    let recent = rig.run_to_end("default", None).await;
    let retried = rig
        .engine
        .retry(RetryRequest {
            id: failed,
            from_seq: None,
            prompts: BTreeMap::new(),
            retry_policy: None,
            force: false,
        })
        .await
        .expect("retry")
        .id;

    assert_eq!(rig.status(old).await, ExecutionStatus::Completed);
    assert_eq!(rig.status(closed_team).await, ExecutionStatus::Completed);
    assert_eq!(rig.status(open_team).await, ExecutionStatus::Running);
    assert_eq!(
        rig.status(first_member.lease.execution_id).await,
        ExecutionStatus::Completed
    );
    let members_of_closed = rig.members(closed_team).await;
    let members_of_open = rig.members(open_team).await;
    assert_eq!(members_of_closed.len(), 1);
    assert_eq!(members_of_open.len(), 2);

    let doomed: Vec<Uuid> = [old, old_sharing, closed_team]
        .into_iter()
        .chain(members_of_closed.iter().copied())
        .collect();
    let kept: Vec<Uuid> = [open, open_team, failed, retried, recent_sharing, recent]
        .into_iter()
        .chain(members_of_open.iter().copied())
        .collect();
    let mut only_doomed = std::collections::BTreeSet::new();
    for id in &doomed {
        only_doomed.extend(rig.objects_of(*id).await);
    }
    for id in &kept {
        for object in rig.objects_of(*id).await {
            only_doomed.remove(&object);
        }
    }
    assert!(
        !rig.objects_of(old).await.is_empty(),
        "the big checkpoint is a stored object"
    );
    let shared_objects = rig.objects_of(recent_sharing).await;
    assert_eq!(
        rig.objects_of(old_sharing).await,
        shared_objects,
        "equal content, one object"
    );
    let doomed_rows: Vec<_> =
        futures::future::join_all(doomed.iter().map(|id| rig.rows_of(*id))).await;
    for (id, rows) in doomed.iter().zip(&doomed_rows) {
        assert!(
            rows["executions"] == 1 && rows["history_events"] > 0,
            "{id}: {rows:?}"
        );
    }
    let kept_before: Vec<_> =
        futures::future::join_all(kept.iter().map(|id| rig.rows_of(*id))).await;
    let totals_before = db.row_counts().await;

    let deleted = rig
        .engine
        .retention_pass(&keep_for(Duration::from_secs(7 * 86_400)))
        .await
        .unwrap();
    assert_eq!(deleted, doomed.len() as u64);

    for id in &doomed {
        let rows = rig.rows_of(*id).await;
        assert!(rows.values().all(|n| *n == 0), "{id} left rows: {rows:?}");
    }
    let kept_after: Vec<_> =
        futures::future::join_all(kept.iter().map(|id| rig.rows_of(*id))).await;
    assert_eq!(kept_after, kept_before, "kept executions lost nothing");
    // Exactly the doomed rows went, table by table, and the objects only they referred to.
    let totals_after = db.row_counts().await;
    for ((table, before), (_, after)) in totals_before.iter().zip(&totals_after) {
        let doomed: i64 = doomed_rows
            .iter()
            .map(|rows| rows.get(*table).copied().unwrap_or(0))
            .sum();
        let expected = match *table {
            "objects" => before - only_doomed.len() as i64,
            _ => before - doomed,
        };
        assert_eq!(
            *after, expected,
            "{table}: {before} before, {doomed} of the deleted"
        );
    }
    for object in &only_doomed {
        assert!(
            !rig.object_exists(object).await,
            "{object} outlived its only execution"
        );
    }
    for object in &shared_objects {
        assert!(
            rig.object_exists(object).await,
            "{object} is still referred to"
        );
    }
    assert_eq!(rig.checkpoint_of(recent_sharing).await, Some(shared));

    // The open team closes; ten more days and it goes, members and all. The open execution
    // stays, however old.
    let second_member = rig.claim_for(open_team).await;
    assert_eq!(
        rig.parent_of(second_member.lease.execution_id).await,
        Some(open_team)
    );
    rig.complete(&second_member, None).await;
    rig.deliver().await;
    assert_eq!(rig.status(open_team).await, ExecutionStatus::Completed);
    rig.clock.set(T0 + 20 * DAY);
    rig.engine
        .retention_pass(&keep_for(Duration::from_secs(7 * 86_400)))
        .await
        .unwrap();
    for id in members_of_open
        .iter()
        .chain([&open_team, &recent, &recent_sharing])
    {
        assert_eq!(
            rig.rows_of(*id).await["executions"],
            0,
            "{id} is past the window"
        );
    }
    assert_eq!(rig.status(open).await, ExecutionStatus::Running);
    // The failed execution waits for its retry, which waits for a worker.
    assert_eq!(rig.rows_of(failed).await["executions"], 1);
}

async fn a_pass_during_live_traffic_loses_nothing(db: Db) {
    let rig = std::sync::Arc::new(Rig::new(&db).await);
    // `scratch` keeps nothing past a millisecond; everything else is kept for good.
    let policy = RetentionPolicy {
        default: None,
        namespaces: BTreeMap::from([("scratch".to_string(), Some(Duration::from_millis(1)))]),
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let sweeper = {
        let (rig, policy, stop) = (rig.clone(), policy.clone(), stop.clone());
        tokio::spawn(async move {
            let mut passes = 0u32;
            while !stop.is_cancelled() {
                rig.engine.retention_pass(&policy).await.expect("a pass");
                passes += 1;
                tokio::task::yield_now().await;
            }
            passes
        })
    };
    // Both namespaces write the same checkpoints, so they share objects: the scratch copies go
    // while the kept ones are written again.
    let mut kept = Vec::new();
    for round in 0..24 {
        let checkpoint = rig::big_checkpoint(&format!("round {}", round % 4));
        let keep = rig.run_to_end("default", Some(checkpoint.clone())).await;
        rig.run_to_end("scratch", Some(checkpoint.clone())).await;
        rig.clock.advance(5);
        kept.push((keep, checkpoint));
    }
    stop.cancel();
    let passes = sweeper.await.unwrap();
    assert!(passes > 0);
    rig.clock.advance(5);
    rig.engine.retention_pass(&policy).await.unwrap();

    for (id, checkpoint) in &kept {
        assert_eq!(rig.status(*id).await, ExecutionStatus::Completed);
        assert_eq!(
            rig.checkpoint_of(*id).await.as_ref(),
            Some(checkpoint),
            "{id}"
        );
        let rows = rig.rows_of(*id).await;
        assert!(
            rows["history_events"] > 0 && rows["object_refs"] > 0,
            "{id}: {rows:?}"
        );
    }
    assert_eq!(
        rig.count("SELECT COUNT(*) FROM executions WHERE namespace = 'scratch'")
            .await,
        0
    );
    assert_eq!(
        rig.count("SELECT COUNT(*) FROM executions").await,
        kept.len() as i64
    );
    // Every stored object is referred to by a kept execution, and nothing refers to a missing one.
    assert_eq!(
        rig.count("SELECT COUNT(*) FROM objects o WHERE NOT EXISTS (SELECT 1 FROM object_refs r WHERE r.object_id = o.id)").await,
        0
    );
    assert_eq!(
        rig.count("SELECT COUNT(*) FROM object_refs r WHERE NOT EXISTS (SELECT 1 FROM objects o WHERE o.id = r.object_id)").await,
        0
    );
}

async fn delete_refuses_what_retention_keeps(db: Db) {
    let rig = Rig::new(&db).await;
    let open = rig.start("default").await;
    let team = rig.start_team("two").await;
    let member = rig.claim_one().await;
    rig.complete(&member, None).await;
    rig.deliver().await;
    let failed = rig.start("default").await;
    let attempt = rig.claim_one().await;
    rig.fail(&attempt).await;
    rig.engine
        .retry(RetryRequest {
            id: failed,
            from_seq: None,
            prompts: BTreeMap::new(),
            retry_policy: None,
            force: false,
        })
        .await
        .unwrap();
    let done = rig
        .run_to_end("default", Some(rig::big_checkpoint("done")))
        .await;

    let before = db.row_counts().await;
    for (id, says) in [
        (open, "only a closed execution can be deleted"),
        (member.lease.execution_id, "is a member of team execution"),
        (team, "only a closed execution can be deleted"),
        (failed, "an execution retried from it exists"),
    ] {
        match rig.engine.delete_execution(id).await {
            Err(EngineError::FailedPrecondition(message)) => {
                assert!(message.contains(says), "{id}: {message}")
            }
            other => panic!("{id}: {other:?}"),
        }
    }
    assert!(matches!(
        rig.engine.delete_execution(Uuid::now_v7()).await,
        Err(EngineError::NotFound(_))
    ));
    assert_eq!(db.row_counts().await, before, "refusals delete nothing");
    let deleted = rig.engine.delete_execution(done).await.unwrap();
    assert_eq!(deleted.executions, 1);
    assert!(deleted.objects >= 1);
    assert!(rig.rows_of(done).await.values().all(|n| *n == 0));
}
