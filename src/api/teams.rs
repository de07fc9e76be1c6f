//! `TeamService`: stored team definitions. Every member is checked at create and update: it
//! must be an existing, active agent; limits (members, parallel width, rounds) are enforced.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::error::invalid;
use super::pb::team_service_server::TeamService;
use super::{ApiState, pb, validate};
use crate::domain::{AgentStatus, Team, TeamConfig, TeamMember, TeamStrategy};
use crate::store::AgentKey;

/// The most members a team may have.
pub const MAX_MEMBERS: usize = 32;
/// The widest a parallel team may run.
pub const MAX_PARALLEL: u32 = 64;
/// The most rounds a supervisor may take.
pub const MAX_ROUNDS: u32 = 100;

/// The team service.
pub struct Teams {
    state: Arc<ApiState>,
}

impl Teams {
    /// A service over the shared API state.
    pub fn new(state: Arc<ApiState>) -> Self {
        Teams { state }
    }

    /// Resolves an agent a team names; the error says what is wrong with it.
    async fn agent(
        &self,
        namespace: &str,
        team: &str,
        what: &str,
        name: &str,
    ) -> Result<Uuid, Status> {
        if name.is_empty() {
            return Err(invalid(format!("{what} names no agent")));
        }
        let key = validate::agent_key(name)?;
        let store = self.state.engine.store();
        if let Some(agent) = store.get_agent(namespace, &key).await? {
            return match agent.status {
                AgentStatus::Active => Ok(agent.id),
                AgentStatus::Archived => Err(Status::failed_precondition(format!(
                    "{what} `{}` is an archived agent; teams take active agents",
                    agent.name
                ))),
            };
        }
        if name == team {
            return Err(invalid(format!(
                "{what} `{name}` is the team itself; a team cannot contain itself"
            )));
        }
        // Names resolve among active agents only; say so when the name is an archived agent's.
        let mut after = None;
        loop {
            let page = store.list_agents(namespace, true, after, 500).await?;
            if page
                .iter()
                .any(|a| a.name == name && a.status == AgentStatus::Archived)
            {
                return Err(Status::failed_precondition(format!(
                    "{what} `{name}` is an archived agent; teams take active agents"
                )));
            }
            match page.last() {
                Some(last) if page.len() == 500 => after = Some(last.id),
                _ => break,
            }
        }
        if store.get_team(namespace, &key).await?.is_some() {
            return Err(invalid(format!(
                "{what} `{name}` is a team; members are agents"
            )));
        }
        Err(Status::not_found(format!(
            "{what} `{name}` is not an agent of namespace `{namespace}`"
        )))
    }

    /// Checks a definition and resolves its agents; writes nothing.
    async fn resolve(
        &self,
        namespace: &str,
        name: &str,
        d: &pb::CreateTeamRequest,
    ) -> Result<(TeamStrategy, Vec<TeamMember>, TeamConfig), Status> {
        let strategy = TeamStrategy::parse(&d.strategy).ok_or_else(|| {
            let known: Vec<&str> = TeamStrategy::ALL.iter().map(|s| s.as_str()).collect();
            invalid(format!(
                "strategy `{}` is unknown; use one of {}",
                validate::quote(&d.strategy),
                known.join(", ")
            ))
        })?;
        if d.members.is_empty() {
            return Err(invalid("a team needs at least one member"));
        }
        if d.members.len() > MAX_MEMBERS {
            return Err(invalid(format!(
                "{} members given; a team has at most {MAX_MEMBERS}",
                d.members.len()
            )));
        }
        let mut members = Vec::with_capacity(d.members.len());
        for (i, m) in d.members.iter().enumerate() {
            validate::text(
                &format!("member {} role", i + 1),
                &m.role,
                validate::limits::MAX_ROLE_BYTES,
            )?;
            let agent_id = self
                .agent(namespace, name, &format!("member {}", i + 1), &m.agent)
                .await?;
            members.push(TeamMember {
                agent_id,
                role: m.role.clone(),
            });
        }
        let mut config = TeamConfig {
            continue_on_failure: d.continue_on_failure,
            ..TeamConfig::default()
        };
        if d.max_rounds > 0 {
            config.max_rounds = d.max_rounds;
        }
        if d.max_parallel > 0 {
            config.max_parallel = d.max_parallel;
        }
        if config.max_rounds > MAX_ROUNDS {
            return Err(invalid(format!(
                "max_rounds {} is over the limit of {MAX_ROUNDS}",
                config.max_rounds
            )));
        }
        if config.max_parallel > MAX_PARALLEL {
            return Err(invalid(format!(
                "max_parallel {} is over the limit of {MAX_PARALLEL}",
                config.max_parallel
            )));
        }
        match (strategy, d.aggregator.is_empty(), d.leader.is_empty()) {
            (TeamStrategy::Supervisor, _, true) => {
                return Err(invalid("a supervisor team needs a leader agent"));
            }
            (TeamStrategy::Supervisor, false, _) => {
                return Err(invalid("only parallel teams take an aggregator"));
            }
            (TeamStrategy::Parallel, _, false) | (TeamStrategy::Sequential, _, false) => {
                return Err(invalid("only supervisor teams take a leader"));
            }
            (TeamStrategy::Sequential, false, _) => {
                return Err(invalid("only parallel teams take an aggregator"));
            }
            _ => {}
        }
        if !d.aggregator.is_empty() {
            config.aggregator = Some(
                self.agent(namespace, name, "aggregator", &d.aggregator)
                    .await?,
            );
        }
        if !d.leader.is_empty() {
            config.leader = Some(self.agent(namespace, name, "leader", &d.leader).await?);
        }
        Ok((strategy, members, config))
    }

    async fn find(&self, namespace: &str, team: &str) -> Result<Team, Status> {
        if team.is_empty() {
            return Err(invalid("team is required: give its name or id"));
        }
        let key = validate::agent_key(team)?;
        self.state
            .engine
            .store()
            .get_team(namespace, &key)
            .await?
            .ok_or_else(|| {
                Status::not_found(match key {
                    AgentKey::Id(id) => format!("no team with id {id} in namespace `{namespace}`"),
                    AgentKey::Name(name) => {
                        format!("no active team named `{name}` in namespace `{namespace}`")
                    }
                })
            })
    }

    /// The team as clients see it, with member names.
    async fn view(&self, team: &Team) -> Result<pb::Team, Status> {
        let store = self.state.engine.store();
        let mut members = Vec::with_capacity(team.members.len());
        for m in &team.members {
            let name = store
                .get_agent(&team.namespace, &AgentKey::Id(m.agent_id))
                .await?
                .map(|a| a.name)
                .unwrap_or_default();
            members.push(pb::TeamMember {
                agent: name,
                role: m.role.clone(),
                agent_id: m.agent_id.to_string(),
            });
        }
        Ok(pb::Team {
            id: team.id.to_string(),
            namespace: team.namespace.clone(),
            name: team.name.clone(),
            strategy: team.strategy.as_str().into(),
            members,
            configuration_json: serde_json::to_string(&team.config).unwrap_or_default(),
            status: team.status.as_str().into(),
            created_at_ms: team.created_at,
            updated_at_ms: team.updated_at,
        })
    }
}

#[tonic::async_trait]
impl TeamService for Teams {
    async fn create_team(
        &self,
        request: Request<pb::CreateTeamRequest>,
    ) -> Result<Response<pb::Team>, Status> {
        let r = request.into_inner();
        let namespace = validate::namespace(&r.namespace)?;
        let name = validate::agent_name(&r.name)?;
        let (strategy, members, config) = self.resolve(&namespace, &name, &r).await?;
        let now = self.state.engine.now();
        let team = Team {
            id: Uuid::now_v7(),
            namespace,
            name,
            strategy,
            members,
            config,
            status: AgentStatus::Active,
            created_at: now,
            updated_at: now,
        };
        self.state.engine.store().insert_team(&team).await?;
        Ok(Response::new(self.view(&team).await?))
    }

    async fn get_team(
        &self,
        request: Request<pb::GetTeamRequest>,
    ) -> Result<Response<pb::Team>, Status> {
        let r = request.into_inner();
        let team = self
            .find(&validate::namespace(&r.namespace)?, &r.team)
            .await?;
        Ok(Response::new(self.view(&team).await?))
    }

    async fn list_teams(
        &self,
        request: Request<pb::ListTeamsRequest>,
    ) -> Result<Response<pb::ListTeamsResponse>, Status> {
        let r = request.into_inner();
        let namespace = validate::namespace(&r.namespace)?;
        let size = validate::page_size(r.page_size, &self.state.limits)?;
        let after = validate::page_token(&r.page_token)?;
        let teams = self
            .state
            .engine
            .store()
            .list_teams(&namespace, r.include_archived, after, size)
            .await?;
        let mut views = Vec::with_capacity(teams.len());
        for team in &teams {
            views.push(self.view(team).await?);
        }
        Ok(Response::new(pb::ListTeamsResponse {
            next_page_token: validate::next_page_token(
                teams.last().map(|t| t.id),
                teams.len(),
                size,
            ),
            teams: views,
        }))
    }

    async fn update_team(
        &self,
        request: Request<pb::UpdateTeamRequest>,
    ) -> Result<Response<pb::Team>, Status> {
        let r = request.into_inner();
        let namespace = validate::namespace(&r.namespace)?;
        let mut team = self.find(&namespace, &r.team).await?;
        let definition = r
            .definition
            .ok_or_else(|| invalid("definition is required"))?;
        let (strategy, members, config) = self.resolve(&namespace, &team.name, &definition).await?;
        team.strategy = strategy;
        team.members = members;
        team.config = config;
        team.updated_at = self.state.engine.now();
        self.state.engine.store().update_team(&team).await?;
        Ok(Response::new(self.view(&team).await?))
    }

    async fn archive_team(
        &self,
        request: Request<pb::ArchiveTeamRequest>,
    ) -> Result<Response<pb::Team>, Status> {
        let r = request.into_inner();
        let namespace = validate::namespace(&r.namespace)?;
        let mut team = self.find(&namespace, &r.team).await?;
        if team.status != AgentStatus::Archived {
            team.status = AgentStatus::Archived;
            team.updated_at = self.state.engine.now();
            self.state.engine.store().update_team(&team).await?;
        }
        Ok(Response::new(self.view(&team).await?))
    }
}
