//! Canned histories of the agent machine, written as numbered events: what the engine records
//! for each path an execution can take. Inputs come from outside (a worker's report, a fired
//! timer, a client); each is followed by the commands the machine answers it with.

use cairn::domain::{Failure, HistoryEvent, TimeoutKind};
use serde_json::json;

use crate::conversation;
use crate::history::{
    History, T0, activity_cancel_requested, activity_canceled, activity_started, cancel_requested,
    completed, execution_canceled, execution_completed, execution_failed, failed, failure,
    scheduled, started, timed_out, timer_canceled, timer_fired, timer_started, usage,
};
use crate::limits;
use crate::retry;

/// Every scenario by name; the name is also its recorded file's name.
pub fn all() -> Vec<(&'static str, History)> {
    vec![
        ("single_turn", single_turn()),
        ("multi_turn", multi_turn()),
        ("retried_after_back_off", retried_after_back_off()),
        (
            "retry_after_delays_the_retry",
            retry_after_delays_the_retry(),
        ),
        ("attempts_exhausted", attempts_exhausted()),
        ("non_retryable_failure", non_retryable_failure()),
        ("non_retryable_code", non_retryable_code()),
        ("heartbeat_timeout_retried", heartbeat_timeout_retried()),
        (
            "schedule_to_start_timeout_fails",
            schedule_to_start_timeout_fails(),
        ),
        ("canceled_while_running", canceled_while_running()),
        ("canceled_before_any_claim", canceled_before_any_claim()),
        ("canceled_while_backing_off", canceled_while_backing_off()),
        ("canceled_between_turns", canceled_between_turns()),
        (
            "failed_on_the_third_turn",
            retry::failed_on_the_third_turn(),
        ),
        (
            "retried_after_a_failed_turn",
            retry::retried_after_a_failed_turn(),
        ),
        ("retried_reusing_nothing", retry::retried_reusing_nothing()),
        ("retry_failing_again", retry::retry_failing_again()),
        (
            "stored_checkpoints_and_workspaces",
            stored_checkpoints_and_workspaces(),
        ),
        (
            "conversation_of_three_messages",
            conversation::conversation_of_three_messages(),
        ),
        (
            "conversation_idle_timeout",
            conversation::conversation_idle_timeout(),
        ),
        ("approved_tool_call", conversation::approved_tool_call()),
        ("denied_tool_call", conversation::denied_tool_call()),
        ("held_and_resumed", conversation::held_and_resumed()),
        (
            "execution_timed_out_while_backing_off",
            limits::execution_timed_out_while_backing_off(),
        ),
        (
            "history_limit_reached_while_running",
            limits::history_limit_reached_while_running(),
        ),
    ]
}

/// Histories written since checkpoints are stored objects: a large checkpoint is a reference
/// (`{"$object": id}`) in `ActivityCompleted`, a small one stays inline, and each attempt names
/// the directory it worked in; turn 2 runs on another worker from turn 1's stored checkpoint.
pub fn stored_checkpoints_and_workspaces() -> History {
    let on = |turn: u32, worker: &str, dir: &str, started_at| HistoryEvent::ActivityStarted {
        activity_id: format!("turn-{}", turn + 1),
        attempt: 1,
        worker: worker.into(),
        started_at,
        workspace: Some(dir.into()),
    };
    let reference = "sha256:5f1c0c8c3b1f2f0a9a0e6d3c1b2a99887766554433221100ffeeddccbbaa9988";
    History::new()
        .input(1, started(&["Plan", "Write"]))
        .command(2, scheduled(0, 1))
        .input(3, on(0, "worker-a", "/tmp/cairn-claude-code/a", T0 + 10))
        .input(
            4,
            completed(
                0,
                1,
                "plan",
                usage(0.0001),
                Some(json!({ "$object": reference })),
            ),
        )
        .command(5, scheduled(1, 1))
        .input(6, on(1, "worker-b", "/srv/work", T0 + 20))
        .input(
            7,
            completed(
                1,
                1,
                "text",
                usage(0.002),
                Some(json!({ "session": "s-2" })),
            ),
        )
        .command(8, execution_completed("text", usage(0.0001) + usage(0.002)))
}

/// One prompt, one attempt, done.
pub fn single_turn() -> History {
    History::new()
        .input(1, started(&["Say hi"]))
        .command(2, scheduled(0, 1))
        .input(3, activity_started(0, 1, T0 + 10))
        .input(4, completed(0, 1, "hi", usage(0.0001), None))
        .command(5, execution_completed("hi", usage(0.0001)))
}

/// Two prompts, one conversation: turn 2 is scheduled when turn 1 completes, and starts from
/// the checkpoint turn 1 ended with. The costs add up to a float with 17 significant digits, as
/// real costs do.
pub fn multi_turn() -> History {
    History::new()
        .input(1, started(&["Plan", "Write"]))
        .command(2, scheduled(0, 1))
        .input(3, activity_started(0, 1, T0 + 10))
        .input(
            4,
            completed(
                0,
                1,
                "plan",
                usage(0.0001),
                Some(json!({ "session": "s-1" })),
            ),
        )
        .command(5, scheduled(1, 1))
        .input(6, activity_started(1, 1, T0 + 20))
        .input(
            7,
            completed(
                1,
                1,
                "text",
                usage(0.013),
                Some(json!({ "session": "s-2" })),
            ),
        )
        .command(8, execution_completed("text", usage(0.0001) + usage(0.013)))
}

/// A retryable failure waits on a durable timer, then runs attempt 2. The back-off is the
/// policy's 1 s plus 24 ms of jitter derived from the execution and activity ids.
pub fn retried_after_back_off() -> History {
    History::new()
        .input(1, started(&["Say hi"]))
        .command(2, scheduled(0, 1))
        .input(3, activity_started(0, 1, T0 + 10))
        .input(4, failed(0, 1, failure("rate_limited", true), T0 + 2_000))
        .command(5, timer_started(0, 2, T0 + 3_024, 1_024, 24))
        .input(6, timer_fired(0, 2))
        .command(7, scheduled(0, 2))
        .input(8, activity_started(0, 2, T0 + 3_100))
        .input(9, completed(0, 2, "hi", usage(0.0001), None))
        .command(10, execution_completed("hi", usage(0.0001)))
}

/// A runtime's `retry-after` longer than the policy's back-off moves the timer out to it.
pub fn retry_after_delays_the_retry() -> History {
    let rate_limited = HistoryEvent::ActivityFailed {
        activity_id: "turn-1".into(),
        attempt: 1,
        failure: failure("rate_limited", true),
        retry_after_ms: Some(30_000),
        at: T0 + 2_000,
    };
    History::new()
        .input(1, started(&["Say hi"]))
        .command(2, scheduled(0, 1))
        .input(3, activity_started(0, 1, T0 + 10))
        .input(4, rate_limited)
        .command(5, timer_started(0, 2, T0 + 32_000, 30_000, 24))
        .input(6, timer_fired(0, 2))
        .command(7, scheduled(0, 2))
}

/// Three attempts (the policy's maximum) fail: the execution fails with the last failure.
/// The second back-off doubles to 2 s, plus its own jitter.
pub fn attempts_exhausted() -> History {
    let overloaded = || failure("overloaded", true);
    History::new()
        .input(1, started(&["Say hi"]))
        .command(2, scheduled(0, 1))
        .input(3, activity_started(0, 1, T0 + 10))
        .input(4, failed(0, 1, overloaded(), T0 + 2_000))
        .command(5, timer_started(0, 2, T0 + 3_024, 1_024, 24))
        .input(6, timer_fired(0, 2))
        .command(7, scheduled(0, 2))
        .input(8, activity_started(0, 2, T0 + 3_100))
        .input(9, failed(0, 2, overloaded(), T0 + 4_000))
        .command(10, timer_started(0, 3, T0 + 6_108, 2_108, 108))
        .input(11, timer_fired(0, 3))
        .command(12, scheduled(0, 3))
        .input(13, activity_started(0, 3, T0 + 6_200))
        .input(14, failed(0, 3, overloaded(), T0 + 7_000))
        .command(15, execution_failed(overloaded()))
}

/// A failure the runtime marks non-retryable fails the execution at once.
pub fn non_retryable_failure() -> History {
    History::new()
        .input(1, started(&["Say hi"]))
        .command(2, scheduled(0, 1))
        .input(3, activity_started(0, 1, T0 + 10))
        .input(4, failed(0, 1, failure("cli_not_found", false), T0 + 100))
        .command(5, execution_failed(failure("cli_not_found", false)))
}

/// A code in the policy's `non_retryable_codes` is not retried, whatever the runtime says.
pub fn non_retryable_code() -> History {
    History::new()
        .input(1, started(&["Say hi"]))
        .command(2, scheduled(0, 1))
        .input(3, activity_started(0, 1, T0 + 10))
        .input(4, failed(0, 1, failure("bad_request", true), T0 + 100))
        .command(5, execution_failed(failure("bad_request", true)))
}

/// An attempt whose worker stopped reporting is retried like a retryable failure.
pub fn heartbeat_timeout_retried() -> History {
    History::new()
        .input(1, started(&["Say hi"]))
        .command(2, scheduled(0, 1))
        .input(3, activity_started(0, 1, T0 + 10))
        .input(4, timed_out(0, 1, TimeoutKind::Heartbeat, T0 + 30_010))
        .command(5, timer_started(0, 2, T0 + 31_034, 1_024, 24))
        .input(6, timer_fired(0, 2))
        .command(7, scheduled(0, 2))
        .input(8, activity_started(0, 2, T0 + 31_100))
        .input(9, completed(0, 2, "hi", usage(0.0001), None))
        .command(10, execution_completed("hi", usage(0.0001)))
}

/// No worker for the runtime claimed the task in time: retrying would not help.
pub fn schedule_to_start_timeout_fails() -> History {
    let unclaimed = Failure::new(
        "schedule_to_start_timeout",
        "attempt 1 of turn-1 exceeded its schedule-to-start timeout",
        false,
    );
    History::new()
        .input(1, started(&["Say hi"]))
        .command(2, scheduled(0, 1))
        .input(
            3,
            timed_out(0, 1, TimeoutKind::ScheduleToStart, T0 + 60_000),
        )
        .command(4, execution_failed(unclaimed))
}

/// A cancel asks the running attempt to stop; its worker reports it stopped.
pub fn canceled_while_running() -> History {
    History::new()
        .input(1, started(&["Say hi"]))
        .command(2, scheduled(0, 1))
        .input(3, cancel_requested("user pressed stop"))
        .command(4, activity_cancel_requested(0, 1))
        .input(5, activity_started(0, 1, T0 + 10))
        .input(6, activity_canceled(0, 1))
        .command(7, execution_canceled("user pressed stop"))
}

/// A cancel of an attempt no worker claimed yet: the engine records its cancellation in the
/// same transition.
pub fn canceled_before_any_claim() -> History {
    History::new()
        .input(1, started(&["Say hi"]))
        .command(2, scheduled(0, 1))
        .input(3, cancel_requested("user pressed stop"))
        .command(4, activity_cancel_requested(0, 1))
        .input(5, activity_canceled(0, 1))
        .command(6, execution_canceled("user pressed stop"))
}

/// A cancel during a back-off drops the timer and ends the execution.
pub fn canceled_while_backing_off() -> History {
    History::new()
        .input(1, started(&["Say hi"]))
        .command(2, scheduled(0, 1))
        .input(3, activity_started(0, 1, T0 + 10))
        .input(4, failed(0, 1, failure("rate_limited", true), T0 + 2_000))
        .command(5, timer_started(0, 2, T0 + 3_024, 1_024, 24))
        .input(6, cancel_requested("no longer needed"))
        .command(7, timer_canceled(0, 2))
        .command(8, execution_canceled("no longer needed"))
}

/// A turn that completes after a cancel was requested ends the execution: the next turn never
/// starts.
pub fn canceled_between_turns() -> History {
    History::new()
        .input(1, started(&["Plan", "Write"]))
        .command(2, scheduled(0, 1))
        .input(3, cancel_requested("enough"))
        .command(4, activity_cancel_requested(0, 1))
        .input(5, activity_started(0, 1, T0 + 10))
        .input(6, completed(0, 1, "plan", usage(0.0001), None))
        .command(7, execution_canceled("enough"))
}
