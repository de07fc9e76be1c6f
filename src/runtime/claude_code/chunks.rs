//! Output chunks, and the parts of reading stdout that need no state: user messages, control
//! requests from the CLI, and field helpers.

use serde_json::{Map, Value, json};

/// One output chunk for [`super::super::TurnIo::emit`].
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Chunk {
    /// `text`, `thinking`, `tool_use`, `tool_result`, `result` or `status`.
    pub kind: &'static str,
    /// The chunk's content.
    pub data: Value,
}

impl Chunk {
    /// A chunk of `kind`.
    pub(super) fn new(kind: &'static str, data: Value) -> Self {
        Chunk { kind, data }
    }

    /// A `status` chunk: `{"event": event, ...fields}`. A field of the CLI's own called `event`
    /// (`system/ui_invalidate` has one) is kept as `cli_event`.
    pub fn status(event: &str, fields: Value) -> Self {
        let mut data = match fields {
            Value::Object(fields) => fields,
            _ => Map::new(),
        };
        if let Some(theirs) = data.remove("event") {
            data.insert("cli_event".into(), theirs);
        }
        data.insert("event".into(), Value::from(event));
        Chunk::new("status", Value::Object(data))
    }
}

/// What the runtime does with one stdout line.
#[derive(Debug, Default, PartialEq)]
pub(super) struct LineOutcome {
    /// Chunks to emit, in order.
    pub chunks: Vec<Chunk>,
    /// A message to write to the CLI's stdin (the answer to a control request from the CLI).
    pub reply: Option<Value>,
    /// Set when this line revealed the session id: the moment to save a checkpoint.
    pub session_started: Option<String>,
    /// A permission ask of the CLI (`can_use_tool`), to answer after asking the approver.
    pub ask: Option<super::approve::PermissionAsk>,
}

/// Tool results and the CLI's own user-side notes ("[Request interrupted by user]").
pub(super) fn user(message: &Map<String, Value>, outcome: &mut LineOutcome) {
    // `--replay-user-messages` echoes the prompt back; it is not output of the turn.
    if message.get("isReplay").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let inner = message.get("message");
    if let Some(text) = inner.and_then(|m| m.get("content")).and_then(Value::as_str) {
        outcome
            .chunks
            .push(Chunk::status("user_message", json!({"text": text})));
        return;
    }
    for block in content_blocks(inner) {
        match str_field(block, "type").unwrap_or_default() {
            "tool_result" => outcome.chunks.push(Chunk::new(
                "tool_result",
                json!({
                    "tool_use_id": block.get("tool_use_id"),
                    "content": block.get("content"),
                    "is_error": block.get("is_error").and_then(Value::as_bool).unwrap_or(false),
                }),
            )),
            "text" => outcome.chunks.push(Chunk::status(
                "user_message",
                json!({"text": block.get("text")}),
            )),
            _ => {}
        }
    }
}

/// The answer to a control request from the CLI other than a permission ask (`approve.rs`).
/// This runtime registers no hooks and no in-process MCP servers, so such a request means a
/// mismatch; answering with an error (rather than not at all) keeps the CLI from waiting forever.
pub(super) fn refuse_control_request(message: &Map<String, Value>) -> Value {
    let request_id = message.get("request_id").cloned().unwrap_or_default();
    let subtype = message
        .get("request")
        .and_then(|r| r.get("subtype"))
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    json!({
        "type": "control_response",
        "response": {
            "subtype": "error",
            "request_id": request_id,
            "error": format!("the Cairn claude_code runtime does not handle `{subtype}` requests"),
        }
    })
}

/// The content blocks of an `assistant` or `user` message (none if the shape is unexpected).
pub(super) fn content_blocks(message: Option<&Value>) -> impl Iterator<Item = &Map<String, Value>> {
    message
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
}

pub(super) fn str_field<'a>(message: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    message.get(key).and_then(Value::as_str)
}

/// An HTTP status, whether the CLI wrote it as a number or as a string.
pub(super) fn status_code(value: Option<&Value>) -> Option<u16> {
    match value? {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The named fields that are present, in the given order.
pub(super) fn pick_fields(message: &Map<String, Value>, keys: &[&str]) -> Map<String, Value> {
    keys.iter()
        .filter_map(|key| message.get(*key).map(|v| ((*key).to_owned(), v.clone())))
        .collect()
}
