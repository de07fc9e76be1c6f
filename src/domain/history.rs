//! A whole history as one JSON document: what `cairn exec history --json` exports, what
//! `cairn exec replay --file` reads, and the shape of the recorded histories under
//! `tests/histories/`, so a history taken from any database can be replayed anywhere.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{ExecutionKind, ExecutionStatus, HistoryEvent, Millis};

/// An execution's history with what replay needs besides the events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedHistory {
    /// The execution; it seeds retry jitter, so a replay under another id would diverge.
    pub execution_id: Uuid,
    /// Which machine replays it. Files recorded before teams existed are agent histories.
    #[serde(default = "agent_kind")]
    pub kind: ExecutionKind,
    /// The execution's status when the history was taken.
    pub status: ExecutionStatus,
    /// The events, numbered from 1.
    pub events: Vec<NumberedEvent>,
}

/// One event with its position in the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NumberedEvent {
    /// Its seq, from 1.
    pub seq: u64,
    /// The event, its fields inline beside `seq` (as the stores keep the payload).
    #[serde(flatten)]
    pub event: HistoryEvent,
    /// When it was written; informational, replay does not read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at_ms: Option<Millis>,
}

fn agent_kind() -> ExecutionKind {
    ExecutionKind::Agent
}

impl RecordedHistory {
    /// The events in order, after checking that they are numbered 1, 2, ... without a gap.
    pub fn events_in_order(&self) -> Result<Vec<HistoryEvent>, String> {
        for (i, numbered) in self.events.iter().enumerate() {
            let want = i as u64 + 1;
            if numbered.seq != want {
                return Err(format!(
                    "event {} has seq {}; seqs must be 1, 2, ... in order",
                    want, numbered.seq
                ));
            }
        }
        Ok(self.events.iter().map(|e| e.event.clone()).collect())
    }
}
