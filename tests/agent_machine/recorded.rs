//! Histories as they are stored: JSON.

use cairn::domain::HistoryEvent;
use cairn::machine::{AgentState, replay};

use crate::history::ctx;
use crate::scenarios;

#[test]
fn a_history_and_its_snapshot_read_back_from_json_are_what_was_written() {
    // Both stores keep events and the state snapshot as JSON text; replay and the next
    // transition work on what was read back, so every value must come back exactly, floats
    // included (a cost summed over turns has 17 significant digits).
    for (name, history) in scenarios::all() {
        let text = serde_json::to_string(&history.events).unwrap();
        let read: Vec<HistoryEvent> = serde_json::from_str(&text).unwrap();
        assert_eq!(
            replay(ctx(), &read),
            history.replay(),
            "{name}: the history"
        );

        let (_, end) = history.check();
        let text = serde_json::to_string(&end).unwrap();
        let read: AgentState = serde_json::from_str(&text).unwrap();
        assert_eq!(read, end, "{name}: the state snapshot");
    }
}
