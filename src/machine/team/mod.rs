//! The `team` machine: a team execution whose steps are child executions, each a full agent
//! execution with its own runtime. Strategies: sequential, parallel (with an optional
//! aggregator), supervisor (a leader picks the next member until it answers).
//!
//! Everything the machine decides is derived from its state, and its state from its events: a
//! failing team, for instance, is one with a failed member and no `continue_on_failure`; it asks
//! its running children to stop and fails once the last of them has closed.

use serde::{Deserialize, Serialize};

use super::InvalidTransition;
use crate::domain::{
    ExecutionStatus, Failure, HistoryEvent, MemberSlot, MemberSpec, RetryPolicy, TeamSpec,
    TeamStrategy, Timeouts, Usage,
};

/// One child execution of a team.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Child {
    /// Unique within the team execution.
    pub key: String,
    /// The member it runs.
    pub slot: MemberSlot,
    /// The member step's whole prompt, as `ChildScheduled` recorded it.
    pub prompt: String,
    /// `Running` until it closes, then how it closed.
    pub status: ExecutionStatus,
    /// Its result, when it completed.
    pub result: Option<serde_json::Value>,
    /// Its failure, when it failed.
    pub failure: Option<Failure>,
    /// Whether the team asked it to stop.
    pub cancel_requested: bool,
}

/// The snapshot of a team execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamState {
    /// The team as it was at start.
    pub team: TeamSpec,
    /// The team prompt.
    pub prompt: String,
    /// For every child's activities.
    pub retry_policy: RetryPolicy,
    /// For every child's activities.
    pub timeouts: Timeouts,
    /// The team's status.
    pub status: ExecutionStatus,
    /// Children in the order they were started.
    pub children: Vec<Child>,
    /// Summed over closed children.
    pub usage: Usage,
    /// Set once a client asked to cancel.
    pub cancel_reason: Option<String>,
    /// Supervisor: a failure of the leader's protocol (an unparseable reply twice, the round
    /// limit), which fails the team.
    pub leader_failure: Option<Failure>,
    /// The task queue of every child's activities (states from before teams had queues: the
    /// default).
    #[serde(default = "default_queue")]
    pub queue: String,
    /// The team's `execution_timeout` (see `TeamStarted`), which its retry gets again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_timeout_ms: Option<u64>,
}

fn default_queue() -> String {
    crate::domain::DEFAULT_QUEUE.into()
}

/// What a supervisor's leader asked for.
#[derive(Debug, Clone, PartialEq)]
enum LeaderReply {
    /// Give `member` a step with `instruction`.
    Next { member: usize, instruction: String },
    /// The team's answer.
    Answer(String),
}

/// The text of a child's result: its `text` field, or the whole JSON.
pub fn result_text(result: &serde_json::Value) -> String {
    match result.get("text").and_then(|t| t.as_str()) {
        Some(text) => text.to_string(),
        None => result.to_string(),
    }
}

/// The events of an agent execution and its activities, which no row of the team's table takes.
/// Listed, not matched with `_`, so that a new event forces a decision here.
macro_rules! agent_events {
    () => {
        HistoryEvent::ExecutionStarted { .. }
            | HistoryEvent::ActivityScheduled { .. }
            | HistoryEvent::ActivityStarted { .. }
            | HistoryEvent::ActivityCompleted { .. }
            | HistoryEvent::ActivityFailed { .. }
            | HistoryEvent::ActivityTimedOut { .. }
            | HistoryEvent::ActivityCancelRequested { .. }
            | HistoryEvent::ActivityCanceled { .. }
            | HistoryEvent::TimerStarted { .. }
            | HistoryEvent::TimerFired { .. }
            | HistoryEvent::TimerCanceled { .. }
            | HistoryEvent::MessageReceived { .. }
            | HistoryEvent::CloseRequested
            | HistoryEvent::IdleTimedOut { .. }
            | HistoryEvent::ApprovalRequested { .. }
            | HistoryEvent::ApprovalResolved { .. }
            | HistoryEvent::ActivityHeld { .. }
            | HistoryEvent::ActivityResumed { .. }
    };
}

impl TeamState {
    fn invalid(state: Option<&TeamState>, event: &HistoryEvent) -> InvalidTransition {
        InvalidTransition {
            state: state.map_or("<not started>".into(), |s| {
                format!("team {}", s.status.as_str())
            }),
            event: event.event_type().into(),
        }
    }

    /// The member a slot names.
    pub fn member(&self, slot: &MemberSlot) -> Option<&MemberSpec> {
        match slot {
            MemberSlot::Member { index } => self.team.members.get(*index as usize),
            MemberSlot::Aggregator => self.team.aggregator.as_ref(),
            MemberSlot::Leader => self.team.leader.as_ref(),
        }
    }

    fn running(&self) -> impl Iterator<Item = &Child> {
        self.children.iter().filter(|c| !c.status.is_closed())
    }

    /// Folds one event into the state; the transition table of a team execution.
    pub fn apply(
        state: Option<TeamState>,
        event: &HistoryEvent,
    ) -> Result<TeamState, InvalidTransition> {
        use HistoryEvent as E;
        let Some(mut s) = state else {
            return match event {
                E::TeamStarted {
                    team,
                    prompt,
                    retry_policy,
                    timeouts,
                    reused,
                    queue,
                    execution_timeout_ms,
                } => Ok(TeamState {
                    execution_timeout_ms: *execution_timeout_ms,
                    team: (**team).clone(),
                    queue: queue.clone(),
                    prompt: prompt.clone(),
                    retry_policy: retry_policy.clone(),
                    timeouts: timeouts.clone(),
                    status: ExecutionStatus::Running,
                    // A retry starts with the failed execution's completed children.
                    children: reused
                        .iter()
                        .map(|r| Child {
                            key: r.key.clone(),
                            slot: r.slot.clone(),
                            prompt: r.prompt.clone(),
                            status: ExecutionStatus::Completed,
                            result: Some(r.result.clone()),
                            failure: None,
                            cancel_requested: false,
                        })
                        .collect(),
                    usage: Usage::default(),
                    cancel_reason: None,
                    leader_failure: None,
                }),
                agent_events!()
                | E::ChildScheduled { .. }
                | E::ChildCancelRequested { .. }
                | E::ChildClosed { .. }
                | E::CancelRequested { .. }
                | E::ExecutionTimedOut { .. }
                | E::HistoryLimitReached { .. }
                | E::ExecutionCompleted { .. }
                | E::ExecutionFailed { .. }
                | E::ExecutionCanceled { .. } => Err(TeamState::invalid(None, event)),
            };
        };
        if s.status.is_closed() {
            return Err(TeamState::invalid(Some(&s), event));
        }
        match event {
            E::ChildScheduled { key, slot, prompt } => {
                if s.children.iter().any(|c| &c.key == key) || s.member(slot).is_none() {
                    return Err(TeamState::invalid(Some(&s), event));
                }
                s.children.push(Child {
                    key: key.clone(),
                    slot: slot.clone(),
                    prompt: prompt.clone(),
                    status: ExecutionStatus::Running,
                    result: None,
                    failure: None,
                    cancel_requested: false,
                });
            }
            E::ChildCancelRequested { key } => {
                match s.children.iter_mut().find(|c| &c.key == key) {
                    Some(c) if !c.status.is_closed() && !c.cancel_requested => {
                        c.cancel_requested = true
                    }
                    _ => return Err(TeamState::invalid(Some(&s), event)),
                }
            }
            E::ChildClosed {
                key,
                status,
                result,
                failure,
                usage,
            } => {
                let Some(index) = s
                    .children
                    .iter()
                    .position(|c| &c.key == key && !c.status.is_closed())
                else {
                    return Err(TeamState::invalid(Some(&s), event));
                };
                if !status.is_closed() {
                    return Err(TeamState::invalid(Some(&s), event));
                }
                let child = &mut s.children[index];
                child.status = *status;
                child.result = result.clone();
                child.failure = failure.clone();
                s.usage = s.usage + *usage;
                if s.team.strategy == TeamStrategy::Supervisor && child.slot == MemberSlot::Leader {
                    s.note_leader_reply(index);
                }
            }
            E::CancelRequested { reason } => {
                if s.cancel_reason.is_some() {
                    return Err(TeamState::invalid(Some(&s), event));
                }
                s.cancel_reason = Some(reason.clone());
            }
            E::ExecutionCompleted { .. } => s.status = ExecutionStatus::Completed,
            E::ExecutionFailed { .. } => s.status = ExecutionStatus::Failed,
            E::ExecutionCanceled { .. } => s.status = ExecutionStatus::Canceled,
            // An open team takes its own limits at any point; `decide` fails it.
            E::ExecutionTimedOut { .. } | E::HistoryLimitReached { .. } => {}
            agent_events!() | E::TeamStarted { .. } => {
                return Err(TeamState::invalid(Some(&s), event));
            }
        }
        Ok(s)
    }

    /// Records a leader protocol failure: a second unparseable reply in a row, or the round limit.
    fn note_leader_reply(&mut self, index: usize) {
        let child = &self.children[index];
        if child.status != ExecutionStatus::Completed {
            return;
        }
        let reply = result_text(child.result.as_ref().unwrap_or(&serde_json::Value::Null));
        match self.parse_leader(&reply) {
            Err(why) => {
                let previous_unparsed = self.children[..index]
                    .iter()
                    .rev()
                    .find(|c| c.slot == MemberSlot::Leader)
                    .is_some_and(|c| c.prompt.starts_with(RETRY_NOTE));
                if previous_unparsed || child.prompt.starts_with(RETRY_NOTE) {
                    self.leader_failure = Some(Failure {
                        code: "unparseable_leader_reply".into(),
                        message: format!(
                            "the leader's reply could not be used ({why}), twice; its reply: {reply:?}"
                        ),
                        retryable: false,
                        details: serde_json::json!({ "reply": reply }),
                    });
                }
            }
            Ok(LeaderReply::Next { .. })
                if self.member_steps() >= self.team.max_rounds as usize =>
            {
                self.leader_failure = Some(Failure::new(
                    "round_limit",
                    format!(
                        "the leader asked for another step after {} rounds, the team's limit",
                        self.team.max_rounds
                    ),
                    false,
                ));
            }
            Ok(_) => {}
        }
    }

    /// Members (by index) that have no child yet, in member order.
    fn unscheduled_members(&self) -> Vec<usize> {
        (0..self.team.members.len())
            .filter(|i| {
                !self
                    .children
                    .iter()
                    .any(|c| c.slot == MemberSlot::Member { index: *i as u32 })
            })
            .collect()
    }

    fn member_steps(&self) -> usize {
        self.children
            .iter()
            .filter(|c| matches!(c.slot, MemberSlot::Member { .. }))
            .count()
    }

    /// The failure that ends the team, if any: a protocol failure of the leader, or a member that
    /// failed (not because the team asked it to stop) when the team does not continue on failure.
    pub fn fatal_failure(&self) -> Option<Failure> {
        if let Some(f) = &self.leader_failure {
            return Some(f.clone());
        }
        let failed = self.children.iter().find(|c| {
            matches!(
                c.status,
                ExecutionStatus::Failed | ExecutionStatus::Canceled
            ) && !c.cancel_requested
                && (!self.team.continue_on_failure || c.slot == MemberSlot::Leader)
        })?;
        let name = self
            .member(&failed.slot)
            .map_or("?", |m| m.agent.name.as_str());
        let cause = failed
            .failure
            .clone()
            .unwrap_or_else(|| Failure::new("canceled", "the child was cancelled", false));
        Some(Failure {
            code: "member_failed".into(),
            message: format!(
                "member `{name}` ({}) {}: {}: {}",
                failed.key,
                failed.status.as_str().to_lowercase(),
                cause.code,
                cause.message
            ),
            retryable: false,
            details: serde_json::json!({ "child": failed.key, "member": name, "failure": cause }),
        })
    }
}

/// Prefix of a leader prompt that follows a reply the team could not use.
const RETRY_NOTE: &str =
    "Your previous reply could not be used; answer with the JSON object only.\n\n";

// After the macro above, which it uses (macros are in scope from their definition on).
mod decide;
