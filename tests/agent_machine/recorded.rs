//! Histories as they are stored: JSON.
//!
//! Recorded histories: every file under `tests/histories/agent/` must replay with the current
//! machine, so a change that would break executions already in a database fails here first.
//!
//! Each scenario is recorded once, by running
//! `CAIRN_RECORD_HISTORIES=1 cargo test --test agent_machine`; an existing file is never
//! rewritten, because a recorded history is a fact the machine has to keep accepting. Review a
//! new file like code.

use std::path::{Path, PathBuf};

use cairn::domain::{ExecutionKind, HistoryEvent, NumberedEvent, RecordedHistory};
use cairn::machine::{AgentState, MachineContext, replay, with_start};
use serde::Deserialize;

use crate::history::{EXECUTION, History, ctx};
use crate::scenarios;

fn directory() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/histories/agent")
}

/// A recorded file has the shape `cairn exec history --json` exports (the library's
/// [`RecordedHistory`]): the execution (it seeds jitter), the status the history ends in, and
/// the events with their seqs, as stored.
fn record(history: &History) -> RecordedHistory {
    let (_, end) = history.check();
    RecordedHistory {
        execution_id: EXECUTION,
        kind: ExecutionKind::Agent,
        status: end.status,
        events: (1..)
            .zip(&history.events)
            .map(|(seq, event)| NumberedEvent {
                seq,
                event: event.clone(),
                created_at_ms: None,
            })
            .collect(),
    }
}

/// Records the scenarios that have no file yet when `CAIRN_RECORD_HISTORIES` is set; fails
/// naming them otherwise. Called before the replay, in the same test, so that a recording run
/// never replays a half-written file.
fn record_missing_scenarios() {
    let recording = std::env::var_os("CAIRN_RECORD_HISTORIES").is_some();
    let mut missing = Vec::new();
    for (name, history) in scenarios::all() {
        let path = directory().join(format!("{name}.json"));
        if path.exists() {
            continue;
        }
        if recording {
            let json = serde_json::to_string_pretty(&record(&history)).unwrap();
            std::fs::write(&path, json + "\n").unwrap();
        } else {
            missing.push(name);
        }
    }
    assert!(
        missing.is_empty(),
        "not recorded: {missing:?}; run CAIRN_RECORD_HISTORIES=1 cargo test --test agent_machine"
    );
}

#[test]
fn every_scenario_is_recorded_and_every_recorded_history_replays() {
    record_missing_scenarios();
    let mut paths: Vec<_> = std::fs::read_dir(directory())
        .expect("tests/histories/agent exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();

    let mut failures = Vec::new();
    for path in &paths {
        let name = path.file_name().unwrap().to_string_lossy();
        let text = std::fs::read_to_string(path).unwrap();
        let recorded: RecordedHistory = match serde_json::from_str(&text) {
            Ok(recorded) => recorded,
            Err(e) => {
                failures.push(format!("{name}: does not parse: {e}"));
                continue;
            }
        };
        let events = match recorded.events_in_order() {
            Ok(events) => events,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let ctx = MachineContext {
            execution_id: recorded.execution_id,
        };
        match replay(ctx, &events) {
            Ok(Some(state)) if state.status == recorded.status => {}
            Ok(state) => failures.push(format!(
                "{name}: replays to {:?}, recorded {:?}",
                state.map(|s| s.status),
                recorded.status
            )),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "recorded histories that no longer replay:\n{}",
        failures.join("\n")
    );
}

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

        // The row's snapshot is read with the start event, which fixed what it leaves out.
        let (_, end) = history.check();
        let text = serde_json::to_string(&end).unwrap();
        let mut stored: serde_json::Value = serde_json::from_str(&text).unwrap();
        let start: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&history.events[0]).unwrap()).unwrap();
        with_start(&mut stored, &start);
        let read = AgentState::deserialize(&stored).unwrap();
        assert_eq!(read, end, "{name}: the state snapshot");
    }
}
