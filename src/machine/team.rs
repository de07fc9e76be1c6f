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
    /// Its prompt.
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
                } => Ok(TeamState {
                    team: (**team).clone(),
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

    /// The commands after `input` was folded into the state.
    pub fn decide(&self, input: &HistoryEvent) -> Result<Vec<HistoryEvent>, InvalidTransition> {
        use HistoryEvent as E;
        match input {
            E::TeamStarted { reused, .. } if reused.is_empty() => Ok(self.start()),
            // A retry carries on from the children it reused.
            E::TeamStarted { .. } => Ok(self.advance()),
            E::ChildScheduled { .. } | E::ChildCancelRequested { .. } => Ok(vec![]),
            E::ChildClosed { .. } | E::CancelRequested { .. } => Ok(self.advance()),
            // Closing events are the machine's own commands, never inputs.
            agent_events!()
            | E::ExecutionCompleted { .. }
            | E::ExecutionFailed { .. }
            | E::ExecutionCanceled { .. } => Err(TeamState::invalid(Some(self), input)),
        }
    }

    /// Stops what runs, then closes: the commands for a team that is ending.
    fn wind_down(&self, close: HistoryEvent) -> Vec<HistoryEvent> {
        let mut commands: Vec<HistoryEvent> = self
            .running()
            .filter(|c| !c.cancel_requested)
            .map(|c| HistoryEvent::ChildCancelRequested { key: c.key.clone() })
            .collect();
        if self.running().next().is_none() {
            commands.push(close);
        }
        commands
    }

    fn advance(&self) -> Vec<HistoryEvent> {
        if let Some(reason) = &self.cancel_reason {
            return self.wind_down(HistoryEvent::ExecutionCanceled {
                reason: reason.clone(),
            });
        }
        if let Some(failure) = self.fatal_failure() {
            return self.wind_down(HistoryEvent::ExecutionFailed { failure });
        }
        match self.team.strategy {
            TeamStrategy::Sequential => self.advance_sequential(),
            TeamStrategy::Parallel => self.advance_parallel(),
            TeamStrategy::Supervisor => self.advance_supervisor(),
        }
    }

    fn start(&self) -> Vec<HistoryEvent> {
        match self.team.strategy {
            TeamStrategy::Sequential => vec![self.schedule_member(0, self.prompt.clone())],
            TeamStrategy::Parallel => (0..self
                .team
                .members
                .len()
                .min(self.team.max_parallel.max(1) as usize))
                .map(|i| self.schedule_member(i, self.prompt.clone()))
                .collect(),
            TeamStrategy::Supervisor => vec![self.schedule_leader()],
        }
    }

    fn schedule_member(&self, index: usize, prompt: String) -> HistoryEvent {
        let name = &self.team.members[index].agent.name;
        HistoryEvent::ChildScheduled {
            key: format!("{}-{name}", index + 1),
            slot: MemberSlot::Member {
                index: index as u32,
            },
            prompt,
        }
    }

    fn completed_members(&self) -> impl Iterator<Item = (&Child, &MemberSpec)> {
        self.children
            .iter()
            .filter(|c| c.status == ExecutionStatus::Completed)
            .filter_map(|c| match c.slot {
                MemberSlot::Member { .. } => self.member(&c.slot).map(|m| (c, m)),
                _ => None,
            })
    }

    fn failed_members(&self) -> Vec<serde_json::Value> {
        self.children
            .iter()
            .filter(|c| matches!(c.status, ExecutionStatus::Failed | ExecutionStatus::Canceled))
            .map(|c| {
                let name = self.member(&c.slot).map_or("?", |m| m.agent.name.as_str());
                serde_json::json!({ "child": c.key, "member": name, "status": c.status, "failure": c.failure })
            })
            .collect()
    }

    fn with_failures(&self, mut result: serde_json::Value) -> serde_json::Value {
        let failed = self.failed_members();
        if !failed.is_empty() {
            result["failed_members"] = serde_json::Value::Array(failed);
        }
        result
    }

    fn complete(&self, result: serde_json::Value) -> HistoryEvent {
        HistoryEvent::ExecutionCompleted {
            result: self.with_failures(result),
            usage: self.usage,
        }
    }

    fn advance_sequential(&self) -> Vec<HistoryEvent> {
        if self.running().next().is_some() {
            return vec![];
        }
        let next = self.unscheduled_members().first().copied();
        let last = self.completed_members().last();
        if let Some(next) = next {
            let prompt = match last {
                Some((child, member)) => format!(
                    "{}\n\nThe previous member ({}, {}) answered:\n{}",
                    self.prompt,
                    member.agent.name,
                    member.role,
                    result_text(child.result.as_ref().unwrap_or(&serde_json::Value::Null))
                ),
                None => self.prompt.clone(),
            };
            return vec![self.schedule_member(next, prompt)];
        }
        let result = match last {
            Some((child, member)) => serde_json::json!({
                "text": result_text(child.result.as_ref().unwrap_or(&serde_json::Value::Null)),
                "from": member.agent.name,
            }),
            None => serde_json::json!({ "text": "" }),
        };
        vec![self.complete(result)]
    }

    fn gathered(&self) -> Vec<serde_json::Value> {
        let mut results: Vec<(u32, serde_json::Value)> = self
            .completed_members()
            .map(|(c, m)| {
                let index = match c.slot {
                    MemberSlot::Member { index } => index,
                    _ => u32::MAX,
                };
                let text = result_text(c.result.as_ref().unwrap_or(&serde_json::Value::Null));
                (
                    index,
                    serde_json::json!({ "member": m.agent.name, "role": m.role, "text": text }),
                )
            })
            .collect();
        results.sort_by_key(|(index, _)| *index);
        results.into_iter().map(|(_, r)| r).collect()
    }

    fn advance_parallel(&self) -> Vec<HistoryEvent> {
        let unscheduled = self.unscheduled_members();
        let running = self.running().count();
        if !unscheduled.is_empty() {
            let room = (self.team.max_parallel.max(1) as usize).saturating_sub(running);
            return unscheduled
                .into_iter()
                .take(room)
                .map(|i| self.schedule_member(i, self.prompt.clone()))
                .collect();
        }
        if running > 0 {
            return vec![];
        }
        let results = self.gathered();
        let aggregated = self
            .children
            .iter()
            .find(|c| c.slot == MemberSlot::Aggregator);
        match (&self.team.aggregator, aggregated) {
            (Some(_), None) => {
                let mut prompt = format!("{}\n\nThe team members answered:", self.prompt);
                for (i, r) in results.iter().enumerate() {
                    prompt.push_str(&format!(
                        "\n\n[{}] {} ({}):\n{}",
                        i + 1,
                        r["member"].as_str().unwrap_or_default(),
                        r["role"].as_str().unwrap_or_default(),
                        r["text"].as_str().unwrap_or_default()
                    ));
                }
                vec![HistoryEvent::ChildScheduled {
                    key: "aggregator".into(),
                    slot: MemberSlot::Aggregator,
                    prompt,
                }]
            }
            (Some(aggregator), Some(child)) => {
                let text = result_text(child.result.as_ref().unwrap_or(&serde_json::Value::Null));
                vec![self.complete(serde_json::json!({ "text": text, "from": aggregator.agent.name, "results": results }))]
            }
            (None, _) => vec![self.complete(serde_json::json!({ "results": results }))],
        }
    }

    fn parse_leader(&self, reply: &str) -> Result<LeaderReply, String> {
        let (start, end) = match (reply.find('{'), reply.rfind('}')) {
            (Some(start), Some(end)) if start < end => (start, end),
            _ => return Err("no JSON object in it".into()),
        };
        let value: serde_json::Value = serde_json::from_str(&reply[start..=end])
            .map_err(|e| format!("not valid JSON: {e}"))?;
        if let Some(answer) = value.get("answer").and_then(|a| a.as_str()) {
            return Ok(LeaderReply::Answer(answer.to_string()));
        }
        let next = value
            .get("next")
            .and_then(|n| n.as_str())
            .ok_or("neither `answer` nor `next`")?;
        let instruction = value
            .get("instruction")
            .and_then(|i| i.as_str())
            .unwrap_or(&self.prompt)
            .to_string();
        let member = self
            .team
            .members
            .iter()
            .position(|m| m.agent.name == next || m.role == next)
            .ok_or_else(|| format!("`next` names no member: {next:?}"))?;
        Ok(LeaderReply::Next {
            member,
            instruction,
        })
    }

    fn schedule_leader(&self) -> HistoryEvent {
        let round = self
            .children
            .iter()
            .filter(|c| c.slot == MemberSlot::Leader)
            .count()
            + 1;
        let mut prompt = String::new();
        if let Some(last) = self
            .children
            .iter()
            .rev()
            .find(|c| c.slot == MemberSlot::Leader)
            && last.status == ExecutionStatus::Completed
            && self
                .parse_leader(&result_text(
                    last.result.as_ref().unwrap_or(&serde_json::Value::Null),
                ))
                .is_err()
        {
            prompt.push_str(RETRY_NOTE);
        }
        prompt.push_str(&format!(
            "You lead a team. The task:\n{}\n\nMembers:",
            self.prompt
        ));
        for m in &self.team.members {
            prompt.push_str(&format!("\n- {}: {}", m.agent.name, m.role));
        }
        let steps: Vec<&Child> = self
            .children
            .iter()
            .filter(|c| matches!(c.slot, MemberSlot::Member { .. }))
            .collect();
        if !steps.is_empty() {
            prompt.push_str("\n\nSteps so far:");
            for c in steps {
                let name = self.member(&c.slot).map_or("?", |m| m.agent.name.as_str());
                let answer = c
                    .result
                    .as_ref()
                    .map(result_text)
                    .unwrap_or_else(|| format!("({})", c.status.as_str()));
                prompt.push_str(&format!(
                    "\n- {name} was asked: {}\n  and answered: {answer}",
                    c.prompt
                ));
            }
        }
        prompt.push_str(
            "\n\nReply with JSON only: {\"next\": \"<member name>\", \"instruction\": \"...\"} to give a member \
             the next step, or {\"answer\": \"...\"} when the task is done.",
        );
        HistoryEvent::ChildScheduled {
            key: format!("leader-{round}"),
            slot: MemberSlot::Leader,
            prompt,
        }
    }

    fn advance_supervisor(&self) -> Vec<HistoryEvent> {
        if self.running().next().is_some() {
            return vec![];
        }
        let Some(last) = self.children.last() else {
            return vec![self.schedule_leader()];
        };
        if last.slot != MemberSlot::Leader {
            return vec![self.schedule_leader()];
        }
        let reply = result_text(last.result.as_ref().unwrap_or(&serde_json::Value::Null));
        match self.parse_leader(&reply) {
            Ok(LeaderReply::Answer(answer)) => {
                vec![
                    self.complete(
                        serde_json::json!({ "text": answer, "rounds": self.member_steps() }),
                    ),
                ]
            }
            Ok(LeaderReply::Next {
                member,
                instruction,
            }) => {
                let round = self.member_steps() + 1;
                let name = &self.team.members[member].agent.name;
                vec![HistoryEvent::ChildScheduled {
                    key: format!("step-{round}-{name}"),
                    slot: MemberSlot::Member {
                        index: member as u32,
                    },
                    prompt: instruction,
                }]
            }
            // Unparseable once: ask the leader again (a second time fails the team, see
            // `note_leader_reply`).
            Err(_) => vec![self.schedule_leader()],
        }
    }
}

/// Prefix of a leader prompt that follows a reply the team could not use.
const RETRY_NOTE: &str =
    "Your previous reply could not be used; answer with the JSON object only.\n\n";
