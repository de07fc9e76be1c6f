//! Execution status and accounting.

use serde::{Deserialize, Serialize};

/// What an execution runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionKind {
    /// One agent, one or more turns.
    Agent,
    /// A team whose steps are child executions.
    Team,
}

impl ExecutionKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionKind::Agent => "agent",
            ExecutionKind::Team => "team",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "agent" => Some(ExecutionKind::Agent),
            "team" => Some(ExecutionKind::Team),
            _ => None,
        }
    }
}

/// The lifecycle of an execution. `Pending`, `Running` and `Waiting` are open; the rest are closed
/// and final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionStatus {
    /// Accepted; no attempt has started yet.
    Pending,
    /// At least one attempt has started.
    Running,
    /// Waiting for a person: a conversation for its next message, or a tool call for an
    /// approval (see `AgentState::waiting_for`).
    Waiting,
    /// Finished with a result.
    Completed,
    /// Finished with a failure.
    Failed,
    /// Finished because it was cancelled.
    Canceled,
}

impl ExecutionStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [ExecutionStatus; 6] = [
        ExecutionStatus::Pending,
        ExecutionStatus::Running,
        ExecutionStatus::Waiting,
        ExecutionStatus::Completed,
        ExecutionStatus::Failed,
        ExecutionStatus::Canceled,
    ];

    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Pending => "PENDING",
            ExecutionStatus::Running => "RUNNING",
            ExecutionStatus::Waiting => "WAITING",
            ExecutionStatus::Completed => "COMPLETED",
            ExecutionStatus::Failed => "FAILED",
            ExecutionStatus::Canceled => "CANCELED",
        }
    }

    /// Parses a name, case-insensitively.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(s))
    }

    /// Whether the execution has finished for good.
    pub fn is_closed(self) -> bool {
        matches!(
            self,
            ExecutionStatus::Completed | ExecutionStatus::Failed | ExecutionStatus::Canceled
        )
    }
}

/// Tokens, cost and tool calls, per activity and summed per execution.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Cost in US dollars, as the provider reported it.
    #[serde(with = "crate::domain::float")]
    pub cost_usd: f64,
    /// How many tool calls the runtime made.
    pub tool_calls: u64,
}

impl std::ops::Add for Usage {
    type Output = Usage;

    /// The sum of two usages. Counts saturate at `i64::MAX`, the most a BIGINT column holds, so
    /// a sum can never wrap or be stored as a negative number.
    fn add(self, other: Usage) -> Usage {
        let sum = |a: u64, b: u64| a.saturating_add(b).min(i64::MAX as u64);
        Usage {
            input_tokens: sum(self.input_tokens, other.input_tokens),
            output_tokens: sum(self.output_tokens, other.output_tokens),
            cost_usd: self.cost_usd + other.cost_usd,
            tool_calls: sum(self.tool_calls, other.tool_calls),
        }
    }
}
