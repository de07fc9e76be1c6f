//! The agent machine's transitions for a person in the loop: a conversation's messages, its
//! close and idle timeout, and approvals of tool calls.

use serde::{Deserialize, Serialize};

use super::{ActivityPhase, AgentState};
use crate::domain::{ApprovalDecision, ExecutionStatus, HistoryEvent};
use crate::machine::InvalidTransition;

/// A tool call the current turn asked about, and its answer once given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    /// Unique within the execution (see `ApprovalRequested`).
    pub approval_id: String,
    /// The activity (`turn-N`) that asked.
    pub activity_id: String,
    /// The attempt that asked first.
    pub attempt: u32,
    /// The tool.
    pub tool: String,
    /// The input it would run with.
    pub input: serde_json::Value,
    /// The answer; `None` while nobody answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<ApprovalDecision>,
    /// The request id of the answer, so the same answer sent again is recognised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// What a waiting execution waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitingFor {
    /// A conversation waits for its next message.
    Input,
    /// A running turn waits for an answer to a tool call.
    Approval,
}

impl WaitingFor {
    /// The name clients see.
    pub fn as_str(self) -> &'static str {
        match self {
            WaitingFor::Input => "input",
            WaitingFor::Approval => "approval",
        }
    }
}

impl AgentState {
    /// What the execution waits for, if it waits: an unanswered approval first, then (with no
    /// turn open) a conversation's next message.
    pub fn waiting_for(&self) -> Option<WaitingFor> {
        if self.status.is_closed() {
            None
        } else if self.approvals.iter().any(|a| a.decision.is_none()) {
            Some(WaitingFor::Approval)
        } else if self.awaits_message() {
            Some(WaitingFor::Input)
        } else {
            None
        }
    }

    /// Whether this is an open conversation that has run every message it received.
    pub fn awaits_message(&self) -> bool {
        self.conversation.is_some()
            && !self.closing
            && self.cancel_reason.is_none()
            && self.activity.is_none()
            && self.turns.len() >= self.prompts.len()
    }

    /// Whether a message can still be received (an open conversation nobody closed).
    pub fn takes_messages(&self) -> bool {
        self.conversation.is_some()
            && !self.closing
            && self.cancel_reason.is_none()
            && !self.status.is_closed()
    }

    /// The approval with this id, answered or not.
    pub fn approval(&self, approval_id: &str) -> Option<&Approval> {
        self.approvals.iter().find(|a| a.approval_id == approval_id)
    }

    /// Keeps `status` in step with what the execution waits for: `Waiting` while it waits,
    /// `Running` again once it no longer does.
    pub(super) fn refresh_waiting(&mut self) {
        if self.status.is_closed() {
            return;
        }
        if self.waiting_for().is_some() {
            self.status = ExecutionStatus::Waiting;
        } else if self.status == ExecutionStatus::Waiting {
            self.status = ExecutionStatus::Running;
        }
    }

    /// Folds a conversation or approval input into the state.
    pub(super) fn apply_conversation(
        &mut self,
        event: &HistoryEvent,
    ) -> Result<(), InvalidTransition> {
        use HistoryEvent as E;
        let invalid = |s: &AgentState| AgentState::invalid(Some(s), event);
        match event {
            E::MessageReceived { text, request_id } => {
                if !self.takes_messages() || self.message_ids.contains(request_id) {
                    return Err(invalid(self));
                }
                self.prompts.push(text.clone());
                self.message_ids.push(request_id.clone());
            }
            E::CloseRequested => {
                if !self.takes_messages() {
                    return Err(invalid(self));
                }
                self.closing = true;
            }
            E::IdleTimedOut { .. } => {
                if !self.awaits_message() {
                    return Err(invalid(self));
                }
                self.closing = true;
            }
            E::ApprovalRequested {
                approval_id,
                activity_id,
                attempt,
                tool,
                input,
            } => {
                let running = self.activity.as_ref().is_some_and(|a| {
                    a.activity_id == *activity_id
                        && a.attempt == *attempt
                        && matches!(a.phase, ActivityPhase::Scheduled)
                });
                if !running || self.approval(approval_id).is_some() {
                    return Err(invalid(self));
                }
                self.approvals.push(Approval {
                    approval_id: approval_id.clone(),
                    activity_id: activity_id.clone(),
                    attempt: *attempt,
                    tool: tool.clone(),
                    input: input.clone(),
                    decision: None,
                    request_id: None,
                });
            }
            E::ApprovalResolved {
                approval_id,
                decision,
                request_id,
            } => {
                let pending = self
                    .approvals
                    .iter_mut()
                    .find(|a| a.approval_id == *approval_id && a.decision.is_none());
                let Some(approval) = pending else {
                    return Err(invalid(self));
                };
                approval.decision = Some(decision.clone());
                approval.request_id = Some(request_id.clone());
            }
            E::ActivityHeld {
                activity_id,
                attempt,
                approval_id,
            } => {
                let asked = self.approval(approval_id).is_some();
                let running = self.activity_running();
                match self.activity.as_mut() {
                    Some(a)
                        if a.activity_id == *activity_id
                            && a.attempt == *attempt
                            && running
                            && asked
                            && !a.held =>
                    {
                        a.phase = ActivityPhase::Scheduled;
                        a.held = true;
                    }
                    _ => return Err(invalid(self)),
                }
            }
            E::ActivityResumed {
                activity_id,
                attempt,
            } => match self.activity.as_mut() {
                Some(a) if a.activity_id == *activity_id && a.attempt == *attempt && a.held => {
                    a.held = false;
                }
                _ => return Err(invalid(self)),
            },
            _ => return Err(invalid(self)),
        }
        Ok(())
    }

    /// The commands after a conversation or approval input: a message that arrives while the
    /// conversation waits runs at once; a close or idle timeout with no turn open completes it;
    /// a held attempt resumes once nothing it asked is unanswered.
    pub(super) fn decide_conversation(&self, input: &HistoryEvent) -> Vec<HistoryEvent> {
        let held = self.activity.as_ref().filter(|a| a.held);
        match input {
            HistoryEvent::ApprovalResolved { .. } | HistoryEvent::ActivityHeld { .. }
                if self.waiting_for() != Some(WaitingFor::Approval) =>
            {
                held.map_or_else(Vec::new, |a| {
                    vec![HistoryEvent::ActivityResumed {
                        activity_id: a.activity_id.clone(),
                        attempt: a.attempt,
                    }]
                })
            }
            HistoryEvent::MessageReceived { .. }
            | HistoryEvent::CloseRequested
            | HistoryEvent::IdleTimedOut { .. }
                if self.activity.is_none() =>
            {
                self.next_turn_or_end()
            }
            _ => vec![],
        }
    }
}
