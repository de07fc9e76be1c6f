//! Claude Code sessions that move between workers: two `cairn worker` processes, each with a
//! config directory of its own (as on the Kubernetes manifests, which share none), run the
//! turns and retries of one `claude_code` execution; the session file travels in the
//! checkpoint and is restored before `--resume`. Needs the CLI (`npm ci --prefix tests/npm`).

#[allow(
    unused_imports,
    reason = "these tests start processes their own way, not through common::Server"
)]
mod common;
mod fake_anthropic;

use std::path::Path;
use std::time::Duration;

use cairn::api::pb;
use common::client::{fast_retries, start_request};
use common::fleet::Proc;
use common::{Db, TestClient};
use fake_anthropic::{CliSandbox, FakeAnthropic, Reply, claude_cli};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};

/// A worker whose CLI runs with `sandbox`'s home and config directory.
fn worker(id: &str, url: &str, sandbox: &CliSandbox, api: &FakeAnthropic) -> Proc {
    let cli = claude_cli().display().to_string();
    let env = sandbox.env(api);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let policy = common::fleet::open_policy();
    Proc::worker(
        id,
        &[url],
        &[
            "--claude-cli",
            &cli,
            "--concurrency",
            "1",
            "--drain-timeout-ms",
            "120000",
            "--policy",
            &policy,
        ],
        &env,
    )
}

/// The session files under a config directory.
fn session_files(config_dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for project in std::fs::read_dir(config_dir.join("projects"))
        .into_iter()
        .flatten()
        .flatten()
    {
        for file in std::fs::read_dir(project.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            found.push(file.file_name().to_string_lossy().into_owned());
        }
    }
    found
}

async fn message_requests(api: &FakeAnthropic, n: usize) {
    api.wait_for(Duration::from_secs(120), |seen| {
        seen.iter().filter(|r| r.is_messages()).count() >= n
    })
    .await;
}

/// The chunks an execution has stored so far (the stream, read until it goes quiet).
async fn chunks_so_far(c: &mut TestClient, id: &str) -> Vec<pb::OutputChunk> {
    let mut stream = c.output_stream(id, 0).await;
    let mut chunks = Vec::new();
    while let Ok(Some(Ok(message))) =
        tokio::time::timeout(Duration::from_millis(300), stream.message())
            .await
            .map(|m| m.transpose())
    {
        if let Some(pb::stream_execution_response::Event::Chunk(chunk)) = message.event {
            chunks.push(chunk);
        }
    }
    chunks
}

/// The workers of the attempts that ended, in order.
async fn attempt_workers(c: &mut TestClient, id: &str) -> Vec<String> {
    c.history(id)
        .await
        .iter()
        .filter(|e| e.kind == "ActivityStarted")
        .map(|e| e.payload["worker"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turns_on_alternating_workers_with_separate_config_dirs_continue_one_session() {
    let db = Db::sqlite().await;
    // Each answer streams for a while, so the worker is told to drain while its turn runs: it
    // finishes the turn and offers no slot for the next, which the other worker then claims.
    let slow = |words: &[&str]| Reply::slow_text(words, Duration::from_millis(700));
    let api = FakeAnthropic::start([
        slow(&["first ", "answer ", "alpha"]),
        slow(&["second ", "answer ", "bravo"]),
        slow(&["third ", "answer ", "charlie"]),
    ])
    .await;
    let (a, b) = (CliSandbox::new(), CliSandbox::new());
    let (_server, url) = Proc::server(&db, "127.0.0.1:0", &[], &[]);
    let mut c = TestClient::connect(&url).await;
    c.create_agent(
        "coder",
        "claude_code",
        json!({ "permission_mode": "bypassPermissions" }),
    )
    .await;
    let mut request = start_request(
        "coder",
        &["turn one: hello", "turn two: more", "turn three: end"],
    );
    request.retry_policy = Some(fast_retries(1));
    let id = c.start(request).await;

    for (turn, (name, sandbox)) in [("a", &a), ("b", &b), ("a", &a)].into_iter().enumerate() {
        let mut worker = worker(&format!("worker-{name}"), &url, sandbox, &api);
        message_requests(&api, turn + 1).await;
        let status = worker.terminate(Duration::from_secs(120));
        assert!(status.success(), "worker-{name} drained: {}", worker.log());
    }

    let watched = c.watch_within(&id, 0, Duration::from_secs(60)).await;
    assert_eq!(watched.closed.status, "COMPLETED");
    assert_eq!(
        attempt_workers(&mut c, &id).await,
        ["worker-a", "worker-b", "worker-a"],
        "the turns alternated between the workers"
    );
    let requests = api.message_requests();
    assert_eq!(
        requests.len(),
        3,
        "one model call per turn, none made twice"
    );
    let second = requests[1].transcript();
    assert!(
        second.contains("turn one: hello") && second.contains("first answer alpha"),
        "turn 2 (worker b) resumed turn 1's conversation: {second}"
    );
    let third = requests[2].transcript();
    assert!(
        third.contains("turn one: hello") && third.contains("second answer bravo"),
        "turn 3 (worker a, whose own copy stopped after turn 1) saw turn 2: {third}"
    );
    let result: Value = serde_json::from_str(&watched.closed.result_json).unwrap();
    let session = result["session_id"].as_str().expect("a session id");
    let file = format!("{session}.jsonl");
    assert!(
        session_files(&b.config_dir()).contains(&file),
        "restored on worker b"
    );
    assert!(session_files(&a.config_dir()).contains(&file));

    // Each attempt names its worker and the directory it worked in there.
    let scratch = std::env::temp_dir().join("cairn-claude-code").join(&id);
    let get = std::process::Command::new(common::server::cairn_bin())
        .args(["exec", "get", &id])
        .env("CAIRN_SERVER", &url)
        .env("NO_COLOR", "1")
        .output()
        .expect("run cairn exec get");
    let shown = String::from_utf8_lossy(&get.stdout);
    for (turn, name) in ["a", "b", "a"].into_iter().enumerate() {
        let line = format!(
            "attempt turn-{} #1  worker worker-{name}  in {}",
            turn + 1,
            scratch.display()
        );
        assert!(shown.contains(&line), "`{line}` in:\n{shown}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_killed_with_its_worker_resumes_its_session_on_another_worker() {
    let db = Db::sqlite().await;
    let api = FakeAnthropic::start([
        Reply::bash("python3 -c \"import time; time.sleep(30)\""),
        Reply::text("picked up where we left off"),
    ])
    .await;
    let (a, b) = (CliSandbox::new(), CliSandbox::new());
    let (_server, url) = Proc::server(&db, "127.0.0.1:0", &[], &[]);
    let mut c = TestClient::connect(&url).await;
    c.create_agent(
        "coder",
        "claude_code",
        json!({ "permission_mode": "bypassPermissions" }),
    )
    .await;
    let mut request = start_request("coder", &["do a long thing"]);
    request.retry_policy = Some(fast_retries(3));
    request.timeouts = Some(pb::Timeouts {
        heartbeat_ms: 1_000,
        ..Default::default()
    });
    let id = c.start(request).await;

    let mut worker_a = worker("worker-a", &url, &a, &api);
    // The tool is running once its call is durable; the checkpoint saved with it carries the
    // session file as it stands.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let chunks = loop {
        let chunks = chunks_so_far(&mut c, &id).await;
        if chunks.iter().any(|ch| ch.kind == "tool_use") {
            break chunks;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the CLI never reached its tool call"
        );
    };
    let started: Value = chunks
        .iter()
        .find(|ch| ch.kind == "status" && ch.data_json.contains("\"started\""))
        .map(|ch| serde_json::from_str(&ch.data_json).unwrap())
        .expect("attempt 1 started");
    // Wait until the stored checkpoint holds the session file with the tool call, so the kill
    // comes after it (the CLI writes the file on its own schedule).
    let store = db.store().await;
    let execution: uuid::Uuid = id.parse().unwrap();
    let activity = chunks[0].activity_id.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let task = store.get_task(execution, &activity).await.unwrap().unwrap();
        let object = task.checkpoint.as_ref().and_then(|c| c["$object"].as_str());
        let chain = match object {
            Some(object) => store.object_chain(object).await.unwrap(),
            None => Vec::new(),
        };
        if chain.iter().any(|o| o.data.contains("time.sleep(30)")) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the session file was never captured"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The machine dies: the worker and the CLI it ran (in a process group of its own).
    worker_a.kill();
    let _ = killpg(
        Pid::from_raw(started["process_group"].as_i64().unwrap() as i32),
        Signal::SIGKILL,
    );
    let session = chunks
        .iter()
        .find_map(|ch| {
            let data: Value = serde_json::from_str(&ch.data_json).ok()?;
            data["session_id"].as_str().map(str::to_owned)
        })
        .expect("the CLI named its session");
    assert!(session_files(&b.config_dir()).is_empty());

    let _worker_b = worker("worker-b", &url, &b, &api);
    let watched = c.watch_within(&id, 0, Duration::from_secs(120)).await;
    assert_eq!(watched.closed.status, "COMPLETED", "{:?}", watched.closed);
    let result: Value = serde_json::from_str(&watched.closed.result_json).unwrap();
    assert_eq!(result["session_id"], session.as_str(), "the same session");
    let resumed = watched
        .chunks
        .iter()
        .find(|ch| ch.attempt == 2 && ch.kind == "status" && ch.data_json.contains("\"started\""))
        .expect("attempt 2 started");
    assert!(
        resumed
            .data_json
            .contains(&format!("\"resume_session_id\":\"{session}\"")),
        "attempt 2 ran --resume {session}: {}",
        resumed.data_json
    );
    assert!(
        session_files(&b.config_dir()).contains(&format!("{session}.jsonl")),
        "the session file was restored into worker b's own config directory"
    );
    let requests = api.message_requests();
    assert_eq!(requests.len(), 2, "the killed call and the resumed one");
    // The CLI drops the tool call that never answered, but the conversation is attempt 1's:
    // its prompt, then the retry's.
    assert_eq!(
        requests[1].transcript().matches("do a long thing").count(),
        2,
        "the resumed request carries attempt 1's conversation: {}",
        requests[1].transcript()
    );
    assert_eq!(
        attempt_workers(&mut c, &id)
            .await
            .last()
            .map(String::as_str),
        Some("worker-b")
    );
    // The killed attempt never reported, yet its start records where it ran: the directory its
    // progress named, kept with the lease.
    let history = c.history(&id).await;
    let started: Vec<&Value> = history
        .iter()
        .filter(|e| e.kind == "ActivityStarted")
        .map(|e| &e.payload)
        .collect();
    assert_eq!(started[0]["worker"], "worker-a");
    let dir = started[0]["workspace"].as_str().unwrap_or_default();
    assert!(
        std::path::Path::new(dir).is_absolute(),
        "attempt 1 on the killed worker records its directory: {:?}",
        started[0]
    );
}
