//! `commit` costs a fixed number of statements per group commit, however many transitions it
//! carries: the store's statement counter (BEGIN and COMMIT included) is the same for a batch
//! of one report and a batch of 32, and each transition still gets its own outcome. On
//! PostgreSQL the writes of a round are one statement; on SQLite the statements nobody reads
//! back go with the next call to its database thread, so a report is three calls.

use cairn::domain::ExecutionStatus;
use cairn::store::{CommitOutcome, Fence, Store, TaskOp, TaskRecord, Transition};
use uuid::Uuid;

use crate::common::Db;
use crate::support::{
    T0, advance, agent, chunk, claim, create, create_from, event, execution_with, new_execution,
    progress, row, task, texts,
};

crate::on_both_stores!(
    a_group_commit_of_32_reports_costs_the_statements_of_one,
    a_fenced_and_a_conflicting_report_cost_the_batch_no_statement_more,
    children_reporting_in_one_commit_continue_their_parent_output_gapless,
    a_report_and_a_start_each_write_in_one_statement_on_postgres_and_three_calls_on_sqlite,
    every_kind_of_fence_holds_or_fences_its_own_transition_in_one_batch,
);

/// `n` executions whose `turn-1` a worker has claimed; returns the leased tasks by execution.
async fn leased(store: &dyn Store, n: usize) -> Vec<TaskRecord> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(execution_with(store, vec![task("turn-1")]).await);
    }
    let mut leased = Vec::new();
    while leased.len() < n {
        let mut batch = store
            .claim_tasks(&claim("w-1", &["echo"], T0))
            .await
            .unwrap();
        assert!(!batch.is_empty(), "every task can be claimed");
        // Only these executions' tasks: earlier reports left their next turns ready too.
        batch.retain(|t| ids.contains(&t.execution_id));
        leased.append(&mut batch);
    }
    leased.sort_by_key(|t| ids.iter().position(|id| *id == t.execution_id));
    leased
}

/// What a worker's report of a finished turn commits, as the engine builds it: the lease as its
/// fence, two events, the last output chunks, the turn's task row deleted and the next turn's
/// inserted.
fn report(lease: &TaskRecord) -> Transition {
    Transition {
        fences: vec![Fence::Lease {
            activity_id: lease.activity_id.clone(),
            attempt: lease.attempt,
            lease_token: lease.lease_token.clone().unwrap(),
        }],
        events: vec![event(3), event(4)],
        row: row(ExecutionStatus::Running),
        chunks: vec![chunk("turn-1", "x"), chunk("turn-1", "y")],
        tasks: vec![
            TaskOp::Delete {
                activity_id: "turn-1".into(),
            },
            TaskOp::Insert(task("turn-2")),
        ],
        ..advance(lease.execution_id, 3)
    }
}

/// Commits `transitions` in one call; returns the outcomes and the statements it took.
async fn counted(store: &dyn Store, transitions: &[Transition]) -> (Vec<CommitOutcome>, u64) {
    let (outcomes, statements, _) = counted_trips(store, transitions).await;
    (outcomes, statements)
}

/// Commits `transitions` in one call; returns the outcomes, the statements it took and the
/// calls to the database they went in.
async fn counted_trips(
    store: &dyn Store,
    transitions: &[Transition],
) -> (Vec<CommitOutcome>, u64, u64) {
    let (statements, trips) = (store.statements_issued(), store.round_trips_issued());
    let outcomes = store.commit(transitions).await.unwrap();
    (
        outcomes,
        store.statements_issued() - statements,
        store.round_trips_issued() - trips,
    )
}

async fn assert_reported(store: &dyn Store, id: Uuid) {
    assert_eq!(texts(store, id).await, ["x", "y"], "{id}: its output");
    assert_eq!(store.get_task(id, "turn-1").await.unwrap(), None);
    let next = store.get_task(id, "turn-2").await.unwrap().expect("turn-2");
    assert_eq!((next.status.as_str(), next.attempt), ("ready", 1));
    let record = store.get_execution(id).await.unwrap().unwrap();
    assert_eq!((record.next_seq, record.output_seq), (5, 2));
}

async fn a_group_commit_of_32_reports_costs_the_statements_of_one(db: Db) {
    let postgres = db.url.starts_with("postgres");
    let store = db.store().await;
    let one = leased(&*store, 1).await;
    let (outcomes, alone, alone_trips) = counted_trips(&*store, &[report(&one[0])]).await;
    assert_eq!(outcomes, [CommitOutcome::Committed]);
    assert_reported(&*store, one[0].execution_id).await;
    if postgres {
        assert_eq!(alone, 1, "one statement alone, outside a transaction");
    } else {
        assert!(
            alone >= 3,
            "BEGIN, the writes and COMMIT are counted: {alone}"
        );
    }

    let many = leased(&*store, 32).await;
    let reports: Vec<Transition> = many.iter().map(report).collect();
    let (outcomes, together, together_trips) = counted_trips(&*store, &reports).await;
    assert_eq!(outcomes, vec![CommitOutcome::Committed; 32]);
    assert_eq!(
        together, alone,
        "32 reports in one commit cost the statements of one"
    );
    assert_eq!(
        together_trips, alone_trips,
        "and the calls to the database of one"
    );
    for lease in &many {
        assert_reported(&*store, lease.execution_id).await;
    }
}

async fn a_fenced_and_a_conflicting_report_cost_the_batch_no_statement_more(db: Db) {
    let store = db.store().await;
    let one = leased(&*store, 1).await;
    let (_, alone) = counted(&*store, &[report(&one[0])]).await;

    let many = leased(&*store, 8).await;
    let mut reports: Vec<Transition> = many.iter().map(report).collect();
    // A report from an attempt that lost its lease, and one computed from a stale version.
    if let Fence::Lease { lease_token, .. } = &mut reports[2].fences[0] {
        *lease_token = "another-token".into();
    }
    reports[5] = Transition {
        row_write: cairn::store::RowWrite::Update {
            expected_next_seq: 2,
        },
        ..reports[5].clone()
    };
    let (outcomes, together) = counted(&*store, &reports).await;
    let mut expected = vec![CommitOutcome::Committed; 8];
    expected[2] = CommitOutcome::Fenced;
    expected[5] = CommitOutcome::Conflict;
    assert_eq!(outcomes, expected);
    assert_eq!(together, alone);
    for (i, lease) in many.iter().enumerate() {
        let id = lease.execution_id;
        if i == 2 || i == 5 {
            assert_eq!(texts(&*store, id).await, Vec::<String>::new(), "{i}");
            let turn = store.get_task(id, "turn-1").await.unwrap().unwrap();
            assert_eq!(turn.status.as_str(), "leased", "{i}: untouched");
            assert_eq!(store.get_task(id, "turn-2").await.unwrap(), None);
        } else {
            assert_reported(&*store, id).await;
        }
    }
}

async fn children_reporting_in_one_commit_continue_their_parent_output_gapless(db: Db) {
    let store = db.store().await;
    let [parent, a, b] = [(); 3].map(|_| Uuid::now_v7());
    let child = |id: Uuid, key: &str| {
        let new = cairn::store::NewExecution {
            parent_id: Some(parent),
            root_id: parent,
            child_key: Some(key.into()),
            ..new_execution(id)
        };
        create_from(id, new)
    };
    let start = Transition {
        children: vec![child(a, "a"), child(b, "b")],
        objects: Vec::new(),
        ..create(parent)
    };
    assert_eq!(
        store.commit(&[start]).await.unwrap(),
        [CommitOutcome::Committed]
    );

    let with_chunks = |t: Transition, texts: &[&str]| Transition {
        chunks: texts.iter().map(|x| chunk("turn-1", x)).collect(),
        ..t
    };
    let batch = [
        with_chunks(advance(a, 3), &["a1", "a2"]),
        with_chunks(advance(b, 3), &["b1"]),
        with_chunks(advance(parent, 3), &["p1"]),
        // The second transition of `a` in the commit sees the first one's version.
        with_chunks(advance(a, 4), &["a3"]),
    ];
    let outcomes = store.commit(&batch).await.unwrap();
    assert_eq!(outcomes, vec![CommitOutcome::Committed; 4]);

    assert_eq!(texts(&*store, a).await, ["a1", "a2", "a3"]);
    assert_eq!(texts(&*store, b).await, ["b1"]);
    let output = store.output(parent, 0, 100).await.unwrap();
    let seqs: Vec<u64> = output.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5], "gapless");
    let mut by_source: Vec<(Option<String>, String)> = output
        .iter()
        .map(|c| {
            (
                c.source_key.clone(),
                c.data["text"].as_str().unwrap().into(),
            )
        })
        .collect();
    by_source.sort();
    assert_eq!(
        by_source,
        [
            (None, "p1".into()),
            (Some("a".into()), "a1".into()),
            (Some("a".into()), "a2".into()),
            (Some("a".into()), "a3".into()),
            (Some("b".into()), "b1".into()),
        ]
    );
    let a_copies: Vec<&str> = output
        .iter()
        .filter(|c| c.source_id == Some(a))
        .map(|c| c.data["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        a_copies,
        ["a1", "a2", "a3"],
        "a child's copies keep its order"
    );
    let record = store.get_execution(parent).await.unwrap().unwrap();
    assert_eq!((record.output_seq, record.next_seq), (5, 4));
    assert_eq!(store.get_execution(a).await.unwrap().unwrap().next_seq, 5);
}

/// A start with labels, output and its first task, as the engine commits one.
fn start(id: Uuid) -> Transition {
    let mut new = new_execution(id);
    new.labels.insert("team".into(), "blue".into());
    Transition {
        chunks: vec![chunk("turn-1", "s")],
        tasks: vec![TaskOp::Insert(task("turn-1"))],
        ..create_from(id, new)
    }
}

async fn a_report_and_a_start_each_write_in_one_statement_on_postgres_and_three_calls_on_sqlite(
    db: Db,
) {
    let postgres = db.url.starts_with("postgres");
    let store = db.store().await;
    let one = leased(&*store, 1).await;
    let (outcomes, report, report_trips) = counted_trips(&*store, &[self::report(&one[0])]).await;
    assert_eq!(outcomes, [CommitOutcome::Committed]);
    assert_reported(&*store, one[0].execution_id).await;

    let id = Uuid::now_v7();
    let (outcomes, start, start_trips) = counted_trips(&*store, &[self::start(id)]).await;
    assert_eq!(outcomes, [CommitOutcome::Committed]);
    let record = store.get_execution(id).await.unwrap().unwrap();
    assert_eq!(record.labels.get("team").map(String::as_str), Some("blue"));
    assert_eq!(texts(&*store, id).await, ["s"]);
    assert_eq!(
        store
            .get_task(id, "turn-1")
            .await
            .unwrap()
            .unwrap()
            .status
            .as_str(),
        "ready"
    );
    if postgres {
        // One statement alone, its fences (the lease, with the task rows locked) checked
        // inside it: no BEGIN, no fence read of its own, no COMMIT.
        assert_eq!((report, start), (1, 1));
        assert_eq!((report_trips, start_trips), (1, 1));
    } else {
        // SQLite runs one statement per table and kind of change: no CTE may write there.
        assert!(report >= 7 && start >= 6, "{report} {start}");
        // But in three calls to its database thread: BEGIN with the fence read, the row's
        // update, then the writes with COMMIT; a start without fences in two.
        assert_eq!((report_trips, start_trips), (3, 2));
    }
}

/// A remembered lease's fence (`TaskAsKnown`), for `turn-1` at `chunks_sent`, leaving room for
/// `at_most` bytes of stored output.
fn known(chunks_sent: u64, at_most: u64) -> Fence {
    Fence::TaskAsKnown {
        activity_id: "turn-1".into(),
        chunks_sent,
        workspace: None,
        output_bytes_at_most: at_most,
    }
}

/// One batch (one round) holding a transition that passes and one that fails each kind of fence
/// a batch written in one statement checks inside it, and a start refused for its request id:
/// each gets its own outcome, and the fenced ones write nothing. On PostgreSQL it costs that one
/// statement and the refused start's lookup.
async fn every_kind_of_fence_holds_or_fences_its_own_transition_in_one_batch(db: Db) {
    let postgres = db.url.starts_with("postgres");
    let store = db.store().await;
    let agent = agent("fenced");
    store.insert_agent(&agent).await.unwrap();
    let original = Uuid::now_v7();
    let with_request = |id| cairn::store::NewExecution {
        request_id: Some("req-fences".into()),
        agent_id: Some(agent.id),
        ..new_execution(id)
    };
    store
        .commit(&[create_from(original, with_request(original))])
        .await
        .unwrap();
    let leases = leased(&*store, 4).await;
    // The fourth has stored output through a progress since its lease: 1 chunk.
    let stored = store
        .record_progress(&progress(&leases[3], &["p"], T0))
        .await
        .unwrap();
    assert!(stored.is_some());
    let sent = store
        .get_task(leases[3].execution_id, "turn-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        sent.chunks_sent, 1,
        "so only the output room fences it below"
    );
    let ready = execution_with(&*store, vec![task("turn-1")]).await;

    let with_fence = |t: Transition, fence: Fence| {
        let mut t = t;
        t.fences.push(fence);
        t
    };
    let from_agent = |version: u64| {
        let id = Uuid::now_v7();
        Transition {
            fences: vec![Fence::Agent {
                agent_id: agent.id,
                version,
            }],
            ..create_from(
                id,
                cairn::store::NewExecution {
                    agent_id: Some(agent.id),
                    ..new_execution(id)
                },
            )
        }
    };
    let (as_agent_is, agent_changed) = (from_agent(1), from_agent(2));
    let duplicate = Uuid::now_v7();
    let batch = [
        with_fence(report(&leases[0]), known(0, u64::MAX)),
        with_fence(report(&leases[1]), known(5, u64::MAX)),
        with_fence(
            report(&leases[2]),
            Fence::Unclaimed {
                activity_id: "turn-1".into(),
                attempt: 1,
            },
        ),
        with_fence(report(&leases[3]), known(1, 0)),
        Transition {
            fences: vec![Fence::Unclaimed {
                activity_id: "turn-1".into(),
                attempt: 1,
            }],
            tasks: vec![TaskOp::Delete {
                activity_id: "turn-1".into(),
            }],
            ..advance(ready, 3)
        },
        as_agent_is.clone(),
        agent_changed.clone(),
        create_from(duplicate, with_request(duplicate)),
    ];
    let (outcomes, statements) = counted(&*store, &batch).await;
    assert_eq!(
        outcomes,
        [
            CommitOutcome::Committed,
            CommitOutcome::Fenced,
            CommitOutcome::Fenced,
            CommitOutcome::Fenced,
            CommitOutcome::Committed,
            CommitOutcome::Committed,
            CommitOutcome::Fenced,
            CommitOutcome::Duplicate(original),
        ]
    );
    if postgres {
        assert_eq!(
            statements, 2,
            "the batch, then the refused start's request id"
        );
    }
    assert_reported(&*store, leases[0].execution_id).await;
    for lease in &leases[1..] {
        let id = lease.execution_id;
        let record = store.get_execution(id).await.unwrap().unwrap();
        assert_eq!(record.next_seq, 3, "{id}: the fence left its row");
        let turn = store.get_task(id, "turn-1").await.unwrap().unwrap();
        assert_eq!(turn.status.as_str(), "leased", "{id}: its lease untouched");
        assert_eq!(store.get_task(id, "turn-2").await.unwrap(), None);
    }
    assert_eq!(texts(&*store, leases[3].execution_id).await, ["p"]);
    assert_eq!(store.get_task(ready, "turn-1").await.unwrap(), None);
    assert_eq!(
        store.get_execution(ready).await.unwrap().unwrap().next_seq,
        4
    );
    assert!(
        store
            .get_execution(as_agent_is.execution_id)
            .await
            .unwrap()
            .is_some()
    );
    for id in [agent_changed.execution_id, duplicate] {
        assert!(store.get_execution(id).await.unwrap().is_none(), "{id}");
    }
}
