//! The agents this engine last started executions of, so the next start of the same agent reads
//! no agent row. A start made from a remembered agent carries `Fence::Agent` (the agent is still
//! active at the version remembered), checked inside the start's transaction: an agent updated
//! or archived since, through any server, refuses the start, which writes nothing and is made
//! again from a fresh read. So a start always runs the agent's current definition, as before.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Engine, EngineError};
use crate::domain::{Agent, AgentStatus};
use crate::store::{AgentKey, Fence};

/// How many agents are remembered at most (all are forgotten when it is full: starts then read
/// again, which is what they did before this cache).
const MAX_AGENTS: usize = 1024;

/// Agents by the namespace and key a start named them with.
pub(crate) struct AgentCache {
    agents: Mutex<HashMap<(String, AgentKey), Agent>>,
    /// Off with the execution cache (`--execution-cache 0`), to measure what both save.
    enabled: bool,
}

impl AgentCache {
    pub(crate) fn new(enabled: bool) -> AgentCache {
        AgentCache {
            agents: Mutex::default(),
            enabled,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, AgentKey), Agent>> {
        self.agents.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, namespace: &str, key: &AgentKey) -> Option<Agent> {
        self.lock()
            .get(&(namespace.to_string(), key.clone()))
            .cloned()
    }

    fn put(&self, namespace: &str, key: &AgentKey, agent: &Agent) {
        if !self.enabled {
            return;
        }
        let mut agents = self.lock();
        if agents.len() >= MAX_AGENTS {
            agents.clear();
        }
        agents.insert((namespace.to_string(), key.clone()), agent.clone());
    }

    /// Forgets the agent a start named: its start was refused by the agent's fence.
    pub(crate) fn forget(&self, namespace: &str, key: &AgentKey) {
        self.lock().remove(&(namespace.to_string(), key.clone()));
    }
}

impl Engine {
    /// The active agent a start of `key` in `namespace` runs, and the fence its start must
    /// carry when it was remembered rather than read. `NotFound` for no such agent,
    /// `FailedPrecondition` for an archived one.
    pub(super) async fn agent_to_start(
        &self,
        namespace: &str,
        key: &AgentKey,
    ) -> Result<(Agent, Option<Fence>), EngineError> {
        if let Some(agent) = self.agents.get(namespace, key) {
            let fence = Fence::Agent {
                agent_id: agent.id,
                version: agent.version,
            };
            return Ok((agent, Some(fence)));
        }
        let agent = self.store.get_agent(namespace, key).await?.ok_or_else(|| {
            EngineError::NotFound(match key {
                AgentKey::Id(id) => {
                    format!("no agent with id {id} in namespace `{namespace}`")
                }
                AgentKey::Name(name) => {
                    format!("no active agent named `{name}` in namespace `{namespace}`")
                }
            })
        })?;
        if agent.status != AgentStatus::Active {
            return Err(EngineError::FailedPrecondition(format!(
                "agent `{}` is archived; archived agents cannot be started",
                agent.name
            )));
        }
        self.agents.put(namespace, key, &agent);
        Ok((agent, None))
    }
}
