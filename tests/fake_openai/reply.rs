//! Scripted replies of the fake server: JSON errors and event streams built step by step.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::Notify;

/// Holds a streamed reply at a point until the test opens it, so a test can observe what the
/// client did with the part it already has.
#[derive(Debug, Clone, Default)]
pub struct Gate(pub(super) Arc<Notify>);

impl Gate {
    /// A closed gate.
    pub fn new() -> Gate {
        Gate::default()
    }

    /// Lets the reply go on (also if it has not reached the gate yet).
    pub fn open(&self) {
        self.0.notify_one();
    }
}

/// A scripted answer: a JSON body with a status, or an event stream built step by step.
#[derive(Debug, Clone)]
pub struct Reply {
    pub(super) status: u16,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: ReplyBody,
}

#[derive(Debug, Clone)]
pub(super) enum ReplyBody {
    Json(Value),
    Stream(Vec<Step>),
}

#[derive(Debug, Clone)]
pub(super) enum Step {
    /// A chunk's `choices`/`usage` part; id, object and model are added when sent.
    Chunk(Value),
    /// A `data:` line sent as it is.
    Raw(String),
    /// Wait for the gate.
    Gate(Gate),
    /// Send nothing more and never end, until the client hangs up.
    Hang,
}

impl Reply {
    /// A streamed answer (status 200) with no steps yet. Without [`Reply::done`] the stream
    /// ends without `data: [DONE]`, as a cut-off stream does.
    pub fn stream() -> Reply {
        Reply {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            body: ReplyBody::Stream(Vec::new()),
        }
    }

    /// A complete streamed text answer: one chunk per piece, `stop`, usage (10 in, one token per
    /// piece out), `[DONE]`.
    pub fn text(pieces: &[&str]) -> Reply {
        let mut reply = Reply::stream().role();
        for piece in pieces {
            reply = reply.content(piece);
        }
        reply.finish("stop").usage(10, pieces.len() as u64).done()
    }

    /// A complete streamed answer that calls one tool, its arguments split into `fragments`.
    pub fn tool_call(id: &str, name: &str, fragments: &[&str]) -> Reply {
        let mut reply = Reply::stream().tool_call_start(0, id, name);
        for fragment in fragments {
            reply = reply.tool_args(0, fragment);
        }
        reply.finish("tool_calls").usage(20, 5).done()
    }

    /// An OpenAI-style JSON error with this status.
    pub fn error(status: u16, message: &str) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: ReplyBody::Json(json!({
                "error": {"message": message, "type": "fake_error", "param": null, "code": status.to_string()}
            })),
        }
    }

    /// Adds a response header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn step(mut self, step: Step) -> Reply {
        match &mut self.body {
            ReplyBody::Stream(steps) => steps.push(step),
            ReplyBody::Json(_) => panic!("only a streamed reply has steps"),
        }
        self
    }

    fn delta(self, delta: Value, finish_reason: Value) -> Reply {
        self.step(Step::Chunk(json!({
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
            "usage": null,
        })))
    }

    /// The usual first delta, `{"role":"assistant","content":""}`.
    pub fn role(self) -> Reply {
        self.delta(json!({"role": "assistant", "content": ""}), Value::Null)
    }

    /// A content delta.
    pub fn content(self, text: &str) -> Reply {
        self.delta(json!({"content": text}), Value::Null)
    }

    /// The first fragment of tool call `index`.
    pub fn tool_call_start(self, index: u64, id: &str, name: &str) -> Reply {
        let call = json!({"index": index, "id": id, "type": "function", "function": {"name": name, "arguments": ""}});
        self.delta(
            json!({"role": "assistant", "content": null, "tool_calls": [call]}),
            Value::Null,
        )
    }

    /// A piece of tool call `index`'s arguments.
    pub fn tool_args(self, index: u64, fragment: &str) -> Reply {
        let call = json!({"index": index, "function": {"arguments": fragment}});
        self.delta(json!({"tool_calls": [call]}), Value::Null)
    }

    /// The chunk with `finish_reason`.
    pub fn finish(self, reason: &str) -> Reply {
        self.delta(json!({}), json!(reason))
    }

    /// The usage chunk (`choices: []`).
    pub fn usage(self, prompt_tokens: u64, completion_tokens: u64) -> Reply {
        self.step(Step::Chunk(json!({
            "choices": [],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        })))
    }

    /// `data: {"error": ...}` in the middle of the stream, as LiteLLM sends once it has begun.
    pub fn error_event(self, message: &str) -> Reply {
        self.step(Step::Raw(
            json!({"error": {"message": message, "type": "fake_error"}}).to_string(),
        ))
    }

    /// `data: [DONE]`.
    pub fn done(self) -> Reply {
        self.step(Step::Raw("[DONE]".into()))
    }

    /// Waits at this point until `gate` is opened.
    pub fn gate(self, gate: &Gate) -> Reply {
        self.step(Step::Gate(gate.clone()))
    }

    /// Stops sending here and keeps the stream open until the client hangs up.
    pub fn hang(self) -> Reply {
        self.step(Step::Hang)
    }
}
