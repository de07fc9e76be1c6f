//! `TeamService`: stored team definitions. The shape of a definition is checked here (strategy,
//! limits on members, parallel width and rounds); the engine's catalog checks that every agent
//! it names is an existing, active agent, and writes it.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::agents::expected_version;
use super::error::invalid;
use super::pb::team_service_server::TeamService;
use super::tenancy::Scope;
use super::{ApiState, convert, pb, validate};
use crate::domain::{Team, TeamConfig, TeamStrategy};
use crate::engine::catalog::{MemberRef, TeamDefinition};
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

    /// The team as clients see it, with member names.
    async fn view(&self, team: Team) -> Result<pb::Team, Status> {
        let names = self
            .state
            .engine
            .member_names(&team.namespace, std::slice::from_ref(&team))
            .await?;
        Ok(convert::team(&team, &names))
    }
}

/// An agent a team names, by name or id; `what` says which one for messages.
fn agent_ref(what: &str, agent: &str) -> Result<AgentKey, Status> {
    if agent.is_empty() {
        return Err(invalid(format!("{what} names no agent")));
    }
    validate::agent_key(agent)
}

/// Checks a definition's shape (strategy, counts, limits, which of leader and aggregator the
/// strategy takes); the engine resolves its agents.
fn definition(d: &pb::CreateTeamRequest) -> Result<TeamDefinition, Status> {
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
        let what = format!("member {}", i + 1);
        validate::text(
            &format!("{what} role"),
            &m.role,
            validate::limits::MAX_ROLE_BYTES,
        )?;
        members.push(MemberRef {
            agent: agent_ref(&what, &m.agent)?,
            role: m.role.clone(),
        });
    }
    let defaults = TeamConfig::default();
    let max_rounds = match d.max_rounds {
        0 => defaults.max_rounds,
        n => n,
    };
    let max_parallel = match d.max_parallel {
        0 => defaults.max_parallel,
        n => n,
    };
    if max_rounds > MAX_ROUNDS {
        return Err(invalid(format!(
            "max_rounds {max_rounds} is over the limit of {MAX_ROUNDS}"
        )));
    }
    if max_parallel > MAX_PARALLEL {
        return Err(invalid(format!(
            "max_parallel {max_parallel} is over the limit of {MAX_PARALLEL}"
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
    let optional = |what: &str, agent: &str| match agent {
        "" => Ok(None),
        agent => agent_ref(what, agent).map(Some),
    };
    Ok(TeamDefinition {
        strategy,
        members,
        aggregator: optional("aggregator", &d.aggregator)?,
        leader: optional("leader", &d.leader)?,
        continue_on_failure: d.continue_on_failure,
        max_rounds,
        max_parallel,
    })
}

/// A team named by name or id.
fn team_key(team: &str) -> Result<AgentKey, Status> {
    if team.is_empty() {
        return Err(invalid("team is required: give its name or id"));
    }
    validate::agent_key(team)
}

#[tonic::async_trait]
impl TeamService for Teams {
    async fn create_team(
        &self,
        request: Request<pb::CreateTeamRequest>,
    ) -> Result<Response<pb::Team>, Status> {
        let scope = Scope::of(&request)?;
        let r = request.into_inner();
        let namespace = scope.namespace(&r.namespace)?;
        let name = validate::agent_name(&r.name)?;
        let definition = definition(&r)?;
        let engine = &self.state.engine;
        let team = engine.create_team(&namespace, &name, definition).await?;
        Ok(Response::new(self.view(team).await?))
    }

    async fn get_team(
        &self,
        request: Request<pb::GetTeamRequest>,
    ) -> Result<Response<pb::Team>, Status> {
        let scope = Scope::of(&request)?;
        let r = request.into_inner();
        let namespace = scope.namespace(&r.namespace)?;
        let team = self
            .state
            .engine
            .team(&namespace, &team_key(&r.team)?)
            .await?;
        Ok(Response::new(self.view(team).await?))
    }

    async fn list_teams(
        &self,
        request: Request<pb::ListTeamsRequest>,
    ) -> Result<Response<pb::ListTeamsResponse>, Status> {
        let scope = Scope::of(&request)?;
        let r = request.into_inner();
        let namespace = scope.namespace(&r.namespace)?;
        let size = validate::page_size(r.page_size, &self.state.limits)?;
        let after = validate::page_token(&r.page_token)?;
        let engine = &self.state.engine;
        let teams = engine
            .teams(&namespace, r.include_archived, after, size)
            .await?;
        let names = engine.member_names(&namespace, &teams).await?;
        Ok(Response::new(pb::ListTeamsResponse {
            next_page_token: validate::next_page_token(
                teams.last().map(|t| t.id),
                teams.len(),
                size,
            ),
            teams: teams.iter().map(|t| convert::team(t, &names)).collect(),
        }))
    }

    async fn update_team(
        &self,
        request: Request<pb::UpdateTeamRequest>,
    ) -> Result<Response<pb::Team>, Status> {
        let scope = Scope::of(&request)?;
        let r = request.into_inner();
        let namespace = scope.namespace(&r.namespace)?;
        let key = team_key(&r.team)?;
        let d = r
            .definition
            .ok_or_else(|| invalid("definition is required"))?;
        let definition = definition(&d)?;
        let expected = expected_version(r.expected_version)?;
        let engine = &self.state.engine;
        let team = engine
            .update_team(&namespace, &key, definition, expected)
            .await?;
        Ok(Response::new(self.view(team).await?))
    }

    async fn archive_team(
        &self,
        request: Request<pb::ArchiveTeamRequest>,
    ) -> Result<Response<pb::Team>, Status> {
        let scope = Scope::of(&request)?;
        let r = request.into_inner();
        let namespace = scope.namespace(&r.namespace)?;
        let key = team_key(&r.team)?;
        let expected = expected_version(r.expected_version)?;
        let team = self
            .state
            .engine
            .archive_team(&namespace, &key, expected)
            .await?;
        Ok(Response::new(self.view(team).await?))
    }
}
