//! `AgentService`: stored agent definitions and the runtimes that run them.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::error::invalid;
use super::pb::agent_service_server::AgentService;
use super::{ApiState, pb, validate};
use crate::domain::{Agent, AgentStatus};
use crate::store::AgentKey;

/// The agent service.
pub struct Agents {
    state: Arc<ApiState>,
}

impl Agents {
    /// A service over the shared API state.
    pub fn new(state: Arc<ApiState>) -> Self {
        Agents { state }
    }

    /// Checks an agent against its runtime; the error lists the runtimes when the name is unknown.
    fn check_runtime(&self, agent: &Agent) -> Result<(), Status> {
        let runtime = self.state.runtimes.get(&agent.runtime).ok_or_else(|| {
            invalid(format!(
                "unknown runtime `{}`; supported runtimes: {}",
                agent.runtime,
                self.state.runtimes.names().join(", ")
            ))
        })?;
        runtime.validate(&agent.spec()).map_err(|e| {
            invalid(format!(
                "configuration does not suit runtime `{}`: {e}",
                agent.runtime
            ))
        })
    }

    async fn find(&self, namespace: &str, agent: &str) -> Result<Agent, Status> {
        let key = validate::agent_key(agent)?;
        self.state
            .engine
            .store()
            .get_agent(namespace, &key)
            .await?
            .ok_or_else(|| not_found(namespace, &key))
    }
}

pub(crate) fn not_found(namespace: &str, key: &AgentKey) -> Status {
    Status::not_found(match key {
        AgentKey::Id(id) => format!("no agent with id {id} in namespace `{namespace}`"),
        AgentKey::Name(name) => {
            format!("no active agent named `{name}` in namespace `{namespace}`")
        }
    })
}

#[tonic::async_trait]
impl AgentService for Agents {
    async fn create_agent(
        &self,
        request: Request<pb::CreateAgentRequest>,
    ) -> Result<Response<pb::Agent>, Status> {
        let r = request.into_inner();
        let now = self.state.engine.now();
        let agent = Agent {
            id: Uuid::now_v7(),
            namespace: validate::namespace(&r.namespace)?,
            name: validate::agent_name(&r.name)?,
            runtime: validate::runtime(&r.runtime)?,
            model_id: validate::model_id(&r.model_id)?,
            configuration: validate::configuration(&r.configuration_json)?,
            status: AgentStatus::Active,
            created_at: now,
            updated_at: now,
        };
        self.check_runtime(&agent)?;
        self.state.engine.store().insert_agent(&agent).await?;
        Ok(Response::new((&agent).into()))
    }

    async fn get_agent(
        &self,
        request: Request<pb::GetAgentRequest>,
    ) -> Result<Response<pb::Agent>, Status> {
        let r = request.into_inner();
        let agent = self
            .find(&validate::namespace(&r.namespace)?, &r.agent)
            .await?;
        Ok(Response::new((&agent).into()))
    }

    async fn list_agents(
        &self,
        request: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        let r = request.into_inner();
        let namespace = validate::namespace(&r.namespace)?;
        let size = validate::page_size(r.page_size, &self.state.limits)?;
        let after = validate::page_token(&r.page_token)?;
        let agents = self
            .state
            .engine
            .store()
            .list_agents(&namespace, r.include_archived, after, size)
            .await?;
        Ok(Response::new(pb::ListAgentsResponse {
            next_page_token: validate::next_page_token(
                agents.last().map(|a| a.id),
                agents.len(),
                size,
            ),
            agents: agents.iter().map(Into::into).collect(),
        }))
    }

    async fn update_agent(
        &self,
        request: Request<pb::UpdateAgentRequest>,
    ) -> Result<Response<pb::Agent>, Status> {
        let r = request.into_inner();
        let namespace = validate::namespace(&r.namespace)?;
        let mut agent = self.find(&namespace, &r.agent).await?;
        if agent.status == AgentStatus::Archived {
            return Err(Status::failed_precondition(format!(
                "agent `{}` is archived and cannot be changed",
                agent.name
            )));
        }
        if let Some(runtime) = r.runtime {
            validate::plain("runtime", &runtime, validate::limits::MAX_RUNTIME_BYTES)?;
            agent.runtime = runtime;
        }
        if let Some(model_id) = r.model_id {
            agent.model_id = validate::model_id(&model_id)?;
        }
        if let Some(configuration) = r.configuration_json {
            agent.configuration = validate::configuration(&configuration)?;
        }
        self.check_runtime(&agent)?;
        agent.updated_at = self.state.engine.now();
        self.state.engine.store().update_agent(&agent).await?;
        Ok(Response::new((&agent).into()))
    }

    async fn archive_agent(
        &self,
        request: Request<pb::ArchiveAgentRequest>,
    ) -> Result<Response<pb::Agent>, Status> {
        let r = request.into_inner();
        let namespace = validate::namespace(&r.namespace)?;
        let mut agent = self.find(&namespace, &r.agent).await?;
        if agent.status != AgentStatus::Archived {
            agent.status = AgentStatus::Archived;
            agent.updated_at = self.state.engine.now();
            self.state.engine.store().update_agent(&agent).await?;
        }
        Ok(Response::new((&agent).into()))
    }

    async fn list_runtimes(
        &self,
        _request: Request<pb::ListRuntimesRequest>,
    ) -> Result<Response<pb::ListRuntimesResponse>, Status> {
        // Workers of every server (the `workers` table), not only those polling this one.
        let engine = &self.state.engine;
        let workers = engine
            .store()
            .list_workers(engine.now() - crate::engine::CONNECTED_WITHIN_MS)
            .await?;
        let runtimes = self
            .state
            .runtimes
            .describe()
            .into_iter()
            .map(|d| pb::RuntimeInfo {
                name: d.name.into(),
                description: d.description.into(),
                config_keys: d
                    .config_keys
                    .iter()
                    .map(|k| pb::ConfigKey {
                        name: k.name.into(),
                        r#type: k.ty.into(),
                        description: k.description.into(),
                    })
                    .collect(),
                workers: workers
                    .iter()
                    .filter(|w| w.runtimes.iter().any(|r| r == d.name))
                    .count() as u32,
            })
            .collect();
        Ok(Response::new(pb::ListRuntimesResponse { runtimes }))
    }
}
