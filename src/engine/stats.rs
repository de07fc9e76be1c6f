//! Stats from the database for `GetStats`: agents by runtime and the executions of a window,
//! grouped, with the window's start taken from the engine's clock.

use std::time::Duration;

use super::{Engine, EngineError};
use crate::domain::Millis;
use crate::store::{AgentCounts, ExecutionStats, StatsGroup};

/// What `GetStats` answers.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsReport {
    /// The window's start: executions created at or after it are counted (0: all of them).
    pub since: Millis,
    /// How the executions are grouped.
    pub by: StatsGroup,
    /// Agents by runtime.
    pub agents: Vec<AgentCounts>,
    /// Executions by group, ordered by key.
    pub executions: Vec<ExecutionStats>,
}

impl Engine {
    /// Stats of `namespace`: executions created within `window` of now (all of them when
    /// `None`), grouped by `by`.
    pub async fn stats(
        &self,
        namespace: &str,
        window: Option<Duration>,
        by: StatsGroup,
    ) -> Result<StatsReport, EngineError> {
        let since = match window {
            None => 0,
            Some(window) => {
                let window = Millis::try_from(window.as_millis()).unwrap_or(Millis::MAX);
                self.now().saturating_sub(window).max(0)
            }
        };
        let store = self.store();
        Ok(StatsReport {
            since,
            by,
            agents: store.agent_counts(namespace).await?,
            executions: store.execution_stats(namespace, since, by).await?,
        })
    }
}
