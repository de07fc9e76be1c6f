//! What the team machine emits for each input, strategy by strategy: which member runs next,
//! what the aggregator and the leader are asked, and when the team closes.

use super::{Child, LeaderReply, RETRY_NOTE, TeamState, result_text};
use crate::domain::{ExecutionStatus, HistoryEvent, MemberSlot, MemberSpec, TeamStrategy};
use crate::machine::InvalidTransition;

impl TeamState {
    /// The commands after `input` was folded into the state.
    pub fn decide(&self, input: &HistoryEvent) -> Result<Vec<HistoryEvent>, InvalidTransition> {
        use HistoryEvent as E;
        match input {
            E::TeamStarted { reused, .. } if reused.is_empty() => Ok(self.start()),
            // A retry carries on from the children it reused.
            E::TeamStarted { .. } => Ok(self.advance()),
            E::ChildScheduled { .. } | E::ChildCancelRequested { .. } => Ok(vec![]),
            E::ChildClosed { .. } | E::CancelRequested { .. } => Ok(self.advance()),
            E::ExecutionTimedOut { .. } | E::HistoryLimitReached { .. } => {
                let failure = input
                    .limit_failure()
                    .ok_or_else(|| TeamState::invalid(Some(self), input))?;
                Ok(self.fail_now(failure))
            }
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

    /// At a limit of the team's own: asks its running children to stop and fails at once,
    /// without waiting for them (their closing notices find it closed and are dropped).
    fn fail_now(&self, failure: crate::domain::Failure) -> Vec<HistoryEvent> {
        let mut commands: Vec<HistoryEvent> = self
            .running()
            .filter(|c| !c.cancel_requested)
            .map(|c| HistoryEvent::ChildCancelRequested { key: c.key.clone() })
            .collect();
        commands.push(HistoryEvent::ExecutionFailed { failure });
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

    pub(super) fn parse_leader(&self, reply: &str) -> Result<LeaderReply, String> {
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
