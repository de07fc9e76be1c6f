//! Stored agent definitions.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Millis;

/// The namespace used when a request names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Whether an agent can be started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    /// The agent can be started.
    Active,
    /// The agent is kept for history but cannot be started; its name is free for a new agent.
    Archived,
}

impl AgentStatus {
    /// The name stored in the database and shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Active => "active",
            AgentStatus::Archived => "archived",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(AgentStatus::Active),
            "archived" => Some(AgentStatus::Archived),
            _ => None,
        }
    }
}

/// What a runtime needs to know about an agent to run a turn of it. Executions record this as it
/// was at start, so editing the agent never changes a running or replayed execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentSpec {
    /// The agent's id.
    pub id: Uuid,
    /// The agent's name, for messages.
    pub name: String,
    /// The runtime that runs it (`default`, `claude_code`, `echo`, ...).
    pub runtime: String,
    /// The model the runtime should use; may be empty when the runtime has its own default.
    pub model_id: String,
    /// Free-form configuration; runtime options live under `runtime_config` or at the top level,
    /// as each runtime documents.
    pub configuration: serde_json::Value,
}

/// A stored agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    /// The agent's id (UUIDv7).
    pub id: Uuid,
    /// The namespace it belongs to.
    pub namespace: String,
    /// Its name, unique among the active agents of its namespace.
    pub name: String,
    /// The runtime that runs it.
    pub runtime: String,
    /// The model id handed to the runtime.
    pub model_id: String,
    /// A JSON object.
    pub configuration: serde_json::Value,
    /// Active or archived.
    pub status: AgentStatus,
    /// When it was created.
    pub created_at: Millis,
    /// When it was last changed.
    pub updated_at: Millis,
    /// The optimistic version: 1 at creation, incremented by every update. A change made from
    /// an older version is refused, so two concurrent edits cannot silently lose one.
    pub version: u64,
}

impl Agent {
    /// The part of the agent an execution records at start.
    pub fn spec(&self) -> AgentSpec {
        AgentSpec {
            id: self.id,
            name: self.name.clone(),
            runtime: self.runtime.clone(),
            model_id: self.model_id.clone(),
            configuration: self.configuration.clone(),
        }
    }
}
