//! Conversions between the domain and the generated protobuf types.

use std::collections::HashMap;

use tonic::Status;
use uuid::Uuid;

use super::error::invalid;
use super::pb;
use crate::domain::{Agent, Failure, RetryPolicy, Team, Timeouts, Usage};
use crate::engine::{ActivityState, ExecutionView};
use crate::store::{StoredChunk, StoredEvent};

fn id_string(id: Option<uuid::Uuid>) -> String {
    id.map(|i| i.to_string()).unwrap_or_default()
}

impl From<&Agent> for pb::Agent {
    fn from(a: &Agent) -> Self {
        pb::Agent {
            id: a.id.to_string(),
            namespace: a.namespace.clone(),
            name: a.name.clone(),
            runtime: a.runtime.clone(),
            model_id: a.model_id.clone(),
            configuration_json: a.configuration.to_string(),
            status: a.status.as_str().into(),
            created_at_ms: a.created_at,
            updated_at_ms: a.updated_at,
            version: a.version,
            warnings: Vec::new(),
        }
    }
}

/// A team as clients see it: members carry their agent's name (from `names`, by id; empty for
/// an id with no agent).
pub(super) fn team(team: &Team, names: &HashMap<Uuid, String>) -> pb::Team {
    pb::Team {
        id: team.id.to_string(),
        namespace: team.namespace.clone(),
        name: team.name.clone(),
        strategy: team.strategy.as_str().into(),
        members: team
            .members
            .iter()
            .map(|m| pb::TeamMember {
                agent: names.get(&m.agent_id).cloned().unwrap_or_default(),
                role: m.role.clone(),
                agent_id: m.agent_id.to_string(),
            })
            .collect(),
        configuration_json: serde_json::to_string(&team.config).unwrap_or_default(),
        status: team.status.as_str().into(),
        created_at_ms: team.created_at,
        updated_at_ms: team.updated_at,
        version: team.version,
    }
}

impl From<Usage> for pb::Usage {
    fn from(u: Usage) -> Self {
        pb::Usage {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cost_usd: u.cost_usd,
            tool_calls: u.tool_calls,
        }
    }
}

impl From<pb::Usage> for Usage {
    fn from(u: pb::Usage) -> Self {
        Usage {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cost_usd: u.cost_usd,
            tool_calls: u.tool_calls,
        }
    }
}

impl From<&Failure> for pb::Failure {
    fn from(f: &Failure) -> Self {
        pb::Failure {
            code: f.code.clone(),
            message: f.message.clone(),
            retryable: f.retryable,
            details_json: if f.details.is_null() {
                String::new()
            } else {
                f.details.to_string()
            },
        }
    }
}

impl TryFrom<pb::Failure> for Failure {
    type Error = Status;

    fn try_from(f: pb::Failure) -> Result<Self, Status> {
        super::validate::failure(Some(f))
    }
}

impl TryFrom<pb::RetryPolicy> for RetryPolicy {
    type Error = Status;

    fn try_from(p: pb::RetryPolicy) -> Result<Self, Status> {
        let policy = RetryPolicy {
            initial_interval_ms: p.initial_interval_ms,
            backoff_coefficient: if p.backoff_coefficient == 0.0 {
                2.0
            } else {
                p.backoff_coefficient
            },
            maximum_interval_ms: if p.maximum_interval_ms == 0 {
                // The default, capped so that a valid initial interval never makes it invalid.
                p.initial_interval_ms
                    .saturating_mul(100)
                    .min(crate::domain::MAX_DURATION_MS.max(p.initial_interval_ms))
            } else {
                p.maximum_interval_ms
            },
            maximum_attempts: p.maximum_attempts,
            non_retryable_codes: p.non_retryable_codes,
        };
        policy.validate().map_err(invalid)?;
        Ok(policy)
    }
}

impl TryFrom<pb::Timeouts> for Timeouts {
    type Error = Status;

    fn try_from(t: pb::Timeouts) -> Result<Self, Status> {
        let timeouts = Timeouts {
            schedule_to_start_ms: t.schedule_to_start_ms,
            start_to_close_ms: t.start_to_close_ms,
            heartbeat_ms: if t.heartbeat_ms == 0 {
                Timeouts::default().heartbeat_ms
            } else {
                t.heartbeat_ms
            },
        };
        timeouts.validate().map_err(invalid)?;
        Ok(timeouts)
    }
}

/// The execution as clients see it.
pub(crate) fn execution(view: &ExecutionView) -> pb::Execution {
    let record = &view.record;
    let activity = view.activity.as_ref().map(|a| {
        let (description, worker) = match &a.state {
            ActivityState::BackingOff {
                remaining_ms,
                next_attempt,
            } => (
                format!("backing off for {remaining_ms} ms before attempt {next_attempt}"),
                String::new(),
            ),
            ActivityState::Running { worker } => (format!("running on {worker}"), worker.clone()),
            ActivityState::Waiting {
                runtime,
                queue,
                unserved,
                refused,
            } => {
                let mut waiting =
                    format!("waiting for a worker with runtime `{runtime}` on queue `{queue}`");
                if *unserved {
                    // Say why it waits when nobody can take it: the fleet lacks the runtime or
                    // the queue.
                    waiting.push_str(&format!(
                        ": no connected worker offers runtime `{runtime}` on queue `{queue}`"
                    ));
                }
                if let Some(why) = refused {
                    waiting.push_str(&format!(": {why}"));
                }
                (waiting, String::new())
            }
            ActivityState::Scheduled => ("scheduled".to_string(), String::new()),
        };
        pb::ActivityView {
            activity_id: a.activity_id.clone(),
            attempt: a.attempt,
            state: description,
            worker,
            cancel_requested: a.cancel_requested,
        }
    });
    let started = record.started_at.unwrap_or(0);
    pb::Execution {
        id: record.id.to_string(),
        namespace: record.namespace.clone(),
        kind: record.kind.as_str().into(),
        agent_id: id_string(record.agent_id),
        runtime: record.runtime.clone(),
        status: record.status.as_str().into(),
        input_json: record.input.to_string(),
        result_json: record
            .result
            .as_ref()
            .map(|r| r.to_string())
            .unwrap_or_default(),
        failure: record.failure.as_ref().map(Into::into),
        parent_id: id_string(record.parent_id),
        root_id: record.root_id.to_string(),
        retry_of: id_string(record.retry_of),
        request_id: record.request_id.clone().unwrap_or_default(),
        labels: record
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        usage: Some(record.usage.into()),
        created_at_ms: record.created_at,
        started_at_ms: started,
        closed_at_ms: record.closed_at.unwrap_or(0),
        duration_ms: record
            .closed_at
            .map(|c| c - record.started_at.unwrap_or(record.created_at))
            .unwrap_or(0),
        activity,
        history_length: record.next_seq.saturating_sub(1),
        output_length: record.output_seq,
        queue: view.queue.clone(),
        team_id: id_string(record.team_id),
        child_key: record.child_key.clone().unwrap_or_default(),
        interactive: view.interactive,
        waiting_for: view
            .waiting_for
            .map(|w| w.as_str().to_string())
            .unwrap_or_default(),
        approvals: view.approvals.iter().map(approval).collect(),
        turns: view.turns,
    }
}

/// An approval as clients see it.
fn approval(a: &crate::machine::Approval) -> pb::Approval {
    use crate::domain::ApprovalDecision;
    let (state, message) = match &a.decision {
        None => ("pending", String::new()),
        Some(ApprovalDecision::Allow { .. }) => ("allowed", String::new()),
        Some(ApprovalDecision::Deny { message }) => ("denied", message.clone()),
    };
    pb::Approval {
        approval_id: a.approval_id.clone(),
        activity_id: a.activity_id.clone(),
        tool: a.tool.clone(),
        input_json: a.input.to_string(),
        state: state.into(),
        message,
    }
}

impl From<&StoredChunk> for pb::OutputChunk {
    fn from(c: &StoredChunk) -> Self {
        pb::OutputChunk {
            seq: c.seq,
            activity_id: c.activity_id.clone(),
            attempt: c.attempt,
            kind: c.kind.clone(),
            data_json: c.data.to_string(),
            created_at_ms: c.created_at,
            execution_id: c.source_id.unwrap_or(c.execution_id).to_string(),
            child_key: c.source_key.clone().unwrap_or_default(),
            reused_from: id_string(c.reused_from),
            superseded: c.superseded,
        }
    }
}

impl From<&StoredEvent> for pb::HistoryEvent {
    fn from(e: &StoredEvent) -> Self {
        pb::HistoryEvent {
            seq: e.seq,
            r#type: e.event.event_type().into(),
            payload_json: serde_json::to_string(&e.event).unwrap_or_default(),
            created_at_ms: e.created_at,
        }
    }
}

/// A decision as a worker receives it.
pub(crate) fn tool_decision(
    approval_id: &str,
    decision: &crate::domain::ApprovalDecision,
) -> pb::ToolDecision {
    use crate::domain::ApprovalDecision;
    match decision {
        ApprovalDecision::Allow { updated_input } => pb::ToolDecision {
            approval_id: approval_id.into(),
            allow: true,
            message: String::new(),
            updated_input_json: updated_input
                .as_ref()
                .map(|v| v.to_string())
                .unwrap_or_default(),
        },
        ApprovalDecision::Deny { message } => pb::ToolDecision {
            approval_id: approval_id.into(),
            allow: false,
            message: message.clone(),
            updated_input_json: String::new(),
        },
    }
}

/// A decision the server sent; an updated input that is not JSON is dropped (the tool runs
/// with the input asked about).
pub(crate) fn decision_of(d: pb::ToolDecision) -> (String, crate::domain::ApprovalDecision) {
    use crate::domain::ApprovalDecision;
    let decision = if d.allow {
        ApprovalDecision::Allow {
            updated_input: serde_json::from_str(&d.updated_input_json).ok(),
        }
    } else {
        ApprovalDecision::Deny { message: d.message }
    };
    (d.approval_id, decision)
}
