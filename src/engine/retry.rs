//! Retrying a failed execution: a new execution (`retry_of` the failed one) that reuses the
//! turns the failed one completed and runs on from where it failed.
//!
//! The retry runs with the agent's *current* definition, so that fixing a misconfigured agent
//! (UpdateAgent) and retrying is how a user carries on; the definition is recorded in the retry's
//! ExecutionStarted, as every start records it. The reused turns, and the checkpoint the last of
//! them ended with, are recorded there too (`resume`), so the retry replays from its own history.
//! Their output is copied into the retry's output in the same transaction, each chunk naming the
//! execution that produced it.
//!
//! A retry is idempotent per execution: its request id is derived from the retried execution's
//! id, and the database's unique (namespace, request_id) index keeps two concurrent retries of
//! one execution — from two servers, two bulk runs — down to one.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::apply::{Applied, Plan};
use super::{Engine, EngineError};
use crate::domain::{
    AgentStatus, ExecutionKind, ExecutionStatus, HistoryEvent, Resume, RetryPolicy,
};
use crate::machine::{activity_id_for_turn, reusable};
use crate::store::{AgentKey, ExecutionRecord, NewChunk, NewExecution};

/// The prefix of the request ids retries are started with; clients cannot start with it.
pub const RETRY_REQUEST_PREFIX: &str = "retry-of:";

/// The request id of the first retry of execution `id`. Starting a second execution with it is
/// refused by the database, which is what makes retries exactly-once.
pub fn retry_request_id(id: Uuid) -> String {
    format!("{RETRY_REQUEST_PREFIX}{id}")
}

/// What retrying an execution takes (validated at the edge).
#[derive(Debug, Clone, Default)]
pub struct RetryRequest {
    /// The execution to retry.
    pub id: Uuid,
    /// Reuse only turns that completed before this seq of its history; `None` reuses every
    /// completed turn.
    pub from_seq: Option<u64>,
    /// New prompts by turn number (from 1). A turn whose prompt changes runs again, and so does
    /// every turn after it.
    pub prompts: BTreeMap<u32, String>,
    /// The retry policy of the retry; `None` keeps the retried execution's.
    pub retry_policy: Option<RetryPolicy>,
    /// Retry even when the execution was retried before.
    pub force: bool,
}

/// The outcome of a retry request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retried {
    /// The execution that retries the old one: new, or the one an earlier retry made.
    pub id: Uuid,
    /// False when the execution had been retried already (that retry is `id`).
    pub created: bool,
    /// How many turns the retry reuses.
    pub reused_turns: u32,
}

impl Engine {
    /// Retries a FAILED or CANCELED execution. See the module comment.
    pub async fn retry(&self, req: RetryRequest) -> Result<Retried, EngineError> {
        let original = self.execution(req.id).await?;
        retryable(&original)?;
        let base = retry_request_id(original.id);
        // A retry that already exists is found here; one being made concurrently is caught by
        // the unique index when this one commits.
        let existing = self.store.find_request(&original.namespace, &base).await?;
        if let Some(existing) = existing
            && !req.force
        {
            return self.existing_retry(existing).await;
        }
        let id = Uuid::now_v7();
        // A forced retry still takes the base id when it is free, so that a later unforced
        // retry of the same execution sees it.
        let request_id = match existing {
            Some(_) => format!("{base}/{id}"),
            None => base,
        };

        if original.kind == ExecutionKind::Team {
            return self.retry_team(&original, &req, id, request_id).await;
        }
        let events = self.full_history(original.id).await?;
        let Some(HistoryEvent::ExecutionStarted {
            agent: was,
            prompts,
            retry_policy,
            timeouts,
            queue,
            conversation,
            execution_timeout_ms,
            ..
        }) = events.first().cloned()
        else {
            return Err(EngineError::Internal(format!(
                "execution {} has no ExecutionStarted event",
                original.id
            )));
        };
        // A conversation's messages are turns like its first prompts: the retry has them all.
        let messages = events.iter().filter_map(|e| match e {
            HistoryEvent::MessageReceived { text, .. } => Some(text.clone()),
            _ => None,
        });
        let prompts = edited(prompts.into_iter().chain(messages).collect(), &req.prompts)?;
        let before_seq = match req.from_seq {
            None => u64::MAX,
            Some(seq) if (1..=events.len() as u64).contains(&seq) => seq,
            Some(seq) => {
                return Err(EngineError::InvalidArgument(format!(
                    "from_seq {seq} is not in execution {}'s history (seqs 1 to {})",
                    original.id,
                    events.len()
                )));
            }
        };
        let first_edited = req
            .prompts
            .keys()
            .next()
            .map_or(usize::MAX, |n| *n as usize);
        let (turns, checkpoint) = reusable(&events, before_seq, first_edited - 1).map_err(|e| {
            EngineError::Internal(format!("execution {}'s history: {e}", original.id))
        })?;

        let agent = self.current_agent(&original).await?;
        let checkpoint = checkpoint.filter(|_| agent.runtime == was.runtime);
        let chunks = self.reused_output(&original, turns.len() as u32).await?;
        let reused_turns = turns.len() as u32;
        let started = HistoryEvent::ExecutionStarted {
            agent: agent.spec(),
            prompts: prompts.clone(),
            retry_policy: req.retry_policy.unwrap_or(retry_policy),
            timeouts,
            queue,
            resume: Some(Resume {
                retry_of: original.id,
                turns,
                checkpoint,
            }),
            // A retry starts a trace of its own (its RPC's context is not carried yet).
            traceparent: None,
            conversation,
            // A retry is a new execution: its timer runs the whole timeout again from now.
            execution_timeout_ms,
        };
        let new = NewExecution {
            namespace: original.namespace.clone(),
            kind: ExecutionKind::Agent,
            agent_id: Some(agent.id),
            runtime: agent.runtime.clone(),
            input: serde_json::json!({ "prompts": prompts }),
            parent_id: None,
            root_id: id,
            retry_of: Some(original.id),
            request_id: Some(request_id),
            team_id: None,
            child_key: None,
            labels: original.labels.clone(),
        };
        let plan = Plan {
            inputs: vec![started],
            chunks,
            ..Default::default()
        };
        match self.apply_new(id, new, plan).await? {
            Applied::Committed(..) => Ok(Retried {
                id,
                created: true,
                reused_turns,
            }),
            Applied::Duplicate(existing) => self.existing_retry(existing).await,
            Applied::Fenced => Err(super::apply::unfenced_start_fenced(id)),
        }
    }

    /// A retry that was already made.
    async fn existing_retry(&self, id: Uuid) -> Result<Retried, EngineError> {
        let first = self.store.history(id, 0, 1).await?;
        let reused_turns = match first.first().map(|e| &e.event) {
            Some(HistoryEvent::ExecutionStarted {
                resume: Some(resume),
                ..
            }) => resume.turns.len() as u32,
            Some(HistoryEvent::TeamStarted { reused, .. }) => reused.len() as u32,
            _ => 0,
        };
        Ok(Retried {
            id,
            created: false,
            reused_turns,
        })
    }

    /// The agent of `original` as it is now.
    async fn current_agent(
        &self,
        original: &ExecutionRecord,
    ) -> Result<crate::domain::Agent, EngineError> {
        let agent_id = original.agent_id.ok_or_else(|| {
            EngineError::Internal(format!("agent execution {} has no agent", original.id))
        })?;
        let agent = self
            .store
            .get_agent(&original.namespace, &AgentKey::Id(agent_id))
            .await?
            .ok_or_else(|| {
                EngineError::NotFound(format!(
                    "the agent {agent_id} of execution {} no longer exists",
                    original.id
                ))
            })?;
        if agent.status != AgentStatus::Active {
            return Err(EngineError::FailedPrecondition(format!(
                "agent `{}` is archived; a retry runs the agent's current definition, and \
                 archived agents cannot be started",
                agent.name
            )));
        }
        Ok(agent)
    }

    /// The output of `original`'s first `turns` turns, every attempt's chunks in order, tagged
    /// with the execution that first produced each chunk.
    async fn reused_output(
        &self,
        original: &ExecutionRecord,
        turns: u32,
    ) -> Result<Vec<NewChunk>, EngineError> {
        let reused: BTreeSet<String> = (0..turns).map(activity_id_for_turn).collect();
        Ok(self
            .full_output(original.id)
            .await?
            .into_iter()
            .filter(|c| reused.contains(&c.activity_id))
            .map(|c| NewChunk {
                source: None,
                activity_id: c.activity_id,
                attempt: c.attempt,
                kind: c.kind,
                data: c.data,
                reused_from: Some(c.reused_from.unwrap_or(original.id)),
            })
            .collect())
    }
}

/// Only closed executions that did not complete can be retried: retrying an open one would run
/// its turns twice at once, and a completed one has nothing left to run. A CANCELED execution
/// can be retried like a FAILED one — cancelling is how a user stops a run to change something.
fn retryable(original: &ExecutionRecord) -> Result<(), EngineError> {
    let id = original.id;
    match original.status {
        ExecutionStatus::Failed | ExecutionStatus::Canceled => {}
        ExecutionStatus::Completed => {
            return Err(EngineError::FailedPrecondition(format!(
                "execution {id} is COMPLETED; only FAILED or CANCELED executions can be retried"
            )));
        }
        open @ (ExecutionStatus::Pending | ExecutionStatus::Running | ExecutionStatus::Waiting) => {
            return Err(EngineError::FailedPrecondition(format!(
                "execution {id} is {}; only FAILED or CANCELED executions can be retried \
                 (wait for it to close, or cancel it first)",
                open.as_str()
            )));
        }
    }
    Ok(())
}

/// The prompts with `edits` (by turn number, from 1) applied.
fn edited(
    mut prompts: Vec<String>,
    edits: &BTreeMap<u32, String>,
) -> Result<Vec<String>, EngineError> {
    for (turn, prompt) in edits {
        let Some(slot) = (*turn as usize)
            .checked_sub(1)
            .and_then(|i| prompts.get_mut(i))
        else {
            return Err(EngineError::InvalidArgument(format!(
                "turn {turn} does not exist: the execution has turns 1 to {}",
                prompts.len()
            )));
        };
        *slot = prompt.clone();
    }
    Ok(prompts)
}
