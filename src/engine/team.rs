//! Starting team executions: resolve the team and every member's agent as they are now, and
//! record them in `TeamStarted`, so later edits never change a running or replayed team.

use uuid::Uuid;

use super::apply::Applied;
use super::commands::child_id;
use super::retry::{Retried, RetryRequest};
use super::{Engine, EngineError, StartRequest, execution_state};
use crate::domain::{
    AgentStatus, ExecutionKind, ExecutionStatus, HistoryEvent, MemberSlot, MemberSpec, ReusedChild,
    TeamSpec, TeamStrategy,
};
use crate::machine::{Child, ExecutionState};
use crate::store::{AgentKey, ExecutionRecord, NewChunk, NewExecution};

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
            reused: Vec::new(),
            timeouts: req
                .timeouts
                .clone()
                .unwrap_or_else(|| self.options.default_timeouts.clone()),
            queue: match req.queue.as_str() {
                "" => crate::domain::DEFAULT_QUEUE.into(),
                queue => queue.into(),
            },
            execution_timeout_ms: req.execution_timeout_ms,
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
        let plan = super::apply::Plan {
            inputs: vec![started],
            ..Default::default()
        };
        match self.apply_new(id, new, plan).await? {
            Applied::Committed(..) => Ok((id, true)),
            Applied::Duplicate(existing) => Ok((existing, false)),
            Applied::Fenced => Err(super::apply::unfenced_start_fenced(id)),
        }
    }
}

impl Engine {
    /// Retries a failed team execution: a new team execution that reuses the failed one's
    /// completed children (their results and their output) and runs only the rest, each member
    /// with its agent's *current* definition — so fixing the agent is how a user fixes the run.
    pub(super) async fn retry_team(
        &self,
        original: &ExecutionRecord,
        req: &RetryRequest,
        id: Uuid,
        request_id: String,
    ) -> Result<Retried, EngineError> {
        if req.from_seq.is_some() || !req.prompts.is_empty() {
            return Err(EngineError::InvalidArgument(
                "a team retry reuses the completed children and re-runs the rest; from_seq and \
                 prompt edits apply to agent executions"
                    .into(),
            ));
        }
        let ExecutionState::Team(failed) = execution_state(original)? else {
            return Err(EngineError::Internal(format!(
                "team execution {} has an agent state",
                original.id
            )));
        };
        let mut team = failed.team.clone();
        for member in team
            .members
            .iter_mut()
            .chain(team.aggregator.iter_mut())
            .chain(team.leader.iter_mut())
        {
            member.agent = self
                .member(
                    &original.namespace,
                    member.agent.id,
                    &member.role,
                    &team.name,
                )
                .await?
                .agent;
        }
        // Parallel members are independent: reuse every one that completed. The other strategies
        // build on their order: reuse the completed prefix.
        let completed = |c: &&Child| c.status == ExecutionStatus::Completed;
        let reused_children: Vec<&Child> = match team.strategy {
            TeamStrategy::Parallel => failed
                .children
                .iter()
                .filter(completed)
                .filter(|c| matches!(c.slot, MemberSlot::Member { .. }))
                .collect(),
            TeamStrategy::Sequential | TeamStrategy::Supervisor => {
                failed.children.iter().take_while(completed).collect()
            }
        };
        let reused: Vec<ReusedChild> = reused_children
            .iter()
            .map(|c| ReusedChild {
                key: c.key.clone(),
                slot: c.slot.clone(),
                prompt: c.prompt.clone(),
                result: c.result.clone().unwrap_or_default(),
                execution_id: child_id(original.id, &c.key),
            })
            .collect();
        let chunks = self.reused_children_output(original, &reused).await?;
        let reused_count = reused.len() as u32;
        let started = HistoryEvent::TeamStarted {
            team: Box::new(team),
            prompt: failed.prompt.clone(),
            retry_policy: req
                .retry_policy
                .clone()
                .unwrap_or(failed.retry_policy.clone()),
            timeouts: failed.timeouts.clone(),
            reused,
            // A retry runs where the failed execution ran.
            queue: failed.queue.clone(),
            // A retry is a new execution: its timer runs the whole timeout again from now.
            execution_timeout_ms: failed.execution_timeout_ms,
        };
        let new = NewExecution {
            namespace: original.namespace.clone(),
            kind: ExecutionKind::Team,
            agent_id: None,
            runtime: "team".into(),
            input: original.input.clone(),
            parent_id: None,
            root_id: id,
            retry_of: Some(original.id),
            request_id: Some(request_id),
            team_id: original.team_id,
            child_key: None,
            labels: original.labels.clone(),
        };
        let plan = super::apply::Plan {
            inputs: vec![started],
            chunks,
            ..Default::default()
        };
        match self.apply_new(id, new, plan).await? {
            Applied::Committed(..) => Ok(Retried {
                id,
                created: true,
                reused_turns: reused_count,
            }),
            Applied::Duplicate(existing) => Ok(Retried {
                id: existing,
                created: false,
                reused_turns: reused_count,
            }),
            Applied::Fenced => Err(super::apply::unfenced_start_fenced(id)),
        }
    }

    /// The failed team's output that its reused children produced, tagged with them.
    async fn reused_children_output(
        &self,
        original: &ExecutionRecord,
        reused: &[ReusedChild],
    ) -> Result<Vec<NewChunk>, EngineError> {
        let mut chunks = Vec::new();
        for c in self.full_output(original.id).await? {
            let Some(child) = reused
                .iter()
                .find(|r| c.source_key.as_deref() == Some(r.key.as_str()))
            else {
                continue;
            };
            chunks.push(NewChunk {
                source: Some((child.execution_id, child.key.clone())),
                activity_id: c.activity_id,
                attempt: c.attempt,
                kind: c.kind,
                data: c.data,
                reused_from: Some(c.reused_from.unwrap_or(child.execution_id)),
            });
        }
        Ok(chunks)
    }
}
