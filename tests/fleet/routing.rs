//! Routing: a task goes only to a worker with its runtime and queue; one nobody can run waits
//! and says why; `ListWorkers` and `cairn worker list` show the fleet.

use cairn::api::pb;
use serde_json::json;

use crate::common::client::start_request;
use crate::common::fleet::{Proc, wait_for_workers};
use crate::common::server::cairn_bin;
use crate::common::{Db, TestClient};

async fn tasks_reach_only_workers_with_their_runtime_and_queue(db: Db) {
    let (_server, url) = Proc::server(&db, "127.0.0.1:0", &[], &[]);
    let mut c = TestClient::connect(&url).await;
    c.create_agent("coder", "claude_code", json!({})).await;
    c.create_agent("echoer", "echo", json!({})).await;
    let _echo_only = Proc::worker("echo-only", &[&url], &["--runtimes", "echo"], &[]);
    wait_for_workers(&mut c, &["echo-only"]).await;

    let coding = c.start_simple("coder", "write a haiku").await;
    // The echo worker keeps polling. Claims are oldest-first, so once it has run an echo
    // execution started after the claude_code one, it has passed the claude_code task over.
    let echoed = c.start_simple("echoer", "after the coder").await;
    assert_eq!(c.watch(&echoed, 0).await.closed.status, "COMPLETED");
    let waiting = c.get(&coding).await;
    assert_eq!(waiting.status, "PENDING");
    let activity = waiting.activity.expect("an open activity");
    assert!(
        activity
            .state
            .contains("no connected worker offers runtime `claude_code` on queue `default`"),
        "{}",
        activity.state
    );
    // A worker asking for echo tasks directly gets nothing either.
    let polled = c
        .workers
        .poll_tasks(pb::PollTasksRequest {
            worker_id: "probe".into(),
            runtimes: vec!["echo".into()],
            max_tasks: 8,
            wait_ms: 100,
            policy_json: String::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(polled.tasks.is_empty(), "{polled:?}");

    // Queues: an echo task on `gpu` waits for a worker serving `gpu`, not the default one.
    let mut on_gpu = start_request("echoer", &["on the gpu queue"]);
    on_gpu.queue = "gpu".into();
    let gpu_id = c.start(on_gpu).await;
    let execution = c.get(&gpu_id).await;
    assert_eq!(execution.queue, "gpu");
    let state = execution.activity.unwrap().state;
    assert!(
        state.contains("no connected worker offers runtime `echo` on queue `gpu`"),
        "{state}"
    );
    let _gpu = Proc::worker(
        "gpu-worker",
        &[&url],
        &["--runtimes", "echo", "--queue", "gpu"],
        &[],
    );
    assert_eq!(c.watch(&gpu_id, 0).await.closed.status, "COMPLETED");
    let history = c.history(&gpu_id).await;
    let started = history
        .iter()
        .find(|e| e.kind == "ActivityStarted")
        .unwrap();
    assert_eq!(started.payload["worker"], "gpu-worker");
    let started = c.history(&echoed).await;
    let started = started
        .iter()
        .find(|e| e.kind == "ActivityStarted")
        .unwrap();
    assert_eq!(started.payload["worker"], "echo-only");

    // The fleet as operators see it, over the RPC and the CLI.
    let workers = wait_for_workers(&mut c, &["echo-only", "gpu-worker"]).await;
    let gpu = workers
        .iter()
        .find(|w| w.worker_id == "gpu-worker")
        .unwrap();
    assert_eq!(
        (gpu.queue.as_str(), gpu.runtimes.as_slice()),
        ("gpu", &["echo".to_string()][..])
    );
    assert_eq!(gpu.slots, 8, "the worker's default concurrency");
    let listed = std::process::Command::new(cairn_bin())
        .args(["worker", "list", "--json", "--server", &url])
        .env_remove("CAIRN_TOKEN")
        .output()
        .unwrap();
    assert!(listed.status.success(), "{listed:?}");
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["worker_id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"echo-only") && ids.contains(&"gpu-worker"),
        "{ids:?}"
    );

    // The claude_code execution is still waiting, untouched.
    let still = c.get(&coding).await;
    assert_eq!(
        (still.status.as_str(), still.history_length),
        ("PENDING", 2)
    );
}

crate::on_both_stores!(tasks_reach_only_workers_with_their_runtime_and_queue);
