//! Routing by worker policy, in-process on a manual clock (real stores, no network): a task whose
//! agent no connected worker's policy admits is handed to none of them, the execution says which
//! rule keeps it waiting, a refusing worker never takes it on a later poll, and a worker whose
//! policy admits it takes it. `CreateAgent`'s warning comes from the same check.

#[allow(
    unused_imports,
    reason = "these tests use only the databases of the shared test code"
)]
mod common;

use std::sync::Arc;
use std::time::Duration;

use cairn::clock::ManualClock;
use cairn::contract::PollRequest;
use cairn::domain::{Millis, WorkerPolicy};
use cairn::engine::catalog::NewAgent;
use cairn::engine::{ActivityState, Engine, EngineOptions, StartRequest};
use cairn::runtime::{RuntimeRegistry, RuntimeSettings};
use cairn::store::AgentKey;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use common::Db;

crate::on_both_stores!(a_task_waits_for_a_worker_whose_policy_admits_it);

const T0: Millis = 1_800_000_000_000;

fn poll(worker: &str, policy: WorkerPolicy) -> PollRequest {
    PollRequest {
        worker_id: worker.into(),
        runtimes: vec!["claude_code".into()],
        queue: "default".into(),
        max_tasks: 4,
        slots: 4,
        wait: Duration::ZERO,
        policy: Some(policy),
    }
}

async fn a_task_waits_for_a_worker_whose_policy_admits_it(db: Db) {
    let clock = ManualClock::new(T0);
    let engine: Arc<Engine> = Engine::new(db.store().await, clock.clone(), EngineOptions::default());
    let runtimes = RuntimeRegistry::builtin(&RuntimeSettings::default());
    let config = json!({"permission_mode": "bypassPermissions"});
    engine
        .create_agent(
            &runtimes,
            NewAgent {
                namespace: "default".into(),
                name: "coder".into(),
                runtime: "claude_code".into(),
                model_id: String::new(),
                configuration: json!({ "runtime_config": config }),
            },
        )
        .await
        .unwrap();
    let (id, _) = engine
        .start(StartRequest {
            namespace: "default".into(),
            agent: Some(AgentKey::Name("coder".into())),
            prompts: vec!["hi".into()],
            ..StartRequest::default()
        })
        .await
        .unwrap();
    let stop = CancellationToken::new();

    // The restrictive worker is handed nothing, now or on a later poll.
    let strict = poll("strict", WorkerPolicy::default());
    assert!(engine.poll(&strict, &stop).await.unwrap().is_empty());
    assert!(engine.poll(&strict, &stop).await.unwrap().is_empty());
    let view = engine.view(id).await.unwrap();
    let Some(ActivityState::Waiting { refused, .. }) = view.activity.map(|a| a.state) else {
        panic!("the task waits for a worker");
    };
    let why = refused.expect("the view says why no worker takes it");
    assert!(why.contains("strict") && why.contains("`permission_modes`"), "{why}");
    let warning = engine.unadmitted("claude_code", None, &config).await.unwrap();
    assert!(warning.is_some_and(|w| w.contains("bypassPermissions")));

    // A worker whose policy admits bypassPermissions takes it.
    let open = WorkerPolicy {
        permission_modes: vec!["bypassPermissions".into()],
        ..WorkerPolicy::default()
    };
    let claimed = engine.poll(&poll("open", open), &stop).await.unwrap();
    assert_eq!(claimed.len(), 1, "the admitting worker takes the task");
    assert_eq!(claimed[0].lease.execution_id, id);
    let view = engine.view(id).await.unwrap();
    assert!(
        matches!(view.activity.map(|a| a.state), Some(ActivityState::Running { worker }) if worker == "open")
    );
    assert_eq!(engine.unadmitted("claude_code", None, &config).await.unwrap(), None);
}
