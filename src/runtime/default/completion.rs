//! Assembling one streamed chat completion from its chunks.
//!
//! Chunks are read as loose JSON rather than strict structs: providers behind an
//! OpenAI-compatible gateway differ in small ways (`choices: null`, usage on a chunk that still
//! has choices, a whole tool call in one delta, a repeated id), and none of those should fail a
//! turn.

use std::collections::HashMap;

use serde_json::{Value, json};

/// Tokens and cost of one or more model calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(super) struct TokenUsage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Cost in US dollars, when the gateway reports it (LiteLLM's `x-litellm-response-cost`).
    #[serde(default)]
    pub cost_usd: f64,
}

/// One tool call the model asked for, with its arguments as the JSON text the model wrote.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ToolCall {
    /// The id the tool result must carry.
    pub id: String,
    /// The function name.
    pub name: String,
    /// The arguments, a JSON object as text (possibly malformed; the tool runner says so).
    pub arguments: String,
}

/// A finished model call.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct Completion {
    /// All content deltas, joined.
    pub text: String,
    /// The tool calls, in the order the model numbered them.
    pub tool_calls: Vec<ToolCall>,
    /// Why the model stopped (`stop`, `tool_calls`, `length`, `content_filter`), if it said.
    pub finish_reason: Option<String>,
    /// Token counts from the usage chunk (zero if the server sent none).
    pub usage: TokenUsage,
}

impl Completion {
    /// The assistant message to append to the transcript.
    pub fn assistant_message(&self) -> Value {
        let content = if self.text.is_empty() && !self.tool_calls.is_empty() {
            Value::Null
        } else {
            Value::String(self.text.clone())
        };
        let mut message = json!({ "role": "assistant", "content": content });
        if !self.tool_calls.is_empty() {
            message["tool_calls"] = self
                .tool_calls
                .iter()
                .map(|call| {
                    json!({
                        "id": call.id,
                        "type": "function",
                        "function": { "name": call.name, "arguments": call.arguments },
                    })
                })
                .collect();
        }
        message
    }
}

/// Accumulates chunks into a [`Completion`].
#[derive(Debug, Default)]
pub(super) struct CompletionBuilder {
    completion: Completion,
    /// Tool calls being assembled; ids may still be missing.
    calls: Vec<PartialCall>,
    /// The slot in `calls` that a fragment with a given `index` continues.
    slot_of_index: HashMap<u64, usize>,
}

#[derive(Debug, Default)]
struct PartialCall {
    id: Option<String>,
    name: String,
    arguments: String,
}

impl CompletionBuilder {
    /// Takes in one chunk and returns its text delta, if it has one, so the caller can forward it
    /// at once.
    pub fn push(&mut self, chunk: &Value) -> Option<String> {
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            let count = |key: &str| usage.get(key).and_then(Value::as_u64).unwrap_or(0);
            self.completion.usage.input_tokens = count("prompt_tokens");
            self.completion.usage.output_tokens = count("completion_tokens");
        }
        let choice = chunk.get("choices")?.as_array()?.first()?;
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.completion.finish_reason = Some(reason.to_owned());
        }
        let delta = choice.get("delta")?;
        if let Some(fragments) = delta.get("tool_calls").and_then(Value::as_array) {
            for (position, fragment) in fragments.iter().enumerate() {
                self.push_tool_fragment(position as u64, fragment);
            }
        }
        let text = delta.get("content").and_then(Value::as_str)?;
        self.completion.text.push_str(text);
        (!text.is_empty()).then(|| text.to_owned())
    }

    fn push_tool_fragment(&mut self, position: u64, fragment: &Value) {
        let index = fragment
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(position);
        let id = fragment
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty());
        let slot = match (id, self.slot_of_index.get(&index).copied()) {
            // A repeated id continues its call wherever it started.
            (Some(id), _) if self.calls.iter().any(|c| c.id.as_deref() == Some(id)) => self
                .calls
                .iter()
                .position(|c| c.id.as_deref() == Some(id))
                .expect("just found"),
            // A new id at a used index is a new call (providers that number every call 0).
            (Some(_), Some(slot)) if self.calls[slot].id.is_some() => self.new_slot(index),
            (_, Some(slot)) => slot,
            (_, None) => self.new_slot(index),
        };
        let call = &mut self.calls[slot];
        if let Some(id) = id {
            call.id = Some(id.to_owned());
        }
        if let Some(function) = fragment.get("function") {
            if let Some(name) = function.get("name").and_then(Value::as_str)
                && call.name.is_empty()
            {
                call.name = name.to_owned();
            }
            if let Some(arguments) = function.get("arguments").and_then(Value::as_str) {
                call.arguments.push_str(arguments);
            }
        }
    }

    fn new_slot(&mut self, index: u64) -> usize {
        self.calls.push(PartialCall::default());
        self.slot_of_index.insert(index, self.calls.len() - 1);
        self.calls.len() - 1
    }

    /// The finished completion. Calls without an id get one, because the tool result must
    /// reference its call.
    pub fn finish(mut self, cost_usd: f64) -> Completion {
        self.completion.usage.cost_usd = cost_usd;
        self.completion.tool_calls = self
            .calls
            .into_iter()
            .enumerate()
            .map(|(i, call)| ToolCall {
                id: call.id.unwrap_or_else(|| format!("call_{i}")),
                name: call.name,
                // An empty argument string means "no arguments"; `{}` is what tools expect.
                arguments: if call.arguments.trim().is_empty() {
                    "{}".to_owned()
                } else {
                    call.arguments
                },
            })
            .collect();
        self.completion
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(chunks: &[Value]) -> (Vec<String>, Completion) {
        let mut builder = CompletionBuilder::default();
        let texts = chunks.iter().filter_map(|c| builder.push(c)).collect();
        (texts, builder.finish(0.0))
    }

    fn delta(delta: Value) -> Value {
        json!({"choices": [{"index": 0, "delta": delta, "finish_reason": null}], "usage": null})
    }

    #[test]
    fn text_deltas_and_usage_are_collected() {
        let (texts, completion) = build(&[
            delta(json!({"role": "assistant", "content": ""})),
            delta(json!({"content": "Hel"})),
            delta(json!({"content": "lo"})),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
            json!({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}}),
        ]);
        assert_eq!(texts, ["Hel", "lo"]);
        assert_eq!(completion.text, "Hello");
        assert_eq!(completion.finish_reason.as_deref(), Some("stop"));
        assert_eq!(
            (
                completion.usage.input_tokens,
                completion.usage.output_tokens
            ),
            (7, 2)
        );
        assert_eq!(
            completion.assistant_message(),
            json!({"role": "assistant", "content": "Hello"})
        );
    }

    #[test]
    fn tool_call_fragments_are_joined_by_index() {
        let (_, completion) = build(&[
            delta(json!({"content": null, "tool_calls": [
                {"index": 0, "id": "call_a", "type": "function", "function": {"name": "read", "arguments": ""}},
                {"index": 1, "id": "call_b", "type": "function", "function": {"name": "list", "arguments": "{}"}}
            ]})),
            delta(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"path\":"}}]})),
            delta(json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"a\"}"}}]})),
            json!({"choices": null, "usage": {"prompt_tokens": 1, "completion_tokens": 1}}),
        ]);
        let calls: Vec<_> = completion
            .tool_calls
            .iter()
            .map(|c| (c.id.as_str(), c.name.as_str(), c.arguments.as_str()))
            .collect();
        assert_eq!(
            calls,
            [
                ("call_a", "read", "{\"path\":\"a\"}"),
                ("call_b", "list", "{}")
            ]
        );
        assert_eq!(completion.assistant_message()["content"], Value::Null);
    }

    #[test]
    fn lenient_with_reused_indexes_and_missing_ids() {
        let (_, completion) = build(&[
            delta(
                json!({"tool_calls": [{"index": 0, "id": "x", "function": {"name": "a", "arguments": "{}"}}]}),
            ),
            delta(json!({"tool_calls": [{"index": 0, "id": "y", "function": {"name": "b"}}]})),
            delta(json!({"tool_calls": [{"function": {"name": "c", "arguments": "{}"}}]})),
        ]);
        let names: Vec<_> = completion
            .tool_calls
            .iter()
            .map(|c| (c.id.as_str(), c.name.as_str()))
            .collect();
        // The fragment without index or id continues the latest call at position 0.
        assert_eq!(names, [("x", "a"), ("y", "b")]);
        assert_eq!(completion.tool_calls[1].arguments, "{}");
    }
}
