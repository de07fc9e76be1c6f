//! `list_executions`: filters, newest first, pages.

use std::collections::BTreeMap;

use cairn::domain::{ExecutionStatus, Millis};
use cairn::store::{CommitOutcome, ExecutionFilter, NewExecution, Store, Transition};
use uuid::Uuid;

use crate::common::Db;
use crate::support::{NS, T0, advance, commit_one, create_from, new_execution, row};

crate::on_both_stores!(executions_are_filtered_newest_first_and_paged);

/// What distinguishes the executions of the test from one another.
struct Spec {
    agent: Uuid,
    runtime: &'static str,
    parent: Option<Uuid>,
    labels: &'static [(&'static str, &'static str)],
    status: ExecutionStatus,
    created_at: Millis,
}

async fn start(store: &dyn Store, namespace: &str, spec: Spec) -> Uuid {
    let id = Uuid::now_v7();
    let new = NewExecution {
        namespace: namespace.into(),
        agent_id: Some(spec.agent),
        runtime: spec.runtime.into(),
        parent_id: spec.parent,
        root_id: spec.parent.unwrap_or(id),
        labels: spec
            .labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..new_execution(id)
    };
    let start = Transition {
        now: spec.created_at,
        ..create_from(id, new)
    };
    assert_eq!(commit_one(store, start).await, CommitOutcome::Committed);
    if spec.status != ExecutionStatus::Pending {
        let moved = Transition {
            row: row(spec.status),
            ..advance(id, 3)
        };
        assert_eq!(commit_one(store, moved).await, CommitOutcome::Committed);
    }
    id
}

async fn executions_are_filtered_newest_first_and_paged(db: Db) {
    let store = db.store().await;
    let [writer, reviewer] = [Uuid::now_v7(), Uuid::now_v7()];
    let spec = |agent, runtime, status, created_at| Spec {
        agent,
        runtime,
        parent: None,
        labels: &[],
        status,
        created_at,
    };
    use ExecutionStatus::{Completed, Failed, Pending, Running};
    let s = &*store;
    let e1 = start(
        s,
        NS,
        Spec {
            labels: &[("user", "u-1")],
            ..spec(writer, "echo", Running, T0 + 1)
        },
    )
    .await;
    let e2 = start(
        s,
        NS,
        Spec {
            labels: &[("user", "u-2"), ("session", "s-1")],
            ..spec(writer, "default", Completed, T0 + 2)
        },
    )
    .await;
    let e3 = start(
        s,
        NS,
        Spec {
            parent: Some(e1),
            labels: &[("user", "u-1"), ("session", "s-1")],
            ..spec(reviewer, "echo", Pending, T0 + 3)
        },
    )
    .await;
    let e4 = start(s, NS, spec(reviewer, "echo", Failed, T0 + 4)).await;
    start(s, "other", spec(writer, "echo", Running, T0 + 5)).await;

    let list = |filter: ExecutionFilter, before: Option<Uuid>, limit: u32| {
        let store = store.clone();
        async move {
            let records = store.list_executions(&filter, before, limit).await.unwrap();
            records.into_iter().map(|r| r.id).collect::<Vec<_>>()
        }
    };
    let all = ExecutionFilter {
        namespace: NS.into(),
        ..Default::default()
    };
    let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };

    assert_eq!(
        list(all.clone(), None, 10).await,
        [e4, e3, e2, e1],
        "newest first, one namespace"
    );
    let finished = ExecutionFilter {
        statuses: vec![Completed, Failed],
        ..all.clone()
    };
    assert_eq!(list(finished, None, 10).await, [e4, e2]);
    let by_writer = ExecutionFilter {
        agent_id: Some(writer),
        ..all.clone()
    };
    assert_eq!(list(by_writer, None, 10).await, [e2, e1]);
    let on_echo = ExecutionFilter {
        runtime: Some("echo".into()),
        ..all.clone()
    };
    assert_eq!(list(on_echo, None, 10).await, [e4, e3, e1]);
    let children = ExecutionFilter {
        parent_id: Some(e1),
        ..all.clone()
    };
    assert_eq!(list(children, None, 10).await, [e3]);
    let window = ExecutionFilter {
        created_after: Some(T0 + 2),
        created_before: Some(T0 + 4),
        ..all.clone()
    };
    assert_eq!(
        list(window, None, 10).await,
        [e3, e2],
        "from `after` inclusive to `before` exclusive"
    );
    let user = ExecutionFilter {
        labels: labels(&[("user", "u-1")]),
        ..all.clone()
    };
    assert_eq!(list(user, None, 10).await, [e3, e1]);
    let both = ExecutionFilter {
        labels: labels(&[("user", "u-1"), ("session", "s-1")]),
        ..all.clone()
    };
    assert_eq!(list(both, None, 10).await, [e3], "every label must match");
    let nobody = ExecutionFilter {
        labels: labels(&[("user", "u-9")]),
        ..all.clone()
    };
    assert_eq!(list(nobody, None, 10).await, Vec::<Uuid>::new());
    let combined = ExecutionFilter {
        statuses: vec![Pending],
        agent_id: Some(reviewer),
        runtime: Some("echo".into()),
        ..all.clone()
    };
    assert_eq!(list(combined, None, 10).await, [e3]);

    assert_eq!(list(all.clone(), None, 2).await, [e4, e3]);
    assert_eq!(
        list(all.clone(), Some(e3), 2).await,
        [e2, e1],
        "the page before the last seen"
    );
    assert_eq!(list(all.clone(), Some(e1), 2).await, Vec::<Uuid>::new());

    let records = store.list_executions(&all, None, 10).await.unwrap();
    let e2_labels = &records.iter().find(|r| r.id == e2).unwrap().labels;
    assert_eq!(
        *e2_labels,
        labels(&[("user", "u-2"), ("session", "s-1")]),
        "rows carry labels"
    );
}
