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
    let server = Server::start(
        &db,
        "dev",
        &[
            "--openai-base-url",
            &model.base_url(),
            "--openai-api-key-env",
            "",
        ],
    );
    let mut c = server.client().await;
    c.agents
        .create_agent(pb::CreateAgentRequest {
            name: "analyst".into(),
            runtime: "default".into(),
            model_id: "gpt-test".into(),
            configuration_json: json!({ "runtime_config": { "instructions": "Be brief." } })
                .to_string(),
            ..Default::default()
        })
        .await
        .unwrap();

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
