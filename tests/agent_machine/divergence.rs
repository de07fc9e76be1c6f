//! Histories the machine must refuse: altered ones (`Nondeterminism`, naming the seq and both
//! versions) and impossible ones (`InvalidTransition`, never silently ignored).

use cairn::domain::HistoryEvent;
use cairn::machine::{AgentState, InvalidTransition, Nondeterminism, ReplayError, step};

use crate::history::{
    History, T0, activity_canceled, activity_started, cancel_requested, completed, ctx,
    execution_failed, failed, failure, scheduled, started, timer_canceled, timer_fired,
    timer_started, usage,
};
use crate::scenarios;

/// How replay describes an event in its errors: the event as stored.
fn stored(event: &HistoryEvent) -> String {
    serde_json::to_string(event).unwrap()
}

fn nondeterminism(seq: u64, expected: String, found: String) -> ReplayError {
    ReplayError::Nondeterminism(Nondeterminism {
        seq,
        expected,
        found,
    })
}

#[test]
fn an_altered_command_is_reported_at_its_seq_with_both_versions() {
    let h = scenarios::retried_after_back_off();
    let altered = h.with(5, timer_started(0, 2, T0 + 3_000, 1_000, 0));
    assert_eq!(
        altered.replay().unwrap_err(),
        nondeterminism(5, stored(h.at(5)), stored(altered.at(5)))
    );
}

#[test]
fn an_altered_input_is_reported_where_the_code_now_goes_elsewhere() {
    let h = scenarios::retried_after_back_off();
    // Had the failure been non-retryable, the code would fail instead of backing off.
    let altered = h.with(4, failed(0, 1, failure("rate_limited", false), T0 + 2_000));
    let expected = execution_failed(failure("rate_limited", false));
    assert_eq!(
        altered.replay().unwrap_err(),
        nondeterminism(5, stored(&expected), stored(h.at(5)))
    );
}

#[test]
fn a_missing_command_is_reported_where_it_was_due() {
    let h = scenarios::single_turn();
    assert_eq!(
        h.without(5).replay().unwrap_err(),
        nondeterminism(5, stored(h.at(5)), "the end of the history".into())
    );
    assert_eq!(
        h.without(2).replay().unwrap_err(),
        nondeterminism(2, stored(&scheduled(0, 1)), stored(h.at(3))),
        "the input that follows is found where the command was due"
    );
}

#[test]
fn a_command_the_code_does_not_emit_is_reported() {
    let h = scenarios::single_turn().with_inserted(4, timer_canceled(0, 2));
    assert_eq!(
        h.replay().unwrap_err(),
        nondeterminism(4, "nothing".into(), stored(h.at(4)))
    );
}

/// The state `history` leads to.
fn state_of(history: History) -> AgentState {
    history.replay().unwrap().unwrap()
}

fn invalid(state: &str, event: &str) -> InvalidTransition {
    InvalidTransition {
        state: state.into(),
        event: event.into(),
    }
}

#[test]
fn an_input_without_a_transition_is_an_error() {
    let before_start = step(ctx(), None, &scheduled(0, 1));
    assert_eq!(
        before_start.unwrap_err(),
        invalid("<not started>", "ActivityScheduled"),
        "a history begins with ExecutionStarted"
    );

    let scheduled_1 = History::new()
        .input(1, started(&["hi"]))
        .command(2, scheduled(0, 1));
    let refused = |input: HistoryEvent| {
        let state = state_of(scheduled_1.clone());
        step(ctx(), Some(state), &input).unwrap_err()
    };
    let waiting = |event| invalid("PENDING with turn-1 attempt 1 Scheduled", event);
    let no_usage = usage(0.0);
    assert_eq!(
        refused(started(&["again"])),
        waiting("ExecutionStarted"),
        "starts once"
    );
    assert_eq!(
        refused(completed(0, 2, "x", no_usage, None)),
        waiting("ActivityCompleted"),
        "a report of an attempt that is not open"
    );
    assert_eq!(
        refused(completed(1, 1, "x", no_usage, None)),
        waiting("ActivityCompleted"),
        "a report of an activity that is not open"
    );
    assert_eq!(
        refused(timer_fired(0, 2)),
        waiting("TimerFired"),
        "no such timer"
    );
    assert_eq!(
        refused(activity_canceled(0, 1)),
        waiting("ActivityCanceled"),
        "nobody asked it to stop"
    );

    let asked = state_of(scenarios::canceled_while_running().prefix(4));
    let again = step(ctx(), Some(asked), &cancel_requested("twice"));
    assert_eq!(
        again.unwrap_err().event,
        "CancelRequested",
        "a cancel is requested once"
    );

    let done = state_of(scenarios::single_turn());
    let late = step(ctx(), Some(done), &activity_started(0, 1, T0));
    assert_eq!(
        late.unwrap_err(),
        invalid("COMPLETED", "ActivityStarted"),
        "a closed execution takes nothing more"
    );
}

#[test]
fn replay_names_the_seq_of_an_impossible_event() {
    let h = scenarios::single_turn();
    let seq = h.events.len() as u64 + 1;
    let after_the_end = h
        .clone()
        .input(seq, completed(0, 1, "again", usage(0.0), None));
    assert_eq!(
        after_the_end.replay().unwrap_err(),
        ReplayError::Invalid {
            seq: 6,
            source: invalid("COMPLETED", "ActivityCompleted")
        }
    );
    let twice = h.with(4, activity_started(0, 1, T0 + 11));
    assert!(
        matches!(
            twice.replay().unwrap_err(),
            ReplayError::Invalid { seq: 4, .. }
        ),
        "an attempt starts once"
    );
}

#[test]
fn deciding_after_a_failure_that_was_not_folded_in_is_an_error() {
    // `step` folds the input first, so the state always holds the ended attempt; `decide` on a
    // state that does not is a bug in the caller, and says so rather than emitting nothing.
    let scheduled_1 = state_of(
        History::new()
            .input(1, started(&["hi"]))
            .command(2, scheduled(0, 1)),
    );
    let input = failed(0, 1, failure("boom", true), T0);
    assert_eq!(
        scheduled_1.decide(ctx(), &input).unwrap_err(),
        invalid("PENDING with turn-1 attempt 1 Scheduled", "ActivityFailed")
    );
}
