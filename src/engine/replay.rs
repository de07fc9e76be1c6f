//! Replaying a stored history with the code of this server.

use uuid::Uuid;

use super::{Engine, EngineError};
use crate::domain::HistoryEvent;
use crate::machine::{ReplayError, Replayed, replay_kind};

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

impl Engine {
    /// Every event of an execution's history, in order.
    pub async fn full_history(&self, id: Uuid) -> Result<Vec<HistoryEvent>, EngineError> {
        let mut events = Vec::new();
        loop {
            let page = self
                .store
                .history(id, events.len() as u64, HISTORY_PAGE)
                .await?;
            let full = page.len() == HISTORY_PAGE as usize;
            events.extend(page.into_iter().map(|stored| stored.event));
            if !full {
                return Ok(events);
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
