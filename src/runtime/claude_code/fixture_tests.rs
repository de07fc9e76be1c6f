//! The parser and the outcome rules over real CLI output (`tests/fixtures/claude-code/`, recorded
//! from Claude Code 2.1.332 against a fake Messages API; see each directory's events/meta file).

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;

use serde_json::{Value, json};

use super::chunks::Chunk;
use super::outcome::{ExitFacts, finish};
use super::parse::StreamState;

/// Every fixture directory this file checks. A new directory fails
/// `every_fixture_directory_is_checked` until a test covers it.
const CHECKED: [&str; 24] = [
    "control_initialize",
    "control_interrupt_sleep",
    "control_interrupt_slowtext",
    "p_allowed_tools_touch",
    "p_bare",
    "p_bypass",
    "p_conn_refused_retries1",
    "p_default_perm_touch_denied",
    "p_http500_retries1",
    "p_json_output",
    "p_partial",
    "p_root_bypass_refused",
    "p_without_quiet_env",
    "resume_first",
    "resume_missing_session",
    "resume_other_cwd",
    "resume_second",
    "signal_SIGINT_sleep",
    "signal_SIGINT_slowtext",
    "signal_SIGKILL_sleep",
    "signal_SIGTERM_sleep",
    "signal_SIGTERM_slowtext",
    "stream_input",
    "stream_input_replay",
];

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/claude-code")
}

/// A fixture's stdout fed line by line: the final state and every chunk, in order.
fn replay(name: &str) -> (StreamState, Vec<Chunk>) {
    let stdout =
        std::fs::read_to_string(fixture_dir().join(name).join("stdout.jsonl")).unwrap_or_default();
    let mut state = StreamState::default();
    let mut chunks = Vec::new();
    for line in stdout.lines() {
        let outcome = state.accept(line);
        assert!(
            outcome.reply.is_none(),
            "{name}: the CLI sent no control request"
        );
        chunks.extend(outcome.chunks);
    }
    (state, chunks)
}

fn kinds(chunks: &[Chunk]) -> Vec<&str> {
    chunks.iter().map(|c| c.kind).collect()
}

fn statuses(chunks: &[Chunk]) -> Vec<&str> {
    chunks
        .iter()
        .filter(|c| c.kind == "status")
        .filter_map(|c| c.data["event"].as_str())
        .collect()
}

fn of_kind<'a>(chunks: &'a [Chunk], kind: &str) -> Vec<&'a Value> {
    chunks
        .iter()
        .filter(|c| c.kind == kind)
        .map(|c| &c.data)
        .collect()
}

fn exit(code: i32, stderr: &str) -> ExitFacts {
    ExitFacts {
        status: Some(ExitStatus::from_raw(code << 8)),
        stderr_tail: stderr.to_owned(),
    }
}

#[test]
fn every_fixture_directory_is_checked() {
    let mut found: Vec<String> = std::fs::read_dir(fixture_dir())
        .expect("tests/fixtures/claude-code exists")
        .map(|entry| {
            entry
                .expect("readable")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    found.sort();
    assert_eq!(found, CHECKED);
}

#[test]
fn a_tool_round_trip_maps_to_text_tool_use_tool_result_and_result() {
    for name in [
        "p_bypass",
        "p_bare",
        "p_without_quiet_env",
        "resume_first",
        "p_allowed_tools_touch",
    ] {
        let (state, chunks) = replay(name);
        let content: Vec<&str> = kinds(&chunks)
            .into_iter()
            .filter(|k| *k != "status")
            .collect();
        assert_eq!(
            content,
            ["text", "tool_use", "tool_result", "text", "result"],
            "{name}"
        );
        assert!(state.saw_init, "{name}");
        assert_eq!(state.tool_calls, 1, "{name}");
        let tool_use = of_kind(&chunks, "tool_use")[0];
        assert_eq!(tool_use["name"], "Bash", "{name}");
        let tool_result = of_kind(&chunks, "tool_result")[0];
        assert_eq!(tool_result["tool_use_id"], tool_use["id"], "{name}");
        assert_eq!(tool_result["is_error"], false, "{name}");

        let checkpoint = json!({"session_id": state.session_id});
        let output = finish(&state, &exit(0, ""), Some(checkpoint.clone())).expect("success");
        assert!(
            output.output["text"]
                .as_str()
                .unwrap()
                .starts_with("done: "),
            "{name}"
        );
        assert_eq!(output.output["num_turns"], 2, "{name}");
        assert_eq!(
            output.output["session_id"].as_str(),
            state.session_id.as_deref()
        );
        assert_eq!(
            (output.usage.input_tokens, output.usage.output_tokens),
            (24, 40),
            "{name}"
        );
        assert_eq!(output.usage.tool_calls, 1, "{name}");
        assert!(output.usage.cost_usd > 0.0, "{name}");
        assert_eq!(output.checkpoint, Some(checkpoint));
    }
    let (_, chunks) = replay("p_bare");
    assert_eq!(statuses(&chunks), ["ui_invalidate", "init"]);
}

#[test]
fn init_is_a_status_with_the_session_and_the_result_ends_the_turn() {
    let (state, chunks) = replay("control_initialize");
    assert_eq!(kinds(&chunks), ["status", "status", "text", "result"]);
    assert_eq!(statuses(&chunks), ["control_response", "init"]);
    let init = &chunks[1].data;
    assert_eq!(init["session_id"], "35b3eb9f-008c-4a68-9081-3378b2913aee");
    assert_eq!(init["permissionMode"], "bypassPermissions");
    assert!(init.get("slash_commands").is_none(), "init is trimmed");
    assert_eq!(chunks[2].data["text"], "hi from the fake model");
    assert_eq!(
        state.session_id.as_deref(),
        Some("35b3eb9f-008c-4a68-9081-3378b2913aee")
    );
    let result = state.result.expect("a result");
    assert_eq!((result.is_error, result.num_turns), (false, 1));
    assert_eq!(result.terminal_reason.as_deref(), Some("completed"));
}

#[test]
fn the_session_id_is_announced_once_by_the_first_line_that_has_it() {
    let stdout = std::fs::read_to_string(fixture_dir().join("stream_input/stdout.jsonl")).unwrap();
    let mut state = StreamState::default();
    let announced: Vec<String> = stdout
        .lines()
        .filter_map(|line| state.accept(line).session_started)
        .collect();
    assert_eq!(announced, ["06ea81ff-1c01-4b63-aaf5-67b027ea0b71"]);
    assert_eq!(state.tool_calls, 1, "two turns, one tool call");
}

#[test]
fn an_interrupt_during_a_tool_gives_an_error_tool_result_and_an_aborted_result() {
    let (_, chunks) = replay("control_interrupt_sleep");
    let results = of_kind(&chunks, "result");
    assert_eq!(results.len(), 2, "the interrupted turn, then the next one");
    assert_eq!(results[0]["is_error"], true);
    assert_eq!(results[0]["terminal_reason"], "aborted_tools");
    assert_eq!(results[1]["is_error"], false);
    assert_eq!(of_kind(&chunks, "tool_result")[0]["is_error"], true);
    let notes: Vec<&Value> = chunks
        .iter()
        .filter(|c| c.data["event"] == "user_message")
        .map(|c| &c.data["text"])
        .collect();
    assert_eq!(
        notes,
        [&json!("[Request interrupted by user for tool use]")]
    );
    assert!(statuses(&chunks).contains(&"control_response"));

    let (state, chunks) = replay("control_interrupt_slowtext");
    assert_eq!(of_kind(&chunks, "text")[0]["text"], "slow slow slow ");
    assert_eq!(state.tool_calls, 0);
}

#[test]
fn signals_without_a_result_fail_as_a_crash_and_sigint_as_an_error_result() {
    for name in [
        "signal_SIGKILL_sleep",
        "signal_SIGTERM_sleep",
        "signal_SIGTERM_slowtext",
    ] {
        let (state, _) = replay(name);
        assert!(state.result.is_none(), "{name}");
        let error = finish(&state, &exit(143, "bye"), None).expect_err("no result");
        assert_eq!(
            (error.code.as_str(), error.retryable),
            ("cli_exited", true),
            "{name}"
        );
        assert!(
            error.message.contains("code 143") && error.message.contains("bye"),
            "{name}"
        );
        assert_eq!(
            error.details["session_id"].as_str(),
            state.session_id.as_deref()
        );
    }
    let (state, chunks) = replay("signal_SIGTERM_sleep");
    assert_eq!(
        of_kind(&chunks, "tool_result")[0]["content"],
        "Exit code 137"
    );
    assert_eq!(state.tool_calls, 1);
    for name in ["signal_SIGINT_sleep", "signal_SIGINT_slowtext"] {
        let (state, _) = replay(name);
        let error = finish(&state, &exit(0, ""), None).expect_err("an error result");
        assert_eq!(error.code, "claude_code_error", "{name}");
        assert!(error.message.contains("error_during_execution"), "{name}");
        assert!(error.details["terminal_reason"].is_string(), "{name}");
    }
}

#[test]
fn api_errors_say_so_and_are_retryable_when_transient() {
    let (state, chunks) = replay("p_http500_retries1");
    assert_eq!(statuses(&chunks), ["init", "api_retry"]);
    assert_eq!((state.api.retries, state.api.retry_status), (1, Some(500)));
    let error = finish(&state, &exit(1, ""), None).expect_err("an API error");
    assert_eq!((error.code.as_str(), error.retryable), ("api_error", true));
    assert!(error.message.contains("API error") && error.message.contains("HTTP 500"));
    assert_eq!(error.details["api_error_status"], 500);
    assert_eq!(error.details["exit_code"], 1);

    let (state, _) = replay("p_conn_refused_retries1");
    let error = finish(&state, &exit(1, ""), None).expect_err("an API error");
    assert_eq!((error.code.as_str(), error.retryable), ("api_error", true));
    assert!(error.message.contains("ECONNREFUSED"));
}

#[test]
fn a_denied_permission_is_a_status_and_an_error_tool_result_not_a_failure() {
    let (state, chunks) = replay("p_default_perm_touch_denied");
    assert!(statuses(&chunks).contains(&"permission_denied"));
    assert_eq!(of_kind(&chunks, "tool_result")[0]["is_error"], true);
    let output = finish(&state, &exit(0, ""), None).expect("the turn itself succeeded");
    assert!(
        output.output["permission_denials"]
            .as_array()
            .is_some_and(|d| !d.is_empty())
    );
}

#[test]
fn partial_messages_and_replayed_prompts_add_no_chunks() {
    for name in ["p_partial", "stream_input_replay"] {
        let (state, chunks) = replay(name);
        assert_eq!(
            of_kind(&chunks, "text").len(),
            1,
            "{name}: one text, no deltas"
        );
        assert!(!statuses(&chunks).contains(&"user_message"), "{name}");
        assert!(statuses(&chunks).contains(&"status"), "{name}");
        assert!(finish(&state, &exit(0, ""), None).is_ok(), "{name}");
    }
}

#[test]
fn a_lone_json_result_still_gives_the_session_and_usage() {
    let (state, chunks) = replay("p_json_output");
    assert_eq!(kinds(&chunks), ["result"]);
    assert!(!state.saw_init);
    assert_eq!(
        state.session_id.as_deref(),
        Some("06646de0-269f-40ee-8140-4cf2adefc383")
    );
    let output = finish(&state, &exit(0, ""), None).expect("success");
    assert_eq!(output.output["text"], "done: hello-from-tool");
}

#[test]
fn resume_keeps_the_session_id_and_a_missing_session_is_not_retried() {
    let first = replay("resume_first").0.session_id;
    assert_eq!(first, replay("resume_second").0.session_id);
    assert_eq!(first, replay("resume_other_cwd").0.session_id);

    let (state, _) = replay("resume_missing_session");
    let error = finish(&state, &exit(1, ""), None).expect_err("no such session");
    assert_eq!(
        (error.code.as_str(), error.retryable),
        ("session_not_found", false)
    );
    assert!(error.message.contains("claude_config_dir"));
}

#[test]
fn a_refused_start_is_fatal_and_quotes_stderr() {
    let (state, chunks) = replay("p_root_bypass_refused");
    assert!(chunks.is_empty());
    let stderr = std::fs::read_to_string(fixture_dir().join("p_root_bypass_refused/stderr.txt"))
        .expect("the fixture has stderr");
    let error = finish(&state, &exit(1, &stderr), None).expect_err("no session");
    assert_eq!(
        (error.code.as_str(), error.retryable),
        ("cli_startup_failed", false)
    );
    assert!(
        error
            .message
            .contains("cannot be used with root/sudo privileges")
    );
}

#[test]
fn malformed_and_unknown_lines_never_fail() {
    let mut state = StreamState::default();
    assert!(state.accept("").chunks.is_empty());
    assert!(state.accept("npm WARN something").chunks.is_empty());
    let bad = state.accept(r#"{"type":"assistant","message":"#).chunks;
    assert_eq!(bad[0].data["event"], "unparsed_output");
    assert!(
        state
            .accept(r#"{"type":"from_the_future","x":1}"#)
            .chunks
            .is_empty()
    );
    assert!(
        state
            .accept(r#"{"type":"assistant","message":{"content":"odd"}}"#)
            .chunks
            .is_empty()
    );
    assert!(state.accept(r#"{"type":"result"}"#).chunks.len() == 1);
    assert_eq!(state.malformed_lines, 1);
    let ask =
        r#"{"type":"control_request","request_id":"r1","request":{"subtype":"can_use_tool"}}"#;
    let reply = state.accept(ask).reply.expect("answered");
    assert_eq!(reply["response"]["subtype"], "error");
    assert_eq!(reply["response"]["request_id"], "r1");
}
