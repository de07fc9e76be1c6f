//! The snapshot an execution row stores: what it keeps of completed turns, and snapshots as
//! earlier versions wrote them.

use cairn::machine::{AgentState, Turns};
use serde_json::json;

use crate::scenarios;

/// A snapshot keeps the count of completed turns and the last one's output, not every output:
/// after turn 2 of `multi_turn` it holds turn 2's output and not turn 1's, and the list of
/// turns is gone.
#[test]
fn a_snapshot_keeps_only_the_last_output() {
    let (steps, end) = scenarios::multi_turn().check();
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
    let read: AgentState = serde_json::from_str(&text).unwrap();
    assert_eq!(read, end);
}

/// A snapshot written before (every completed turn listed with its output and usage) reads as
/// the count and the last output, and the machine goes on from it as from the new shape.
#[test]
fn a_snapshot_listing_every_turn_still_reads() {
    let (steps, _) = scenarios::multi_turn().check();
    let mut old = serde_json::to_value(steps.after(4)).unwrap();
    let usage =
        json!({ "input_tokens": 1, "output_tokens": 2, "cost_usd": 0.0001, "tool_calls": 0 });
    old["turns"] = json!([{ "output": { "text": "plan" }, "usage": usage }]);
    let read: AgentState = serde_json::from_value(old).unwrap();
    assert_eq!(
        read.turns,
        Turns {
            completed: 1,
            last: Some(json!({ "text": "plan" }))
        }
    );
    assert_eq!(&read, steps.after(4));
    // No turns at all, as a snapshot of an execution that has not completed one.
    let mut none = serde_json::to_value(steps.after(1)).unwrap();
    none["turns"] = json!([]);
    let read: AgentState = serde_json::from_value(none).unwrap();
    assert_eq!(read.turns, Turns::default());
    assert_eq!(&read, steps.after(1));
}
