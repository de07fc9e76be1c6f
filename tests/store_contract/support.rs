//! Builders for the rows and transitions the contract tests write, and a snapshot of everything a
//! refused write could have touched.

use std::collections::BTreeMap;

use cairn::domain::{
    Agent, AgentStatus, ExecutionKind, ExecutionStatus, HistoryEvent, Millis, Usage,
};
use cairn::store::{
    ClaimRequest, CommitOutcome, ExecutionRecord, NewChunk, NewExecution, NewTask, ProgressRecord,
    RowState, RowWrite, SnapshotJson, Store, StoredChunk, StoredEvent, TaskOp, TaskRecord,
    TimerRecord, Transition,
};
use serde_json::json;
use uuid::Uuid;

/// The namespace most tests write to.
pub const NS: &str = "default";
/// A fixed "now"; tests move time by adding to it, never by reading a clock.
pub const T0: Millis = 1_700_000_000_000;
/// The heartbeat timeout of tasks built by [`task`].
pub const HEARTBEAT_MS: u64 = 1_000;

/// An active agent in [`NS`].
pub fn agent(name: &str) -> Agent {
    Agent {
        id: Uuid::now_v7(),
        namespace: NS.into(),
        name: name.into(),
        runtime: "echo".into(),
        model_id: "m-1".into(),
        configuration: json!({ "chunks": ["a", "b"], "runtime_config": { "delay_ms": 5 } }),
        status: AgentStatus::Active,
        created_at: T0,
        updated_at: T0,
        version: 1,
    }
}

/// A history event. The store does not interpret events, so any input will do; the reason
/// makes each one distinguishable.
pub fn event(n: u32) -> HistoryEvent {
    HistoryEvent::CancelRequested {
        reason: format!("event {n}"),
    }
}

/// The row fields of a transition that leaves the execution in `status`.
pub fn row(status: ExecutionStatus) -> RowState {
    RowState {
        status,
        state: SnapshotJson::of(&json!({ "status": status.as_str() })).unwrap(),
        result: None,
        failure: None,
        usage: Usage::default(),
        closed_at: None,
    }
}

/// A top-level agent execution on the `echo` runtime, without request id or labels.
pub fn new_execution(id: Uuid) -> NewExecution {
    NewExecution {
        namespace: NS.into(),
        kind: ExecutionKind::Agent,
        agent_id: Some(Uuid::nil()),
        runtime: "echo".into(),
        input: json!({ "prompts": ["hello"] }),
        parent_id: None,
        root_id: id,
        retry_of: None,
        request_id: None,
        team_id: None,
        child_key: None,
        labels: BTreeMap::new(),
    }
}

/// The transition that creates `new` with two events and nothing else.
pub fn create_from(id: Uuid, new: NewExecution) -> Transition {
    Transition {
        execution_id: id,
        row_write: RowWrite::Create(Box::new(new)),
        row: row(ExecutionStatus::Pending),
        fences: vec![],
        events: vec![event(1), event(2)],
        chunks: vec![],
        tasks: vec![],
        timers: vec![],
        now: T0,
        children: vec![],
        objects: Vec::new(),
    }
}

/// The transition that creates [`new_execution`]`(id)`; its row then has `next_seq` 3.
pub fn create(id: Uuid) -> Transition {
    create_from(id, new_execution(id))
}

/// A transition that appends one event to an execution computed at `expected_next_seq`.
pub fn advance(id: Uuid, expected_next_seq: u64) -> Transition {
    Transition {
        execution_id: id,
        row_write: RowWrite::Update { expected_next_seq },
        row: row(ExecutionStatus::Pending),
        fences: vec![],
        events: vec![event(expected_next_seq as u32)],
        chunks: vec![],
        tasks: vec![],
        timers: vec![],
        now: T0,
        children: vec![],
        objects: Vec::new(),
    }
}

/// The first attempt of `activity_id` on `echo` in the default queue.
pub fn task(activity_id: &str) -> NewTask {
    NewTask {
        activity_id: activity_id.into(),
        runtime: "echo".into(),
        queue: "default".into(),
        turn: json!({ "index": 0, "prompt": "hello" }),
        checkpoint: None,
        schedule_deadline: None,
        heartbeat_ms: HEARTBEAT_MS,
        start_to_close_ms: 0,
        lease: None,
    }
}

/// Creates an execution whose activities are these tasks; returns its id.
pub async fn execution_with(store: &dyn Store, tasks: Vec<NewTask>) -> Uuid {
    let id = Uuid::now_v7();
    let start = Transition {
        tasks: tasks.into_iter().map(TaskOp::Insert).collect(),
        ..create(id)
    };
    assert_eq!(commit_one(store, start).await, CommitOutcome::Committed);
    id
}

/// The first attempt of `turn-1` on `runtime` in `queue`.
pub fn on(runtime: &str, queue: &str) -> NewTask {
    NewTask {
        runtime: runtime.into(),
        queue: queue.into(),
        ..task("turn-1")
    }
}

/// A claim of up to 10 tasks of `runtimes` in the default queue.
pub fn claim(worker: &str, runtimes: &[&str], now: Millis) -> ClaimRequest {
    ClaimRequest {
        worker_id: worker.into(),
        runtimes: runtimes.iter().map(|r| r.to_string()).collect(),
        queue: "default".into(),
        max: 10,
        now,
        policy: None,
    }
}

/// A text chunk of `activity_id`'s first attempt.
pub fn chunk(activity_id: &str, text: &str) -> NewChunk {
    NewChunk {
        source: None,
        activity_id: activity_id.into(),
        attempt: 1,
        kind: "text".into(),
        data: json!({ "text": text }),
        reused_from: None,
    }
}

/// The lease a claimed task row stands for.
pub fn lease_of(task: &TaskRecord) -> cairn::domain::Lease {
    cairn::domain::Lease {
        execution_id: task.execution_id,
        activity_id: task.activity_id.clone(),
        attempt: task.attempt,
        lease_token: task.lease_token.clone().expect("a leased task has a token"),
    }
}

/// Progress of the attempt `lease` holds, with one text chunk per entry of `texts`.
pub fn progress(lease: &TaskRecord, texts: &[&str], now: Millis) -> ProgressRecord {
    ProgressRecord {
        lease: lease_of(lease),
        chunks: texts
            .iter()
            .map(|t| NewChunk {
                attempt: lease.attempt,
                ..chunk(&lease.activity_id, t)
            })
            .collect(),
        checkpoint: None,
        objects: Vec::new(),
        first_chunk: None,
        workspace: None,
        now,
        max_output_bytes: u64::MAX,
    }
}

/// Commits one transition and returns its outcome.
pub async fn commit_one(store: &dyn Store, t: Transition) -> CommitOutcome {
    let mut outcomes = store.commit(&[t]).await.expect("commit");
    assert_eq!(outcomes.len(), 1, "one outcome per transition");
    outcomes.remove(0)
}

/// The texts of an execution's output, in seq order.
pub async fn texts(store: &dyn Store, id: Uuid) -> Vec<String> {
    let chunks = store.output(id, 0, 10_000).await.unwrap();
    chunks
        .iter()
        .map(|c| c.data["text"].as_str().unwrap().to_string())
        .collect()
}

/// Everything a write to execution `id` (and its activity `turn-1`) could have changed.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    counts: Vec<(&'static str, i64)>,
    execution: Option<ExecutionRecord>,
    history: Vec<StoredEvent>,
    output: Vec<StoredChunk>,
    task: Option<TaskRecord>,
    timers: Vec<TimerRecord>,
}

/// Takes a [`Snapshot`]: compare two to show that a refused write wrote nothing.
pub async fn snapshot(store: &dyn Store, id: Uuid) -> Snapshot {
    let mut counts = Vec::new();
    for table in cairn::store::TABLES {
        counts.push((*table, store.count_rows(table).await.unwrap()));
    }
    Snapshot {
        counts,
        execution: store.get_execution(id).await.unwrap(),
        history: store.history(id, 0, 10_000).await.unwrap(),
        output: store.output(id, 0, 10_000).await.unwrap(),
        task: store.get_task(id, "turn-1").await.unwrap(),
        timers: store.due_timers(Millis::MAX, 10_000).await.unwrap(),
    }
}
