//! The agent loop of one turn: call the model, run the tools it asks for, feed the results back,
//! until it answers without tool calls. Every completed model call and every tool result is
//! checkpointed before the next step starts. Each model call is a `chat {model}` span and each
//! tool call an `execute_tool {name}` span, with the OpenTelemetry GenAI attributes.

use serde_json::{Value, json};
use tracing::Instrument;
use tracing::field::Empty;

use super::client::ChatClient;
use super::completion::ToolCall;
use super::config::AgentConfig;
use super::tools::{ToolOutcome, Toolbox};
use super::transcript::{Step, Transcript};
use crate::runtime::{Answer, Decision, RuntimeError, ToolAsk, TurnIo};

/// Model calls allowed beyond `max_tool_calls`: one to answer after the last tool result, and a
/// little slack for a model that keeps asking for tools after it was told the limit is reached.
const EXTRA_MODEL_CALLS: u32 = 3;

/// Runs the turn from `transcript` until the model's final answer. On return (success or not)
/// the transcript holds everything that completed.
pub(super) async fn run_loop(
    config: &AgentConfig,
    client: &ChatClient,
    toolbox: &Toolbox,
    transcript: &mut Transcript,
    io: &TurnIo,
) -> Result<(), RuntimeError> {
    let limit_reached = |t: &Transcript| t.tool_calls >= config.max_tool_calls;
    loop {
        if io.cancel.is_cancelled() {
            return Err(RuntimeError::canceled());
        }
        match transcript.next_step() {
            Step::Finished => return Ok(()),
            Step::CallModel => {
                if transcript.model_calls >= config.max_tool_calls + EXTRA_MODEL_CALLS {
                    return Err(RuntimeError::fatal(
                        "tool_call_limit",
                        format!(
                            "model `{}` kept asking for tools after max_tool_calls ({}) was reached",
                            config.model, config.max_tool_calls
                        ),
                    ));
                }
                let body = request_body(config, toolbox, transcript, limit_reached(transcript));
                let span = tracing::info_span!(
                    "chat",
                    otel.name = %format!("chat {}", config.model),
                    otel.kind = "client",
                    gen_ai.operation.name = "chat",
                    gen_ai.provider.name = "openai",
                    gen_ai.request.model = %config.model,
                    gen_ai.usage.input_tokens = Empty,
                    gen_ai.usage.output_tokens = Empty,
                    error.type = Empty,
                );
                let completion = client
                    .complete(&body, &io.cancel, |text| {
                        io.emit("text", json!({ "text": text }));
                    })
                    .instrument(span.clone())
                    .await
                    .inspect_err(|e| {
                        span.record("error.type", e.code.as_str());
                    })?;
                span.record("gen_ai.usage.input_tokens", completion.usage.input_tokens);
                span.record("gen_ai.usage.output_tokens", completion.usage.output_tokens);
                drop(span);
                transcript.record_completion(&completion);
                io.save_checkpoint(transcript.to_value());
            }
            Step::RunTool(call) => {
                let (server, tool) = toolbox.origin(&call.name).unwrap_or_default();
                let arguments = serde_json::from_str::<Value>(&call.arguments)
                    .unwrap_or_else(|_| Value::String(call.arguments.clone()));
                io.emit(
                    "tool_use",
                    json!({
                        "id": call.id, "name": call.name, "arguments": arguments,
                        "server": server, "tool": tool,
                    }),
                );
                let mut ran = !limit_reached(transcript);
                let mut arguments_text = call.arguments.clone();
                let mut denial = None;
                if ran && config.approvals.needs_approval(server, tool) {
                    let name = format!("{server}__{tool}");
                    match decide(io, &call, name, arguments).await? {
                        Decision::Allow { updated_input } => {
                            if let Some(input) = updated_input {
                                arguments_text = input.to_string();
                            }
                        }
                        Decision::Deny { message } => {
                            ran = false;
                            denial = Some(message);
                        }
                    }
                }
                let outcome = if let Some(message) = denial {
                    ToolOutcome {
                        content: message,
                        is_error: true,
                    }
                } else if ran {
                    let span = tracing::info_span!(
                        "execute_tool",
                        otel.name = %format!("execute_tool {}", call.name),
                        gen_ai.operation.name = "execute_tool",
                        gen_ai.tool.name = %call.name,
                        gen_ai.tool.call.id = %call.id,
                        gen_ai.tool.type = "extension",
                        error.type = Empty,
                    );
                    let outcome = tokio::select! {
                        // Dropping the call abandons it; the servers are shut down by the caller.
                        _ = io.cancel.cancelled() => return Err(RuntimeError::canceled()),
                        outcome = toolbox.call(&call.name, &arguments_text).instrument(span.clone()) => outcome,
                    };
                    if outcome.is_error {
                        span.record("error.type", "tool_error");
                    }
                    outcome
                } else {
                    ToolOutcome {
                        content: format!(
                            "Tool call limit reached ({}). Tool call `{}` was not executed; \
                             answer with what you have.",
                            config.max_tool_calls, call.name
                        ),
                        is_error: true,
                    }
                };
                io.emit(
                    "tool_result",
                    json!({
                        "id": call.id, "name": call.name,
                        "content": outcome.content, "is_error": outcome.is_error,
                    }),
                );
                transcript.record_tool_result(&call, &outcome.content, ran);
                io.save_checkpoint(transcript.to_value());
            }
        }
    }
}

/// Asks whether `call` may run. A held ask ends the attempt: the transcript saved after the model
/// call holds the tool call, so the next attempt resumes right here and asks again with the same
/// id (see `approval.rs`).
async fn decide(
    io: &TurnIo,
    call: &ToolCall,
    name: String,
    input: Value,
) -> Result<Decision, RuntimeError> {
    io.emit(
        "status",
        json!({"event": "approval_requested", "tool_use_id": call.id, "tool": name, "input": input}),
    );
    let ask = ToolAsk {
        id: call.id.clone(),
        tool: name,
        input,
    };
    let answer = tokio::select! {
        _ = io.cancel.cancelled() => return Err(RuntimeError::canceled()),
        answer = io.ask(ask) => answer,
    };
    let decision = match answer {
        Answer::Decided(decision) => decision,
        Answer::Hold => return Err(RuntimeError::held(call.id.clone())),
    };
    let (event, message) = match &decision {
        Decision::Allow { .. } => ("approval_allowed", None),
        Decision::Deny { message } => ("approval_denied", Some(message.clone())),
    };
    io.emit(
        "status",
        json!({"event": event, "tool_use_id": call.id, "message": message}),
    );
    Ok(decision)
}

/// The request for the next model call.
fn request_body(
    config: &AgentConfig,
    toolbox: &Toolbox,
    transcript: &Transcript,
    limit_reached: bool,
) -> Value {
    let mut messages = Vec::with_capacity(transcript.messages.len() + 1);
    if let Some(instructions) = &config.instructions {
        messages.push(json!({ "role": "system", "content": instructions }));
    }
    messages.extend(transcript.messages.iter().cloned());
    let mut body = json!({
        "model": config.model,
        "messages": messages,
        "stream": true,
        "stream_options": { "include_usage": true },
    });
    let tools = toolbox.definitions();
    if !tools.is_empty() {
        body["tools"] = Value::Array(tools);
        // The tools stay listed (some providers refuse tool messages without them), but the
        // model is told not to call them any more.
        if limit_reached {
            body["tool_choice"] = json!("none");
        }
    }
    if let Some(temperature) = config.temperature {
        body["temperature"] = json!(temperature);
    }
    if let Some(max_tokens) = config.max_tokens {
        body["max_tokens"] = json!(max_tokens);
    }
    body
}
