//! The snapshot an execution row stores: what changes as the execution runs (not what its start
//! fixed, which the start event holds), the completed turns as a count and the last output, and
//! snapshots as earlier versions wrote them.

use cairn::domain::HistoryEvent;
use cairn::machine::{AgentState, Turns, with_start};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::scenarios;

/// The snapshot as the row stores it, read back with the start event, as the store does.
fn read_back(state: &AgentState, start: &HistoryEvent) -> AgentState {
    let mut stored = serde_json::to_value(state).unwrap();
    with_start(&mut stored, &serde_json::to_value(start).unwrap());
    AgentState::deserialize(&stored).unwrap()
}

/// A snapshot keeps the count of completed turns and the last one's output, not every output:
/// after turn 2 of `multi_turn` it holds turn 2's output and not turn 1's.
#[test]
fn a_snapshot_keeps_only_the_last_output() {
    let history = scenarios::multi_turn();
    let (steps, end) = history.check();
    let after_first = serde_json::to_value(steps.after(4)).unwrap();
    assert_eq!(
        after_first["turns"],
        json!({ "completed": 1, "last": { "text": "plan" } })
    );
    let text = serde_json::to_string(&end).unwrap();
    assert!(!text.contains("plan"), "turn 1's output stayed: {text}");
    assert_eq!(
        serde_json::to_value(&end).unwrap()["turns"],
        json!({ "completed": 2, "last": { "text": "text" } })
    );
    assert_eq!(read_back(&end, &history.events[0]), end);
}

/// What the start fixed (the agent, prompts, retry policy, timeouts) is not in the snapshot; read
/// back with the start event, every state of every scenario is what it was. A conversation keeps
/// its prompts, which its messages add to.
#[test]
fn a_snapshot_leaves_out_what_the_start_fixed() {
    for (name, history) in scenarios::all() {
        let (_, end) = history.check();
        let stored = serde_json::to_value(&end).unwrap();
        for fixed in ["agent", "retry_policy", "timeouts", "queue", "traceparent"] {
            assert!(stored.get(fixed).is_none(), "{name}: {fixed} in {stored}");
        }
        assert_eq!(
            stored.get("prompts").is_some(),
            end.conversation.is_some(),
            "{name}: {stored}"
        );
        assert_eq!(read_back(&end, &history.events[0]), end, "{name}");
    }
}

/// A snapshot written before (everything the start fixed in it, every completed turn listed
/// with its output and usage) reads as it is, the turns as the count and the last output; its
/// own fields win over the start event's.
#[test]
fn a_snapshot_written_before_still_reads() {
    let history = scenarios::multi_turn();
    let (steps, _) = history.check();
    let state = steps.after(4);
    let mut old = serde_json::to_value(state).unwrap();
    with_start(&mut old, &serde_json::to_value(&history.events[0]).unwrap());
    let usage =
        json!({ "input_tokens": 1, "output_tokens": 2, "cost_usd": 0.0001, "tool_calls": 0 });
    old["turns"] = json!([{ "output": { "text": "plan" }, "usage": usage }]);
    old["activity"] = Value::Null;
    old["cancel_reason"] = Value::Null;
    let read = AgentState::deserialize(&old).unwrap();
    assert_eq!(
        read.turns,
        Turns {
            completed: 1,
            last: Some(json!({ "text": "plan" }))
        }
    );
    assert_eq!(read.activity, None);
    // Completed with a start event that differs, it keeps its own prompts.
    let mut other_start = serde_json::to_value(&history.events[0]).unwrap();
    other_start["prompts"] = json!(["something else"]);
    let mut again = old.clone();
    with_start(&mut again, &other_start);
    assert_eq!(again, old);
    // No turns at all, as a snapshot of an execution that has not completed one.
    old["turns"] = json!([]);
    let read = AgentState::deserialize(&old).unwrap();
    assert_eq!(read.turns, Turns::default());
}
