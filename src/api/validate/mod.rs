//! Checks of request fields, each failing with a message that says what to fix. Every field of
//! every request passes through here before anything is written, so SQLite and PostgreSQL see
//! the same values and answer alike; the bounds are listed in [`limits`].

mod conversation;
mod numbers;
pub(crate) mod quota;
mod text;
mod worker;

pub mod limits;

use std::collections::BTreeMap;

use tonic::Status;
use uuid::Uuid;

use super::error::invalid;
use crate::domain::DEFAULT_NAMESPACE;
use crate::store::AgentKey;
use limits::*;

pub(crate) use conversation::{
    approval_id, asks, conversation, decision, message, request_id_or_new, start_prompts,
};
pub(crate) use numbers::{duration_ms, seq, usage};
pub(crate) use text::{no_nul, plain, quote, text};
pub(crate) use worker::{
    chunk, failure, lease_part, policy, poller, registration, report_json, worker_id, workspace,
};

/// Limits the API enforces, set per server (`quota.rs` checks the ones on what workers send
/// and on retry policies).
#[derive(Debug, Clone)]
pub struct Limits {
    /// The largest prompt (all turns together), in bytes.
    pub max_prompt_bytes: usize,
    /// The largest page a list returns.
    pub max_page_size: u32,
    /// The most turns (prompts) one execution may have; at most [`MAX_TURNS`].
    pub max_turns: usize,
    /// The most attempts a retry policy may allow; 0 ("unlimited") is given this.
    pub max_attempts: u32,
    /// The largest output chunk a worker may send (its kind and JSON data), in bytes.
    pub max_chunk_bytes: usize,
    /// The most bytes of chunks one worker message may carry.
    pub max_batch_bytes: usize,
    /// The largest checkpoint a worker may send, as JSON, in bytes.
    pub max_checkpoint_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_prompt_bytes: 1024 * 1024,
            max_page_size: 1000,
            max_turns: MAX_TURNS,
            max_attempts: crate::domain::MAX_ATTEMPTS,
            max_chunk_bytes: crate::contract::MAX_DOCUMENT_BYTES,
            max_batch_bytes: crate::contract::MAX_REPORT_BYTES,
            max_checkpoint_bytes: crate::contract::MAX_DOCUMENT_BYTES,
        }
    }
}

/// The namespace, `default` when empty.
pub(crate) fn namespace(s: &str) -> Result<String, Status> {
    if s.is_empty() {
        return Ok(DEFAULT_NAMESPACE.into());
    }
    if s.len() > 63
        || !s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err(invalid(format!(
            "namespace `{}` is invalid: use 1-63 lowercase letters, digits, `-` or `_`",
            quote(s)
        )));
    }
    Ok(s.into())
}

/// A task queue, `default` when empty.
pub(crate) fn queue(field: &str, s: &str) -> Result<String, Status> {
    if s.is_empty() {
        return Ok(crate::domain::DEFAULT_QUEUE.into());
    }
    if s.len() > 63
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(invalid(format!(
            "{field} `{}` is invalid: use 1-63 letters, digits, `-`, `_` or `.`",
            quote(s)
        )));
    }
    Ok(s.into())
}

/// An agent name for CreateAgent.
pub(crate) fn agent_name(s: &str) -> Result<String, Status> {
    if s.is_empty() {
        return Err(invalid("name is required"));
    }
    // Single spaces between words are allowed ("Code Reviewer", as users name agents over the
    // HTTP API); leading, trailing and doubled spaces are not, so two names that look alike are
    // the same name.
    if s.len() > MAX_NAME_BYTES
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ' '))
        || s.starts_with(' ')
        || s.ends_with(' ')
        || s.contains("  ")
    {
        return Err(invalid(format!(
            "name `{}` is invalid: use 1-{MAX_NAME_BYTES} letters, digits, `-`, `_`, `.` or \
             single spaces between words",
            quote(s)
        )));
    }
    if Uuid::parse_str(s).is_ok() {
        return Err(invalid(format!(
            "name `{s}` looks like an id; choose a name that is not a UUID"
        )));
    }
    Ok(s.into())
}

/// An agent named by id or name.
pub(crate) fn agent_key(s: &str) -> Result<AgentKey, Status> {
    if s.is_empty() {
        return Err(invalid("agent is required: give its name or id"));
    }
    // Names are looked up as text: refuse what no name can be before it reaches a store.
    if s.len() > MAX_NAME_BYTES || s.chars().any(char::is_control) {
        return Err(invalid(format!(
            "`{}` is neither a name (1-{MAX_NAME_BYTES} letters, digits, `-`, `_`, `.` or spaces) nor an id",
            quote(s)
        )));
    }
    Ok(match Uuid::parse_str(s) {
        Ok(id) => AgentKey::Id(id),
        Err(_) => AgentKey::Name(s.into()),
    })
}

/// An id field.
pub(crate) fn id(field: &str, s: &str) -> Result<Uuid, Status> {
    if s.is_empty() {
        return Err(invalid(format!("{field} is required")));
    }
    Uuid::parse_str(s).map_err(|_| {
        invalid(format!(
            "{field} `{}` is not a valid id (a UUID like 0192f1c4-...)",
            quote(s)
        ))
    })
}

/// An optional id field (empty = none).
pub(crate) fn optional_id(field: &str, s: &str) -> Result<Option<Uuid>, Status> {
    if s.is_empty() {
        Ok(None)
    } else {
        id(field, s).map(Some)
    }
}

/// A JSON object field of at most `max` bytes, without NUL in any string; empty means `{}`.
pub(crate) fn json_object(field: &str, s: &str, max: usize) -> Result<serde_json::Value, Status> {
    if s.trim().is_empty() {
        return Ok(serde_json::json!({}));
    }
    let value = text::json(field, s, max)?;
    if !value.is_object() {
        return Err(invalid(format!(
            "{field} must be a JSON object, got {}",
            json_kind(&value)
        )));
    }
    Ok(value)
}

/// An agent's configuration: a JSON object within [`MAX_CONFIGURATION_BYTES`] whose only
/// top-level key is `runtime_config` (each runtime checks the keys inside it).
pub(crate) fn configuration(s: &str) -> Result<serde_json::Value, Status> {
    let value = json_object("configuration_json", s, MAX_CONFIGURATION_BYTES)?;
    if let Some(key) = value
        .as_object()
        .and_then(|map| map.keys().find(|k| k.as_str() != "runtime_config"))
    {
        return Err(invalid(format!(
            "configuration_json key `{}` is unknown; the only top-level key is `runtime_config`",
            quote(key)
        )));
    }
    Ok(value)
}

/// A runtime name of an agent; empty means `default`. Whether the runtime exists is checked
/// against the registry afterwards.
pub(crate) fn runtime(s: &str) -> Result<String, Status> {
    if s.is_empty() {
        return Ok("default".into());
    }
    plain("runtime", s, MAX_RUNTIME_BYTES)?;
    Ok(s.into())
}

/// A model id: printable, within [`MAX_MODEL_ID_BYTES`].
pub(crate) fn model_id(s: &str) -> Result<String, Status> {
    plain("model_id", s, MAX_MODEL_ID_BYTES)?;
    Ok(s.into())
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The prompts of a start: `prompt` or `prompts`, not both, none empty, within the size limit.
pub(crate) fn prompts(
    prompt: &str,
    prompts: &[String],
    limits: &Limits,
) -> Result<Vec<String>, Status> {
    let all: Vec<String> = match (prompt.is_empty(), prompts.is_empty()) {
        (false, false) => return Err(invalid("give either prompt or prompts, not both")),
        (true, true) => return Err(invalid("prompt is required (or prompts, one per turn)")),
        (false, true) => vec![prompt.to_string()],
        (true, false) => prompts.to_vec(),
    };
    let max_turns = limits.max_turns.min(MAX_TURNS);
    if all.len() > max_turns {
        return Err(invalid(format!(
            "{} prompts given; an execution has at most {max_turns} turns (server setting \
             --max-turns)",
            all.len()
        )));
    }
    if let Some(i) = all.iter().position(|p| p.trim().is_empty()) {
        return Err(invalid(format!("prompt {} is empty", i + 1)));
    }
    for (i, p) in all.iter().enumerate() {
        no_nul(&format!("prompt {}", i + 1), p)?;
    }
    let size: usize = all.iter().map(String::len).sum();
    if size > limits.max_prompt_bytes {
        return Err(invalid(format!(
            "prompt is {size} bytes; the limit is {} bytes (server setting --max-prompt-bytes)",
            limits.max_prompt_bytes
        )));
    }
    Ok(all)
}

/// An idempotency key; empty means none. Ids with the retry prefix are the server's own.
pub(crate) fn request_id(s: &str) -> Result<Option<String>, Status> {
    use crate::engine::RETRY_REQUEST_PREFIX;
    if s.is_empty() {
        return Ok(None);
    }
    text("request_id", s, MAX_REQUEST_ID_BYTES)?;
    if s.starts_with(RETRY_REQUEST_PREFIX) {
        return Err(invalid(format!(
            "request ids starting with `{RETRY_REQUEST_PREFIX}` are reserved for retries"
        )));
    }
    Ok(Some(s.into()))
}

/// Labels: at most [`MAX_LABELS`], keys of 1-63 printable bytes, values up to 256 bytes
/// without NUL.
pub(crate) fn labels(
    labels: &std::collections::HashMap<String, String>,
) -> Result<BTreeMap<String, String>, Status> {
    if labels.len() > MAX_LABELS {
        return Err(invalid(format!(
            "{} labels given; at most {MAX_LABELS} are allowed",
            labels.len()
        )));
    }
    for (key, value) in labels {
        if key.is_empty() || key.len() > MAX_LABEL_KEY_BYTES {
            return Err(invalid(format!(
                "label key `{}` must be 1-{MAX_LABEL_KEY_BYTES} bytes",
                quote(key)
            )));
        }
        plain("label key", key, MAX_LABEL_KEY_BYTES)?;
        text(
            &format!("the value of label `{}`", quote(key)),
            value,
            MAX_LABEL_VALUE_BYTES,
        )?;
    }
    Ok(labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// A page size: 0 means the default (50).
pub(crate) fn page_size(size: u32, limits: &Limits) -> Result<u32, Status> {
    match size {
        0 => Ok(50),
        n if n > limits.max_page_size => Err(invalid(format!(
            "page_size {n} is over the limit of {}",
            limits.max_page_size
        ))),
        n => Ok(n),
    }
}

const PAGE_TOKEN_PREFIX: &str = "p1.";

/// Reads a page token this server issued.
pub(crate) fn page_token(token: &str) -> Result<Option<Uuid>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    token
        .strip_prefix(PAGE_TOKEN_PREFIX)
        .and_then(|rest| Uuid::parse_str(rest).ok())
        .map(Some)
        .ok_or_else(|| {
            invalid(format!(
                "page_token `{}` is not one this server issued; pass the next_page_token of the previous response, or nothing for the first page",
                quote(token)
            ))
        })
}

/// The token of the page after the one ending at `last` (none when the page was not full).
pub(crate) fn next_page_token(last: Option<Uuid>, returned: usize, page_size: u32) -> String {
    match last {
        Some(id) if returned as u32 == page_size => format!("{PAGE_TOKEN_PREFIX}{id}"),
        _ => String::new(),
    }
}
