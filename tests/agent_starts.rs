//! Starts from a remembered agent: an engine remembers the agent it last started, so the next
//! start of it reads no agent row, and the start carries a fence (the agent still active at that
//! version) checked in its transaction. An agent changed or archived through another server
//! (another engine on the same database) is never started from memory.

#[allow(
    unused_imports,
    reason = "these tests use only the databases of the shared test code"
)]
mod common;

use std::sync::Arc;

use cairn::clock::ManualClock;
use cairn::domain::{AgentStatus, HistoryEvent, Millis};
use cairn::engine::{Engine, EngineError, EngineOptions, StartRequest};
use cairn::store::AgentKey;
use serde_json::json;
use uuid::Uuid;

use common::Db;

crate::on_both_stores!(
    a_start_after_another_server_changed_the_agent_runs_the_new_definition,
    an_agent_archived_by_another_server_is_not_started_from_memory,
);

const T0: Millis = 1_800_000_000_000;

async fn start(engine: &Engine) -> Result<Uuid, EngineError> {
    let (id, created) = engine
        .start(StartRequest {
            namespace: "default".into(),
            agent: Some(AgentKey::Name("e".into())),
            prompts: vec!["hi".into()],
            ..StartRequest::default()
        })
        .await?;
    assert!(created);
    Ok(id)
}

/// The configuration the execution was started with, as its history records it.
async fn started_configuration(engine: &Engine, id: Uuid) -> serde_json::Value {
    let history = engine.history_after(id, 0).await.unwrap();
    match &history[0].event {
        HistoryEvent::ExecutionStarted { agent, .. } => agent.configuration.clone(),
        other => panic!("the first event is {other:?}"),
    }
}

/// Two engines on `db` (two servers), a manual clock, and an `echo` agent `e`.
async fn two_servers(db: &Db) -> (Arc<Engine>, Arc<Engine>) {
    common::db::insert_echo_agent(&*db.store().await, "e", T0).await;
    let clock = ManualClock::new(T0);
    let a = Engine::new(db.store().await, clock.clone(), EngineOptions::default());
    let b = Engine::new(db.store().await, clock, EngineOptions::default());
    (a, b)
}

async fn a_start_after_another_server_changed_the_agent_runs_the_new_definition(db: Db) {
    let (a, b) = two_servers(&db).await;
    let first = start(&a).await.unwrap();
    assert_eq!(started_configuration(&a, first).await, json!({}));

    // Server B changes the agent; server A remembers the old version.
    let store = db.store().await;
    let mut agent = store
        .get_agent("default", &AgentKey::Name("e".into()))
        .await
        .unwrap()
        .unwrap();
    agent.configuration = json!({ "chunks": ["changed"] });
    store.update_agent(&agent).await.unwrap();
    drop(b);

    let second = start(&a).await.unwrap();
    assert_eq!(
        started_configuration(&a, second).await,
        json!({ "chunks": ["changed"] }),
        "the start ran the agent's current definition"
    );
    // And again, now from memory at the new version.
    let third = start(&a).await.unwrap();
    assert_eq!(
        started_configuration(&a, third).await,
        json!({ "chunks": ["changed"] })
    );
}

async fn an_agent_archived_by_another_server_is_not_started_from_memory(db: Db) {
    let (a, b) = two_servers(&db).await;
    start(&a).await.unwrap();
    b.archive_agent("default", &AgentKey::Name("e".into()), None)
        .await
        .unwrap();
    let before = db.row_counts().await;
    let refused = start(&a)
        .await
        .expect_err("an archived agent is not started");
    assert!(
        matches!(refused, EngineError::NotFound(ref m) if m.contains("no active agent named `e`")),
        "{refused:?}"
    );
    assert_eq!(
        db.row_counts().await,
        before,
        "the refused start wrote nothing"
    );
    let agents = db
        .store()
        .await
        .list_agents("default", true, None, 10)
        .await
        .unwrap();
    assert_eq!(agents[0].status, AgentStatus::Archived);
}
