//! Routing by worker policy, in-process on a manual clock (real stores, no network): a task whose
//! agent no connected worker's policy admits is handed to none of them, the execution says which
//! rule keeps it waiting, a refusing worker never takes it on a later poll, and a worker whose
//! policy admits it takes it. `CreateAgent`'s warning comes from the same check. Then the same
//! with real `cairn server` and `cairn worker` processes, through `cairn exec get`, and a worker
//! that stops cleanly leaving `cairn worker list` at once.

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
use common::fleet::{Proc, wait_for_workers};
use common::server::cairn_bin;

crate::on_both_stores!(
    a_task_waits_for_a_worker_whose_policy_admits_it,
    a_fleet_routes_by_policy_and_a_stopped_worker_leaves_the_list,
);

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
    let engine: Arc<Engine> =
        Engine::new(db.store().await, clock.clone(), EngineOptions::default());
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
    assert!(
        why.contains("strict") && why.contains("`permission_modes`"),
        "{why}"
    );
    let warning = engine
        .unadmitted("claude_code", None, &config)
        .await
        .unwrap();
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
    assert_eq!(
        engine
            .unadmitted("claude_code", None, &config)
            .await
            .unwrap(),
        None
    );
}

/// `cairn exec get ID` against `url`: its standard output.
fn exec_get(url: &str, id: &str) -> String {
    let output = std::process::Command::new(cairn_bin())
        .args(["--server", url, "exec", "get", id])
        .env("NO_COLOR", "1")
        .output()
        .expect("run cairn exec get");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn a_fleet_routes_by_policy_and_a_stopped_worker_leaves_the_list(db: Db) {
    let (_server, url) = Proc::server(&db, "127.0.0.1:0", &[], &[]);
    // The CLI cannot start here: a turn that reaches a worker fails at once, naming that worker.
    let no_cli = [
        "--runtimes",
        "claude_code",
        "--claude-cli",
        "/nonexistent/claude",
    ];
    let _strict = Proc::worker("strict", &[&url], &no_cli, &[]);
    let mut c = common::TestClient::connect(&url).await;
    wait_for_workers(&mut c, &["strict"]).await;

    let agent = c
        .create_agent(
            "coder",
            "claude_code",
            json!({"permission_mode": "bypassPermissions"}),
        )
        .await;
    assert!(
        agent
            .warnings
            .iter()
            .any(|w| w.contains("`permission_modes`")),
        "CreateAgent warns that no worker admits the agent: {:?}",
        agent.warnings
    );
    let id = c.start_simple("coder", "hi").await;
    let shown = c
        .wait_until(&id, "the refusal to be recorded", |e| {
            e.activity
                .as_ref()
                .is_some_and(|a| a.state.contains("admits"))
        })
        .await;
    assert_eq!(shown.status, "PENDING");
    let text = exec_get(&url, &id);
    assert!(
        text.contains("strict") && text.contains("`permission_modes`"),
        "cairn exec get says which rule keeps the task waiting:\n{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.json");
    std::fs::write(&policy, r#"{"permission_modes": ["bypassPermissions"]}"#).unwrap();
    let policy = policy.display().to_string();
    let mut open_args = no_cli.to_vec();
    open_args.extend(["--policy", policy.as_str()]);
    let mut open = Proc::worker("open", &[&url], &open_args, &[]);
    let failed = c
        .wait_until(&id, "the admitting worker to run it", |e| {
            e.status == "FAILED"
        })
        .await;
    let failure = failed.failure.expect("a failure");
    assert_eq!(failure.code, "cli_not_found", "{failure:?}");
    let started = c.history(&id).await;
    let workers: Vec<&str> = started
        .iter()
        .filter(|e| e.kind == "ActivityStarted")
        .filter_map(|e| e.payload["worker"].as_str())
        .collect();
    assert_eq!(workers, ["open"]);

    // A clean stop deregisters: gone from the list at once, the other worker still there.
    assert!(open.terminate(Duration::from_secs(30)).success());
    let listed = c
        .workers
        .list_workers(cairn::api::pb::ListWorkersRequest {})
        .await
        .unwrap()
        .into_inner()
        .workers;
    let ids: Vec<&str> = listed.iter().map(|w| w.worker_id.as_str()).collect();
    assert_eq!(ids, ["strict"]);
    assert!(listed[0].policy_json.contains("permission_modes"));
}
