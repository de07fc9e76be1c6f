//! Canned histories of a person in the loop: a conversation of three messages, one closed by
//! its idle timeout, an approved and a denied tool call, and a held attempt resumed once
//! approved. Each is checked step by step, as a replay, and recorded under `tests/histories/`.

use cairn::domain::{ApprovalDecision, Conversation, ExecutionStatus, HistoryEvent};
use cairn::machine::WaitingFor;
use serde_json::json;

use crate::history::{
    History, T0, activity_started, completed, execution_completed, scheduled, started, usage,
};

/// ExecutionStarted of a conversation with a one-hour idle timeout.
fn conversation(prompts: &[&str]) -> HistoryEvent {
    let HistoryEvent::ExecutionStarted {
        agent,
        prompts,
        retry_policy,
        timeouts,
        resume,
        queue,
        traceparent,
        ..
    } = started(prompts)
    else {
        unreachable!("started() is an ExecutionStarted")
    };
    HistoryEvent::ExecutionStarted {
        agent,
        prompts,
        retry_policy,
        timeouts,
        resume,
        queue,
        traceparent,
        conversation: Some(Conversation {
            idle_timeout_ms: 3_600_000,
        }),
        execution_timeout_ms: None,
    }
}

fn message(text: &str, request_id: &str) -> HistoryEvent {
    HistoryEvent::MessageReceived {
        text: text.into(),
        request_id: request_id.into(),
    }
}

fn asked(approval_id: &str) -> HistoryEvent {
    HistoryEvent::ApprovalRequested {
        approval_id: approval_id.into(),
        activity_id: "turn-1".into(),
        attempt: 1,
        tool: "Bash".into(),
        input: json!({ "command": "ls" }),
    }
}

fn answered(approval_id: &str, decision: ApprovalDecision) -> HistoryEvent {
    HistoryEvent::ApprovalResolved {
        approval_id: approval_id.into(),
        decision,
        request_id: format!("answer-{approval_id}"),
    }
}

/// Three turns: the first prompt, then two messages, each run when it arrives; then closed.
pub fn conversation_of_three_messages() -> History {
    History::new()
        .input(1, conversation(&["Hello"]))
        .command(2, scheduled(0, 1))
        .input(3, activity_started(0, 1, T0 + 10))
        .input(4, completed(0, 1, "hi", usage(0.0), None))
        .input(5, message("How are you?", "m-2"))
        .command(6, scheduled(1, 1))
        .input(7, activity_started(1, 1, T0 + 20))
        .input(8, completed(1, 1, "fine", usage(0.0), None))
        .input(9, message("Bye", "m-3"))
        .command(10, scheduled(2, 1))
        .input(11, activity_started(2, 1, T0 + 30))
        .input(12, completed(2, 1, "bye", usage(0.0), None))
        .input(13, HistoryEvent::CloseRequested)
        .command(
            14,
            execution_completed("bye", usage(0.0) + usage(0.0) + usage(0.0)),
        )
}

/// A conversation nobody answers: its idle timeout completes it.
pub fn conversation_idle_timeout() -> History {
    History::new()
        .input(1, conversation(&["Anyone?"]))
        .command(2, scheduled(0, 1))
        .input(3, activity_started(0, 1, T0 + 10))
        .input(4, completed(0, 1, "anyone", usage(0.0), None))
        .input(
            5,
            HistoryEvent::IdleTimedOut {
                idle_timeout_ms: 3_600_000,
            },
        )
        .command(6, execution_completed("anyone", usage(0.0)))
}

/// A tool call asked about while the turn runs, allowed, and the turn completes.
pub fn approved_tool_call() -> History {
    History::new()
        .input(1, started(&["List the files"]))
        .command(2, scheduled(0, 1))
        .input(3, asked("toolu_1"))
        .input(
            4,
            answered(
                "toolu_1",
                ApprovalDecision::Allow {
                    updated_input: None,
                },
            ),
        )
        .input(5, activity_started(0, 1, T0 + 10))
        .input(6, completed(0, 1, "a b c", usage(0.0), None))
        .command(7, execution_completed("a b c", usage(0.0)))
}

/// A tool call denied with a message; the turn completes with the denial.
pub fn denied_tool_call() -> History {
    History::new()
        .input(1, started(&["Remove everything"]))
        .command(2, scheduled(0, 1))
        .input(3, asked("toolu_1"))
        .input(
            4,
            answered(
                "toolu_1",
                ApprovalDecision::Deny {
                    message: "not on my disk".into(),
                },
            ),
        )
        .input(5, activity_started(0, 1, T0 + 10))
        .input(6, completed(0, 1, "did not", usage(0.0), None))
        .command(7, execution_completed("did not", usage(0.0)))
}

/// Nobody answered within the worker's hold: the attempt is held (no lease, no retry), and
/// the answer resumes the same attempt, which completes.
pub fn held_and_resumed() -> History {
    History::new()
        .input(1, started(&["Write the report"]))
        .command(2, scheduled(0, 1))
        .input(3, asked("toolu_1"))
        .input(4, activity_started(0, 1, T0 + 10))
        .input(
            5,
            HistoryEvent::ActivityHeld {
                activity_id: "turn-1".into(),
                attempt: 1,
                approval_id: "toolu_1".into(),
            },
        )
        .input(
            6,
            answered(
                "toolu_1",
                ApprovalDecision::Allow {
                    updated_input: Some(json!({ "command": "ls -l" })),
                },
            ),
        )
        .command(
            7,
            HistoryEvent::ActivityResumed {
                activity_id: "turn-1".into(),
                attempt: 1,
            },
        )
        .input(8, activity_started(0, 1, T0 + 5_000))
        .input(9, completed(0, 1, "written", usage(0.0), None))
        .command(10, execution_completed("written", usage(0.0)))
}

#[test]
fn a_conversation_waits_for_input_between_turns_and_completes_when_closed() {
    let (steps, end) = conversation_of_three_messages().check();
    let waiting = steps.after(4);
    assert_eq!(waiting.status, ExecutionStatus::Waiting);
    assert_eq!(waiting.waiting_for(), Some(WaitingFor::Input));
    assert_eq!(steps.after(5).status, ExecutionStatus::Running);
    assert_eq!(end.status, ExecutionStatus::Completed);
    assert_eq!(end.message_ids, ["m-2", "m-3"]);
}

#[test]
fn a_repeated_message_or_one_after_the_close_is_no_transition() {
    let history = conversation_of_three_messages();
    let repeated = history.prefix(8).with_inserted(9, message("again", "m-2"));
    assert!(
        repeated.replay().is_err(),
        "the engine sends a repeat nowhere"
    );
    let closed = history.prefix(14).with_inserted(15, message("late", "m-9"));
    assert!(closed.replay().is_err());
}

#[test]
fn the_idle_timeout_completes_a_waiting_conversation() {
    let (_, end) = conversation_idle_timeout().check();
    assert_eq!(end.status, ExecutionStatus::Completed);
}

#[test]
fn an_ask_waits_for_approval_and_an_answer_goes_on() {
    for history in [approved_tool_call(), denied_tool_call()] {
        let (steps, end) = history.check();
        assert_eq!(steps.after(3).status, ExecutionStatus::Waiting);
        assert_eq!(steps.after(3).waiting_for(), Some(WaitingFor::Approval));
        assert_eq!(steps.after(4).status, ExecutionStatus::Running);
        assert_eq!(end.status, ExecutionStatus::Completed);
    }
    let twice = approved_tool_call().with_inserted(
        5,
        answered(
            "toolu_1",
            ApprovalDecision::Deny {
                message: "no".into(),
            },
        ),
    );
    assert!(twice.replay().is_err(), "an approval is answered once");
}

#[test]
fn a_held_attempt_resumes_under_the_same_number_once_answered() {
    let (steps, end) = held_and_resumed().check();
    let held = steps.after(5);
    assert!(held.activity.as_ref().unwrap().held);
    assert_eq!(held.waiting_for(), Some(WaitingFor::Approval));
    assert!(!steps.after(6).activity.as_ref().unwrap().held);
    assert_eq!(end.status, ExecutionStatus::Completed);
}
