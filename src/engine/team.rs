//! Starting team executions: resolve the team and every member's agent as they are now, and
//! record them in `TeamStarted`, so later edits never change a running or replayed team.

use uuid::Uuid;

use super::apply::Applied;
use super::{Engine, EngineError, StartRequest};
use crate::domain::{AgentStatus, ExecutionKind, HistoryEvent, MemberSpec, TeamSpec};
use crate::store::{AgentKey, NewExecution};

impl Engine {
    /// The agent `id` of `namespace` as a member spec; it must exist and be active.
    async fn member(
        &self,
        namespace: &str,
        id: Uuid,
        role: &str,
        team: &str,
    ) -> Result<MemberSpec, EngineError> {
        let agent = self
            .store
            .get_agent(namespace, &AgentKey::Id(id))
            .await?
            .ok_or_else(|| {
                EngineError::FailedPrecondition(format!(
                    "team `{team}` names agent {id}, which no longer exists"
                ))
            })?;
        if agent.status != AgentStatus::Active {
            return Err(EngineError::FailedPrecondition(format!(
                "team `{team}` names agent `{}`, which is archived; update the team",
                agent.name
            )));
        }
        Ok(MemberSpec {
            agent: agent.spec(),
            role: role.to_string(),
        })
    }

    /// Starts a team execution. Returns its id and whether it was created.
    pub(super) async fn start_team(
        &self,
        req: StartRequest,
        key: AgentKey,
    ) -> Result<(Uuid, bool), EngineError> {
        let team = self
            .store
            .get_team(&req.namespace, &key)
            .await?
            .ok_or_else(|| {
                EngineError::NotFound(match &key {
                    AgentKey::Id(id) => {
                        format!("no team with id {id} in namespace `{}`", req.namespace)
                    }
                    AgentKey::Name(name) => format!(
                        "no active team named `{name}` in namespace `{}`",
                        req.namespace
                    ),
                })
            })?;
        if team.status != AgentStatus::Active {
            return Err(EngineError::FailedPrecondition(format!(
                "team `{}` is archived and cannot be started",
                team.name
            )));
        }
        let [prompt] = req.prompts.as_slice() else {
            return Err(EngineError::InvalidArgument(
                "a team execution takes one prompt, not several turns".into(),
            ));
        };
        let mut members = Vec::with_capacity(team.members.len());
        for m in &team.members {
            members.push(
                self.member(&req.namespace, m.agent_id, &m.role, &team.name)
                    .await?,
            );
        }
        let aggregator = match team.config.aggregator {
            Some(id) => Some(
                self.member(&req.namespace, id, "aggregator", &team.name)
                    .await?,
            ),
            None => None,
        };
        let leader = match team.config.leader {
            Some(id) => Some(
                self.member(&req.namespace, id, "leader", &team.name)
                    .await?,
            ),
            None => None,
        };
        let spec = TeamSpec {
            id: team.id,
            name: team.name.clone(),
            strategy: team.strategy,
            members,
            aggregator,
            leader,
            continue_on_failure: team.config.continue_on_failure,
            max_rounds: team.config.max_rounds,
            max_parallel: team.config.max_parallel,
        };
        let id = Uuid::now_v7();
        let started = HistoryEvent::TeamStarted {
            team: Box::new(spec),
            prompt: prompt.clone(),
            retry_policy: req
                .retry_policy
                .clone()
                .unwrap_or_else(|| self.options.default_retry_policy.clone()),
            timeouts: req
                .timeouts
                .clone()
                .unwrap_or_else(|| self.options.default_timeouts.clone()),
        };
        let new = NewExecution {
            namespace: req.namespace.clone(),
            kind: ExecutionKind::Team,
            agent_id: None,
            runtime: "team".into(),
            input: serde_json::json!({ "prompt": prompt }),
            parent_id: None,
            root_id: id,
            retry_of: None,
            request_id: req.request_id.clone(),
            team_id: Some(team.id),
            child_key: None,
            labels: req.labels.clone(),
        };
        match self.apply_new(id, new, vec![started]).await? {
            Applied::Committed(_) => Ok((id, true)),
            Applied::Duplicate(existing) => Ok((existing, false)),
        }
    }
}
