//! `AgentService`: stored agent definitions and the runtimes that run them.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::error::invalid;
use super::pb::agent_service_server::AgentService;
use super::tenancy::Scope;
use super::{ApiState, pb, validate};
use crate::domain::Agent;
use crate::engine::catalog::{self, AgentChange, NewAgent};
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
}

impl Agents {
    /// The agent as a create or update answers it: with a warning when no connected worker of
    /// its runtime has a policy that admits its configuration (the rule named).
    async fn with_warnings(&self, agent: &Agent) -> Result<pb::Agent, Status> {
        let config = agent
            .configuration
            .get("runtime_config")
            .cloned()
            .unwrap_or_default();
        let mut reply = pb::Agent::from(agent);
        let engine = &self.state.engine;
        if let Some(why) = engine.unadmitted(&agent.runtime, None, &config).await? {
            reply
                .warnings
                .push(format!("its executions will wait: {why}"));
        }
        Ok(reply)
    }
}

/// "No such agent", as the engine words it.
pub(crate) fn not_found(namespace: &str, key: &AgentKey) -> Status {
    catalog::agent_not_found(namespace, key).into()
}

/// An `expected_version` field: absent, or a version an agent or team can have (from 1).
pub(crate) fn expected_version(version: Option<u64>) -> Result<Option<u64>, Status> {
    match version {
        Some(0) => Err(invalid(
            "expected_version 0 is no version: versions start at 1; \
             read the definition to learn its version, or leave the field out",
        )),
        version => Ok(version),
    }
}

#[tonic::async_trait]
impl AgentService for Agents {
    async fn create_agent(
        &self,
        request: Request<pb::CreateAgentRequest>,
    ) -> Result<Response<pb::Agent>, Status> {
        let scope = Scope::of(&request)?;
        let r = request.into_inner();
        let new = NewAgent {
            namespace: scope.namespace(&r.namespace)?,
            name: validate::agent_name(&r.name)?,
            runtime: validate::runtime(&r.runtime)?,
            model_id: validate::model_id(&r.model_id)?,
            configuration: validate::configuration(&r.configuration_json)?,
        };
        let state = &self.state;
        let agent = state.engine.create_agent(&state.runtimes, new).await?;
        Ok(Response::new(self.with_warnings(&agent).await?))
    }

    async fn get_agent(
        &self,
        request: Request<pb::GetAgentRequest>,
    ) -> Result<Response<pb::Agent>, Status> {
        let scope = Scope::of(&request)?;
        let r = request.into_inner();
        let namespace = scope.namespace(&r.namespace)?;
        let key = validate::agent_key(&r.agent)?;
        let agent = self.state.engine.agent(&namespace, &key).await?;
        Ok(Response::new((&agent).into()))
    }

    async fn list_agents(
        &self,
        request: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        let scope = Scope::of(&request)?;
        let r = request.into_inner();
        let namespace = scope.namespace(&r.namespace)?;
        let size = validate::page_size(r.page_size, &self.state.limits)?;
        let after = validate::page_token(&r.page_token)?;
        let agents = self
            .state
            .engine
            .agents(&namespace, r.include_archived, after, size)
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
        let scope = Scope::of(&request)?;
        let r = request.into_inner();
        let namespace = scope.namespace(&r.namespace)?;
        let key = validate::agent_key(&r.agent)?;
        if let Some(runtime) = &r.runtime {
            validate::plain("runtime", runtime, validate::limits::MAX_RUNTIME_BYTES)?;
        }
        let change = AgentChange {
            runtime: r.runtime,
            model_id: r.model_id.as_deref().map(validate::model_id).transpose()?,
            configuration: r
                .configuration_json
                .as_deref()
                .map(validate::configuration)
                .transpose()?,
            expected_version: expected_version(r.expected_version)?,
        };
        let state = &self.state;
        let agent = state
            .engine
            .update_agent(&state.runtimes, &namespace, &key, change)
            .await?;
        Ok(Response::new(self.with_warnings(&agent).await?))
    }

    async fn archive_agent(
        &self,
        request: Request<pb::ArchiveAgentRequest>,
    ) -> Result<Response<pb::Agent>, Status> {
        let scope = Scope::of(&request)?;
        let r = request.into_inner();
        let namespace = scope.namespace(&r.namespace)?;
        let key = validate::agent_key(&r.agent)?;
        let expected = expected_version(r.expected_version)?;
        let agent = self
            .state
            .engine
            .archive_agent(&namespace, &key, expected)
            .await?;
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
        let offering = |name: &str| {
            workers
                .iter()
                .filter(|w| w.runtimes.iter().any(|r| r == name))
                .count() as u32
        };
        let mut runtimes: Vec<pb::RuntimeInfo> = self
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
                workers: offering(d.name),
                external: false,
                config_schema_json: String::new(),
            })
            .collect();
        for r in engine.external_runtimes().await? {
            runtimes.push(pb::RuntimeInfo {
                config_keys: schema_keys(&r.config_schema),
                workers: offering(&r.name),
                external: true,
                config_schema_json: r.config_schema.to_string(),
                name: r.name,
                description: r.description,
            });
        }
        runtimes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Response::new(pb::ListRuntimesResponse { runtimes }))
    }
}

/// The top-level properties of an external runtime's schema, as the configuration keys
/// `cairn agent runtimes` shows (the schema itself is in `config_schema_json`).
fn schema_keys(schema: &serde_json::Value) -> Vec<pb::ConfigKey> {
    let Some(properties) = schema.get("properties").and_then(|p| p.as_object()) else {
        return Vec::new();
    };
    properties
        .iter()
        .map(|(name, property)| pb::ConfigKey {
            name: name.clone(),
            r#type: match property.get("type") {
                Some(serde_json::Value::String(t)) => t.clone(),
                Some(other) => other.to_string(),
                None => "any".into(),
            },
            description: property
                .get("description")
                .and_then(|d| d.as_str())
                .unwrap_or_default()
                .to_string(),
        })
        .collect()
}
