//! Reading the CLI's stream-json stdout: one line in, output chunks and facts out.
//!
//! [`StreamState::accept`] is pure (no I/O), so the fixtures of real CLI output under
//! `tests/fixtures/claude-code/` can be fed through it line by line in unit tests.

use serde_json::{Map, Value, json};

use super::approve::PermissionAsk;
use super::chunks::{
    Chunk, LineOutcome, content_blocks, pick_fields, refuse_control_request, status_code,
    str_field, user,
};

/// The `result` message that ends a turn.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct TurnResult {
    /// `success`, `error_max_turns`, `error_during_execution`, `error_max_budget_usd`, ...
    pub subtype: String,
    /// Whether the turn failed. An API failure is `subtype: success` with `is_error: true`.
    pub is_error: bool,
    /// The final text (on success, and the "API Error: ..." text on API failures).
    pub text: Option<String>,
    /// How many model turns the CLI took.
    pub num_turns: u64,
    /// The model's last stop reason.
    pub stop_reason: Option<String>,
    /// Why the turn ended: `completed`, `max_turns`, `aborted_tools`, `api_error`, ...
    pub terminal_reason: Option<String>,
    /// The HTTP status of the API failure, when there was one.
    pub api_error_status: Option<u16>,
    /// Error texts of the error subtypes.
    pub errors: Vec<String>,
    /// Prompt tokens, counting cache reads and cache writes.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Cost in US dollars, cumulative for the process (one turn per process here).
    pub cost_usd: f64,
    /// The `result` chunk as emitted, kept for the turn's output.
    pub chunk: Value,
}

/// What the CLI said about API trouble before its result: retries and failed messages.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct ApiTrouble {
    /// HTTP status of the last `system/api_retry`, if it had one.
    pub retry_status: Option<u16>,
    /// The error kind of the last `system/api_retry` or failed `assistant` message
    /// (`server_error`, `overloaded`, `authentication_failed`, `invalid_request`, ...).
    pub error_kind: Option<String>,
    /// How many `system/api_retry` messages came.
    pub retries: u64,
}

/// Everything learned from the stdout of one CLI run so far.
#[derive(Debug, Default)]
pub(super) struct StreamState {
    /// The Claude Code session id, from the first message that carried one.
    pub session_id: Option<String>,
    /// Whether `system/init` came, i.e. the CLI started up and read the prompt.
    pub saw_init: bool,
    /// How many `tool_use` blocks the model produced.
    pub tool_calls: u64,
    /// The turn's result, once it came.
    pub result: Option<TurnResult>,
    /// API retries and errors seen.
    pub api: ApiTrouble,
    /// Lines that looked like JSON but did not parse.
    pub malformed_lines: u64,
}

impl StreamState {
    /// Takes one line of stdout. Never fails: lines that are not JSON, and message types this
    /// code does not know, produce no chunks (or a `status` chunk that says what was skipped).
    pub fn accept(&mut self, line: &str) -> LineOutcome {
        let mut outcome = LineOutcome::default();
        let line = line.trim();
        // The Agent SDK skips blank lines and lines that do not start with `{` (stray logging).
        if !line.starts_with('{') {
            return outcome;
        }
        let message: Map<String, Value> = match serde_json::from_str(line) {
            Ok(message) => message,
            Err(error) => {
                self.malformed_lines += 1;
                let head: String = line.chars().take(200).collect();
                let status = json!({"error": error.to_string(), "line": head});
                outcome
                    .chunks
                    .push(Chunk::status("unparsed_output", status));
                return outcome;
            }
        };
        if self.session_id.is_none()
            && let Some(id) = message.get("session_id").and_then(Value::as_str)
            && !id.is_empty()
        {
            self.session_id = Some(id.to_owned());
            outcome.session_started = Some(id.to_owned());
        }
        match str_field(&message, "type").unwrap_or_default() {
            "system" => self.system(&message, &mut outcome),
            "assistant" => self.assistant(&message, &mut outcome),
            "user" => user(&message, &mut outcome),
            "result" => self.result(&message, &mut outcome),
            "control_request" => match PermissionAsk::from_request(&message) {
                Some(ask) => outcome.ask = Some(ask),
                None => outcome.reply = Some(refuse_control_request(&message)),
            },
            "control_response" => {
                let response = message.get("response").cloned().unwrap_or(Value::Null);
                let status = json!({
                    "request_id": response.get("request_id"),
                    "subtype": response.get("subtype"),
                });
                outcome
                    .chunks
                    .push(Chunk::status("control_response", status));
            }
            "rate_limit_event" => {
                let mut fields = message.clone();
                fields.remove("type");
                outcome
                    .chunks
                    .push(Chunk::status("rate_limit", Value::Object(fields)));
            }
            // Partial deltas come only with --include-partial-messages, which this runtime does
            // not pass; the complete `assistant` message carries the same content anyway.
            "stream_event" => {}
            other => tracing::debug!(
                message_type = other,
                "ignoring an unknown Claude Code message"
            ),
        }
        outcome
    }

    fn system(&mut self, message: &Map<String, Value>, outcome: &mut LineOutcome) {
        let subtype = str_field(message, "subtype").unwrap_or("unknown");
        let status = match subtype {
            "init" => {
                self.saw_init = true;
                // Only the facts worth keeping: the full message lists every slash command.
                let pick = [
                    "session_id",
                    "model",
                    "cwd",
                    "permissionMode",
                    "claude_code_version",
                ];
                let mut fields = pick_fields(message, &pick);
                fields.insert(
                    "tools".into(),
                    message.get("tools").cloned().unwrap_or_default(),
                );
                fields.insert(
                    "mcp_servers".into(),
                    message.get("mcp_servers").cloned().unwrap_or_default(),
                );
                Value::Object(fields)
            }
            "api_retry" => {
                self.api.retries += 1;
                self.api.retry_status = status_code(message.get("error_status"));
                if let Some(kind) = str_field(message, "error") {
                    self.api.error_kind = Some(kind.to_owned());
                }
                let pick = [
                    "attempt",
                    "max_retries",
                    "retry_delay_ms",
                    "error_status",
                    "error",
                ];
                Value::Object(pick_fields(message, &pick))
            }
            _ => {
                let mut fields = message.clone();
                for noise in ["type", "subtype", "uuid", "session_id"] {
                    fields.remove(noise);
                }
                Value::Object(fields)
            }
        };
        outcome.chunks.push(Chunk::status(subtype, status));
    }

    fn assistant(&mut self, message: &Map<String, Value>, outcome: &mut LineOutcome) {
        if let Some(kind) = str_field(message, "error") {
            self.api.error_kind = Some(kind.to_owned());
        }
        let inner = message.get("message");
        let message_id = inner.and_then(|m| m.get("id")).cloned().unwrap_or_default();
        let parent = message
            .get("parent_tool_use_id")
            .cloned()
            .unwrap_or_default();
        for block in content_blocks(inner) {
            let chunk = match str_field(block, "type").unwrap_or_default() {
                "text" => Chunk::new(
                    "text",
                    json!({"text": block.get("text"), "message_id": message_id}),
                ),
                "thinking" => Chunk::new(
                    "thinking",
                    json!({"thinking": block.get("thinking"), "message_id": message_id}),
                ),
                "tool_use" => {
                    self.tool_calls += 1;
                    Chunk::new(
                        "tool_use",
                        json!({
                            "id": block.get("id"),
                            "name": block.get("name"),
                            "input": block.get("input"),
                            "parent_tool_use_id": parent,
                        }),
                    )
                }
                // Redacted thinking and future block types carry nothing to show.
                _ => continue,
            };
            outcome.chunks.push(chunk);
        }
    }

    fn result(&mut self, message: &Map<String, Value>, outcome: &mut LineOutcome) {
        let usage = message.get("usage");
        let tokens = |key: &str| {
            usage
                .and_then(|u| u.get(key))
                .and_then(Value::as_u64)
                .unwrap_or(0)
        };
        let errors: Vec<String> = message
            .get("errors")
            .and_then(Value::as_array)
            .map(|e| {
                e.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let result = TurnResult {
            subtype: str_field(message, "subtype")
                .unwrap_or("unknown")
                .to_owned(),
            is_error: message
                .get("is_error")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            text: str_field(message, "result").map(str::to_owned),
            num_turns: message
                .get("num_turns")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            stop_reason: str_field(message, "stop_reason").map(str::to_owned),
            terminal_reason: str_field(message, "terminal_reason").map(str::to_owned),
            api_error_status: status_code(message.get("api_error_status")),
            input_tokens: tokens("input_tokens")
                + tokens("cache_creation_input_tokens")
                + tokens("cache_read_input_tokens"),
            output_tokens: tokens("output_tokens"),
            cost_usd: message
                .get("total_cost_usd")
                .and_then(Value::as_f64)
                .unwrap_or(0.0),
            errors,
            chunk: Value::Null,
        };
        let mut data = pick_fields(
            message,
            &[
                "subtype",
                "is_error",
                "session_id",
                "num_turns",
                "stop_reason",
                "terminal_reason",
            ],
        );
        data.extend(pick_fields(
            message,
            &[
                "duration_ms",
                "total_cost_usd",
                "api_error_status",
                "errors",
                "permission_denials",
            ],
        ));
        data.insert("text".into(), json!(result.text));
        data.insert(
            "usage".into(),
            json!({
                "input_tokens": result.input_tokens,
                "output_tokens": result.output_tokens,
                "cache_read_input_tokens": tokens("cache_read_input_tokens"),
                "cache_creation_input_tokens": tokens("cache_creation_input_tokens"),
            }),
        );
        let chunk = Value::Object(data);
        outcome.chunks.push(Chunk::new("result", chunk.clone()));
        self.result = Some(TurnResult { chunk, ..result });
    }
}
