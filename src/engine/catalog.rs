//! The catalog: the agents and teams executions start from. Creating, reading, listing, updating
//! and archiving them goes through here, so the rules that hold for every caller live in one
//! place: an agent suits its runtime (built in, or external and checked against its registered
//! schema), an active name is unique (the store's index says so), a
//! team's members are active agents, and every update is made from the version it read.
//!
//! Optimistic versions: an agent or team carries the version it was read at. An update is
//! written only while that version is still the stored one (the store's conditional update), and
//! moves it on by one; a client may also say which version it edited (`expected_version`). A
//! stale version, the client's or the one read here, changes nothing and is a
//! `StoreError::VersionConflict` (`ABORTED` at the edge): read it again and retry.

use std::collections::HashMap;

use uuid::Uuid;

use super::{Engine, EngineError};
use crate::domain::{Agent, AgentStatus, Team, TeamConfig, TeamMember, TeamStrategy};
use crate::runtime::RuntimeRegistry;
use crate::store::{AgentKey, StoreError};

/// A new agent, its fields already checked for shape at the edge.
#[derive(Debug, Clone)]
pub struct NewAgent {
    /// The namespace it goes into.
    pub namespace: String,
    /// Its name, which must be free among the namespace's active agents.
    pub name: String,
    /// The runtime that runs it; must be one of the registry's.
    pub runtime: String,
    /// The model id handed to the runtime (may be empty).
    pub model_id: String,
    /// A JSON object the runtime must accept.
    pub configuration: serde_json::Value,
}

/// A change to an agent: each field given replaces the stored one.
#[derive(Debug, Clone, Default)]
pub struct AgentChange {
    /// A new runtime.
    pub runtime: Option<String>,
    /// A new model id.
    pub model_id: Option<String>,
    /// A new configuration (replaces the old one whole).
    pub configuration: Option<serde_json::Value>,
    /// The version the client edited; the change is refused unless it is the stored one.
    pub expected_version: Option<u64>,
}

/// A team member as a request names it.
#[derive(Debug, Clone)]
pub struct MemberRef {
    /// The agent, by name (among active agents) or id.
    pub agent: AgentKey,
    /// What it does in the team.
    pub role: String,
}

/// A team's definition as a request gives it, checked for shape at the edge (strategy, counts,
/// limits, which of leader and aggregator the strategy takes); its agents are resolved here.
#[derive(Debug, Clone)]
pub struct TeamDefinition {
    /// How the team runs.
    pub strategy: TeamStrategy,
    /// Its members, in order (at least one).
    pub members: Vec<MemberRef>,
    /// Parallel: the agent that writes the answer.
    pub aggregator: Option<AgentKey>,
    /// Supervisor: the agent that picks the next member.
    pub leader: Option<AgentKey>,
    /// Whether a failed member leaves the team running.
    pub continue_on_failure: bool,
    /// Supervisor: the most member steps.
    pub max_rounds: u32,
    /// Parallel: the most members at once.
    pub max_parallel: u32,
}

/// Refuses a change made from `expected` when the stored version is another.
fn expect_version(
    kind: &'static str,
    name: &str,
    expected: Option<u64>,
    stored: u64,
) -> Result<(), EngineError> {
    match expected {
        Some(expected) if expected != stored => Err(StoreError::VersionConflict {
            kind,
            name: name.to_string(),
            expected,
            current: Some(stored),
        }
        .into()),
        _ => Ok(()),
    }
}

/// "No such agent", worded by how the request named it.
pub fn agent_not_found(namespace: &str, key: &AgentKey) -> EngineError {
    EngineError::NotFound(match key {
        AgentKey::Id(id) => format!("no agent with id {id} in namespace `{namespace}`"),
        AgentKey::Name(name) => {
            format!("no active agent named `{name}` in namespace `{namespace}`")
        }
    })
}

fn team_not_found(namespace: &str, key: &AgentKey) -> EngineError {
    EngineError::NotFound(match key {
        AgentKey::Id(id) => format!("no team with id {id} in namespace `{namespace}`"),
        AgentKey::Name(name) => {
            format!("no active team named `{name}` in namespace `{namespace}`")
        }
    })
}

impl Engine {
    /// Creates an agent (version 1) after checking it against its runtime; `AlreadyExists` when
    /// an active agent of the namespace has its name.
    pub async fn create_agent(
        &self,
        runtimes: &RuntimeRegistry,
        new: NewAgent,
    ) -> Result<Agent, EngineError> {
        let now = self.now();
        let agent = Agent {
            id: Uuid::now_v7(),
            namespace: new.namespace,
            name: new.name,
            runtime: new.runtime,
            model_id: new.model_id,
            configuration: new.configuration,
            status: AgentStatus::Active,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        self.check_runtime(runtimes, &agent).await?;
        self.store.insert_agent(&agent).await?;
        Ok(agent)
    }

    /// One agent by id (whatever its status) or by active name; `NotFound` when there is none.
    pub async fn agent(&self, namespace: &str, key: &AgentKey) -> Result<Agent, EngineError> {
        self.store
            .get_agent(namespace, key)
            .await?
            .ok_or_else(|| agent_not_found(namespace, key))
    }

    /// A page of a namespace's agents in id order, after `after`.
    pub async fn agents(
        &self,
        namespace: &str,
        include_archived: bool,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Agent>, EngineError> {
        Ok(self
            .store
            .list_agents(namespace, include_archived, after, limit)
            .await?)
    }

    /// Changes an active agent's runtime, model or configuration, checked against the runtime
    /// it ends up with. Returns the agent as stored, one version on.
    pub async fn update_agent(
        &self,
        runtimes: &RuntimeRegistry,
        namespace: &str,
        key: &AgentKey,
        change: AgentChange,
    ) -> Result<Agent, EngineError> {
        let mut agent = self.agent(namespace, key).await?;
        expect_version("agent", &agent.name, change.expected_version, agent.version)?;
        if agent.status == AgentStatus::Archived {
            return Err(EngineError::FailedPrecondition(format!(
                "agent `{}` is archived and cannot be changed",
                agent.name
            )));
        }
        if let Some(runtime) = change.runtime {
            agent.runtime = runtime;
        }
        if let Some(model_id) = change.model_id {
            agent.model_id = model_id;
        }
        if let Some(configuration) = change.configuration {
            agent.configuration = configuration;
        }
        self.check_runtime(runtimes, &agent).await?;
        agent.updated_at = self.now();
        self.store.update_agent(&agent).await?;
        agent.version += 1;
        Ok(agent)
    }

    /// Checks an agent against its runtime: a built-in one's own checks, or an external one's
    /// registered schema; an unknown runtime is an error that lists the runtimes there are.
    async fn check_runtime(
        &self,
        runtimes: &RuntimeRegistry,
        agent: &Agent,
    ) -> Result<(), EngineError> {
        let Some(runtime) = runtimes.get(&agent.runtime) else {
            return self.check_external(runtimes, agent).await;
        };
        runtime.validate(&agent.spec()).map_err(|e| {
            EngineError::InvalidArgument(format!(
                "configuration does not suit runtime `{}`: {e}",
                agent.runtime
            ))
        })
    }

    /// Archives an agent: it cannot be started any more and its name is free again. Archiving
    /// an archived agent changes nothing (and keeps its version).
    pub async fn archive_agent(
        &self,
        namespace: &str,
        key: &AgentKey,
        expected_version: Option<u64>,
    ) -> Result<Agent, EngineError> {
        let mut agent = self.agent(namespace, key).await?;
        expect_version("agent", &agent.name, expected_version, agent.version)?;
        if agent.status != AgentStatus::Archived {
            agent.status = AgentStatus::Archived;
            agent.updated_at = self.now();
            self.store.update_agent(&agent).await?;
            agent.version += 1;
        }
        Ok(agent)
    }

    /// The names of the agents `teams` name as members, by id, whatever their status: one read
    /// for a whole page of teams.
    pub async fn member_names(
        &self,
        namespace: &str,
        teams: &[Team],
    ) -> Result<HashMap<Uuid, String>, EngineError> {
        let mut ids: Vec<Uuid> = teams
            .iter()
            .flat_map(|t| t.members.iter().map(|m| m.agent_id))
            .collect();
        ids.sort();
        ids.dedup();
        let agents = self.store.get_agents(namespace, &ids).await?;
        Ok(agents.into_iter().map(|a| (a.id, a.name)).collect())
    }

    /// Creates a team (version 1) whose agents all resolve to active agents; `AlreadyExists`
    /// when an active team of the namespace has its name.
    pub async fn create_team(
        &self,
        namespace: &str,
        name: &str,
        definition: TeamDefinition,
    ) -> Result<Team, EngineError> {
        let (members, config) = self.resolve(namespace, name, &definition).await?;
        let now = self.now();
        let team = Team {
            id: Uuid::now_v7(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            strategy: definition.strategy,
            members,
            config,
            status: AgentStatus::Active,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        self.store.insert_team(&team).await?;
        Ok(team)
    }

    /// One team by id (whatever its status) or by active name; `NotFound` when there is none.
    pub async fn team(&self, namespace: &str, key: &AgentKey) -> Result<Team, EngineError> {
        self.store
            .get_team(namespace, key)
            .await?
            .ok_or_else(|| team_not_found(namespace, key))
    }

    /// A page of a namespace's teams in id order, after `after`.
    pub async fn teams(
        &self,
        namespace: &str,
        include_archived: bool,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Team>, EngineError> {
        Ok(self
            .store
            .list_teams(namespace, include_archived, after, limit)
            .await?)
    }

    /// Replaces a team's definition. Returns the team as stored, one version on.
    pub async fn update_team(
        &self,
        namespace: &str,
        key: &AgentKey,
        definition: TeamDefinition,
        expected_version: Option<u64>,
    ) -> Result<Team, EngineError> {
        let mut team = self.team(namespace, key).await?;
        expect_version("team", &team.name, expected_version, team.version)?;
        let (members, config) = self.resolve(namespace, &team.name, &definition).await?;
        team.strategy = definition.strategy;
        team.members = members;
        team.config = config;
        team.updated_at = self.now();
        self.store.update_team(&team).await?;
        team.version += 1;
        Ok(team)
    }

    /// Archives a team; archiving an archived team changes nothing (and keeps its version).
    pub async fn archive_team(
        &self,
        namespace: &str,
        key: &AgentKey,
        expected_version: Option<u64>,
    ) -> Result<Team, EngineError> {
        let mut team = self.team(namespace, key).await?;
        expect_version("team", &team.name, expected_version, team.version)?;
        if team.status != AgentStatus::Archived {
            team.status = AgentStatus::Archived;
            team.updated_at = self.now();
            self.store.update_team(&team).await?;
            team.version += 1;
        }
        Ok(team)
    }

    /// Resolves a definition's agents; writes nothing.
    async fn resolve(
        &self,
        namespace: &str,
        team: &str,
        d: &TeamDefinition,
    ) -> Result<(Vec<TeamMember>, TeamConfig), EngineError> {
        let mut members = Vec::with_capacity(d.members.len());
        for (i, m) in d.members.iter().enumerate() {
            let what = format!("member {}", i + 1);
            members.push(TeamMember {
                agent_id: self.team_agent(namespace, team, &what, &m.agent).await?,
                role: m.role.clone(),
            });
        }
        let mut config = TeamConfig {
            continue_on_failure: d.continue_on_failure,
            max_rounds: d.max_rounds,
            max_parallel: d.max_parallel,
            ..TeamConfig::default()
        };
        if let Some(aggregator) = &d.aggregator {
            config.aggregator = Some(
                self.team_agent(namespace, team, "aggregator", aggregator)
                    .await?,
            );
        }
        if let Some(leader) = &d.leader {
            config.leader = Some(self.team_agent(namespace, team, "leader", leader).await?);
        }
        Ok((members, config))
    }

    /// Resolves an agent a team names (as `what`); the error says what is wrong with it.
    async fn team_agent(
        &self,
        namespace: &str,
        team: &str,
        what: &str,
        key: &AgentKey,
    ) -> Result<Uuid, EngineError> {
        let archived = |name: &str| {
            EngineError::FailedPrecondition(format!(
                "{what} `{name}` is an archived agent; teams take active agents"
            ))
        };
        if let Some(agent) = self.store.get_agent(namespace, key).await? {
            return match agent.status {
                AgentStatus::Active => Ok(agent.id),
                AgentStatus::Archived => Err(archived(&agent.name)),
            };
        }
        let shown = match key {
            AgentKey::Id(id) => id.to_string(),
            AgentKey::Name(name) => name.clone(),
        };
        if let AgentKey::Name(name) = key {
            if name == team {
                return Err(EngineError::InvalidArgument(format!(
                    "{what} `{name}` is the team itself; a team cannot contain itself"
                )));
            }
            // Names resolve among active agents only; say so when the name is an archived one's.
            if self
                .store
                .newest_agent_named(namespace, name)
                .await?
                .is_some()
            {
                return Err(archived(name));
            }
        }
        if self.store.get_team(namespace, key).await?.is_some() {
            return Err(EngineError::InvalidArgument(format!(
                "{what} `{shown}` is a team; members are agents"
            )));
        }
        Err(EngineError::NotFound(format!(
            "{what} `{shown}` is not an agent of namespace `{namespace}`"
        )))
    }
}
