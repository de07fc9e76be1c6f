//! Replaying a stored history with the code of this server.

use uuid::Uuid;

use super::{Engine, EngineError};
use crate::domain::HistoryEvent;
use crate::machine::{ReplayError, Replayed, replay_kind};
use crate::store::{StoredChunk, StoredEvent};

/// What replaying a stored history found.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayReport {
    /// How many events the history has.
    pub events: u64,
    /// OK with the state's status, or the first event where code and history part ways.
    pub verdict: Result<Replayed, ReplayError>,
}

/// How many events one read of a history takes.
const HISTORY_PAGE: u32 = 1000;

/// How many chunks one read of an output takes.
const OUTPUT_PAGE: u32 = 512;

impl Engine {
    /// Every event of an execution's history, in order.
    pub async fn full_history(&self, id: Uuid) -> Result<Vec<HistoryEvent>, EngineError> {
        Ok(self
            .history_after(id, 0)
            .await?
            .into_iter()
            .map(|stored| stored.event)
            .collect())
    }

    /// The stored events of an execution's history after `after_seq`, in order, read in pages.
    pub async fn history_after(
        &self,
        id: Uuid,
        after_seq: u64,
    ) -> Result<Vec<StoredEvent>, EngineError> {
        let mut events: Vec<StoredEvent> = Vec::new();
        loop {
            let after = events.last().map_or(after_seq, |e| e.seq);
            let page = self.store.history(id, after, HISTORY_PAGE).await?;
            let full = page.len() == HISTORY_PAGE as usize;
            events.extend(page);
            if !full {
                return Ok(events);
            }
        }
    }

    /// Every output chunk of an execution, in order, read in pages.
    pub async fn full_output(&self, id: Uuid) -> Result<Vec<StoredChunk>, EngineError> {
        let mut chunks: Vec<StoredChunk> = Vec::new();
        loop {
            let after = chunks.last().map_or(0, |c| c.seq);
            let page = self.store.output(id, after, OUTPUT_PAGE).await?;
            let full = page.len() == OUTPUT_PAGE as usize;
            chunks.extend(page);
            if !full {
                return Ok(chunks);
            }
        }
    }

    /// Folds an execution's history through the current machine code and checks that the code
    /// emits the commands the history recorded. An error is about the request (no such
    /// execution, storage down); the verdict is in the report.
    pub async fn replay(&self, id: Uuid) -> Result<ReplayReport, EngineError> {
        let record = self.execution(id).await?;
        let events = self.full_history(id).await?;
        Ok(ReplayReport {
            events: events.len() as u64,
            verdict: replay_kind(record.kind, Engine::context(id), &events),
        })
    }
}
