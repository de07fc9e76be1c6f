//! In-process engine helpers for the tests that drive an `Engine` directly (no server).

use std::sync::Arc;
use std::time::Duration;

use cairn::clock::ManualClock;
use cairn::contract::{Assignment, PollRequest};
use cairn::domain::Millis;
use cairn::engine::{Engine, EngineOptions, StartRequest};
use cairn::store::AgentKey;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Db;

/// The time a manual clock of these tests starts at.
pub const T0: Millis = 1_800_000_000_000;

/// A manual clock at [`T0`] and an `echo` agent `e` in `db`.
pub async fn echo_agent_at_t0(db: &Db) -> Arc<ManualClock> {
    super::db::insert_echo_agent(&*db.store().await, "e", T0).await;
    ManualClock::new(T0)
}

/// An engine on its own connection to `db` (as a server of its own would have), on `clock`.
pub async fn engine_on(db: &Db, clock: &Arc<ManualClock>) -> Arc<Engine> {
    Engine::new(db.store().await, clock.clone(), EngineOptions::default())
}

/// Starts agent `e` in the default namespace with one turn per prompt; returns the id.
pub async fn start_echo(engine: &Engine, prompts: &[&str]) -> Uuid {
    let (id, created) = engine
        .start(StartRequest {
            namespace: "default".into(),
            agent: Some(AgentKey::Name("e".into())),
            prompts: prompts.iter().map(|p| p.to_string()).collect(),
            ..StartRequest::default()
        })
        .await
        .unwrap();
    assert!(created);
    id
}

/// Claims what is ready for a worker `w` of `echo` on the default queue, without waiting.
pub async fn claim(engine: &Engine) -> Vec<Assignment> {
    let request = PollRequest {
        worker_id: "w".into(),
        runtimes: vec!["echo".into()],
        queue: "default".into(),
        max_tasks: 8,
        slots: 8,
        wait: Duration::ZERO,
        policy: None,
    };
    engine
        .poll(&request, &CancellationToken::new())
        .await
        .unwrap()
}

/// Claims the one ready task, as [`claim`]; fails the test unless exactly one is ready.
pub async fn claim_one(engine: &Engine) -> Assignment {
    let mut claimed = claim(engine).await;
    assert_eq!(claimed.len(), 1, "one task is ready");
    claimed.pop().unwrap()
}
