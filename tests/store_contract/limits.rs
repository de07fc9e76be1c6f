//! Limits: writes of any size stay within the database's bind-parameter limit (SQLite's 32,766,
//! PostgreSQL's 65,535), every claimed task gets its own lease token, and a progress report that
//! would leave a gap in a lease's chunks is refused without writing anything.

use std::collections::BTreeSet;

use cairn::domain::ExecutionStatus;
use cairn::store::{
    ClaimRequest, CommitOutcome, Fence, ReleaseOutcome, ReleaseRecord, RowWrite, StoreError,
    TaskOp, TaskStatus, Transition,
};

use crate::common::Db;
use crate::support::{T0, claim, commit_one, execution_with, progress, row, snapshot, task, texts};

crate::on_both_stores!(
    a_progress_report_of_ten_thousand_chunks_is_stored_gapless,
    a_final_report_of_ten_thousand_chunks_commits_gapless,
    a_release_of_ten_thousand_chunks_is_stored_gapless,
    a_claim_naming_forty_thousand_runtimes_leases_its_task,
    every_task_of_one_claim_gets_its_own_lease_token,
    a_gap_in_first_chunk_index_is_refused_and_writes_nothing,
);

/// More chunks than one statement could carry on either store (10 binds per chunk).
const MANY: usize = 10_000;

fn numbered(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("c{i}")).collect()
}

fn assert_numbered(texts: &[String], n: usize) {
    assert_eq!(texts.len(), n, "every chunk stored once");
    assert!(
        texts.iter().zip(numbered(n)).all(|(a, b)| *a == b),
        "chunks in order, none missing or repeated"
    );
}

async fn a_progress_report_of_ten_thousand_chunks_is_stored_gapless(db: Db) {
    let store = db.store().await;
    let id = execution_with(&*store, vec![task("turn-1")]).await;
    let lease = store
        .claim_tasks(&claim("w-1", &["echo"], T0 + 1))
        .await
        .unwrap()
        .remove(0);
    let all = numbered(MANY);
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let outcome = store
        .record_progress(&progress(&lease, &refs, T0 + 2))
        .await
        .expect("a batch of any size is stored")
        .expect("the lease holds");
    assert_eq!(outcome.output_seq, MANY as u64);
    assert_numbered(&texts(&*store, id).await, MANY);
    let task = store.get_task(id, "turn-1").await.unwrap().unwrap();
    assert_eq!(task.chunks_sent, MANY as u64);
}

async fn a_final_report_of_ten_thousand_chunks_commits_gapless(db: Db) {
    let store = db.store().await;
    let id = execution_with(&*store, vec![task("turn-1")]).await;
    let lease = store
        .claim_tasks(&claim("w-1", &["echo"], T0 + 1))
        .await
        .unwrap()
        .remove(0);
    let all = numbered(MANY);
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let chunks = progress(&lease, &refs, T0 + 2).chunks;
    // The attempt's end: many history events too (5 binds each), with the output in one commit.
    let events: Vec<_> = (0..4_000).map(crate::support::event).collect();
    let report = Transition {
        execution_id: id,
        row_write: RowWrite::Update {
            expected_next_seq: 3,
        },
        row: row(ExecutionStatus::Completed),
        fences: vec![Fence::Lease {
            activity_id: "turn-1".into(),
            attempt: 1,
            lease_token: lease.lease_token.clone().unwrap(),
        }],
        events,
        chunks,
        tasks: vec![TaskOp::DeleteAll],
        timers: vec![],
        now: T0 + 3,
        children: vec![],
        objects: Vec::new(),
    };
    assert_eq!(commit_one(&*store, report).await, CommitOutcome::Committed);
    assert_numbered(&texts(&*store, id).await, MANY);
    let record = store.get_execution(id).await.unwrap().unwrap();
    assert_eq!(record.next_seq, 3 + 4_000);
    assert_eq!(store.history(id, 0, 10_000).await.unwrap().len(), 2 + 4_000);
}

async fn a_release_of_ten_thousand_chunks_is_stored_gapless(db: Db) {
    let store = db.store().await;
    let id = execution_with(&*store, vec![task("turn-1")]).await;
    let lease = store
        .claim_tasks(&claim("w-1", &["echo"], T0 + 1))
        .await
        .unwrap()
        .remove(0);
    let all = numbered(MANY);
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let release = ReleaseRecord {
        lease: crate::support::lease_of(&lease),
        chunks: progress(&lease, &refs, T0 + 2).chunks,
        checkpoint: None,
        objects: Vec::new(),
        now: T0 + 2,
        max_output_bytes: u64::MAX,
    };
    assert_eq!(
        store.release_task(&release).await.unwrap(),
        Some(ReleaseOutcome::Released)
    );
    assert_numbered(&texts(&*store, id).await, MANY);
}

async fn a_claim_naming_forty_thousand_runtimes_leases_its_task(db: Db) {
    let store = db.store().await;
    let id = execution_with(&*store, vec![task("turn-1")]).await;
    let mut runtimes: Vec<String> = (0..40_000).map(|i| format!("runtime-{i}")).collect();
    runtimes.push("echo".into());
    let request = ClaimRequest {
        runtimes,
        ..claim("w-1", &[], T0 + 1)
    };
    let leased = store
        .claim_tasks(&request)
        .await
        .expect("any number of runtimes");
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].execution_id, id);
    // And none of the other names matches anything.
    let other = execution_with(&*store, vec![task("turn-1")]).await;
    let request = ClaimRequest {
        runtimes: (0..40_000).map(|i| format!("runtime-{i}")).collect(),
        ..claim("w-1", &[], T0 + 2)
    };
    assert!(store.claim_tasks(&request).await.unwrap().is_empty());
    assert_eq!(
        store
            .get_task(other, "turn-1")
            .await
            .unwrap()
            .unwrap()
            .status,
        TaskStatus::Ready
    );
}

async fn every_task_of_one_claim_gets_its_own_lease_token(db: Db) {
    let store = db.store().await;
    for _ in 0..5 {
        execution_with(&*store, vec![task("turn-1")]).await;
    }
    let leased = store
        .claim_tasks(&claim("w-1", &["echo"], T0 + 1))
        .await
        .unwrap();
    assert_eq!(leased.len(), 5);
    let tokens: BTreeSet<String> = leased
        .iter()
        .map(|t| t.lease_token.clone().expect("a token"))
        .collect();
    assert_eq!(tokens.len(), 5, "one token per task: {tokens:?}");
    assert!(
        tokens
            .iter()
            .all(|t| t.len() == 32 && t.chars().all(|c| c.is_ascii_hexdigit())),
        "tokens are 128 random bits in hex: {tokens:?}"
    );
    // A token fences only its own task: a report with another task's token is refused.
    let (a, b) = (&leased[0], &leased[1]);
    let mut crossed = progress(a, &["x"], T0 + 2);
    crossed.lease.lease_token = b.lease_token.clone().unwrap();
    assert_eq!(store.record_progress(&crossed).await.unwrap(), None);
}

async fn a_gap_in_first_chunk_index_is_refused_and_writes_nothing(db: Db) {
    let store = db.store().await;
    let id = execution_with(&*store, vec![task("turn-1")]).await;
    let lease = store
        .claim_tasks(&claim("w-1", &["echo"], T0 + 1))
        .await
        .unwrap()
        .remove(0);
    let mut first = progress(&lease, &["a", "b"], T0 + 2);
    first.first_chunk = Some(0);
    store.record_progress(&first).await.unwrap().unwrap();
    let before = snapshot(&*store, id).await;

    let mut gap = progress(&lease, &["x", "y"], T0 + 3);
    gap.first_chunk = Some(5);
    gap.checkpoint = Some(serde_json::json!({ "step": 9 }));
    let err = store.record_progress(&gap).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::ChunkGap {
                first: 5,
                stored: 2
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "first_chunk_index 5 but only 2 chunks of this lease are stored; send every chunk from index 2 on"
    );
    assert_eq!(snapshot(&*store, id).await, before, "nothing written");

    // The next index itself is fine.
    let mut next = progress(&lease, &["c"], T0 + 4);
    next.first_chunk = Some(2);
    store.record_progress(&next).await.unwrap().unwrap();
    assert_eq!(texts(&*store, id).await, ["a", "b", "c"]);
}
