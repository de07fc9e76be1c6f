//! Retries in the machine: an execution that starts with turns reused from the one it retries
//! (`resume` on ExecutionStarted), what a failed history offers for reuse, and replay of
//! retried histories — including the divergence a changed machine would show.

use cairn::domain::{ExecutionStatus, HistoryEvent, Resume, TurnResult};
use cairn::machine::{ReplayError, activity_id_for_turn, reusable, step};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::history::{
    History, T0, activity_started, completed, ctx, execution_completed, execution_failed, failed,
    failure, retried, scheduled, started, usage,
};

/// The execution the retries below retry.
pub const RETRIED: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0002);

const PROMPTS: [&str; 3] = ["Plan", "Draft", "Polish"];

fn checkpoint(turn: u32) -> Value {
    json!({ "session": format!("s-{turn}") })
}

fn turn(text: &str, cost: f64) -> TurnResult {
    TurnResult {
        output: json!({ "text": text }),
        usage: usage(cost),
    }
}

/// Three turns; the first two complete, the third fails with an error no retry of the
/// attempt would fix (a misconfigured tool, say).
pub fn failed_on_the_third_turn() -> History {
    let broken = failure("tool_misconfigured", false);
    History::new()
        .input(1, started(&PROMPTS))
        .command(2, scheduled(0, 1))
        .input(3, activity_started(0, 1, T0 + 10))
        .input(
            4,
            completed(0, 1, "plan", usage(0.001), Some(checkpoint(1))),
        )
        .command(5, scheduled(1, 1))
        .input(6, activity_started(1, 1, T0 + 20))
        .input(
            7,
            completed(1, 1, "draft", usage(0.002), Some(checkpoint(2))),
        )
        .command(8, scheduled(2, 1))
        .input(9, activity_started(2, 1, T0 + 30))
        .input(10, failed(2, 1, broken.clone(), T0 + 40))
        .command(11, execution_failed(broken))
}

/// The retry of [`failed_on_the_third_turn`]: it reuses the two completed turns and turn 2's
/// checkpoint, so the only activity it schedules is turn 3, and its result sums all three.
pub fn retried_after_a_failed_turn() -> History {
    let resume = Resume {
        retry_of: RETRIED,
        turns: vec![turn("plan", 0.001), turn("draft", 0.002)],
        checkpoint: Some(checkpoint(2)),
    };
    History::new()
        .input(1, retried(&PROMPTS, resume))
        .command(2, scheduled(2, 1))
        .input(3, activity_started(2, 1, T0 + 50))
        .input(
            4,
            completed(2, 1, "polish", usage(0.003), Some(checkpoint(3))),
        )
        .command(
            5,
            execution_completed("polish", usage(0.001) + usage(0.002) + usage(0.003)),
        )
}

/// A retry from the first event reuses nothing and runs every turn again; it still records
/// which execution it retries.
pub fn retried_reusing_nothing() -> History {
    let resume = Resume {
        retry_of: RETRIED,
        turns: vec![],
        checkpoint: None,
    };
    History::new()
        .input(1, retried(&["Say hi"], resume))
        .command(2, scheduled(0, 1))
        .input(3, activity_started(0, 1, T0 + 10))
        .input(4, completed(0, 1, "hi", usage(0.0001), None))
        .command(5, execution_completed("hi", usage(0.0001)))
}

/// A retry can fail again, like any execution; its failure is its own.
pub fn retry_failing_again() -> History {
    let still_broken = failure("tool_misconfigured", false);
    let resume = Resume {
        retry_of: RETRIED,
        turns: vec![turn("plan", 0.001)],
        checkpoint: Some(checkpoint(1)),
    };
    History::new()
        .input(1, retried(&PROMPTS[..2], resume))
        .command(2, scheduled(1, 1))
        .input(3, activity_started(1, 1, T0 + 10))
        .input(4, failed(1, 1, still_broken.clone(), T0 + 20))
        .command(5, execution_failed(still_broken))
}

#[test]
fn a_retry_starts_with_the_reused_turns_and_schedules_only_the_rest() {
    let (steps, end) = retried_after_a_failed_turn().check();
    let start = steps.after(1);
    assert_eq!(start.turns.len(), 2, "the reused turns count as completed");
    assert_eq!(
        start.checkpoint,
        Some(checkpoint(2)),
        "turn 3's task is created with the checkpoint turn 2 ended with"
    );
    assert_eq!(start.usage, usage(0.001) + usage(0.002));
    let history = retried_after_a_failed_turn();
    let scheduled: Vec<&HistoryEvent> = history
        .events
        .iter()
        .filter(|e| matches!(e, HistoryEvent::ActivityScheduled { .. }))
        .collect();
    assert_eq!(
        scheduled,
        [&crate::history::scheduled(2, 1)],
        "turns 1 and 2 do not run again"
    );
    assert_eq!(end.status, ExecutionStatus::Completed);
    assert_eq!(end.turns.len(), 3);
}

#[test]
fn a_failed_history_offers_its_completed_turns_with_the_last_checkpoint() {
    let events = failed_on_the_third_turn().events;
    let (turns, last) = reusable(&events, u64::MAX, usize::MAX).unwrap();
    assert_eq!(turns, [turn("plan", 0.001), turn("draft", 0.002)]);
    assert_eq!(last, Some(checkpoint(2)));

    // From seq 7 (turn 2's completion): only turn 1, with turn 1's checkpoint.
    let (turns, last) = reusable(&events, 7, usize::MAX).unwrap();
    assert_eq!(turns, [turn("plan", 0.001)]);
    assert_eq!(last, Some(checkpoint(1)));

    // A new prompt for turn 2 caps the reuse at turn 1, wherever the history is cut.
    let (turns, last) = reusable(&events, u64::MAX, 1).unwrap();
    assert_eq!(turns, [turn("plan", 0.001)]);
    assert_eq!(last, Some(checkpoint(1)));

    let (turns, last) = reusable(&events, 1, usize::MAX).unwrap();
    assert!(
        turns.is_empty() && last.is_none(),
        "from seq 1 reuses nothing"
    );
}

#[test]
fn a_retry_of_a_retry_reuses_the_reused_turns_all_together_or_not_at_all() {
    let events = retry_failing_again().events;
    let (turns, last) = reusable(&events, u64::MAX, usize::MAX).unwrap();
    assert_eq!(turns, [turn("plan", 0.001)]);
    assert_eq!(last, Some(checkpoint(1)));
    // Reused turns arrive together at seq 1, with only the last one's checkpoint: taking
    // fewer of them would hand the next turn a checkpoint from the wrong point.
    let events = retried_after_a_failed_turn().events;
    let (turns, last) = reusable(&events, u64::MAX, 1).unwrap();
    assert!(turns.is_empty() && last.is_none());
}

#[test]
fn a_retry_cannot_reuse_more_turns_than_it_has_prompts() {
    let resume = Resume {
        retry_of: RETRIED,
        turns: vec![turn("a", 0.0), turn("b", 0.0)],
        checkpoint: None,
    };
    let refused = step(ctx(), None, &retried(&["only one"], resume)).unwrap_err();
    assert_eq!(refused.event, "ExecutionStarted");
}

#[test]
fn a_machine_that_reused_one_turn_fewer_diverges_at_the_first_scheduled_turn() {
    // Stands in for a changed machine: the history says turn 3 was scheduled after the start;
    // code that did not take the reused turns into account would schedule turn 1 there.
    let h = retried_after_a_failed_turn();
    let tampered = h.with(2, scheduled(0, 1));
    let err = tampered.replay().unwrap_err();
    let ReplayError::Nondeterminism(n) = err else {
        panic!("expected nondeterminism, got {err:?}");
    };
    assert_eq!(n.seq, 2);
    assert_eq!(n.expected, serde_json::to_string(h.at(2)).unwrap());
    assert!(n.found.contains(&activity_id_for_turn(0)), "{}", n.found);
}

#[test]
fn a_start_without_resume_is_written_as_before() {
    // The golden histories recorded before retries existed have no `resume`; they replay
    // because it defaults to none, and a plain start still writes none.
    let text = serde_json::to_string(&started(&["x"])).unwrap();
    assert!(!text.contains("resume"), "{text}");
}
