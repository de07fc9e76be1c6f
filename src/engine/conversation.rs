//! A person in the loop: messages to a conversation, closing it, and answers to approvals.
//! Each is one input applied like any other, so it is durable once accepted and exactly once by
//! its request id.

use uuid::Uuid;

use super::apply::{ApplyError, Plan};
use super::{Engine, EngineError};
use crate::domain::{ApprovalDecision, HistoryEvent, MAX_CONVERSATION_TURNS};
use crate::machine::{AgentState, ExecutionState};
use crate::store::ExecutionRecord;

/// What `send_message` did.
#[derive(Debug, Clone, PartialEq)]
pub struct SentMessage {
    /// The turn (0-based) the message is the prompt of.
    pub turn: u32,
    /// False when the request id had already delivered this message; nothing was written.
    pub created: bool,
}

impl Engine {
    /// Appends `text` as the next turn of the conversation `id`: it runs at once when the
    /// conversation waits, after the turns before it otherwise. `FailedPrecondition` (with
    /// nothing written) when `id` is not an open conversation; the same `request_id` again
    /// returns the first message's turn and writes nothing.
    pub async fn send_message(
        &self,
        id: Uuid,
        text: String,
        request_id: String,
    ) -> Result<SentMessage, EngineError> {
        let mut sent = None;
        let applied = self
            .apply_with(id, |state| {
                let agent = conversation(id, state)?;
                if let Some(i) = agent.message_ids.iter().position(|r| *r == request_id) {
                    let turn = agent.prompts.len() - agent.message_ids.len() + i;
                    sent = Some(SentMessage {
                        turn: turn as u32,
                        created: false,
                    });
                    return Ok(None);
                }
                if !agent.takes_messages() {
                    return Err(refused(id, agent, "takes no more messages"));
                }
                if agent.prompts.len() >= MAX_CONVERSATION_TURNS {
                    return Err(EngineError::FailedPrecondition(format!(
                        "execution {id} has {MAX_CONVERSATION_TURNS} turns, the most a conversation takes; start a new one"
                    )));
                }
                sent = Some(SentMessage {
                    turn: agent.prompts.len() as u32,
                    created: true,
                });
                Ok(Some(Plan {
                    inputs: vec![HistoryEvent::MessageReceived {
                        text: text.clone(),
                        request_id: request_id.clone(),
                    }],
                    ..Default::default()
                }))
            })
            .await;
        settled(id, applied)?;
        sent.ok_or_else(|| EngineError::Internal(format!("message to {id} left no outcome")))
    }

    /// Closes the conversation `id`: it takes no more messages and completes after the turns it
    /// received (at once when it waits). Idempotent while it closes; `FailedPrecondition` when
    /// it is not an open conversation.
    pub async fn close(&self, id: Uuid) -> Result<ExecutionRecord, EngineError> {
        let applied = self
            .apply_with(id, |state| {
                let agent = conversation(id, state)?;
                if agent.closing && !agent.status.is_closed() {
                    return Ok(None);
                }
                if !agent.takes_messages() {
                    return Err(refused(id, agent, "cannot be closed"));
                }
                Ok(Some(Plan {
                    inputs: vec![HistoryEvent::CloseRequested],
                    ..Default::default()
                }))
            })
            .await;
        settled(id, applied)?;
        self.execution(id).await
    }

    /// Answers the approval `approval_id` of execution `id` once. The same `request_id` again is
    /// taken as the same answer (nothing written); any other answer to an answered approval is
    /// `FailedPrecondition`.
    pub async fn resolve_approval(
        &self,
        id: Uuid,
        approval_id: String,
        decision: ApprovalDecision,
        request_id: String,
    ) -> Result<ExecutionRecord, EngineError> {
        // A team's members ask on their own executions: the team passes the answer on.
        if let Some(member) = self.member_asking(id, &approval_id).await? {
            self.resolve_member(member, approval_id, decision, request_id)
                .await?;
            return self.execution(id).await;
        }
        let applied = self
            .apply_with(id, |state| {
                let ExecutionState::Agent(agent) = state else {
                    return Err(EngineError::NotFound(format!(
                        "no member of team execution {id} asked for approval `{approval_id}`"
                    )));
                };
                let Some(approval) = agent.approval(&approval_id) else {
                    return Err(EngineError::NotFound(format!(
                        "execution {id} has no approval `{approval_id}` in its current turn"
                    )));
                };
                match &approval.request_id {
                    Some(answered) if *answered == request_id => return Ok(None),
                    Some(_) => {
                        return Err(EngineError::FailedPrecondition(format!(
                            "approval `{approval_id}` of execution {id} was already answered"
                        )));
                    }
                    None => {}
                }
                if agent.status.is_closed() {
                    return Err(refused(id, agent, "takes no more answers"));
                }
                Ok(Some(Plan {
                    inputs: vec![HistoryEvent::ApprovalResolved {
                        approval_id: approval_id.clone(),
                        decision: decision.clone(),
                        request_id: request_id.clone(),
                    }],
                    ..Default::default()
                }))
            })
            .await;
        settled(id, applied)?;
        self.execution(id).await
    }
}

impl Engine {
    /// The waiting members of team execution `id` with the approvals they asked for (none when
    /// `id` is not a team).
    pub(crate) async fn member_approvals(
        &self,
        id: Uuid,
    ) -> Result<Vec<(Uuid, crate::machine::Approval)>, EngineError> {
        let record = self.execution(id).await?;
        if record.kind != crate::domain::ExecutionKind::Team {
            return Ok(Vec::new());
        }
        let filter = crate::store::ExecutionFilter {
            namespace: record.namespace.clone(),
            statuses: vec![crate::domain::ExecutionStatus::Waiting],
            parent_id: Some(id),
            ..Default::default()
        };
        let mut asked = Vec::new();
        for child in self.store.list_executions(&filter, None, 1000).await? {
            if let Ok(ExecutionState::Agent(agent)) = super::execution_state(&child) {
                asked.extend(agent.approvals.into_iter().map(|a| (child.id, a)));
            }
        }
        Ok(asked)
    }

    /// The member of team execution `id` that asked for `approval_id`, if `id` is a team.
    async fn member_asking(
        &self,
        id: Uuid,
        approval_id: &str,
    ) -> Result<Option<Uuid>, EngineError> {
        let members = self.member_approvals(id).await?;
        Ok(members
            .into_iter()
            .find(|(_, a)| a.approval_id == approval_id)
            .map(|(member, _)| member))
    }

    /// [`Engine::resolve_approval`] on a team's member (boxed: it recurses).
    fn resolve_member(
        &self,
        member: Uuid,
        approval_id: String,
        decision: ApprovalDecision,
        request_id: String,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<ExecutionRecord, EngineError>> + Send + '_>,
    > {
        Box::pin(self.resolve_approval(member, approval_id, decision, request_id))
    }
}

/// The agent state of a conversation, or why `id` is not one.
fn conversation(id: Uuid, state: &ExecutionState) -> Result<&AgentState, EngineError> {
    match state {
        ExecutionState::Agent(agent) if agent.conversation.is_some() => Ok(agent),
        _ => Err(EngineError::FailedPrecondition(format!(
            "execution {id} is not a conversation; start one with `interactive` to send it messages"
        ))),
    }
}

/// Why an execution refuses a message, a close or an answer now.
fn refused(id: Uuid, agent: &AgentState, what: &str) -> EngineError {
    let why = if agent.status.is_closed() {
        format!("is {}", agent.status.as_str())
    } else if agent.cancel_reason.is_some() {
        "is being cancelled".into()
    } else {
        "is closing".into()
    };
    EngineError::FailedPrecondition(format!("execution {id} {why} and {what}"))
}

fn settled<T>(id: Uuid, applied: Result<T, ApplyError>) -> Result<(), EngineError> {
    match applied {
        Ok(_) => Ok(()),
        Err(ApplyError::Engine(e) | ApplyError::Final(e)) => Err(e),
        Err(ApplyError::Fenced | ApplyError::Conflict) => Err(EngineError::Internal(format!(
            "an unfenced input to {id} was fenced"
        ))),
    }
}
