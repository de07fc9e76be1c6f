//! The catalog: agents and teams (with their members). The SQL is in `backend/catalog.rs`.

use async_trait::async_trait;
use uuid::Uuid;

use super::StoreError;
use crate::domain::{Agent, Team};

/// How an agent is named in a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AgentKey {
    /// By id.
    Id(Uuid),
    /// By name (among active agents).
    Name(String),
}

/// Agents and teams.
#[async_trait]
pub trait Catalog: Send + Sync {
    /// Inserts an agent (with the version it carries, 1 for a new one); `AlreadyExists` when an
    /// active agent of the namespace has its name.
    async fn insert_agent(&self, agent: &Agent) -> Result<(), StoreError>;
    /// Overwrites an agent's mutable fields (runtime, model, configuration, status, updated_at)
    /// if its stored version is still `agent.version`, the version the change was made from,
    /// and increments the stored version to `agent.version + 1`. `VersionConflict` when the
    /// stored version differs, `AlreadyExists` when the change would make a second active agent
    /// of the name; either way nothing is written.
    async fn update_agent(&self, agent: &Agent) -> Result<(), StoreError>;
    /// One agent by id (whatever its status) or by active name.
    async fn get_agent(&self, namespace: &str, key: &AgentKey)
    -> Result<Option<Agent>, StoreError>;
    /// The agents of a namespace with the given ids, whatever their status, in id order; ids
    /// with no agent are left out. One read however many ids (for names in views of teams).
    async fn get_agents(&self, namespace: &str, ids: &[Uuid]) -> Result<Vec<Agent>, StoreError>;
    /// The newest agent (highest id) of a namespace named `name`, whatever its status: names
    /// resolve among active agents only, and this says whether a name that does not resolve is
    /// an archived agent's.
    async fn newest_agent_named(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Agent>, StoreError>;
    /// Agents of a namespace ordered by id, after `after`.
    async fn list_agents(
        &self,
        namespace: &str,
        include_archived: bool,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Agent>, StoreError>;

    /// Inserts a team with its members (and the version it carries, 1 for a new one);
    /// `AlreadyExists` when an active team has its name.
    async fn insert_team(&self, team: &Team) -> Result<(), StoreError>;
    /// Overwrites a team's strategy, configuration, status, updated_at and members if its
    /// stored version is still `team.version`, and increments the stored version to
    /// `team.version + 1`; `VersionConflict` (nothing written) when the stored version differs.
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
