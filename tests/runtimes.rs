//! The real runtimes through the whole engine: `cairn run` with an agent on `default` (against a
//! fake OpenAI-compatible server) and one on `claude_code` (the real Claude Code CLI against a
//! fake Messages API), output streaming to the terminal; and a `claude_code` worker killed
//! mid-run whose retry resumes the same session.

mod common;
mod fake_anthropic;
mod fake_openai;

use std::process::{Command, Stdio};
use std::time::Duration;

use cairn::api::pb;
use common::client::{fast_retries, start_request};
use common::server::cairn_bin;
use common::{Db, Server};
use serde_json::json;

fn cairn_run(server: &Server, agent: &str, prompt: &str) -> std::process::Output {
    Command::new(cairn_bin())
        .args(["run", agent, prompt])
        .env("CAIRN_SERVER", &server.url)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run cairn")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_agent_runs_through_cairn_run() {
    let db = Db::sqlite().await;
    let model = fake_openai::FakeOpenAi::start().await;
    model.push(fake_openai::Reply::text(&["Hello", " from", " the model"]));
    let server = Server::dev_with_model(&db, &model.base_url());
    let mut c = server.client().await;
    c.create_model_agent(
        "analyst",
        "gpt-test",
        json!({ "instructions": "Be brief." }),
    )
    .await;

    let output = cairn_run(&server, "analyst", "say hello");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout.trim_end(),
        "Hello from the model",
        "the streamed text, in order"
    );
    let request = &model.requests()[0].body;
    assert_eq!(request["model"], "gpt-test");
    assert_eq!(request["stream"], true);

    let execution = &c
        .executions
        .list_executions(pb::ListExecutionsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .executions[0];
    let usage = execution.usage.as_ref().unwrap();
    assert_eq!(
        (usage.input_tokens, usage.output_tokens),
        (10, 3),
        "usage is recorded on the execution"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claude_code_agent_runs_through_cairn_run() {
    let db = Db::sqlite().await;
    let api = fake_anthropic::FakeAnthropic::start([
        fake_anthropic::Reply::bash("echo hello-from-bash"),
        fake_anthropic::Reply::text("the tool said hello"),
    ])
    .await;
    let sandbox = fake_anthropic::CliSandbox::new();
    let cli = fake_anthropic::claude_cli().display().to_string();
    let server = Server::start_with_env(&db, "dev", &["--claude-cli", &cli], &sandbox.env(&api));
    let mut c = server.client().await;
    let config = json!({ "permission_mode": "bypassPermissions", "cwd": sandbox.cwd() });
    c.create_agent("coder", "claude_code", config).await;

    let output = cairn_run(&server, "coder", "run a command");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("[tool_use]") && stdout.contains("Bash"),
        "{stdout}"
    );
    assert!(
        stdout.contains("hello-from-bash"),
        "the tool result streams: {stdout}"
    );
    assert!(stdout.contains("the tool said hello"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claude_code_retry_after_a_worker_crash_resumes_the_session() {
    let db = Db::sqlite().await;
    let api = fake_anthropic::FakeAnthropic::start([
        fake_anthropic::Reply::bash("python3 -c \"import time; time.sleep(20)\""),
        fake_anthropic::Reply::text("picked up where we left off"),
    ])
    .await;
    let sandbox = fake_anthropic::CliSandbox::new();
    let cli = fake_anthropic::claude_cli().display().to_string();
    let mut server =
        Server::start_with_env(&db, "dev", &["--claude-cli", &cli], &sandbox.env(&api));
    let mut c = server.client().await;
    let config = json!({ "permission_mode": "bypassPermissions", "cwd": sandbox.cwd() });
    c.create_agent("coder", "claude_code", config).await;
    let mut request = start_request("coder", &["do a long thing"]);
    request.retry_policy = Some(fast_retries(3));
    request.timeouts = Some(pb::Timeouts {
        heartbeat_ms: 1_000,
        ..Default::default()
    });
    let id = c.start(request).await;

    // Wait until the checkpoint (the session id) is durable and the long tool call is running.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let session_id = loop {
        let watched = c
            .executions
            .stream_execution(pb::StreamExecutionRequest {
                id: id.clone(),
                after_seq: 0,
                include_superseded: false,
            })
            .await;
        let mut stream = watched.unwrap().into_inner();
        let mut session = None;
        let mut tool_running = false;
        while let Ok(Some(Ok(message))) =
            tokio::time::timeout(Duration::from_millis(300), stream.message())
                .await
                .map(|m| m.transpose())
        {
            if let Some(pb::stream_execution_response::Event::Chunk(chunk)) = message.event {
                let data: serde_json::Value = serde_json::from_str(&chunk.data_json).unwrap();
                if let Some(s) = data.get("session_id").and_then(|s| s.as_str()) {
                    session = Some(s.to_string());
                }
                tool_running |= chunk.kind == "tool_use";
            }
        }
        if let (Some(session), true) = (session, tool_running) {
            break session;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the CLI never reached its tool call"
        );
    };
    server.kill();

    let server = Server::start_with_env(&db, "dev", &["--claude-cli", &cli], &sandbox.env(&api));
    let mut c = server.client().await;
    let watched = c.watch_within(&id, 0, Duration::from_secs(90)).await;
    assert_eq!(watched.closed.status, "COMPLETED", "{}", server.log());
    let result: serde_json::Value = serde_json::from_str(&watched.closed.result_json).unwrap();
    assert_eq!(
        result["session_id"],
        session_id.as_str(),
        "the retry resumed the same session"
    );
    let history = c.history(&id).await;
    assert!(
        history.iter().any(|e| e.kind == "ActivityTimedOut"),
        "attempt 1 died with its worker"
    );
    let started = watched
        .chunks
        .iter()
        .find(|ch| {
            ch.attempt == 2 && ch.kind == "status" && ch.data_json.contains("resume_session_id")
        })
        .expect("attempt 2 started");
    assert!(
        started.data_json.contains(&session_id),
        "attempt 2 ran with --resume {session_id}: {}",
        started.data_json
    );
}

async fn create_team(c: &common::TestClient, name: &str, strategy: &str, members: &[&str]) {
    let request = pb::CreateTeamRequest {
        name: name.into(),
        strategy: strategy.into(),
        members: members
            .iter()
            .map(|m| pb::TeamMember {
                agent: m.to_string(),
                role: format!("the {m}"),
                agent_id: String::new(),
            })
            .collect(),
        ..Default::default()
    };
    pb::team_service_client::TeamServiceClient::new(c.channel.clone())
        .create_team(request)
        .await
        .unwrap();
}

/// A sequential team of `echo` → `default` → `claude_code`: three children, each on its own
/// runtime, the team result from the last, and the team's stream holding all three in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_runtime_team_runs_each_member_on_its_runtime() {
    let db = Db::sqlite().await;
    let model = fake_openai::FakeOpenAi::start().await;
    model.push(fake_openai::Reply::text(&["analysis: ", "it works"]));
    let api =
        fake_anthropic::FakeAnthropic::start([fake_anthropic::Reply::text("code written")]).await;
    let sandbox = fake_anthropic::CliSandbox::new();
    let cli = fake_anthropic::claude_cli().display().to_string();
    let args = [
        "--claude-cli",
        &cli,
        "--openai-base-url",
        &model.base_url(),
        "--openai-api-key-env",
        "",
    ];
    let server = Server::start_with_env(&db, "dev", &args, &sandbox.env(&api));
    let mut c = server.client().await;
    c.create_agent("scout", "echo", json!({ "chunks": ["scouted "] }))
        .await;
    c.create_model_agent("analyst", "gpt-test", json!({})).await;
    c.create_agent(
        "coder",
        "claude_code",
        json!({ "permission_mode": "bypassPermissions", "cwd": sandbox.cwd() }),
    )
    .await;
    create_team(&c, "crew", "sequential", &["scout", "analyst", "coder"]).await;

    let start = pb::StartExecutionRequest {
        team: "crew".into(),
        prompt: "build it".into(),
        ..Default::default()
    };
    let id = c.start(start).await;
    let watched = c.watch_within(&id, 0, Duration::from_secs(120)).await;
    assert_eq!(
        watched.closed.status, "COMPLETED",
        "{:?}",
        watched.closed.failure
    );
    let result: serde_json::Value = serde_json::from_str(&watched.closed.result_json).unwrap();
    assert_eq!(result["from"], "coder");
    assert_eq!(result["text"], "code written");

    let request = pb::ListExecutionsRequest {
        parent_id: id.clone(),
        ..Default::default()
    };
    let mut children = c
        .executions
        .list_executions(request)
        .await
        .unwrap()
        .into_inner()
        .executions;
    children.sort_by(|a, b| a.child_key.cmp(&b.child_key));
    let runtimes: Vec<(&str, &str)> = children
        .iter()
        .map(|k| (k.child_key.as_str(), k.runtime.as_str()))
        .collect();
    assert_eq!(
        runtimes,
        [
            ("1-scout", "echo"),
            ("2-analyst", "default"),
            ("3-coder", "claude_code")
        ]
    );
    // The analyst got the scout's result; the model saw it.
    assert!(
        model.requests()[0].body.to_string().contains("scouted"),
        "the previous result is handed on"
    );
    // The team's stream holds all three children's output, in member order.
    let order: Vec<&str> = watched
        .chunks
        .iter()
        .map(|ch| ch.child_key.as_str())
        .collect();
    let first_of = |key: &str| {
        order
            .iter()
            .position(|k| *k == key)
            .unwrap_or_else(|| panic!("no chunk of {key}"))
    };
    assert!(
        first_of("1-scout") < first_of("2-analyst") && first_of("2-analyst") < first_of("3-coder")
    );
    assert!(
        order.windows(2).all(|w| w[0] <= w[1]),
        "no interleaving in a sequential team: {order:?}"
    );
}

/// Cancelling a team while its `claude_code` member is in a long tool call: every child ends
/// CANCELED and no process of the CLI's run is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_team_stops_a_claude_code_child_in_a_long_tool_call() {
    let db = Db::sqlite().await;
    let api = fake_anthropic::FakeAnthropic::start([
        fake_anthropic::Reply::bash("python3 -c \"import time; time.sleep(60)\""),
        fake_anthropic::Reply::text("never reached"),
    ])
    .await;
    let sandbox = fake_anthropic::CliSandbox::new();
    let cli = fake_anthropic::claude_cli().display().to_string();
    let server = Server::start_with_env(&db, "dev", &["--claude-cli", &cli], &sandbox.env(&api));
    let mut c = server.client().await;
    let words: Vec<String> = (0..400).map(|i| format!("w{i} ")).collect();
    c.create_agent("talker", "echo", json!({ "chunks": words, "delay_ms": 50 }))
        .await;
    c.create_agent(
        "coder",
        "claude_code",
        json!({ "permission_mode": "bypassPermissions", "cwd": sandbox.cwd() }),
    )
    .await;
    create_team(&c, "duo", "parallel", &["talker", "coder"]).await;
    let id = c
        .start(pb::StartExecutionRequest {
            team: "duo".into(),
            prompt: "go".into(),
            ..Default::default()
        })
        .await;

    // Wait for the tool call to be running, and learn the CLI's process group.
    let mut stream = c
        .executions
        .stream_execution(pb::StreamExecutionRequest {
            id: id.clone(),
            after_seq: 0,
            include_superseded: false,
        })
        .await
        .unwrap()
        .into_inner();
    let (mut group, mut tool_running) = (None, false);
    while group.is_none() || !tool_running {
        let message = tokio::time::timeout(Duration::from_secs(60), stream.message())
            .await
            .expect("the CLI reaches its tool call within a minute")
            .unwrap()
            .expect("the stream stays open");
        if let Some(pb::stream_execution_response::Event::Chunk(chunk)) = message.event {
            let data: serde_json::Value = serde_json::from_str(&chunk.data_json).unwrap();
            if let Some(g) = data.get("process_group").and_then(|g| g.as_i64()) {
                group = Some(g as i32);
            }
            tool_running |= chunk.kind == "tool_use";
        }
    }
    let group = group.unwrap();
    assert!(tool_running);
    c.executions
        .cancel_execution(pb::CancelExecutionRequest {
            id: id.clone(),
            reason: "stop".into(),
        })
        .await
        .unwrap();
    let closed = c.watch_within(&id, 0, Duration::from_secs(60)).await.closed;
    assert_eq!(closed.status, "CANCELED");
    let request = pb::ListExecutionsRequest {
        parent_id: id.clone(),
        ..Default::default()
    };
    let children = c
        .executions
        .list_executions(request)
        .await
        .unwrap()
        .into_inner()
        .executions;
    assert_eq!(children.len(), 2);
    assert!(
        children.iter().all(|k| k.status == "CANCELED"),
        "{children:?}"
    );
    // No process of the CLI's group is left.
    let gone = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(group), None);
    assert_eq!(
        gone,
        Err(nix::errno::Errno::ESRCH),
        "the CLI's process group is gone"
    );
    let sleeping = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("cmdline")).ok())
        .filter(|cmd| cmd.contains("time.sleep(60)"))
        .count();
    assert_eq!(sleeping, 0, "the tool's process is gone too");
}

/// A 429 with `retry-after` fails the attempt retryably; the engine waits at least that long
/// and the next attempt succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_default_turn_is_retried_after_retry_after() {
    let db = Db::sqlite().await;
    let model = fake_openai::FakeOpenAi::start().await;
    model.push(fake_openai::Reply::error(429, "slow down").header("retry-after", "1"));
    model.push(fake_openai::Reply::text(&["made it"]));
    let server = Server::dev_with_model(&db, &model.base_url());
    let mut c = server.client().await;
    c.create_model_agent("patient", "gpt-test", json!({})).await;
    let mut request = start_request("patient", &["hi"]);
    request.retry_policy = Some(fast_retries(3));
    let id = c.start(request).await;
    let watched = c.watch(&id, 0).await;
    assert_eq!(watched.closed.status, "COMPLETED");
    assert_eq!(watched.text(), "made it");
    let history = c.history(&id).await;
    let failed = history
        .iter()
        .find(|e| e.kind == "ActivityFailed")
        .expect("the 429 failed attempt 1");
    assert_eq!(failed.payload["failure"]["retryable"], true);
    assert!(
        failed.payload["failure"]["message"]
            .as_str()
            .unwrap()
            .contains("429"),
        "{}",
        failed.payload
    );
    let timer = history.iter().find(|e| e.kind == "TimerStarted").unwrap();
    assert!(
        timer.payload["delay_ms"].as_u64().unwrap() >= 1_000,
        "retry-after is honoured: {}",
        timer.payload
    );
    assert_eq!(model.request_count(), 2);
}

/// Cancelling a `default` execution mid-stream closes the model connection (the fake sees the
/// client hang up) and the execution ends CANCELED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_default_turn_mid_stream_closes_the_connection() {
    let db = Db::sqlite().await;
    let model = fake_openai::FakeOpenAi::start().await;
    model.push(
        fake_openai::Reply::stream()
            .role()
            .content("thinking...")
            .hang(),
    );
    let server = Server::dev_with_model(&db, &model.base_url());
    let mut c = server.client().await;
    c.create_model_agent("ponderer", "gpt-test", json!({}))
        .await;
    let id = c.start_simple("ponderer", "think hard").await;
    c.wait_until(&id, "the first streamed text", |e| e.output_length >= 1)
        .await;
    c.executions
        .cancel_execution(pb::CancelExecutionRequest {
            id: id.clone(),
            reason: "enough".into(),
        })
        .await
        .unwrap();
    let watched = c.watch_within(&id, 0, Duration::from_secs(20)).await;
    assert_eq!(watched.closed.status, "CANCELED");
    tokio::time::timeout(Duration::from_secs(10), model.wait_for_disconnect())
        .await
        .expect("the fake saw the disconnect");
    let canceled = c
        .history(&id)
        .await
        .into_iter()
        .find(|e| e.kind == "ActivityCanceled")
        .unwrap();
    assert_eq!(
        canceled.payload["abandoned"], false,
        "the runtime stopped on its token"
    );
}
