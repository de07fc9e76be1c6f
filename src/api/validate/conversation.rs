//! Checks of the fields that put a person in the loop: starting a conversation, its messages,
//! and answers to approvals.

use tonic::Status;

use super::{Limits, duration_ms, no_nul, quote, text};
use crate::api::error::invalid;
use crate::domain::{ApprovalDecision, Conversation, DEFAULT_IDLE_TIMEOUT_MS};

/// The conversation a start asks for: `None` unless `interactive`; an idle timeout of 0 means
/// the default (24 hours). An idle timeout without `interactive` is refused, as is a team.
pub(crate) fn conversation(
    interactive: bool,
    idle_timeout_ms: u64,
    team: bool,
) -> Result<Option<Conversation>, Status> {
    if !interactive {
        if idle_timeout_ms != 0 {
            return Err(invalid(
                "idle_timeout_ms applies to interactive executions; set interactive too, or leave it out",
            ));
        }
        return Ok(None);
    }
    if team {
        return Err(invalid(
            "interactive applies to agent executions; a team runs its members' turns itself",
        ));
    }
    let idle_timeout_ms = match duration_ms("idle_timeout_ms", idle_timeout_ms)? {
        0 => DEFAULT_IDLE_TIMEOUT_MS,
        ms => ms,
    };
    Ok(Some(Conversation { idle_timeout_ms }))
}

/// The prompts of a start: as [`super::prompts`], except that a conversation may start with
/// none (it then waits for its first message).
pub(crate) fn start_prompts(
    prompt: &str,
    prompts: &[String],
    interactive: bool,
    limits: &Limits,
) -> Result<Vec<String>, Status> {
    if interactive && prompt.is_empty() && prompts.is_empty() {
        return Ok(Vec::new());
    }
    super::prompts(prompt, prompts, limits)
}

/// A message to a conversation: not blank, no NUL, within the prompt size limit.
pub(crate) fn message(s: &str, limits: &Limits) -> Result<String, Status> {
    if s.trim().is_empty() {
        return Err(invalid("text is required: the message to send"));
    }
    if s.len() > limits.max_prompt_bytes {
        return Err(invalid(format!(
            "text is {} bytes; the limit is {} bytes (server setting --max-prompt-bytes)",
            s.len(),
            limits.max_prompt_bytes
        )));
    }
    no_nul("text", s)?;
    Ok(s.into())
}

/// An answer to an approval: allow (with an optional JSON input to run the tool with instead)
/// or deny (with the message the model receives).
pub(crate) fn decision(
    allow: bool,
    message: &str,
    updated_input_json: &str,
) -> Result<ApprovalDecision, Status> {
    text("message", message, super::limits::MAX_REASON_BYTES)?;
    if allow {
        if !message.is_empty() {
            return Err(invalid(
                "message goes with a denial (allow false); leave it out to allow",
            ));
        }
        let updated_input = match updated_input_json.trim() {
            "" => None,
            json => Some(super::text::json(
                "updated_input_json",
                json,
                super::limits::MAX_REPORT_JSON_BYTES,
            )?),
        };
        return Ok(ApprovalDecision::Allow { updated_input });
    }
    if !updated_input_json.is_empty() {
        return Err(invalid(format!(
            "updated_input_json `{}` goes with allow; a denial runs no tool",
            quote(updated_input_json)
        )));
    }
    let message = match message.trim() {
        "" => "The user denied this tool call.".to_string(),
        _ => message.to_string(),
    };
    Ok(ApprovalDecision::Deny { message })
}

/// An approval id: printable, within the request id limit.
pub(crate) fn approval_id(s: &str) -> Result<String, Status> {
    if s.is_empty() {
        return Err(invalid(
            "approval_id is required (see the execution's approvals)",
        ));
    }
    super::plain("approval_id", s, super::limits::MAX_REQUEST_ID_BYTES)?;
    Ok(s.into())
}

/// An idempotency key of a message or an answer; empty means the server draws one.
pub(crate) fn request_id_or_new(s: &str) -> Result<String, Status> {
    Ok(super::request_id(s)?.unwrap_or_else(|| uuid::Uuid::now_v7().to_string()))
}

/// The most tool calls one progress report may ask about.
pub const MAX_ASKS: usize = 16;

/// The tool calls a progress report asks about: ids and tools printable, inputs JSON.
pub(crate) fn asks(
    asks: Vec<crate::api::pb::ToolAsk>,
) -> Result<Vec<crate::contract::Ask>, Status> {
    use super::limits::{MAX_REPORT_JSON_BYTES, MAX_REQUEST_ID_BYTES};
    if asks.len() > MAX_ASKS {
        return Err(invalid(format!(
            "{} asks given; a progress report carries at most {MAX_ASKS}",
            asks.len()
        )));
    }
    asks.into_iter()
        .map(|a| {
            if a.id.is_empty() || a.tool.is_empty() {
                return Err(invalid("asks[].id and asks[].tool are required"));
            }
            super::plain("asks[].id", &a.id, MAX_REQUEST_ID_BYTES)?;
            super::plain("asks[].tool", &a.tool, MAX_REQUEST_ID_BYTES)?;
            let input = match a.input_json.trim() {
                "" => serde_json::json!({}),
                s => super::text::json("asks[].input_json", s, MAX_REPORT_JSON_BYTES)?,
            };
            Ok(crate::contract::Ask {
                id: a.id,
                tool: a.tool,
                input,
            })
        })
        .collect()
}
