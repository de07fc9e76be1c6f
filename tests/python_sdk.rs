//! The Python worker SDK (`sdk/python`) end to end: real `cairn` processes, real Python worker
//! processes (`tests/python_sdk/worker.py`) in a venv the test makes from the pinned
//! `sdk/python/requirements.lock`, a real Agno agent whose model is the suite's fake
//! OpenAI-compatible server, and the SDK's own pytest suite.

mod common;
mod fake_anthropic;
mod fake_openai;
#[path = "python_sdk/more.rs"]
mod more;
#[path = "python_sdk/venv.rs"]
mod venv;
#[path = "python_sdk/worker.rs"]
mod worker;

use std::process::{Command, Stdio};
use std::time::Duration;

use cairn::api::pb;
use common::client::{fast_retries, kinds, start_request, text_of};
use common::fleet::Proc;
use common::server::cairn_bin;
use common::{Db, Server, TestClient};
use fake_openai::{FakeOpenAi, Reply};
use serde_json::{Value, json};
use worker::PyWorker;

/// `cairn <args>` against `server`.
fn cairn(server: &str, args: &[&str]) -> std::process::Output {
    Command::new(cairn_bin())
        .args(args)
        .env("CAIRN_SERVER", server)
        .env("NO_COLOR", "1")
        .env_remove("CAIRN_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("run cairn")
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The fake model's answers to one weather question: a call of the agent's tool, then text.
fn weather_replies(model: &FakeOpenAi, call: &str, city: &str, answer: &[&str]) {
    let arguments = format!("{{\"city\": \"{city}\"}}");
    model.push(Reply::tool_call(call, "lookup_weather", &[&arguments]));
    model.push(Reply::text(answer));
}

/// Reads an execution's output until a text chunk contains `needle`.
async fn wait_for_text(c: &mut TestClient, id: &str, needle: &str) {
    use pb::stream_execution_response::Event;
    let mut stream = c.output_stream(id, 0).await;
    let mut chunks = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(message) = stream.message().await.expect("stream") {
            match message.event {
                Some(Event::Chunk(chunk)) => {
                    chunks.push(chunk);
                    if text_of(&chunks).contains(needle) {
                        return;
                    }
                }
                Some(Event::Closed(closed)) => panic!("closed before `{needle}`: {closed:?}"),
                Some(Event::Waiting(_)) => {}
                None => {}
            }
        }
    });
    found
        .await
        .unwrap_or_else(|_| panic!("no `{needle}` in the output of {id}"));
}

/// The `/metrics` text of a server started with `--metrics-listen`.
async fn metrics_of(server: &Server) -> String {
    let url = server
        .log()
        .lines()
        .find_map(|l| l.strip_prefix("cairn metrics on "))
        .expect("the server logs its metrics address")
        .trim()
        .to_string();
    reqwest::get(&url).await.unwrap().text().await.unwrap()
}

/// Requests whose messages hold a tool result: model calls made after the tool ran.
fn with_tool_result(requests: &[fake_openai::RecordedRequest]) -> usize {
    requests
        .iter()
        .filter(|r| {
            r.body["messages"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["role"] == "tool"))
        })
        .count()
}

#[test]
fn the_sdk_unit_tests_pass() {
    let output = Command::new(venv::python())
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .current_dir(venv::root().join("sdk/python"))
        .output()
        .expect("run pytest");
    assert!(
        output.status.success(),
        "the SDK's pytest suite failed:\n{}{}",
        stdout(&output),
        stderr(&output)
    );
}

#[test]
fn the_sdk_type_checks_strictly() {
    let output = Command::new(venv::python())
        .args(["-m", "mypy", "src", "tests", "examples"])
        .current_dir(venv::root().join("sdk/python"))
        .output()
        .expect("run mypy");
    assert!(
        output.status.success(),
        "mypy --strict (sdk/python/pyproject.toml) found problems:\n{}{}",
        stdout(&output),
        stderr(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_worker_registers_agno_and_its_schema_guards_agents() {
    let db = Db::sqlite().await;
    let (_server, url) = Proc::server(&db, "127.0.0.1:0", &[], &[]);
    let mut py = PyWorker::start("py-schema", &url, &[]);

    let runtimes: Value =
        serde_json::from_str(&stdout(&cairn(&url, &["--json", "agent", "runtimes"]))).unwrap();
    let agno = runtimes
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "agno")
        .expect("agno is listed");
    assert_eq!(agno["external"], true);
    assert_eq!(agno["workers"], 1, "the Python worker offers it");
    assert_eq!(
        agno["description"],
        "A real Agno agent with a weather tool."
    );
    let table = stdout(&cairn(&url, &["agent", "runtimes"]));
    assert!(table.contains("agno  1 worker(s), external"), "{table}");

    // No worker is connected from here on: the recorded schema is what checks agents.
    py.kill();
    let create = |name: &str, config: &str| {
        cairn(
            &url,
            &[
                "agent",
                "create",
                "--name",
                name,
                "--runtime",
                "agno",
                "--configuration",
                config,
            ],
        )
    };
    let refused = create(
        "too-hot",
        r#"{"runtime_config": {"instructions": "hi", "temperature": 7}}"#,
    );
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("runtime_config.temperature")
            && stderr(&refused).contains("InvalidArgument"),
        "{}",
        stderr(&refused)
    );
    let refused = create("typo", r#"{"runtime_config": {"instructoins": "hi"}}"#);
    assert!(
        stderr(&refused).contains("instructoins") && stderr(&refused).contains("InvalidArgument"),
        "{}",
        stderr(&refused)
    );
    let accepted = create(
        "weather",
        r#"{"runtime_config": {"instructions": "Be brief.", "temperature": 0.2}}"#,
    );
    assert!(accepted.status.success(), "{}", stderr(&accepted));
    assert!(stdout(&accepted).contains("weather"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_agno_agent_streams_its_answer_and_tool_call_and_joins_a_mixed_team() {
    let db = Db::sqlite().await;
    let model = FakeOpenAi::start().await;
    weather_replies(&model, "call_1", "Oslo", &["It is sunny", " in Oslo."]);
    let api =
        fake_anthropic::FakeAnthropic::start([fake_anthropic::Reply::text("code written")]).await;
    let sandbox = fake_anthropic::CliSandbox::new();
    let cli = fake_anthropic::claude_cli().display().to_string();
    let server = Server::start_with_env(
        &db,
        "dev",
        &["--claude-cli", &cli, "--metrics-listen", "127.0.0.1:0"],
        &sandbox.env(&api),
    );
    let _py = PyWorker::start(
        "py-1",
        &server.url,
        &[("OPENAI_BASE_URL", &model.base_url())],
    );
    let created = cairn(
        &server.url,
        &[
            "agent",
            "create",
            "--name",
            "weather",
            "--runtime",
            "agno",
            "--model-id",
            "gpt-test",
        ],
    );
    assert!(created.status.success(), "{}", stderr(&created));

    let run = cairn(
        &server.url,
        &["run", "weather", "what is the weather in Oslo?"],
    );
    let out = stdout(&run);
    assert!(run.status.success(), "{out}{}", stderr(&run));
    assert!(
        out.contains("It is sunny in Oslo."),
        "the answer streams: {out}"
    );
    assert!(
        out.contains("[tool_use]") && out.contains("lookup_weather") && out.contains("Oslo"),
        "the tool call streams: {out}"
    );
    assert!(
        out.contains("[tool_result]") && out.contains("sunny, 21C in Oslo"),
        "the Python tool's result streams: {out}"
    );
    let requests = model.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].body["model"], "gpt-test");
    assert!(
        requests[1].body["messages"]
            .to_string()
            .contains("sunny, 21C in Oslo"),
        "the model got the tool's result"
    );

    let mut c = server.client().await;
    let execution = &c
        .executions
        .list_executions(pb::ListExecutionsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .executions[0];
    let usage = execution.usage.as_ref().unwrap();
    assert_eq!(
        (usage.input_tokens, usage.output_tokens, usage.tool_calls),
        (20 + 10, 5 + 2, 1),
        "both model calls' tokens and the tool call are recorded"
    );
    let result: Value = serde_json::from_str(&execution.result_json).unwrap();
    assert_eq!(result["text"], "It is sunny in Oslo.");
    // The server's metrics count the external runtime as any other.
    let metrics = metrics_of(&server).await;
    for line in [
        "cairn_executions_completed_total{runtime=\"agno\"} 1",
        "cairn_input_tokens_total{model=\"gpt-test\",runtime=\"agno\"} 30",
        "cairn_output_tokens_total{model=\"gpt-test\",runtime=\"agno\"} 7",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in:\n{metrics}"
        );
    }

    // A mixed team: echo, then the Agno agent, then Claude Code.
    c.create_agent("scout", "echo", json!({ "chunks": ["scouted "] }))
        .await;
    c.create_agent(
        "coder",
        "claude_code",
        json!({ "permission_mode": "bypassPermissions", "cwd": sandbox.cwd() }),
    )
    .await;
    let members = ["scout", "weather", "coder"]
        .iter()
        .map(|m| pb::TeamMember {
            agent: m.to_string(),
            role: format!("the {m}"),
            agent_id: String::new(),
        })
        .collect();
    pb::team_service_client::TeamServiceClient::new(c.channel.clone())
        .create_team(pb::CreateTeamRequest {
            name: "crew".into(),
            strategy: "sequential".into(),
            members,
            ..Default::default()
        })
        .await
        .unwrap();
    weather_replies(&model, "call_2", "Bergen", &["Rain in Bergen."]);
    let id = c
        .start(pb::StartExecutionRequest {
            team: "crew".into(),
            prompt: "plan a trip".into(),
            ..Default::default()
        })
        .await;
    let watched = c.watch_within(&id, 0, Duration::from_secs(180)).await;
    assert_eq!(
        watched.closed.status, "COMPLETED",
        "{:?}",
        watched.closed.failure
    );
    let mut children = c
        .executions
        .list_executions(pb::ListExecutionsRequest {
            parent_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .executions;
    children.sort_by(|a, b| a.child_key.cmp(&b.child_key));
    let runtimes: Vec<(&str, &str, &str)> = children
        .iter()
        .map(|k| (k.child_key.as_str(), k.runtime.as_str(), k.status.as_str()))
        .collect();
    assert_eq!(
        runtimes,
        [
            ("1-scout", "echo", "COMPLETED"),
            ("2-weather", "agno", "COMPLETED"),
            ("3-coder", "claude_code", "COMPLETED")
        ]
    );
    assert!(
        watched.text().contains("Rain in Bergen."),
        "{}",
        watched.text()
    );
    assert!(
        model.requests()[2].body.to_string().contains("scouted"),
        "the Agno member got the echo member's result"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_python_worker_is_resumed_from_its_checkpoint_on_another() {
    let db = Db::sqlite().await;
    let model = FakeOpenAi::start().await;
    model.push(Reply::tool_call(
        "call_1",
        "lookup_weather",
        &["{\"city\": \"Oslo\"}"],
    ));
    // The second model call streams a little, then hangs: the worker dies in it.
    model.push(Reply::stream().role().content("Halfway ").hang());
    model.push(Reply::text(&["It is sunny in Oslo."]));
    let (_server, url) = Proc::server(&db, "127.0.0.1:0", &[], &[]);
    let env = [("OPENAI_BASE_URL", model.base_url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut a = PyWorker::start("py-a", &url, &env);
    let mut c = TestClient::connect(&url).await;
    c.create_agent("weather", "agno", json!({})).await;
    let mut request = start_request("weather", &["weather in Oslo?"]);
    request.retry_policy = Some(fast_retries(3));
    request.timeouts = Some(pb::Timeouts {
        heartbeat_ms: 1_000,
        ..Default::default()
    });
    let id = c.start(request).await;

    // "Halfway " is stored after the tool result and the checkpoint that covers it.
    wait_for_text(&mut c, &id, "Halfway").await;
    a.kill();
    let _b = PyWorker::start("py-b", &url, &env);
    let watched = c.watch_within(&id, 0, Duration::from_secs(120)).await;
    assert_eq!(
        watched.closed.status, "COMPLETED",
        "{:?}",
        watched.closed.failure
    );

    let requests = model.requests();
    assert_eq!(
        requests.len(),
        3,
        "tool call, the interrupted call, the retry's call"
    );
    assert_eq!(
        requests.len() - with_tool_result(&requests),
        1,
        "the completed first model call (the tool call) is not made again"
    );
    let tool_uses = watched
        .chunks
        .iter()
        .filter(|ch| ch.kind == "tool_use")
        .count();
    assert_eq!(tool_uses, 1, "the tool ran once");
    let history = c.history(&id).await;
    let kinds = kinds(&history);
    assert_eq!(
        kinds.iter().filter(|k| **k == "ExecutionCompleted").count(),
        1
    );
    let started: Vec<&Value> = history
        .iter()
        .filter(|e| e.kind == "ActivityStarted")
        .map(|e| &e.payload)
        .collect();
    let last = started.last().unwrap();
    assert_eq!(last["worker"], "py-b", "{history:?}");
    assert_eq!(last["attempt"], 2);
    let result: Value = serde_json::from_str(&watched.closed.result_json).unwrap();
    assert_eq!(result["text"], "It is sunny in Oslo.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_the_python_runtime() {
    let db = Db::sqlite().await;
    let model = FakeOpenAi::start().await;
    model.push(Reply::stream().role().content("Thinking ").hang());
    let (_server, url) = Proc::server(&db, "127.0.0.1:0", &[], &[]);
    let markers = tempfile::tempdir().unwrap();
    let marker_dir = markers.path().display().to_string();
    let base_url = model.base_url();
    let env = [
        ("OPENAI_BASE_URL", base_url.as_str()),
        ("HOLD", "1"),
        ("MARKER_DIR", marker_dir.as_str()),
    ];
    let py = PyWorker::start("py-c", &url, &env);
    let mut c = TestClient::connect(&url).await;

    // The Agno agent: cancelling abandons its model call.
    c.create_agent("weather", "agno", json!({})).await;
    let id = c.start_simple("weather", "think hard").await;
    wait_for_text(&mut c, &id, "Thinking").await;
    c.executions
        .cancel_execution(pb::CancelExecutionRequest {
            id: id.clone(),
            reason: "not needed".into(),
        })
        .await
        .unwrap();
    let watched = c.watch_within(&id, 0, Duration::from_secs(60)).await;
    assert_eq!(watched.closed.status, "CANCELED");
    tokio::time::timeout(Duration::from_secs(60), model.wait_for_disconnect())
        .await
        .expect("the Agno run abandoned its model call");
    let canceled: Vec<Value> = c
        .history(&id)
        .await
        .into_iter()
        .filter(|e| e.kind == "ActivityCanceled")
        .map(|e| e.payload)
        .collect();
    assert_eq!(canceled.len(), 1);
    assert_eq!(
        canceled[0]["abandoned"], false,
        "the runtime stopped by itself"
    );

    // A plain runtime: its cancellation signal (`io.cancelled`) fires.
    c.create_agent("steps", "steps", json!({})).await;
    let id = c.start_simple("steps", "go").await;
    wait_for_text(&mut c, &id, "step 1 on py-c").await;
    c.executions
        .cancel_execution(pb::CancelExecutionRequest {
            id: id.clone(),
            reason: "stop".into(),
        })
        .await
        .unwrap();
    let watched = c.watch_within(&id, 0, Duration::from_secs(60)).await;
    assert_eq!(watched.closed.status, "CANCELED");
    assert_eq!(
        std::fs::read_to_string(markers.path().join("cancelled-py-c")).unwrap(),
        "fired"
    );
    assert!(!watched.text().contains("step 2"), "{}", watched.text());
    drop(py);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_python_worker_releases_its_attempt_to_another() {
    let db = Db::sqlite().await;
    let (_server, url) = Proc::server(&db, "127.0.0.1:0", &[], &[]);
    let markers = tempfile::tempdir().unwrap();
    let marker_dir = markers.path().display().to_string();
    let mut a = PyWorker::start(
        "py-a",
        &url,
        &[
            ("HOLD", "1"),
            ("DRAIN_TIMEOUT", "0.5"),
            ("MARKER_DIR", &marker_dir),
        ],
    );
    let mut c = TestClient::connect(&url).await;
    c.create_agent("steps", "steps", json!({})).await;
    let mut request = start_request("steps", &["go"]);
    request.retry_policy = Some(fast_retries(1));
    let id = c.start(request).await;
    wait_for_text(&mut c, &id, "step 1 on py-a").await;

    let status = a.terminate(Duration::from_secs(60));
    assert!(
        status.success(),
        "a drained worker exits 0: {status:?}\n{}",
        a.log()
    );
    assert!(a.log().contains("released"), "{}", a.log());
    let _b = PyWorker::start("py-b", &url, &[]);
    let watched = c.watch_within(&id, 0, Duration::from_secs(60)).await;
    assert_eq!(
        watched.closed.status, "COMPLETED",
        "{:?}",
        watched.closed.failure
    );
    assert_eq!(
        watched.text(),
        "step 1 on py-a\nstep 2 on py-b\n",
        "py-b resumed from py-a's checkpoint"
    );
    let history = c.history(&id).await;
    let kinds = kinds(&history);
    assert!(
        !kinds.contains(&"ActivityFailed"),
        "a release consumes no retry: {kinds:?}"
    );
    let started = history
        .iter()
        .find(|e| e.kind == "ActivityStarted")
        .unwrap();
    assert_eq!(started.payload["worker"], "py-b");
    assert_eq!(started.payload["attempt"], 1, "the same attempt, released");
    assert!(!markers.path().join("cancelled-py-a").exists());
}
