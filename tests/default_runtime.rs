//! The `default` runtime against a fake OpenAI-compatible server over real HTTP and SSE, and a
//! real MCP server from npm.

#[path = "default_runtime/approvals.rs"]
mod approvals;
mod fake_openai;
#[path = "default_runtime/resume.rs"]
mod resume;
mod test_approver;
#[path = "default_runtime/tools.rs"]
mod tools;

use std::path::PathBuf;
use std::time::Duration;

use cairn::domain::{AgentSpec, Turn};
use cairn::runtime::{
    AgentRuntime, AttemptInfo, DefaultRuntime, OpenAiSettings, Progress, RuntimeError, TurnIo,
    TurnOutput,
};
use fake_openai::{FakeOpenAi, Gate, Reply};
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

/// The bound on any single wait in these tests, so a broken runtime fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(30);

/// Cargo sets `CARGO_PKG_NAME` (to `cairn`) for test processes. Using it as the key's variable
/// lets the tests check the `Authorization` header without setting environment variables, which
/// is `unsafe` in edition 2024.
const KEY_ENV: &str = "CARGO_PKG_NAME";

fn runtime(fake: &FakeOpenAi) -> DefaultRuntime {
    DefaultRuntime::new(OpenAiSettings {
        base_url: fake.base_url(),
        api_key_env: Some(KEY_ENV.into()),
        request_timeout: Duration::from_secs(10),
    })
}

fn turn(index: u32, prompt: &str, runtime_config: Value) -> Turn {
    Turn {
        agent: AgentSpec {
            id: uuid::Uuid::nil(),
            name: "tester".into(),
            runtime: "default".into(),
            model_id: "fake-model".into(),
            configuration: json!({ "runtime_config": runtime_config }),
        },
        index,
        prompt: prompt.into(),
        traceparent: None,
    }
}

fn io(
    attempt: u32,
    checkpoint: Option<Value>,
    cancel: CancellationToken,
) -> (TurnIo, UnboundedReceiver<Progress>) {
    let info = AttemptInfo {
        execution_id: uuid::Uuid::nil(),
        activity_id: "turn-1".into(),
        attempt,
    };
    TurnIo::new(info, cancel, checkpoint)
}

/// Runs a turn to its end and returns its result with everything it reported.
async fn run(
    runtime: &DefaultRuntime,
    turn: Turn,
    attempt: u32,
    checkpoint: Option<Value>,
) -> (Result<TurnOutput, RuntimeError>, Vec<Progress>) {
    let (io, mut progress) = io(attempt, checkpoint, CancellationToken::new());
    let result = tokio::time::timeout(PATIENCE, runtime.run(turn, io))
        .await
        .expect("the turn ends");
    let mut reported = Vec::new();
    while let Some(p) = progress.recv().await {
        reported.push(p);
    }
    (result, reported)
}

fn chunks<'a>(progress: &'a [Progress], kind: &str) -> Vec<&'a Value> {
    progress
        .iter()
        .filter_map(|p| match p {
            Progress::Chunk { kind: k, data, .. } if k == kind => Some(data),
            _ => None,
        })
        .collect()
}

fn last_checkpoint(progress: &[Progress]) -> Value {
    progress
        .iter()
        .rev()
        .find_map(|p| match p {
            Progress::Checkpoint(c) => Some(c.clone()),
            _ => None,
        })
        .expect("a checkpoint was saved")
}

/// The filesystem MCP server installed by `npm ci --prefix tests/npm`.
fn filesystem_server() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/npm/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js");
    assert!(
        path.exists(),
        "{} is missing: run `npm ci --prefix tests/npm` to install the MCP server the tests use",
        path.display()
    );
    path
}

#[tokio::test]
async fn text_is_streamed_as_it_arrives() {
    let fake = FakeOpenAi::start().await;
    let gate = Gate::new();
    fake.push(
        Reply::stream()
            .role()
            .content("Hel")
            .gate(&gate)
            .content("lo!")
            .finish("stop")
            .usage(12, 3)
            .done(),
    );
    let runtime = runtime(&fake);
    let (io, mut progress) = io(1, None, CancellationToken::new());
    let config = json!({"instructions": "Be terse.", "temperature": 0.5, "max_tokens": 50});
    let running = tokio::spawn(async move { runtime.run(turn(0, "Say hello", config), io).await });

    // The first piece arrives while the server still holds back the rest.
    let first = tokio::time::timeout(PATIENCE, progress.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        first,
        Progress::Chunk {
            kind: "text".into(),
            data: json!({"text": "Hel"}),
            checkpoint: None
        }
    );
    gate.open();
    let output = running.await.unwrap().expect("the turn succeeds");
    let second = progress.recv().await.unwrap();
    assert_eq!(
        second,
        Progress::Chunk {
            kind: "text".into(),
            data: json!({"text": "lo!"}),
            checkpoint: None
        }
    );

    assert_eq!(output.output["text"], "Hello!");
    assert_eq!(output.output["finish_reason"], "stop");
    assert_eq!(
        (
            output.usage.input_tokens,
            output.usage.output_tokens,
            output.usage.tool_calls
        ),
        (12, 3, 0)
    );
    let checkpoint = output.checkpoint.expect("the transcript");
    assert_eq!(checkpoint["turn_complete"], true);
    assert_eq!(
        progress.recv().await,
        Some(Progress::Checkpoint(checkpoint))
    );

    let request = &fake.requests()[0];
    assert_eq!(request.authorization.as_deref(), Some("Bearer cairn"));
    assert_eq!(request.body["model"], "fake-model");
    assert_eq!(request.body["stream"], true);
    assert_eq!(
        request.body["stream_options"],
        json!({"include_usage": true})
    );
    assert_eq!(
        (
            request.body["temperature"].clone(),
            request.body["max_tokens"].clone()
        ),
        (json!(0.5), json!(50))
    );
    assert_eq!(
        request.body["messages"],
        json!([{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Say hello"}])
    );
    assert!(request.body.get("tools").is_none());
}

#[tokio::test]
async fn a_rate_limit_is_retryable_after_the_servers_delay() {
    let fake = FakeOpenAi::start().await;
    fake.push(Reply::error(429, "slow down").header("retry-after", "7"));
    let (result, _) = run(&runtime(&fake), turn(0, "hi", json!({})), 1, None).await;
    let error = result.unwrap_err();
    assert_eq!(error.code, "rate_limited");
    assert!(error.retryable);
    assert_eq!(error.retry_after, Some(Duration::from_secs(7)));
    assert!(
        error.message.contains("fake-model") && error.message.contains("slow down"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn unauthorized_is_final_and_names_model_and_endpoint() {
    let fake = FakeOpenAi::start().await;
    fake.push(Reply::error(401, "Invalid API key"));
    let (result, _) = run(&runtime(&fake), turn(0, "hi", json!({})), 1, None).await;
    let error = result.unwrap_err();
    assert_eq!(error.code, "http_401");
    assert!(!error.retryable);
    let endpoint = format!("{}/chat/completions", fake.base_url());
    for part in ["`fake-model`", endpoint.as_str(), "401", "Invalid API key"] {
        assert!(
            error.message.contains(part),
            "{part} missing from: {}",
            error.message
        );
    }
}

#[tokio::test]
async fn a_missing_api_key_names_the_variable_and_calls_nothing() {
    let fake = FakeOpenAi::start().await;
    let runtime = DefaultRuntime::new(OpenAiSettings {
        base_url: fake.base_url(),
        api_key_env: Some("CAIRN_TEST_KEY_THAT_IS_NEVER_SET".into()),
        ..OpenAiSettings::default()
    });
    let (result, _) = run(&runtime, turn(0, "hi", json!({})), 1, None).await;
    let error = result.unwrap_err();
    assert_eq!(error.code, "missing_api_key");
    assert!(!error.retryable);
    assert!(
        error.message.contains("`CAIRN_TEST_KEY_THAT_IS_NEVER_SET`"),
        "{}",
        error.message
    );
    assert_eq!(fake.request_count(), 0);
}

#[tokio::test]
async fn broken_streams_are_retryable() {
    let fake = FakeOpenAi::start().await;
    fake.push(Reply::stream().role().content("cut"));
    fake.push(
        Reply::stream()
            .role()
            .content("so far")
            .error_event("upstream overloaded")
            .done(),
    );
    fake.push(Reply::error(503, "unavailable"));
    let runtime = runtime(&fake);
    for expected in ["without `data: [DONE]`", "upstream overloaded", "503"] {
        let (result, _) = run(&runtime, turn(0, "hi", json!({})), 1, None).await;
        let error = result.unwrap_err();
        assert!(error.retryable, "{error}");
        assert!(
            error.message.contains(expected),
            "{expected} missing from: {}",
            error.message
        );
    }
}

#[test]
fn validate_checks_the_model_and_each_key() {
    let runtime = DefaultRuntime::new(OpenAiSettings::default());
    let keys: Vec<&str> = runtime
        .describe()
        .config_keys
        .iter()
        .map(|k| k.name)
        .collect();
    assert_eq!(
        keys,
        [
            "instructions",
            "temperature",
            "max_tokens",
            "max_tool_calls",
            "mcp_servers",
            "require_approval",
            "auto_approve"
        ]
    );
    let mut agent = turn(0, "", json!({"instructions": "x", "max_tool_calls": 2})).agent;
    runtime.validate(&agent).expect("a valid agent");
    agent.configuration = json!({"runtime_config": {"base_url": "http://elsewhere"}});
    let error = runtime.validate(&agent).unwrap_err();
    assert!(error.message.contains("`base_url`"), "{}", error.message);
    agent.configuration = json!({});
    agent.model_id = String::new();
    let error = runtime.validate(&agent).unwrap_err();
    assert!(error.message.contains("model_id"), "{}", error.message);
}

#[tokio::test]
async fn a_stalled_stream_times_out_and_is_retryable() {
    let fake = FakeOpenAi::start().await;
    fake.push(Reply::stream().role().hang());
    let runtime = DefaultRuntime::new(OpenAiSettings {
        base_url: fake.base_url(),
        api_key_env: Some(KEY_ENV.into()),
        request_timeout: Duration::from_millis(200),
    });
    let (result, _) = run(&runtime, turn(0, "hi", json!({})), 1, None).await;
    let error = result.unwrap_err();
    assert_eq!(error.code, "timeout");
    assert!(
        error.retryable && error.message.contains("stream data"),
        "{error}"
    );
    tokio::time::timeout(PATIENCE, fake.wait_for_disconnect())
        .await
        .expect("the runtime hangs up on a stalled stream");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_retryable() {
    // A port that was just free and has no listener any more.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
    drop(listener);
    let runtime = DefaultRuntime::new(OpenAiSettings {
        base_url: base_url.clone(),
        api_key_env: None,
        request_timeout: Duration::from_secs(10),
    });
    let (result, _) = run(&runtime, turn(0, "hi", json!({})), 1, None).await;
    let error = result.unwrap_err();
    assert_eq!(error.code, "connection_error");
    assert!(error.retryable);
    assert!(error.message.contains(&base_url), "{}", error.message);
}
