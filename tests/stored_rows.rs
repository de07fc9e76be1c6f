//! What a transition stores of an agent execution leaves out what its `ExecutionStarted` fixed,
//! on both stores: the row's state has no agent, prompts, retry policy or timeouts, a task's
//! turn only its index and prompt; and whatever reads them gets them back whole, from the start
//! event: an engine with nothing cached claims the task with its agent, reads the state, and
//! moves the execution on to its next turn.

#[allow(
    unused_imports,
    reason = "these tests use only the databases of the shared test code"
)]
mod common;

use cairn::contract::{ActivityOutcome, Report};
use cairn::domain::Usage;
use cairn::machine::ExecutionState;
use serde_json::{Value, json};
use uuid::Uuid;

use common::Db;
use common::engine::{claim_one, echo_agent_at_t0, engine_on, start_echo};

crate::on_both_stores!(rows_leave_out_what_the_start_fixed_and_reads_put_it_back);

/// The stored JSON of the execution's state and of its task `activity_id`'s turn, as text.
async fn stored(db: &Db, id: Uuid, activity_id: &str) -> (Value, Value) {
    let sql = "SELECT CAST(e.state AS TEXT), CAST(t.turn AS TEXT) FROM executions e \
               JOIN tasks t ON t.execution_id = e.id WHERE e.id = $1 AND t.activity_id = $2";
    // The same query on either store's pool type.
    macro_rules! fetch {
        ($pool:ty) => {{
            let pool = <$pool>::connect(&db.url).await.unwrap();
            let query = sqlx::query_as(sql).bind(id).bind(activity_id);
            query.fetch_one(&pool).await.unwrap()
        }};
    }
    let (state, turn): (String, String) = if db.url.starts_with("sqlite:") {
        fetch!(sqlx::SqlitePool)
    } else {
        fetch!(sqlx::PgPool)
    };
    (
        serde_json::from_str(&state).unwrap(),
        serde_json::from_str(&turn).unwrap(),
    )
}

async fn rows_leave_out_what_the_start_fixed_and_reads_put_it_back(db: Db) {
    let clock = echo_agent_at_t0(&db).await;
    let engine = engine_on(&db, &clock).await;
    let id = start_echo(&engine, &["first", "second"]).await;

    let (state, turn) = stored(&db, id, "turn-1").await;
    for fixed in ["agent", "prompts", "retry_policy", "timeouts", "queue"] {
        assert!(state.get(fixed).is_none(), "{fixed} stored: {state}");
    }
    assert_eq!(state["turns"], json!({ "completed": 0 }), "{state}");
    assert_eq!(turn, json!({ "index": 0, "prompt": "first" }));

    // Another engine (another server: nothing cached) claims the task with its agent ...
    let other = engine_on(&db, &clock).await;
    let first = claim_one(&other).await;
    assert_eq!(
        (first.turn.agent.name.as_str(), first.turn.prompt.as_str()),
        ("e", "first")
    );
    // ... reads the state whole ...
    let record = db.store().await.get_execution(id).await.unwrap().unwrap();
    let ExecutionState::Agent(read) =
        ExecutionState::from_json(record.kind, &record.state).unwrap()
    else {
        panic!("an agent execution");
    };
    assert_eq!(read.agent.name, "e");
    assert_eq!(read.prompts, ["first", "second"]);
    // ... and moves it on from that read: turn 2 with its prompt and agent.
    other
        .report(Report {
            lease: first.lease.clone(),
            first_chunk: Some(0),
            chunks: Vec::new(),
            outcome: ActivityOutcome::Completed {
                output: json!({ "text": "one" }),
                usage: Usage::default(),
                checkpoint: None,
            },
            accept_next: false,
            workspace: None,
        })
        .await
        .unwrap();
    let (state, turn) = stored(&db, id, "turn-2").await;
    assert_eq!(
        state["turns"],
        json!({ "completed": 1, "last": { "text": "one" } })
    );
    assert_eq!(turn, json!({ "index": 1, "prompt": "second" }));
    let second = claim_one(&engine).await;
    assert_eq!(
        (second.turn.agent.name.as_str(), second.turn.prompt.as_str()),
        ("e", "second")
    );
}
