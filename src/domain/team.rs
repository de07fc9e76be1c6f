//! Stored team definitions: members (agents, each with its own runtime) and a strategy.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{AgentSpec, AgentStatus, Millis};

/// How a team runs its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TeamStrategy {
    /// Members in order; each gets the team prompt and the previous member's result.
    Sequential,
    /// All members at once (up to `max_parallel`); results gathered in member order, then an
    /// optional aggregator member writes the answer.
    Parallel,
    /// A leader agent picks the next member and its instruction until it answers.
    Supervisor,
}

impl TeamStrategy {
    /// Every strategy.
    pub const ALL: [TeamStrategy; 3] = [
        TeamStrategy::Sequential,
        TeamStrategy::Parallel,
        TeamStrategy::Supervisor,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TeamStrategy::Sequential => "sequential",
            TeamStrategy::Parallel => "parallel",
            TeamStrategy::Supervisor => "supervisor",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// A team's settings and limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamConfig {
    /// A failed member does not fail the team; the result records who failed and why.
    #[serde(default)]
    pub continue_on_failure: bool,
    /// Parallel: the agent that writes the answer from the gathered results.
    #[serde(default)]
    pub aggregator: Option<Uuid>,
    /// Supervisor: the agent that picks the next member.
    #[serde(default)]
    pub leader: Option<Uuid>,
    /// Supervisor: the most member steps before the team fails.
    #[serde(default = "default_max_rounds")]
    pub max_rounds: u32,
    /// Parallel: the most members running at once.
    #[serde(default = "default_max_parallel")]
    pub max_parallel: u32,
}

fn default_max_rounds() -> u32 {
    8
}

fn default_max_parallel() -> u32 {
    8
}

impl Default for TeamConfig {
    fn default() -> Self {
        TeamConfig {
            continue_on_failure: false,
            aggregator: None,
            leader: None,
            max_rounds: default_max_rounds(),
            max_parallel: default_max_parallel(),
        }
    }
}

/// One member of a stored team.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamMember {
    /// The agent.
    pub agent_id: Uuid,
    /// What it does in the team (free text, shown to a supervisor).
    pub role: String,
}

/// A stored team.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Team {
    /// Its id (UUIDv7).
    pub id: Uuid,
    /// Its namespace.
    pub namespace: String,
    /// Its name, unique among active teams of the namespace.
    pub name: String,
    /// How it runs.
    pub strategy: TeamStrategy,
    /// Members, in order.
    pub members: Vec<TeamMember>,
    /// Settings and limits.
    pub config: TeamConfig,
    /// Active or archived.
    pub status: AgentStatus,
    /// Created.
    pub created_at: Millis,
    /// Last changed.
    pub updated_at: Millis,
    /// The optimistic version: 1 at creation, incremented by every update (see
    /// [`Agent::version`](super::Agent::version)).
    pub version: u64,
}

/// A member as a team execution records it at start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberSpec {
    /// The agent as it was at start.
    pub agent: AgentSpec,
    /// Its role.
    pub role: String,
}

/// What a team execution records at start: the team with every agent resolved, so later edits
/// never change a running or replayed team.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamSpec {
    /// The team's id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// How it runs.
    pub strategy: TeamStrategy,
    /// Members, in order.
    pub members: Vec<MemberSpec>,
    /// Parallel: the aggregator.
    pub aggregator: Option<MemberSpec>,
    /// Supervisor: the leader.
    pub leader: Option<MemberSpec>,
    /// Whether a failed member fails the team.
    pub continue_on_failure: bool,
    /// Supervisor round limit.
    pub max_rounds: u32,
    /// Parallel width.
    pub max_parallel: u32,
}

/// A child of a failed team execution that its retry reuses instead of running again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReusedChild {
    /// Its key in the team.
    pub key: String,
    /// The member it ran.
    pub slot: super::MemberSlot,
    /// Its prompt.
    pub prompt: String,
    /// Its result.
    pub result: serde_json::Value,
    /// The child execution that produced it.
    pub execution_id: Uuid,
}
