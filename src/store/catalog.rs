//! The catalog: agents and teams (with their members). The SQL is in `backend/catalog.rs`.

use async_trait::async_trait;
use uuid::Uuid;

use super::StoreError;
use crate::domain::{Agent, Team};

/// How an agent is named in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentKey {
    /// By id.
    Id(Uuid),
    /// By name (among active agents).
    Name(String),
}

/// Agents and teams.
#[async_trait]
pub trait Catalog: Send + Sync {
    /// Inserts an agent; `AlreadyExists` when an active agent of the namespace has its name.
    async fn insert_agent(&self, agent: &Agent) -> Result<(), StoreError>;
    /// Overwrites an agent's mutable fields (runtime, model, configuration, status, updated_at).
    async fn update_agent(&self, agent: &Agent) -> Result<(), StoreError>;
    /// One agent by id or by active name.
    async fn get_agent(&self, namespace: &str, key: &AgentKey)
    -> Result<Option<Agent>, StoreError>;
    /// Agents of a namespace ordered by id, after `after`.
    async fn list_agents(
        &self,
        namespace: &str,
        include_archived: bool,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Agent>, StoreError>;

    /// Inserts a team with its members; `AlreadyExists` when an active team has its name.
    async fn insert_team(&self, team: &Team) -> Result<(), StoreError>;
    /// Overwrites a team's strategy, configuration, status and members.
    async fn update_team(&self, team: &Team) -> Result<(), StoreError>;
    /// One team by id or by active name, with its members in order.
    async fn get_team(&self, namespace: &str, key: &AgentKey) -> Result<Option<Team>, StoreError>;
    /// Teams of a namespace ordered by id, after `after`.
    async fn list_teams(
        &self,
        namespace: &str,
        include_archived: bool,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Team>, StoreError>;
}
