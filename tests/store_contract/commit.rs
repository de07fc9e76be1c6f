//! `commit`: one transition is one transaction with one outcome, and a refused transition writes
//! nothing.

use std::collections::BTreeMap;

use cairn::domain::{ExecutionStatus, Failure, HistoryEvent, Usage};
use cairn::store::{
    CommitOutcome, Fence, NewExecution, RowState, SnapshotJson, TaskOp, TimerKind, TimerOp,
    Transition,
};
use serde_json::json;
use uuid::Uuid;

use crate::common::Db;
use crate::support::{
    NS, T0, advance, chunk, claim, commit_one, create, create_from, event, execution_with,
    new_execution, progress, row, snapshot, task, texts,
};

crate::on_both_stores!(
    a_create_writes_the_row_its_history_labels_tasks_and_timers,
    a_repeated_request_id_is_a_duplicate_that_writes_nothing,
    a_stale_version_is_a_conflict_that_writes_nothing,
    a_failed_fence_is_fenced_and_writes_nothing,
    a_timer_fence_lets_a_timer_fire_once,
    each_transition_of_a_group_commit_has_its_own_outcome,
    group_commits_over_the_same_executions_in_any_order_both_finish,
    a_closing_transition_sets_the_outcome_and_clears_tasks_and_timers,
    chunks_of_a_transition_continue_the_output_of_progress_reports,
    events_and_the_state_read_back_exactly_as_written,
    a_write_that_fails_inside_a_commit_undoes_it_and_the_next_commit_goes_through,
);

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn a_create_writes_the_row_its_history_labels_tasks_and_timers(db: Db) {
    let store = db.store().await;
    let id = Uuid::now_v7();
    let new = NewExecution {
        request_id: Some("req-1".into()),
        labels: labels(&[("user_id", "u-1"), ("session", "s-1")]),
        ..new_execution(id)
    };
    let start = Transition {
        events: vec![event(1), event(2), event(3)],
        tasks: vec![TaskOp::Insert(task("turn-1"))],
        timers: vec![TimerOp::Insert {
            timer_id: "retry-turn-1-2".into(),
            fire_at: T0 + 5_000,
            kind: TimerKind::RetryActivity,
            payload: json!({ "attempt": 2 }),
        }],
        ..create_from(id, new.clone())
    };
    assert_eq!(
        store.commit(&[start]).await.unwrap(),
        [CommitOutcome::Committed]
    );

    let row = store.get_execution(id).await.unwrap().expect("the row");
    assert_eq!(row.status, ExecutionStatus::Pending);
    assert_eq!((row.namespace.as_str(), row.runtime.as_str()), (NS, "echo"));
    assert_eq!((row.input, row.root_id), (new.input, id));
    assert_eq!(row.request_id.as_deref(), Some("req-1"));
    assert_eq!(row.labels, new.labels);
    assert_eq!(row.state, json!({ "status": "PENDING" }));
    assert_eq!(
        (row.next_seq, row.output_seq),
        (4, 0),
        "three events, no output"
    );
    assert_eq!(
        (row.created_at, row.started_at, row.closed_at),
        (T0, None, None)
    );

    let history = store.history(id, 0, 100).await.unwrap();
    let seqs: Vec<_> = history.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3]);
    let events: Vec<_> = history.into_iter().map(|e| e.event).collect();
    assert_eq!(events, [event(1), event(2), event(3)]);
    let page = store.history(id, 1, 1).await.unwrap();
    assert_eq!(
        page.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [2],
        "history pages by seq"
    );

    let t = store
        .get_task(id, "turn-1")
        .await
        .unwrap()
        .expect("the task");
    assert_eq!(
        (t.status.as_str(), t.attempt, t.lease_token),
        ("ready", 1, None)
    );
    assert_eq!(t.turn, task("turn-1").turn);
    let timers = store.due_timers(T0 + 5_000, 10).await.unwrap();
    assert_eq!(timers.len(), 1);
    assert_eq!(timers[0].timer_id, "retry-turn-1-2");
    assert_eq!(store.find_request(NS, "req-1").await.unwrap(), Some(id));
}

async fn a_repeated_request_id_is_a_duplicate_that_writes_nothing(db: Db) {
    let store = db.store().await;
    let with_request = |id: Uuid, namespace: &str| {
        let new = NewExecution {
            namespace: namespace.into(),
            request_id: Some("req-1".into()),
            ..new_execution(id)
        };
        Transition {
            tasks: vec![TaskOp::Insert(task("turn-1"))],
            ..create_from(id, new)
        }
    };
    let first = Uuid::now_v7();
    assert_eq!(
        commit_one(&*store, with_request(first, NS)).await,
        CommitOutcome::Committed
    );
    let before = snapshot(&*store, first).await;

    let again = Uuid::now_v7();
    let outcome = commit_one(&*store, with_request(again, NS)).await;
    assert_eq!(
        outcome,
        CommitOutcome::Duplicate(first),
        "names the execution that has it"
    );
    assert_eq!(snapshot(&*store, first).await, before, "wrote nothing");
    assert_eq!(store.get_execution(again).await.unwrap(), None);

    let elsewhere = Uuid::now_v7();
    let outcome = commit_one(&*store, with_request(elsewhere, "other")).await;
    assert_eq!(
        outcome,
        CommitOutcome::Committed,
        "request ids are per namespace"
    );
}

async fn a_stale_version_is_a_conflict_that_writes_nothing(db: Db) {
    let store = db.store().await;
    let id = Uuid::now_v7();
    let start = Transition {
        tasks: vec![TaskOp::Insert(task("turn-1"))],
        ..create(id)
    };
    commit_one(&*store, start).await;
    assert_eq!(
        commit_one(&*store, advance(id, 3)).await,
        CommitOutcome::Committed
    );
    let before = snapshot(&*store, id).await;

    // Computed from version 3, which the commit above moved to 4.
    let stale = Transition {
        row: row(ExecutionStatus::Completed),
        chunks: vec![chunk("turn-1", "late")],
        tasks: vec![TaskOp::RequestCancel {
            activity_id: "turn-1".into(),
        }],
        timers: vec![TimerOp::Insert {
            timer_id: "t".into(),
            fire_at: T0,
            kind: TimerKind::RetryActivity,
            payload: json!({}),
        }],
        ..advance(id, 3)
    };
    assert_eq!(commit_one(&*store, stale).await, CommitOutcome::Conflict);
    assert_eq!(snapshot(&*store, id).await, before, "wrote nothing");
}

async fn a_failed_fence_is_fenced_and_writes_nothing(db: Db) {
    let store = db.store().await;
    let id = Uuid::now_v7();
    let start = Transition {
        tasks: vec![TaskOp::Insert(task("turn-1"))],
        ..create(id)
    };
    commit_one(&*store, start).await;
    let leased = store
        .claim_tasks(&claim("w-1", &["echo"], T0))
        .await
        .unwrap();
    let token = leased[0].lease_token.clone().unwrap();
    let before = snapshot(&*store, id).await;

    let report = |fence: Fence| Transition {
        fences: vec![fence],
        chunks: vec![chunk("turn-1", "last words")],
        tasks: vec![TaskOp::Park {
            activity_id: "turn-1".into(),
            checkpoint: Some(json!({ "session": "s-1" })),
        }],
        timers: vec![TimerOp::Insert {
            timer_id: "retry-turn-1-2".into(),
            fire_at: T0 + 1_000,
            kind: TimerKind::RetryActivity,
            payload: json!({}),
        }],
        ..advance(id, 3)
    };
    let lease = |activity: &str, attempt: u32, token: &str| Fence::Lease {
        activity_id: activity.into(),
        attempt,
        lease_token: token.into(),
    };
    let failing = [
        lease("turn-1", 1, "another-token"),
        lease("turn-1", 2, &token),
        lease("turn-2", 1, &token),
        Fence::Unclaimed {
            activity_id: "turn-1".into(),
            attempt: 1,
        },
        Fence::Timer {
            timer_id: "no-such-timer".into(),
        },
    ];
    for fence in failing {
        let outcome = commit_one(&*store, report(fence.clone())).await;
        assert_eq!(outcome, CommitOutcome::Fenced, "{fence:?}");
        assert_eq!(
            snapshot(&*store, id).await,
            before,
            "{fence:?} wrote nothing"
        );
    }

    // The same report with the lease it holds goes through: the fences above failed alone.
    let outcome = commit_one(&*store, report(lease("turn-1", 1, &token))).await;
    assert_eq!(outcome, CommitOutcome::Committed);
    let t = store.get_task(id, "turn-1").await.unwrap().unwrap();
    assert_eq!((t.status.as_str(), t.lease_token), ("backoff", None));
    assert_eq!(t.checkpoint, Some(json!({ "session": "s-1" })));
    assert_eq!(texts(&*store, id).await, ["last words"]);
}

async fn a_timer_fence_lets_a_timer_fire_once(db: Db) {
    let store = db.store().await;
    let id = Uuid::now_v7();
    let start = Transition {
        timers: vec![TimerOp::Insert {
            timer_id: "retry-turn-1-2".into(),
            fire_at: T0 + 1_000,
            kind: TimerKind::RetryActivity,
            payload: json!({}),
        }],
        ..create(id)
    };
    commit_one(&*store, start).await;
    let fire = |expected_next_seq| Transition {
        fences: vec![Fence::Timer {
            timer_id: "retry-turn-1-2".into(),
        }],
        timers: vec![TimerOp::Delete {
            timer_id: "retry-turn-1-2".into(),
        }],
        ..advance(id, expected_next_seq)
    };

    assert_eq!(commit_one(&*store, fire(3)).await, CommitOutcome::Committed);
    // A second server that saw the same due timer, working from the current version.
    assert_eq!(commit_one(&*store, fire(4)).await, CommitOutcome::Fenced);
    assert_eq!(store.get_execution(id).await.unwrap().unwrap().next_seq, 4);
}

async fn each_transition_of_a_group_commit_has_its_own_outcome(db: Db) {
    let store = db.store().await;
    let [a, b, c, original] = [(); 4].map(|_| Uuid::now_v7());
    let with_request = |id| NewExecution {
        request_id: Some("req-1".into()),
        ..new_execution(id)
    };
    let setup = [
        create(a),
        create(b),
        create(c),
        create_from(original, with_request(original)),
    ];
    assert_eq!(
        store.commit(&setup).await.unwrap(),
        vec![CommitOutcome::Committed; 4]
    );

    let [duplicate, fresh] = [(); 2].map(|_| Uuid::now_v7());
    let group = [
        advance(a, 3),
        advance(b, 2),
        Transition {
            fences: vec![Fence::Timer {
                timer_id: "gone".into(),
            }],
            ..advance(c, 3)
        },
        create_from(duplicate, with_request(duplicate)),
        create(fresh),
        // Sees the transition of `a` above: a group commit is one transaction, in order.
        advance(a, 4),
        // Computed from the same version as the previous one: only one of them can win.
        advance(a, 4),
    ];
    let outcomes = store.commit(&group).await.unwrap();
    assert_eq!(
        outcomes,
        [
            CommitOutcome::Committed,
            CommitOutcome::Conflict,
            CommitOutcome::Fenced,
            CommitOutcome::Duplicate(original),
            CommitOutcome::Committed,
            CommitOutcome::Committed,
            CommitOutcome::Conflict,
        ]
    );

    let next_seq = |id| {
        let store = store.clone();
        async move { store.get_execution(id).await.unwrap().map(|r| r.next_seq) }
    };
    assert_eq!(
        next_seq(a).await,
        Some(5),
        "both transitions of `a` that won"
    );
    assert_eq!(
        next_seq(b).await,
        Some(3),
        "the conflict left `b` as it was"
    );
    assert_eq!(next_seq(c).await, Some(3), "the fence left `c` as it was");
    assert_eq!(next_seq(duplicate).await, None);
    assert_eq!(next_seq(fresh).await, Some(3));
    // Five creates of two events each, and the two transitions of `a`.
    assert_eq!(store.count_rows("history_events").await.unwrap(), 5 * 2 + 2);
}

/// Servers group-commit whatever transitions are waiting, so two concurrent commits can name
/// the same executions in opposite orders; each must still get its outcomes, not an error.
async fn group_commits_over_the_same_executions_in_any_order_both_finish(db: Db) {
    let store = db.store().await;
    let [a, b] = [(); 2].map(|_| Uuid::now_v7());
    store.commit(&[create(a), create(b)]).await.unwrap();

    for round in 0..40 {
        let version = |id| {
            let store = store.clone();
            async move { store.get_execution(id).await.unwrap().unwrap().next_seq }
        };
        let (at_a, at_b) = (version(a).await, version(b).await);
        let forward = [advance(a, at_a), advance(b, at_b)];
        let backward = [advance(b, at_b), advance(a, at_a)];
        let (forward, backward) = tokio::join!(store.commit(&forward), store.commit(&backward));
        let (forward, backward) = (forward.unwrap(), backward.unwrap());
        // Both were computed from the same versions: for each execution exactly one wins.
        let wins = |outcome: &CommitOutcome| usize::from(*outcome == CommitOutcome::Committed);
        assert_eq!(
            wins(&forward[0]) + wins(&backward[1]),
            1,
            "round {round}: a"
        );
        assert_eq!(
            wins(&forward[1]) + wins(&backward[0]),
            1,
            "round {round}: b"
        );
    }
}

async fn a_closing_transition_sets_the_outcome_and_clears_tasks_and_timers(db: Db) {
    let store = db.store().await;
    let [done, failed] = [(); 2].map(|_| Uuid::now_v7());
    for id in [done, failed] {
        let start = Transition {
            tasks: vec![
                TaskOp::Insert(task("turn-1")),
                TaskOp::Insert(task("turn-2")),
            ],
            timers: vec![TimerOp::Insert {
                timer_id: "t-1".into(),
                fire_at: T0 + 1_000,
                kind: TimerKind::RetryActivity,
                payload: json!({}),
            }],
            ..create(id)
        };
        commit_one(&*store, start).await;
    }
    store
        .claim_tasks(&claim("w-1", &["echo"], T0 + 10))
        .await
        .unwrap();
    let running = store.get_execution(done).await.unwrap().unwrap();
    assert_eq!(
        (running.status, running.started_at),
        (ExecutionStatus::Running, Some(T0 + 10))
    );

    // A transition whose machine has not seen the claim says PENDING; the claim's RUNNING stays.
    commit_one(&*store, advance(done, 3)).await;
    let record = store.get_execution(done).await.unwrap().unwrap();
    assert_eq!(record.status, ExecutionStatus::Running);

    let usage = Usage {
        input_tokens: 10,
        output_tokens: 20,
        cost_usd: 0.25,
        tool_calls: 3,
    };
    let complete = Transition {
        row: RowState {
            result: Some(json!({ "text": "done" })),
            usage,
            closed_at: Some(T0 + 500),
            ..row(ExecutionStatus::Completed)
        },
        tasks: vec![TaskOp::DeleteAll],
        timers: vec![TimerOp::DeleteAll],
        ..advance(done, 4)
    };
    assert_eq!(
        commit_one(&*store, complete).await,
        CommitOutcome::Committed
    );
    let record = store.get_execution(done).await.unwrap().unwrap();
    assert_eq!(record.status, ExecutionStatus::Completed);
    assert_eq!(
        (record.result, record.failure),
        (Some(json!({ "text": "done" })), None)
    );
    assert_eq!((record.usage, record.closed_at), (usage, Some(T0 + 500)));
    assert_eq!(store.get_task(done, "turn-1").await.unwrap(), None);
    assert_eq!(store.get_task(done, "turn-2").await.unwrap(), None);

    let failure = Failure {
        details: json!({ "http_status": 400 }),
        ..Failure::new("bad_request", "the model refused the request", false)
    };
    let fail = Transition {
        row: RowState {
            failure: Some(failure.clone()),
            closed_at: Some(T0 + 600),
            ..row(ExecutionStatus::Failed)
        },
        tasks: vec![TaskOp::DeleteAll],
        timers: vec![TimerOp::DeleteAll],
        ..advance(failed, 3)
    };
    assert_eq!(commit_one(&*store, fail).await, CommitOutcome::Committed);
    let record = store.get_execution(failed).await.unwrap().unwrap();
    assert_eq!(
        (record.status, record.failure),
        (ExecutionStatus::Failed, Some(failure))
    );
    assert_eq!(
        store.count_rows("tasks").await.unwrap(),
        0,
        "no task of either stays"
    );
    assert_eq!(
        store.count_rows("timers").await.unwrap(),
        0,
        "no timer of either stays"
    );
}

async fn chunks_of_a_transition_continue_the_output_of_progress_reports(db: Db) {
    let store = db.store().await;
    let id = Uuid::now_v7();
    let start = Transition {
        tasks: vec![TaskOp::Insert(task("turn-1"))],
        ..create(id)
    };
    commit_one(&*store, start).await;
    let leased = store
        .claim_tasks(&claim("w-1", &["echo"], T0))
        .await
        .unwrap();
    let lease = &leased[0];
    store
        .record_progress(&progress(lease, &["a", "b"], T0 + 1))
        .await
        .unwrap();

    let report = Transition {
        chunks: vec![chunk("turn-1", "c"), chunk("turn-1", "d")],
        tasks: vec![TaskOp::Delete {
            activity_id: "turn-1".into(),
        }],
        ..advance(id, 3)
    };
    assert_eq!(commit_one(&*store, report).await, CommitOutcome::Committed);

    let output = store.output(id, 0, 100).await.unwrap();
    let seqs: Vec<_> = output.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    assert_eq!(texts(&*store, id).await, ["a", "b", "c", "d"]);
    assert_eq!(
        store.get_execution(id).await.unwrap().unwrap().output_seq,
        4
    );
    let resumed = store.output(id, 2, 1).await.unwrap();
    assert_eq!(
        resumed.iter().map(|c| c.seq).collect::<Vec<_>>(),
        [3],
        "output pages by seq"
    );
}

async fn events_and_the_state_read_back_exactly_as_written(db: Db) {
    let store = db.store().await;
    let id = Uuid::now_v7();
    // A cost summed over turns: 17 significant digits, which replay compares exactly.
    let usage = Usage {
        input_tokens: 200,
        output_tokens: 40,
        cost_usd: 0.0001 + 0.013,
        tool_calls: 2,
    };
    let completed = HistoryEvent::ExecutionCompleted {
        result: json!({ "text": "done", "score": 0.1 + 0.2 }),
        usage,
    };
    let start = Transition {
        events: vec![completed.clone()],
        row: RowState {
            state: SnapshotJson::of(&json!({ "usage": usage.cost_usd })).unwrap(),
            usage,
            ..row(ExecutionStatus::Pending)
        },
        ..create(id)
    };
    commit_one(&*store, start).await;

    let history = store.history(id, 0, 10).await.unwrap();
    assert_eq!(history[0].event, completed);
    let record = store.get_execution(id).await.unwrap().unwrap();
    assert_eq!(record.state, json!({ "usage": usage.cost_usd }));
    assert_eq!(record.usage, usage);
}

/// A write that fails inside a commit (a task row that exists already) fails the commit and
/// leaves nothing of it, though the row's update before it had succeeded; the next commit goes
/// through. On SQLite the failing write goes to the database with COMMIT, in one call: the
/// transaction must be rolled back there, not left open on the connection.
async fn a_write_that_fails_inside_a_commit_undoes_it_and_the_next_commit_goes_through(db: Db) {
    let store = db.store().await;
    let id = execution_with(&*store, vec![task("turn-1")]).await;
    let before = snapshot(&*store, id).await;
    let clash = Transition {
        chunks: vec![chunk("turn-1", "x")],
        tasks: vec![TaskOp::Insert(task("turn-1"))],
        ..advance(id, 3)
    };
    assert!(store.commit(&[clash]).await.is_err());
    assert_eq!(snapshot(&*store, id).await, before, "wrote nothing");
    for expected in [3, 4] {
        assert_eq!(
            commit_one(&*store, advance(id, expected)).await,
            CommitOutcome::Committed
        );
    }
    assert_eq!(store.get_execution(id).await.unwrap().unwrap().next_seq, 5);
}
