//! What a retry may reuse from the history of the execution it retries.

use super::{AgentState, ReplayError};
use crate::domain::{HistoryEvent, TurnResult};

/// The turns of `events` that completed before `before_seq`, at most `max_turns` of them, with
/// the checkpoint the last of them ended with.
///
/// The events are folded through the transition table alone (not checked against the commands
/// the code would emit, as a replay does): a retry reuses what happened, and `before_seq` may
/// cut the history between an input and its commands. Turns an execution itself reused arrive
/// all at once with its start; their checkpoints in between were not recorded, so they are
/// reused all together or not at all.
pub fn reusable(
    events: &[HistoryEvent],
    before_seq: u64,
    max_turns: usize,
) -> Result<(Vec<TurnResult>, Option<serde_json::Value>), ReplayError> {
    let mut state: Option<AgentState> = None;
    // Every completed turn so far: the snapshot counts them, their outputs are in the events.
    let mut turns: Vec<TurnResult> = Vec::new();
    let mut reused: (Vec<TurnResult>, Option<serde_json::Value>) = (Vec::new(), None);
    for (i, event) in events.iter().enumerate() {
        let seq = i as u64 + 1;
        if seq >= before_seq {
            break;
        }
        let next = AgentState::apply(state, event)
            .map_err(|source| ReplayError::Invalid { seq, source })?;
        match event {
            HistoryEvent::ExecutionStarted {
                resume: Some(resume),
                ..
            } => turns.clone_from(&resume.turns),
            HistoryEvent::ActivityCompleted { output, usage, .. } => turns.push(TurnResult {
                output: output.clone(),
                usage: *usage,
            }),
            _ => {}
        }
        debug_assert_eq!(turns.len(), next.turns.len());
        let completed = next.turns.len();
        if completed <= max_turns && completed > reused.0.len() {
            reused = (turns.clone(), next.checkpoint.clone());
        }
        state = Some(next);
    }
    Ok(reused)
}
