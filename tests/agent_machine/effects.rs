//! What each scenario does, beyond emitting the commands its history records (which
//! `History::check` verifies at every step and again as a full replay).

use cairn::domain::ExecutionStatus::{Canceled, Completed, Failed, Pending, Running};
use cairn::domain::HistoryEvent;
use cairn::machine::{ActivityPhase, AgentState, MachineContext, ReplayError, replay};
use serde_json::json;
use uuid::Uuid;

use crate::history::{T0, timer_id, usage};
use crate::scenarios;

/// The open activity as (activity id, attempt, phase).
fn open(state: &AgentState) -> Option<(&str, u32, &ActivityPhase)> {
    let a = state.activity.as_ref()?;
    Some((a.activity_id.as_str(), a.attempt, &a.phase))
}

fn has_timer(history: &crate::history::History) -> bool {
    history
        .events
        .iter()
        .any(|e| matches!(e, HistoryEvent::TimerStarted { .. }))
}

#[test]
fn every_scenario_steps_and_replays_alike() {
    for (_, h) in scenarios::all() {
        h.check();
    }
}

#[test]
fn a_single_turn_completes_with_the_output_of_its_turn() {
    let (steps, end) = scenarios::single_turn().check();
    assert_eq!(steps.after(1).status, Pending, "scheduled, not yet claimed");
    assert_eq!(steps.after(3).status, Running);
    assert_eq!(end.status, Completed);
    assert_eq!(end.turns.len(), 1);
    assert_eq!(end.activity, None);
}

#[test]
fn the_next_turn_starts_from_the_checkpoint_the_last_one_ended_with() {
    let (steps, end) = scenarios::multi_turn().check();
    let between = steps.after(4);
    assert_eq!(
        open(between),
        Some(("turn-2", 1, &ActivityPhase::Scheduled))
    );
    assert_eq!(
        between.checkpoint,
        Some(json!({ "session": "s-1" })),
        "the task of turn 2 is created with turn 1's checkpoint"
    );
    assert_eq!(end.status, Completed);
    assert_eq!(end.checkpoint, Some(json!({ "session": "s-2" })));
    assert_eq!(
        end.usage,
        usage(0.0001) + usage(0.013),
        "usage sums over the turns"
    );
}

#[test]
fn a_retryable_failure_waits_on_a_timer_then_runs_the_next_attempt() {
    let h = scenarios::retried_after_back_off();
    let (steps, end) = h.check();
    let HistoryEvent::TimerStarted {
        fire_at,
        delay_ms,
        jitter_ms,
        ..
    } = h.at(5)
    else {
        panic!("seq 5 is the back-off timer");
    };
    assert_eq!(delay_ms - jitter_ms, 1_000, "the policy's initial interval");
    assert!(
        *jitter_ms <= 100,
        "jitter is at most a tenth of the interval"
    );
    assert_eq!(
        *fire_at,
        T0 + 2_000 + *delay_ms as i64,
        "counted from the failure"
    );
    let backing_off = ActivityPhase::BackingOff {
        timer_id: timer_id(0, 2),
        fire_at: *fire_at,
        next_attempt: 2,
    };
    assert_eq!(open(steps.after(4)), Some(("turn-1", 1, &backing_off)));
    assert_eq!(
        open(steps.after(6)),
        Some(("turn-1", 2, &ActivityPhase::Scheduled))
    );
    assert_eq!(end.status, Completed);
}

#[test]
fn the_jitter_is_derived_from_the_execution_so_replays_agree_and_executions_spread() {
    let h = scenarios::retried_after_back_off();
    assert_eq!(
        h.replay(),
        h.replay(),
        "the same history replays the same, every time"
    );
    let another = MachineContext {
        execution_id: Uuid::from_u128(2),
    };
    match replay(another, &h.events) {
        Err(ReplayError::Nondeterminism(n)) => assert_eq!(n.seq, 5, "only the timer differs"),
        other => panic!("another execution backs off by another jitter, got {other:?}"),
    }
}

#[test]
fn a_runtime_retry_after_moves_the_retry_later() {
    let h = scenarios::retry_after_delays_the_retry();
    let (_, end) = h.check();
    let HistoryEvent::TimerStarted { fire_at, .. } = h.at(5) else {
        panic!("seq 5 is the timer")
    };
    assert_eq!(*fire_at, T0 + 2_000 + 30_000);
    assert_eq!(open(&end), Some(("turn-1", 2, &ActivityPhase::Scheduled)));
}

#[test]
fn the_last_allowed_attempt_fails_the_execution_with_the_runtime_failure() {
    let h = scenarios::attempts_exhausted();
    let (_, end) = h.check();
    let HistoryEvent::TimerStarted {
        delay_ms,
        jitter_ms,
        ..
    } = h.at(10)
    else {
        panic!("seq 10 is the second back-off");
    };
    assert_eq!(delay_ms - jitter_ms, 2_000, "the interval doubles");
    let HistoryEvent::ExecutionFailed { failure } = h.at(15) else {
        panic!("seq 15 fails")
    };
    assert_eq!(
        (failure.code.as_str(), failure.retryable),
        ("overloaded", true)
    );
    assert_eq!(end.status, Failed);
}

#[test]
fn a_non_retryable_failure_or_code_fails_at_once() {
    for h in [
        scenarios::non_retryable_failure(),
        scenarios::non_retryable_code(),
    ] {
        let (_, end) = h.check();
        assert_eq!(end.status, Failed);
        assert!(!has_timer(&h), "no back-off");
    }
}

#[test]
fn a_heartbeat_timeout_is_retried_but_a_schedule_to_start_timeout_is_not() {
    let (_, end) = scenarios::heartbeat_timeout_retried().check();
    assert_eq!((end.status, end.turns.len()), (Completed, 1));

    let h = scenarios::schedule_to_start_timeout_fails();
    let (_, end) = h.check();
    assert_eq!(end.status, Failed);
    assert!(!has_timer(&h));
}

#[test]
fn a_cancel_stops_the_attempt_wherever_it_is() {
    let (steps, end) = scenarios::canceled_while_running().check();
    let asked = steps.after(3);
    assert!(asked.activity.as_ref().is_some_and(|a| a.cancel_requested));
    assert_eq!(asked.cancel_reason.as_deref(), Some("user pressed stop"));
    assert_eq!(end.status, Canceled);

    let (_, end) = scenarios::canceled_before_any_claim().check();
    assert_eq!(end.status, Canceled);

    let (steps, end) = scenarios::canceled_while_backing_off().check();
    assert!(matches!(
        open(steps.after(4)),
        Some((_, 1, ActivityPhase::BackingOff { .. }))
    ));
    assert_eq!((end.status, end.activity), (Canceled, None));

    let h = scenarios::canceled_between_turns();
    let (_, end) = h.check();
    assert_eq!(
        (end.status, end.turns.len()),
        (Canceled, 1),
        "turn 2 never runs"
    );
}
