//! The wire shapes of scripted replies: Anthropic streaming events and non-streaming messages.

use std::time::Duration;

use serde_json::{Value, json};

/// What the fake answers to one `POST /v1/messages`.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A text answer, streamed in one delta.
    Text(String),
    /// Optional text, then one tool call; the model's turn ends with `stop_reason: tool_use`.
    ToolUse {
        /// Text before the tool call (the CLI shows it as its own `assistant` message).
        text: Option<String>,
        /// The tool's name, e.g. `Bash`.
        name: String,
        /// The tool's input.
        input: Value,
    },
    /// A text answer streamed piece by piece, `delay` before each piece.
    SlowText {
        /// The pieces, in order.
        pieces: Vec<String>,
        /// The pause before each piece.
        delay: Duration,
    },
    /// An HTTP error with an Anthropic error body.
    Error {
        /// The HTTP status.
        status: u16,
        /// The message in the error body.
        message: String,
    },
}

impl Reply {
    /// A text answer.
    pub fn text(text: impl Into<String>) -> Self {
        Reply::Text(text.into())
    }

    /// A call of the Bash tool running `command`.
    pub fn bash(command: impl Into<String>) -> Self {
        Reply::ToolUse {
            text: Some("I'll run a command.".into()),
            name: "Bash".into(),
            input: json!({"command": command.into(), "description": "Run the scripted command"}),
        }
    }

    /// Text that takes `pieces.len() * delay` to stream.
    pub fn slow_text(pieces: &[&str], delay: Duration) -> Self {
        Reply::SlowText {
            pieces: pieces.iter().map(|p| (*p).to_owned()).collect(),
            delay,
        }
    }

    /// An HTTP error.
    pub fn error(status: u16) -> Self {
        Reply::Error {
            status,
            message: "fake: scripted error".into(),
        }
    }
}

/// The Anthropic error type for an HTTP status, as the real API names them.
pub fn error_type(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

/// One content block of a reply, with its deltas.
struct Block {
    start: Value,
    deltas: Vec<Value>,
    full: Value,
}

/// The blocks and stop reason of a non-error reply. `n` numbers the tool use id.
fn blocks(reply: &Reply, n: u64) -> (Vec<Block>, &'static str) {
    let text = |text: &str| Block {
        start: json!({"type": "text", "text": ""}),
        deltas: vec![json!({"type": "text_delta", "text": text})],
        full: json!({"type": "text", "text": text}),
    };
    match reply {
        Reply::Text(t) => (vec![text(t)], "end_turn"),
        Reply::SlowText { pieces, .. } => {
            let all = pieces.concat();
            let block = Block {
                start: json!({"type": "text", "text": ""}),
                deltas: pieces
                    .iter()
                    .map(|p| json!({"type": "text_delta", "text": p}))
                    .collect(),
                full: json!({"type": "text", "text": all}),
            };
            (vec![block], "end_turn")
        }
        Reply::ToolUse {
            text: lead,
            name,
            input,
        } => {
            let id = format!("toolu_fake{n:06}");
            let tool = Block {
                start: json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                deltas: vec![
                    json!({"type": "input_json_delta", "partial_json": input.to_string()}),
                ],
                full: json!({"type": "tool_use", "id": id, "name": name, "input": input}),
            };
            let mut all: Vec<Block> = lead.iter().map(|t| text(t)).collect();
            all.push(tool);
            (all, "tool_use")
        }
        Reply::Error { .. } => (Vec::new(), "end_turn"),
    }
}

fn usage() -> Value {
    json!({"input_tokens": 12, "output_tokens": 20, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0})
}

/// The streaming events of a reply, each with the pause to take before sending it.
pub fn events(reply: &Reply, model: &str, n: u64) -> Vec<(Duration, &'static str, Value)> {
    let delay = match reply {
        Reply::SlowText { delay, .. } => *delay,
        _ => Duration::ZERO,
    };
    let (blocks, stop_reason) = blocks(reply, n);
    let mut out = vec![(
        Duration::ZERO,
        "message_start",
        json!({"type": "message_start", "message": {
            "id": format!("msg_fake{n:06}"), "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 12, "output_tokens": 1, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        }}),
    )];
    for (index, block) in blocks.into_iter().enumerate() {
        let start =
            json!({"type": "content_block_start", "index": index, "content_block": block.start});
        out.push((Duration::ZERO, "content_block_start", start));
        for delta in block.deltas {
            let event = json!({"type": "content_block_delta", "index": index, "delta": delta});
            out.push((delay, "content_block_delta", event));
        }
        let stop = json!({"type": "content_block_stop", "index": index});
        out.push((Duration::ZERO, "content_block_stop", stop));
    }
    let delta = json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null}, "usage": {"output_tokens": 20}});
    out.push((Duration::ZERO, "message_delta", delta));
    out.push((
        Duration::ZERO,
        "message_stop",
        json!({"type": "message_stop"}),
    ));
    out
}

/// The non-streaming `message` object of a reply.
pub fn message(reply: &Reply, model: &str, n: u64) -> Value {
    let (blocks, stop_reason) = blocks(reply, n);
    json!({
        "id": format!("msg_fake{n:06}"), "type": "message", "role": "assistant", "model": model,
        "content": blocks.into_iter().map(|b| b.full).collect::<Vec<_>>(),
        "stop_reason": stop_reason, "stop_sequence": null, "usage": usage(),
    })
}
