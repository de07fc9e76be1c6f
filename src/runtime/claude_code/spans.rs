//! OpenTelemetry GenAI spans from the CLI's stream-json, children of the attempt's span: a
//! `chat {model}` span (kind CLIENT) per model response, with its token usage, and an
//! `execute_tool {name}` span per tool call, open from the `tool_use` block to its
//! `tool_result`. The CLI reports a model response only once it is complete, so its span marks
//! that moment rather than the call's duration; tool spans last as long as the tool ran.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use tracing::field::Empty;

/// The spans of one CLI run.
#[derive(Default)]
pub(super) struct GenAiSpans {
    /// Model responses already reported (the CLI writes one `assistant` line per content block,
    /// each with the message's id and usage).
    seen: HashSet<String>,
    /// Tool calls that have no result yet, by `tool_use` id.
    open_tools: HashMap<String, tracing::Span>,
}

impl GenAiSpans {
    /// Takes one stdout line (anything that is not an `assistant` or `user` message is ignored).
    pub fn observe(&mut self, line: &str) {
        let Ok(message) = serde_json::from_str::<Value>(line.trim()) else {
            return;
        };
        let inner = &message["message"];
        let blocks = inner["content"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        match message["type"].as_str() {
            Some("assistant") => {
                let id = inner["id"].as_str().unwrap_or_default();
                if !id.is_empty() && self.seen.insert(id.to_owned()) {
                    model_span(inner);
                }
                for block in blocks.iter().filter(|b| b["type"] == "tool_use") {
                    let (id, name) = (str_of(&block["id"]), str_of(&block["name"]));
                    let span = tracing::info_span!(
                        "execute_tool",
                        otel.name = %format!("execute_tool {name}"),
                        gen_ai.operation.name = "execute_tool",
                        gen_ai.tool.name = name,
                        gen_ai.tool.call.id = id,
                        gen_ai.tool.type = "function",
                        error.type = Empty,
                    );
                    self.open_tools.insert(id.to_owned(), span);
                }
            }
            Some("user") => {
                for block in blocks.iter().filter(|b| b["type"] == "tool_result") {
                    if let Some(span) = self.open_tools.remove(str_of(&block["tool_use_id"]))
                        && block["is_error"] == true
                    {
                        span.record("error.type", "tool_error");
                    }
                }
            }
            _ => {}
        }
    }
}

fn str_of(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// The span of one model response, closed at once.
fn model_span(message: &Value) {
    let model = str_of(&message["model"]);
    let usage = &message["usage"];
    let tokens = |key: &str| usage[key].as_u64().unwrap_or(0);
    // Input counts cache reads and writes, as the turn's usage does.
    let input = tokens("input_tokens")
        + tokens("cache_creation_input_tokens")
        + tokens("cache_read_input_tokens");
    let _span = tracing::info_span!(
        "chat",
        otel.name = %format!("chat {model}"),
        otel.kind = "client",
        gen_ai.operation.name = "chat",
        gen_ai.provider.name = "anthropic",
        gen_ai.request.model = model,
        gen_ai.response.model = model,
        gen_ai.response.id = str_of(&message["id"]),
        gen_ai.usage.input_tokens = input,
        gen_ai.usage.output_tokens = tokens("output_tokens"),
    );
}
