//! Histories of executions ended by a limit of their own, not of an attempt: the
//! `execution_timeout` the start recorded, and the server's `--max-history-events`. Either
//! fails the execution at once, whatever its activity is doing.

use cairn::domain::HistoryEvent;

use crate::history::{
    History, T0, activity_started, execution_failed, failed, failure, scheduled, started,
    timer_started,
};

/// ExecutionStarted of [`started`] with an `execution_timeout_ms` of a minute.
fn started_with_a_timeout(prompts: &[&str]) -> HistoryEvent {
    let HistoryEvent::ExecutionStarted {
        agent,
        prompts,
        retry_policy,
        timeouts,
        resume,
        queue,
        traceparent,
        conversation,
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
        conversation,
        execution_timeout_ms: Some(60_000),
    }
}

/// The timeout passes while the failed turn waits out its back-off: the execution fails at once,
/// naming `execution_timeout` (the back-off timer goes with it).
pub fn execution_timed_out_while_backing_off() -> History {
    let timed_out = HistoryEvent::ExecutionTimedOut {
        execution_timeout_ms: 60_000,
    };
    let ended = timed_out.limit_failure().expect("a limit's failure");
    History::new()
        .input(1, started_with_a_timeout(&["Say hi"]))
        .command(2, scheduled(0, 1))
        .input(3, activity_started(0, 1, T0 + 10))
        .input(4, failed(0, 1, failure("rate_limited", true), T0 + 2_000))
        .command(5, timer_started(0, 2, T0 + 3_024, 1_024, 24))
        .input(6, timed_out)
        .command(7, execution_failed(ended))
}

/// The history limit is reached while a turn is scheduled: the execution fails at once, naming
/// `max_history_events`.
pub fn history_limit_reached_while_running() -> History {
    let reached = HistoryEvent::HistoryLimitReached {
        max_history_events: 3,
    };
    let failure = reached.limit_failure().expect("a limit's failure");
    History::new()
        .input(1, started(&["Say hi"]))
        .command(2, scheduled(0, 1))
        .input(3, reached)
        .command(4, execution_failed(failure))
}

#[test]
fn a_limit_of_the_execution_fails_it_in_any_phase() {
    for history in [
        execution_timed_out_while_backing_off(),
        history_limit_reached_while_running(),
    ] {
        let (_, end) = history.check();
        assert!(end.turns.is_empty(), "no turn completed");
        assert_eq!(end.status, cairn::domain::ExecutionStatus::Failed);
        assert!(end.activity.is_none(), "the activity ended with it");
    }
}
