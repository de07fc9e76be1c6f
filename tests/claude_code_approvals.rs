//! Tool approvals in the `claude_code` runtime, with the real Claude Code CLI in `default`
//! permission mode against the fake Messages API: the CLI's `can_use_tool` asks reach the
//! approver; allow runs the tool, deny gives the model the message, and a held ask stops the CLI
//! and resumes in a later attempt that runs the call exactly once, with no model call repeated.
//! Needs the CLI: `npm ci --prefix tests/npm` (or `CAIRN_TEST_CLAUDE_CLI`).

mod claude_code_harness;
mod fake_anthropic;
mod test_approver;

use cairn::runtime::{Answer, Decision, Progress};
use claude_code_harness::{Setup, chunks_of, live_processes};
use fake_anthropic::Reply;
use serde_json::Value;
use test_approver::TestApprover;

/// The model asks to run a command that appends a line to a file (not read-only, so the CLI
/// asks), then answers with text.
async fn setup() -> Setup {
    Setup::new(vec![
        Reply::bash("echo ran >> approved.txt && echo appended-a-line"),
        Reply::text("all done"),
    ])
    .await
}

/// The lines of the file the tool appends to (none if it never ran).
fn tool_runs(setup: &Setup) -> usize {
    std::fs::read_to_string(setup.sandbox.workdir.path().join("approved.txt"))
        .map(|text| text.lines().count())
        .unwrap_or(0)
}

/// The last checkpoint the run saved.
fn last_checkpoint(seen: &[Progress]) -> Value {
    seen.iter()
        .rev()
        .find_map(|p| match p {
            Progress::Checkpoint(c) => Some(c.clone()),
            Progress::Chunk {
                checkpoint: Some(c),
                ..
            } => Some(c.clone()),
            _ => None,
        })
        .expect("a checkpoint was saved")
}

#[tokio::test]
async fn an_allowed_tool_call_runs_once_and_the_turn_completes() {
    let setup = setup().await;
    let approver = TestApprover::allowing();
    let turn = setup.turn_in_mode("append a line", "default");
    let run = setup.start_turn(turn, None, Some(approver.clone()));
    let (result, seen) = run.finish().await;
    let output = result.expect("the turn succeeds");

    let asks = approver.asks();
    assert_eq!(asks.len(), 1, "one ask: {asks:?}");
    assert_eq!(asks[0].tool, "Bash");
    assert!(
        asks[0].input["command"]
            .as_str()
            .unwrap()
            .contains("approved.txt")
    );
    let tool_use = chunks_of(&seen, "tool_use")[0];
    assert_eq!(
        tool_use["id"],
        asks[0].id.as_str(),
        "the ask is named by its tool_use id"
    );
    assert_eq!(tool_runs(&setup), 1, "the tool ran once");
    let result_chunk = chunks_of(&seen, "tool_result")[0];
    assert_eq!(result_chunk["is_error"], false);
    assert_eq!(output.output["text"], "all done");

    let requests = setup.api.message_requests();
    assert_eq!(
        requests.len(),
        2,
        "one model call before the tool, one after"
    );
    assert!(requests[1].transcript().contains("appended-a-line"));
}

#[tokio::test]
async fn a_denied_tool_call_gives_the_model_the_message_and_the_turn_completes() {
    let setup = setup().await;
    let approver = TestApprover::denying("no appending today, says the reviewer");
    let turn = setup.turn_in_mode("append a line", "default");
    let (result, seen) = setup
        .start_turn(turn, None, Some(approver.clone()))
        .finish()
        .await;
    let output = result.expect("a denial is not a failure");

    assert_eq!(approver.asks().len(), 1);
    assert_eq!(tool_runs(&setup), 0, "the tool did not run");
    let result_chunk = chunks_of(&seen, "tool_result")[0];
    assert_eq!(result_chunk["is_error"], true);
    assert!(
        result_chunk["content"]
            .to_string()
            .contains("no appending today")
    );
    assert_eq!(output.output["text"], "all done");
    let requests = setup.api.message_requests();
    assert_eq!(requests.len(), 2);
    assert!(
        requests[1]
            .transcript()
            .contains("no appending today, says the reviewer"),
        "the model receives the denial as the tool's result"
    );
}

#[tokio::test]
async fn without_an_approver_tool_calls_are_denied_and_nothing_waits() {
    let setup = setup().await;
    let turn = setup.turn_in_mode("append a line", "default");
    let (result, _) = setup.start_turn(turn, None, None).finish().await;
    result.expect("the turn completes");
    assert_eq!(tool_runs(&setup), 0);
    let requests = setup.api.message_requests();
    assert!(
        requests[1]
            .transcript()
            .contains(cairn::runtime::NO_APPROVER_MESSAGE)
    );
}

/// Holds the ask in a first attempt, then resumes from its checkpoint in a second one whose
/// approver gives `decision`. Returns the second attempt's output and progress.
async fn hold_then_resume(
    setup: &Setup,
    decision: Decision,
) -> (cairn::runtime::TurnOutput, Vec<Progress>) {
    let holding = TestApprover::holding();
    let turn = setup.turn_in_mode("append a line", "default");
    let mut first = setup.start_turn(turn.clone(), None, Some(holding.clone()));
    let started = first.chunk("status", |d| d["event"] == "started").await;
    let group = started["process_group"].as_i64().unwrap() as i32;
    let (held, seen) = first.finish().await;
    let held = held.expect_err("a held ask ends the attempt");
    let asked = holding.asks();
    assert_eq!(asked.len(), 1);
    assert_eq!(held.is_held(), Some(asked[0].id.as_str()), "{held:?}");
    assert!(!held.retryable, "a hold is not a failure to retry");
    // Only the group's processes: no command line contains this.
    let left = live_processes("\u{1}", Some(group));
    assert!(
        left.is_empty(),
        "no process of the held attempt is left: {left:?}"
    );
    assert_eq!(tool_runs(setup), 0, "nothing ran while waiting");
    assert_eq!(setup.api.message_requests().len(), 1);
    let checkpoint = last_checkpoint(&seen);
    assert_eq!(
        checkpoint["held_tool_call"]["tool_use_id"],
        asked[0].id.as_str()
    );

    // The second attempt, on a fresh config directory as on another worker: the session file
    // comes from the checkpoint.
    std::fs::remove_dir_all(setup.sandbox.config_dir().join("projects")).unwrap();
    let deciding = TestApprover::new([Answer::Decided(decision)]);
    let (resumed, seen) = setup
        .start_turn(turn, Some(checkpoint.clone()), Some(deciding.clone()))
        .finish()
        .await;
    let output = resumed.expect("the resumed turn completes");
    let asks = deciding.asks();
    assert_eq!(asks.len(), 1, "asked again once: {asks:?}");
    assert_eq!(asks[0].id, asked[0].id, "with the same id");
    assert_eq!(output.output["session_id"], checkpoint["session_id"]);
    // Until the held call has its result, a retry must resume it again: the checkpoints say so.
    let checkpoints: Vec<&Value> = seen
        .iter()
        .filter_map(|p| match p {
            Progress::Checkpoint(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(
        checkpoints[0]["held_tool_call"]["tool_use_id"],
        asked[0].id.as_str(),
        "the resumed attempt's first checkpoint still holds the call"
    );
    let last = output.checkpoint.as_ref().expect("a final checkpoint");
    assert!(last.get("held_tool_call").is_none(), "{last}");
    assert_eq!(output.output["text"], "all done");
    let requests = setup.api.message_requests();
    assert_eq!(
        requests.len(),
        2,
        "the model call that asked for the tool is not made again"
    );
    assert_eq!(
        requests[1].transcript().matches("append a line").count(),
        1,
        "the prompt is not sent again"
    );
    (output, seen)
}

#[tokio::test]
async fn a_held_ask_stops_the_cli_and_an_allow_later_runs_the_call_exactly_once() {
    let setup = setup().await;
    let (_, seen) = hold_then_resume(
        &setup,
        Decision::Allow {
            updated_input: None,
        },
    )
    .await;
    assert_eq!(tool_runs(&setup), 1, "the held call ran once");
    let result_chunk = chunks_of(&seen, "tool_result")[0];
    assert_eq!(result_chunk["is_error"], false);
    let requests = setup.api.message_requests();
    assert!(requests[1].transcript().contains("appended-a-line"));
}

#[tokio::test]
async fn a_held_ask_denied_later_gives_the_model_the_message_once() {
    let setup = setup().await;
    hold_then_resume(
        &setup,
        Decision::Deny {
            message: "denied after a night's sleep".into(),
        },
    )
    .await;
    assert_eq!(tool_runs(&setup), 0);
    let transcript = setup.api.message_requests()[1].transcript();
    assert_eq!(
        transcript.matches("denied after a night's sleep").count(),
        1
    );
}
