//! The checkpoint of the `default` runtime: the conversation so far.
//!
//! The transcript is saved after every completed model call and every tool result. Its tail
//! decides what happens next ([`Transcript::next_step`]), so an attempt that resumes from a
//! checkpoint picks up exactly where the last one stopped: a model call that completed is never
//! paid for twice, and a tool call that already answered is never run twice.
//!
//! The same value ends a turn and starts the next: `turn` and `turn_complete` tell "resume this
//! turn" (same index) from "continue after an earlier turn" (lower index, complete), which
//! appends the new prompt to the conversation.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::completion::{Completion, TokenUsage, ToolCall};
use crate::runtime::RuntimeError;

/// The checkpoint format; bumped when the shape changes incompatibly.
const FORMAT: u32 = 1;

/// The saved conversation and the accounting of the turn that saved it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Transcript {
    /// The checkpoint format, so an old or foreign checkpoint is refused rather than misread.
    pub format: u32,
    /// The 0-based index of the turn that wrote this transcript.
    pub turn: u32,
    /// Whether that turn finished: its answer is the last message.
    pub turn_complete: bool,
    /// The conversation as Chat Completions messages (user, assistant, tool). The system prompt
    /// is not stored: it is added to every request from the agent's instructions.
    pub messages: Vec<Value>,
    /// Tokens and cost of the writing turn's model calls so far.
    pub usage: TokenUsage,
    /// Model calls the writing turn has completed.
    pub model_calls: u32,
    /// Tool calls the writing turn has run (refused calls over the limit are not counted).
    pub tool_calls: u32,
    /// Why the last model call stopped.
    pub finish_reason: Option<String>,
}

/// What the runtime does next, read off the transcript's tail.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Step {
    /// Ask the model (the last message is the prompt or a tool result).
    CallModel,
    /// Run this call: the model asked for it and it has no result yet.
    RunTool(ToolCall),
    /// The model answered without tool calls: the turn is done.
    Finished,
}

impl Transcript {
    /// The transcript this turn starts from: the previous attempt's (resume), the previous
    /// turn's plus this prompt (continue), or just this prompt (first turn).
    pub fn start(previous: Option<&Value>, turn: u32, prompt: &str) -> Result<Self, RuntimeError> {
        let user = json!({ "role": "user", "content": prompt });
        let Some(previous) = previous else {
            return Ok(Transcript {
                format: FORMAT,
                turn,
                turn_complete: false,
                messages: vec![user],
                usage: TokenUsage::default(),
                model_calls: 0,
                tool_calls: 0,
                finish_reason: None,
            });
        };
        let invalid = |why: String| RuntimeError::fatal("invalid_checkpoint", why);
        let saved: Transcript = serde_json::from_value(previous.clone()).map_err(|e| {
            invalid(format!(
                "the checkpoint is not a `default` runtime transcript: {e}"
            ))
        })?;
        if saved.format != FORMAT {
            return Err(invalid(format!(
                "the checkpoint has format {}, this build reads format {FORMAT}",
                saved.format
            )));
        }
        if saved.turn == turn {
            return Ok(saved);
        }
        if saved.turn > turn || !saved.turn_complete {
            return Err(invalid(format!(
                "turn {} cannot start from the checkpoint of turn {} ({})",
                turn + 1,
                saved.turn + 1,
                if saved.turn_complete {
                    "a later turn"
                } else {
                    "an unfinished turn"
                }
            )));
        }
        let mut messages = saved.messages;
        messages.push(user);
        Ok(Transcript {
            messages,
            ..Transcript::start(None, turn, prompt)?
        })
    }

    /// What to do next.
    pub fn next_step(&self) -> Step {
        let Some(asked) = self
            .messages
            .iter()
            .rposition(|m| m["role"] == "assistant")
            .filter(|&i| self.messages[i + 1..].iter().all(|m| m["role"] == "tool"))
        else {
            return Step::CallModel;
        };
        let calls = self.messages[asked]["tool_calls"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if calls.is_empty() {
            return Step::Finished;
        }
        let answered: Vec<&Value> = self.messages[asked + 1..]
            .iter()
            .map(|m| &m["tool_call_id"])
            .collect();
        calls
            .iter()
            .find(|call| !answered.contains(&&call["id"]))
            .map_or(Step::CallModel, |call| {
                Step::RunTool(ToolCall {
                    id: call["id"].as_str().unwrap_or_default().to_owned(),
                    name: call["function"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    arguments: call["function"]["arguments"]
                        .as_str()
                        .unwrap_or("{}")
                        .to_owned(),
                })
            })
    }

    /// Appends a completed model call.
    pub fn record_completion(&mut self, completion: &Completion) {
        self.messages.push(completion.assistant_message());
        self.usage.input_tokens += completion.usage.input_tokens;
        self.usage.output_tokens += completion.usage.output_tokens;
        self.usage.cost_usd += completion.usage.cost_usd;
        self.model_calls += 1;
        self.finish_reason.clone_from(&completion.finish_reason);
        self.turn_complete = completion.tool_calls.is_empty();
    }

    /// Appends the result of a tool call; `ran` is false for a call refused over the limit.
    pub fn record_tool_result(&mut self, call: &ToolCall, content: &str, ran: bool) {
        self.messages
            .push(json!({ "role": "tool", "tool_call_id": call.id, "content": content }));
        if ran {
            self.tool_calls += 1;
        }
    }

    /// The text of the final answer.
    pub fn answer(&self) -> &str {
        self.messages
            .iter()
            .rev()
            .find(|m| m["role"] == "assistant")
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default()
    }

    /// The checkpoint value.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("a transcript is plain JSON")
    }
}

#[cfg(test)]
#[path = "transcript_tests.rs"]
mod tests;
