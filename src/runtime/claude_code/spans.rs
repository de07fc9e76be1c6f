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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

    use super::GenAiSpans;

    /// One span as the recording layer saw it: its fields, and whether it closed.
    #[derive(Debug, Default, Clone)]
    struct Seen {
        fields: Vec<(String, String)>,
        closed: bool,
    }

    impl Seen {
        fn get(&self, key: &str) -> Option<&str> {
            self.fields
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        }
    }

    struct Fields<'a>(&'a mut Vec<(String, String)>);

    impl Visit for Fields<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0.push((field.name().into(), format!("{value:?}")));
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.push((field.name().into(), value.into()));
        }
    }

    /// Records every span's fields, in the order the spans were made.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<(u64, Seen)>>>);

    impl<S: tracing::Subscriber> Layer<S> for Recorder {
        fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
            let mut seen = Seen::default();
            attrs.record(&mut Fields(&mut seen.fields));
            self.0.lock().unwrap().push((id.into_u64(), seen));
        }
        fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
            let mut spans = self.0.lock().unwrap();
            if let Some((_, seen)) = spans.iter_mut().find(|(i, _)| *i == id.into_u64()) {
                values.record(&mut Fields(&mut seen.fields));
            }
        }
        fn on_close(&self, id: Id, _: Context<'_, S>) {
            let mut spans = self.0.lock().unwrap();
            if let Some((_, seen)) = spans.iter_mut().rev().find(|(i, _)| *i == id.into_u64()) {
                seen.closed = true;
            }
        }
    }

    /// Lines of a real run of the CLI (`p_allowed_tools_touch` in the shared fixtures), cut to
    /// the fields the spans read: one model response in two content blocks (text, then a Bash
    /// `tool_use`), the tool's result, and the second model response.
    const RUN: [&str; 4] = [
        r#"{"type":"assistant","message":{"id":"msg_fake000003","model":"claude-opus-5-5","content":[{"type":"text","text":"I'll run a command."}],"usage":{"input_tokens":12,"output_tokens":1,"cache_creation_input_tokens":3,"cache_read_input_tokens":5}}}"#,
        r#"{"type":"assistant","message":{"id":"msg_fake000003","model":"claude-opus-5-5","content":[{"type":"tool_use","id":"toolu_fake000001","name":"Bash","input":{"command":"touch created-by-tool.txt && echo touched"}}],"usage":{"input_tokens":12,"output_tokens":1,"cache_creation_input_tokens":3,"cache_read_input_tokens":5}}}"#,
        r#"{"type":"user","message":{"role":"user","content":[{"tool_use_id":"toolu_fake000001","type":"tool_result","content":"touched","is_error":false}]}}"#,
        r#"{"type":"assistant","message":{"id":"msg_fake000006","model":"claude-opus-5-5","content":[{"type":"text","text":"done: touched"}],"usage":{"input_tokens":30,"output_tokens":4}}}"#,
    ];

    fn spans_of(lines: &[&str]) -> Vec<Seen> {
        let recorder = Recorder::default();
        let subscriber = tracing_subscriber::registry().with(recorder.clone());
        tracing::subscriber::with_default(subscriber, || {
            let mut spans = GenAiSpans::default();
            for line in lines {
                spans.observe(line);
            }
        });
        let spans = recorder.0.lock().unwrap();
        spans.iter().map(|(_, seen)| seen.clone()).collect()
    }

    #[test]
    fn one_chat_span_per_model_response_and_a_tool_span_per_tool_call() {
        let spans = spans_of(&RUN);
        let chats: Vec<_> = spans
            .iter()
            .filter(|s| s.get("gen_ai.operation.name") == Some("chat"))
            .collect();
        assert_eq!(chats.len(), 2, "two model responses: {spans:?}");
        let first = chats[0];
        assert_eq!(first.get("otel.name"), Some("chat claude-opus-5-5"));
        assert_eq!(first.get("gen_ai.provider.name"), Some("anthropic"));
        assert_eq!(first.get("gen_ai.request.model"), Some("claude-opus-5-5"));
        assert_eq!(first.get("gen_ai.response.id"), Some("msg_fake000003"));
        // Input counts cache writes and reads, as the turn's usage does.
        assert_eq!(first.get("gen_ai.usage.input_tokens"), Some("20"));
        assert_eq!(first.get("gen_ai.usage.output_tokens"), Some("1"));
        assert_eq!(chats[1].get("gen_ai.usage.input_tokens"), Some("30"));
        assert!(chats.iter().all(|s| s.closed));

        let tools: Vec<_> = spans
            .iter()
            .filter(|s| s.get("gen_ai.operation.name") == Some("execute_tool"))
            .collect();
        assert_eq!(tools.len(), 1, "{spans:?}");
        let tool = tools[0];
        assert_eq!(tool.get("otel.name"), Some("execute_tool Bash"));
        assert_eq!(tool.get("gen_ai.tool.name"), Some("Bash"));
        assert_eq!(tool.get("gen_ai.tool.call.id"), Some("toolu_fake000001"));
        assert!(tool.closed, "the tool span closes at its result");
        assert_eq!(tool.get("error.type"), None, "the tool succeeded");
    }

    #[test]
    fn a_failed_tool_call_is_marked_and_a_pending_one_stays_open() {
        let failed = RUN[2].replace(r#""is_error":false"#, r#""is_error":true"#);
        let spans = spans_of(&[RUN[1], &failed]);
        let tool = spans
            .iter()
            .find(|s| s.get("gen_ai.operation.name") == Some("execute_tool"))
            .expect("a tool span");
        assert_eq!(tool.get("error.type"), Some("tool_error"));

        let recorder = Recorder::default();
        let subscriber = tracing_subscriber::registry().with(recorder.clone());
        tracing::subscriber::with_default(subscriber, || {
            let mut spans = GenAiSpans::default();
            spans.observe(RUN[1]);
            let spans_so_far = recorder.0.lock().unwrap().clone();
            let tool = spans_so_far
                .iter()
                .map(|(_, s)| s)
                .find(|s| s.get("gen_ai.operation.name") == Some("execute_tool"))
                .expect("a tool span");
            assert!(!tool.closed, "no result yet: the tool is still running");
            drop(spans);
        });
    }
}
