//! Aggregates over executions and agents for `GetStats` / `cairn stats`, computed by the
//! database with grouped queries, so they are right across restarts and servers. The SQL is in
//! `backend/stats.rs`.

use async_trait::async_trait;

use super::StoreError;
use crate::domain::Millis;

/// Grouped counts and sums of agents and executions.
#[async_trait]
pub trait Stats: Send + Sync {
    /// Agents of `namespace` by runtime, active and archived, ordered by runtime.
    async fn agent_counts(&self, namespace: &str) -> Result<Vec<AgentCounts>, StoreError>;
    /// Executions of `namespace` created at or after `since`, grouped by `by`, ordered by key.
    async fn execution_stats(
        &self,
        namespace: &str,
        since: Millis,
        by: StatsGroup,
    ) -> Result<Vec<ExecutionStats>, StoreError>;
}

/// What executions are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StatsGroup {
    /// The runtime the execution ran on (`team` for a team's own execution).
    #[default]
    Runtime,
    /// The agent's name (the team's, for a team execution).
    Agent,
    /// The agent's current `model_id` (empty for runtimes and teams without one).
    Model,
}

impl StatsGroup {
    /// Every grouping, as the CLI and the API name them.
    pub const ALL: [StatsGroup; 3] = [StatsGroup::Runtime, StatsGroup::Agent, StatsGroup::Model];

    /// Its name: `runtime`, `agent` or `model`.
    pub fn as_str(self) -> &'static str {
        match self {
            StatsGroup::Runtime => "runtime",
            StatsGroup::Agent => "agent",
            StatsGroup::Model => "model",
        }
    }

    /// Parses a name (exactly as [`as_str`](Self::as_str) writes it).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.as_str() == s)
    }
}

/// How many agents of one runtime there are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentCounts {
    /// The runtime.
    pub runtime: String,
    /// Agents that can be started.
    pub active: u64,
    /// Archived agents.
    pub archived: u64,
}

/// The executions of one group in the window.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExecutionStats {
    /// The group's runtime, agent name or model.
    pub key: String,
    /// Executions by status.
    pub pending: u64,
    /// See `pending`.
    pub running: u64,
    /// See `pending`.
    pub completed: u64,
    /// See `pending`.
    pub failed: u64,
    /// See `pending`.
    pub canceled: u64,
    /// Median duration of the closed executions, in milliseconds (linear interpolation between
    /// the two nearest, as PostgreSQL's `percentile_cont`); `None` when none has closed.
    pub duration_p50_ms: Option<f64>,
    /// 95th percentile, computed the same way.
    pub duration_p95_ms: Option<f64>,
    /// Mean duration of the closed executions.
    pub duration_mean_ms: Option<f64>,
    /// Token, cost and tool-call sums over every execution of the group (open ones count what
    /// their finished attempts reported so far).
    pub input_tokens: u64,
    /// See `input_tokens`.
    pub output_tokens: u64,
    /// See `input_tokens`.
    pub cost_usd: f64,
    /// See `input_tokens`.
    pub tool_calls: u64,
}

impl ExecutionStats {
    /// Every execution of the group.
    pub fn total(&self) -> u64 {
        self.pending + self.running + self.completed + self.failed + self.canceled
    }

    /// Failed executions as a share of the closed ones (0 when none has closed).
    pub fn error_rate(&self) -> f64 {
        let closed = self.completed + self.failed + self.canceled;
        if closed == 0 {
            0.0
        } else {
            self.failed as f64 / closed as f64
        }
    }
}
