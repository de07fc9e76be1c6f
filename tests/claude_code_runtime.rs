//! The `claude_code` runtime driving the real Claude Code CLI against a fake Messages API over
//! real HTTP. Needs the CLI: `npm ci --prefix tests/npm` (or `CAIRN_TEST_CLAUDE_CLI`).

mod claude_code_harness;
mod fake_anthropic;

use std::time::{Duration, Instant};

use cairn::domain::{AgentSpec, Turn};
use cairn::runtime::{AttemptInfo, Progress, RuntimeRegistry, RuntimeSettings, TurnIo};
use claude_code_harness::{LIMIT, Setup, chunks_of, live_processes, until};
use fake_anthropic::{CliSandbox, Reply};
use nix::sys::signal::killpg;
use nix::unistd::Pid;
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_turn_runs_a_real_bash_tool_and_streams_chunks_before_it_ends() {
    let setup = Setup::new(vec![
        Reply::bash("touch tool-was-here.txt && echo hello-from-tool"),
        // The second model call takes about 3 s, so the run is surely still going when the tool's
        // chunks arrive.
        Reply::slow_text(
            &["done: ", "hello-", "from-", "tool"],
            Duration::from_millis(750),
        ),
    ])
    .await;
    let mut run = setup.start("run the tool", None);
    let started = run.chunk("status", |d| d["event"] == "started").await;
    assert!(started["pid"].as_i64().is_some_and(|pid| pid > 0));
    let tool_use = run.chunk("tool_use", |_| true).await;
    assert_eq!(tool_use["name"], "Bash");
    let tool_result = run.chunk("tool_result", |_| true).await;
    assert!(
        !run.task.is_finished(),
        "chunks arrive while the turn is still running"
    );
    assert_eq!(tool_result["tool_use_id"], tool_use["id"]);
    assert_eq!(tool_result["is_error"], false);
    assert!(
        tool_result["content"]
            .to_string()
            .contains("hello-from-tool")
    );
    assert!(
        setup
            .sandbox
            .workdir
            .path()
            .join("tool-was-here.txt")
            .exists(),
        "the tool really ran"
    );

    let (result, seen) = run.finish().await;
    let output = result.expect("the turn succeeds");
    assert_eq!(output.output["text"], "done: hello-from-tool");
    assert_eq!(output.output["num_turns"], 2);
    assert_eq!(output.usage.tool_calls, 1);
    assert!(output.usage.input_tokens > 0 && output.usage.output_tokens > 0);
    let session_id = output.output["session_id"]
        .as_str()
        .expect("a session id")
        .to_owned();
    assert_eq!(
        output.checkpoint.as_ref().unwrap()["session_id"],
        session_id.as_str()
    );
    assert_eq!(chunks_of(&seen, "result").len(), 1);
    // The checkpoint was saved as soon as the session was known, long before the result.
    let checkpoint_at = seen
        .iter()
        .position(|p| matches!(p, Progress::Checkpoint(_)))
        .unwrap();
    let tool_use_at = seen
        .iter()
        .position(|p| matches!(p, Progress::Chunk { kind, .. } if kind == "tool_use"))
        .unwrap();
    assert!(checkpoint_at < tool_use_at);

    let requests = setup.api.message_requests();
    assert_eq!(
        requests.len(),
        2,
        "one model call before the tool, one after"
    );
    assert_eq!(requests[0].headers["x-api-key"], "test-key");
    assert_eq!(requests[0].body["model"], "claude-sonnet-4-5");
    assert!(requests[1].transcript().contains("hello-from-tool"));
}

#[tokio::test]
async fn a_second_run_with_the_checkpoint_resumes_the_same_session() {
    let setup = Setup::new(vec![
        Reply::text("first answer"),
        Reply::text("second answer"),
    ])
    .await;
    let (first, _) = setup.start("first prompt", None).finish().await;
    let first = first.expect("the first turn succeeds");
    let session_id = first.output["session_id"].clone();

    let mut run = setup.start("second prompt", first.checkpoint.clone());
    let started = run.chunk("status", |d| d["event"] == "started").await;
    assert_eq!(started["resume_session_id"], session_id);
    let (second, _) = run.finish().await;
    let second = second.expect("the resumed turn succeeds");
    assert_eq!(second.output["text"], "second answer");
    assert_eq!(
        second.output["session_id"], session_id,
        "the same session goes on"
    );

    let requests = setup.api.message_requests();
    let (before, after) = (&requests[0], requests.last().unwrap());
    assert!(
        after.messages().len() > before.messages().len(),
        "the history grew"
    );
    let transcript = after.transcript();
    assert!(transcript.contains("first prompt") && transcript.contains("first answer"));
    assert!(transcript.contains("second prompt"));
}

#[tokio::test]
async fn cancelling_during_a_long_tool_call_leaves_no_process_behind() {
    let marker = format!("cairn-marker-{}", uuid::Uuid::new_v4());
    let setup = Setup::new(vec![
        Reply::bash(format!(
            "python3 -c \"import time; time.sleep(120)\" {marker}"
        )),
        Reply::text("the tool finished (it should not have)"),
    ])
    .await;
    let mut run = setup.start("run something slow", None);
    let started = run.chunk("status", |d| d["event"] == "started").await;
    let group = started["process_group"].as_i64().expect("a process group") as i32;
    run.chunk("tool_use", |_| true).await;
    until("the tool's python runs", LIMIT, || {
        live_processes(&marker, None)
            .iter()
            .any(|p| p.contains("python3"))
    })
    .await;

    let canceled_at = Instant::now();
    run.cancel.cancel();
    let (result, seen) = run.finish().await;
    let error = result.expect_err("a cancelled turn fails");
    assert!(error.is_canceled(), "{error:?}");
    assert!(
        canceled_at.elapsed() < Duration::from_secs(15),
        "cancellation is prompt"
    );
    assert!(
        chunks_of(&seen, "status")
            .iter()
            .any(|d| d["event"] == "canceling")
    );

    assert_eq!(live_processes(&marker, Some(group)), Vec::<String>::new());
    assert_eq!(
        killpg(Pid::from_raw(group), None),
        Err(nix::errno::Errno::ESRCH)
    );
}

#[tokio::test]
async fn an_abandoned_run_kills_its_processes_when_dropped() {
    let marker = format!("cairn-marker-{}", uuid::Uuid::new_v4());
    let setup = Setup::new(vec![Reply::bash(format!(
        "python3 -c \"import time; time.sleep(120)\" {marker}"
    ))])
    .await;
    let mut run = setup.start("run something slow", None);
    let started = run.chunk("status", |d| d["event"] == "started").await;
    let group = started["process_group"].as_i64().expect("a process group") as i32;
    until("the tool's python runs", LIMIT, || {
        !live_processes(&marker, None).is_empty()
    })
    .await;

    // What a worker does when a runtime ignores its grace period: drop the future.
    run.task.abort();
    assert!(run.task.await.expect_err("aborted").is_cancelled());
    // Well before the tool would have ended by itself.
    until(
        "the CLI and its tool are gone",
        Duration::from_secs(10),
        || live_processes(&marker, Some(group)).is_empty(),
    )
    .await;
}

#[tokio::test]
async fn an_api_error_fails_the_turn_and_says_whether_to_retry() {
    let setup = Setup::new(vec![Reply::error(500)]).await;
    let (result, _) = setup.start("hello", None).finish().await;
    let error = result.expect_err("HTTP 500 fails the turn");
    assert_eq!(error.code, "api_error");
    assert!(error.retryable, "a 500 is transient");
    assert!(
        error.message.contains("API error") && error.message.contains("HTTP 500"),
        "{error}"
    );
    assert_eq!(error.details["exit_code"], 1);
    assert_eq!(
        setup.api.message_requests().len(),
        2,
        "the CLI retried once, as configured"
    );

    setup.api.set_script([Reply::error(401)]);
    let (result, _) = setup.start("hello", None).finish().await;
    let error = result.expect_err("HTTP 401 fails the turn");
    assert!(error.message.contains("API error"), "{error}");
    assert!(
        !error.retryable,
        "a bad API key does not fix itself: {error}"
    );
}

#[tokio::test]
async fn a_missing_cli_says_how_to_install_it() {
    let settings = RuntimeSettings {
        claude_cli: Some("/nonexistent/claude".into()),
        ..RuntimeSettings::default()
    };
    let registry = RuntimeRegistry::builtin(&settings);
    let runtime = registry.get("claude_code").expect("registered");
    let sandbox = CliSandbox::new();
    let mut turn = Turn {
        agent: AgentSpec {
            id: uuid::Uuid::nil(),
            name: "coder".into(),
            runtime: "claude_code".into(),
            model_id: String::new(),
            configuration: json!({"runtime_config": {"cwd": sandbox.cwd()}}),
        },
        index: 0,
        prompt: "hi".into(),
        traceparent: None,
    };
    let attempt = AttemptInfo {
        execution_id: uuid::Uuid::now_v7(),
        activity_id: "turn-1".into(),
        attempt: 1,
    };
    let (io, _progress) = TurnIo::new(attempt.clone(), CancellationToken::new(), None);
    let error = runtime.run(turn.clone(), io).await.expect_err("no CLI");
    assert_eq!(
        (error.code.as_str(), error.retryable),
        ("cli_not_found", false)
    );
    assert!(
        error.message.contains("npm install")
            && error.message.contains("@anthropic-ai/claude-code")
    );
    assert!(
        error.message.contains("claude_cli"),
        "names the setting: {error}"
    );

    turn.agent.configuration = json!({"runtime_config": {"max_turns": "many"}});
    let message = runtime
        .validate(&turn.agent)
        .expect_err("ill-typed")
        .message;
    assert!(message.contains("max_turns"), "{message}");
    let keys: Vec<&str> = runtime
        .describe()
        .config_keys
        .iter()
        .map(|k| k.name)
        .collect();
    assert!(keys.contains(&"permission_mode") && keys.contains(&"mcp_servers"));
}

/// A turn without a `cwd` works in a scratch directory of its execution, which is gone when the
/// turn ends (what the next turn resumes is in the checkpoint and the config directory).
#[tokio::test]
async fn a_scratch_directory_is_removed_when_its_turn_ends() {
    let setup = Setup::new(vec![
        Reply::bash("touch made-here.txt && echo made"),
        Reply::text("done"),
    ])
    .await;
    let mut turn = setup.turn("make a file");
    turn.agent.configuration = json!({"runtime_config": {"permission_mode": "bypassPermissions"}});
    let mut run = setup.start_turn(turn, None, None);
    let started = run.chunk("status", |d| d["event"] == "started").await;
    let cwd = std::path::PathBuf::from(started["cwd"].as_str().unwrap());
    assert!(cwd.ends_with(run_execution_dir(&cwd)), "{}", cwd.display());
    let result = run.chunk("tool_result", |_| true).await;
    assert!(result.to_string().contains("made"), "{result}");
    let (outcome, _) = run.finish().await;
    outcome.expect("the turn succeeds");
    assert!(!cwd.exists(), "{} is left behind", cwd.display());
}

/// The last component of a scratch directory: the execution id under `cairn-claude-code`.
fn run_execution_dir(cwd: &std::path::Path) -> std::path::PathBuf {
    let parent = cwd.parent().expect("a scratch directory has a parent");
    assert!(parent.ends_with("cairn-claude-code"), "{}", cwd.display());
    std::path::PathBuf::from(cwd.file_name().unwrap())
}
