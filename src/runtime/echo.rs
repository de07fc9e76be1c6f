//! `echo`: a deterministic runtime with no network, for demos, tests and benchmarks.
//!
//! It answers a prompt by sending it back in chunks. Its `runtime_config` can shape the output,
//! slow it down, make given attempts fail, and make it ignore cancellation for a while. It saves a
//! checkpoint after every chunk, so a resumed attempt continues where the last one stopped and no
//! text is emitted twice. The checkpoint also carries the prompts of the turns before, which the
//! result gives back as `previous_prompts`: what a conversation's runtime knows of it. `repeat` and `chunk_bytes` make big outputs (for memory tests) from a
//! small configuration.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use super::{
    AgentRuntime, Answer, ConfigError, ConfigKeyInfo, Decision, RuntimeDescription, RuntimeError,
    ToolAsk, TurnIo, TurnOutput, reject_unknown_keys, runtime_config,
};
use crate::domain::{AgentSpec, Turn, Usage};

/// The `echo` runtime: sends the prompt back in chunks, shaped by its `runtime_config`.
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoRuntime;

/// `runtime_config` of an `echo` agent.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EchoConfig {
    /// Chunks to send instead of the prompt's words.
    #[serde(default)]
    chunks: Option<Vec<String>>,
    /// Pause before each chunk.
    #[serde(default)]
    delay_ms: u64,
    /// Attempts (from 1) that fail.
    #[serde(default)]
    fail_attempts: Vec<u32>,
    /// Turns (from 1) whose every attempt fails.
    #[serde(default)]
    fail_turns: Vec<u32>,
    /// Whether those failures are retryable (default true).
    #[serde(default)]
    fail_retryable: Option<bool>,
    /// The failure code (default `echo_failure`).
    #[serde(default)]
    fail_code: Option<String>,
    /// How many chunks a failing attempt sends before it fails.
    #[serde(default)]
    fail_after_chunks: usize,
    /// Keep running this long after cancellation, to exercise the worker's kill deadline.
    #[serde(default)]
    ignore_cancel_ms: u64,
    /// Send the chunk list this many times (default once): big outputs without a big
    /// configuration.
    #[serde(default)]
    repeat: Option<usize>,
    /// Repeat each chunk's text until it is at least this many bytes (at most
    /// [`MAX_CHUNK_BYTES`]).
    #[serde(default)]
    chunk_bytes: usize,
    /// A test aid: before its first chunk each turn asks whether this tool may run (see
    /// `TurnIo::ask`), and says what it was told.
    #[serde(default)]
    ask_tool: Option<String>,
}

/// The largest `chunk_bytes` echo accepts.
const MAX_CHUNK_BYTES: usize = 16 << 20;

impl EchoConfig {
    /// Whether the output is shaped by `repeat` or `chunk_bytes`; then the result reports its
    /// size instead of repeating the whole text.
    fn sized(&self) -> bool {
        self.repeat.is_some() || self.chunk_bytes > 0
    }
}

/// What `echo` saves after each chunk.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
struct EchoCheckpoint {
    /// The turn the checkpoint belongs to.
    turn: u32,
    /// How many of the turn's chunks are already out.
    emitted: usize,
    /// How many turns have completed before this one.
    turns_completed: u32,
    /// The prompts of the turns before this one, in order: the conversation so far, which a
    /// turn reads from the checkpoint rather than from its own prompt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    conversation: Vec<String>,
}

impl EchoRuntime {
    fn config(agent: &AgentSpec) -> Result<EchoConfig, ConfigError> {
        let map = runtime_config(agent)?;
        reject_unknown_keys(&EchoRuntime.describe(), &map)?;
        // Check key by key, so the error names the key that is wrong.
        for (key, value) in &map {
            let one = serde_json::json!({ key: value });
            serde_json::from_value::<EchoConfig>(one)
                .map_err(|e| ConfigError::new(format!("runtime_config.{key}: {e}")))?;
        }
        let config: EchoConfig = serde_json::from_value(serde_json::Value::Object(map))
            .map_err(|e| ConfigError::new(format!("echo runtime_config: {e}")))?;
        if config.chunk_bytes > MAX_CHUNK_BYTES {
            return Err(ConfigError::new(format!(
                "runtime_config.chunk_bytes: at most {MAX_CHUNK_BYTES}"
            )));
        }
        Ok(config)
    }
}

#[async_trait]
impl AgentRuntime for EchoRuntime {
    fn name(&self) -> &'static str {
        "echo"
    }

    fn describe(&self) -> RuntimeDescription {
        let key = |name, ty, description| ConfigKeyInfo {
            name,
            ty,
            description,
        };
        RuntimeDescription {
            name: "echo",
            description: "Sends the prompt back in chunks; deterministic, no network. For demos, tests and benchmarks.",
            config_keys: vec![
                key(
                    "chunks",
                    "array<string>",
                    "chunks to send instead of the prompt's words",
                ),
                key("delay_ms", "integer", "pause before each chunk"),
                key(
                    "fail_attempts",
                    "array<integer>",
                    "attempts (from 1) that fail",
                ),
                key(
                    "fail_turns",
                    "array<integer>",
                    "turns (from 1) whose every attempt fails",
                ),
                key(
                    "fail_retryable",
                    "boolean",
                    "whether those failures are retryable (default true)",
                ),
                key(
                    "fail_code",
                    "string",
                    "the failure code (default echo_failure)",
                ),
                key(
                    "fail_after_chunks",
                    "integer",
                    "chunks a failing attempt sends before failing",
                ),
                key(
                    "ignore_cancel_ms",
                    "integer",
                    "keep running this long after cancellation",
                ),
                key(
                    "repeat",
                    "integer",
                    "send the chunk list this many times; the result then gives chunks and bytes instead of the text",
                ),
                key(
                    "ask_tool",
                    "string",
                    "a test aid: each turn first asks a person whether this tool may run (an approval), then says the answer as its first chunk",
                ),
                key(
                    "chunk_bytes",
                    "integer",
                    "repeat each chunk's text to at least this many bytes (at most 16 MiB); the result then gives chunks and bytes instead of the text",
                ),
            ],
        }
    }

    fn validate(&self, agent: &AgentSpec) -> Result<(), ConfigError> {
        EchoRuntime::config(agent).map(|_| ())
    }

    async fn run(&self, turn: Turn, io: TurnIo) -> Result<TurnOutput, RuntimeError> {
        let config = EchoRuntime::config(&turn.agent)
            .map_err(|e| RuntimeError::fatal("invalid_configuration", e.message))?;
        let base: Vec<String> = match &config.chunks {
            Some(chunks) => chunks.clone(),
            None => turn
                .prompt
                .split_inclusive(' ')
                .map(str::to_owned)
                .collect(),
        };
        let base: Vec<String> = base
            .into_iter()
            .map(|text| match (config.chunk_bytes, text.len()) {
                (0, _) | (_, 0) => text,
                (want, len) => text.repeat(want.div_ceil(len)),
            })
            .collect();
        // Chunk `i` is `base[i % base.len()]`: repeats are not copied in memory.
        let total = base.len() * config.repeat.unwrap_or(1);
        let chunk = |i: usize| &base[i % base.len()];
        let attempt = io.attempt();
        let resumed: EchoCheckpoint = io
            .previous_checkpoint()
            .and_then(|c| serde_json::from_value(c.clone()).ok())
            .unwrap_or_default();
        // A checkpoint of an earlier turn only tells how many turns came before, and what
        // they were asked.
        let (start, turns_completed) = if resumed.turn == turn.index {
            (resumed.emitted, resumed.turns_completed)
        } else {
            (
                0,
                resumed.turns_completed + u32::from(io.previous_checkpoint().is_some()),
            )
        };
        let conversation = resumed.conversation;
        let approval = match &config.ask_tool {
            Some(tool) if start == 0 => {
                let checkpoint = EchoCheckpoint {
                    turn: turn.index,
                    emitted: 0,
                    turns_completed,
                    conversation: conversation.clone(),
                };
                Some(ask(&io, tool, &turn, checkpoint).await?)
            }
            _ => None,
        };
        let fails = config.fail_attempts.contains(&attempt)
            || config.fail_turns.contains(&(turn.index + 1));
        let stop_at = if fails {
            (start + config.fail_after_chunks).min(total)
        } else {
            total
        };

        for i in start..stop_at {
            if config.delay_ms > 0 {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(config.delay_ms)) => {}
                    _ = io.cancel.cancelled() => {
                        return stop_after_cancel(config.ignore_cancel_ms).await;
                    }
                }
            }
            if io.cancel.is_cancelled() {
                return stop_after_cancel(config.ignore_cancel_ms).await;
            }
            io.emit_checkpointed(
                "text",
                json!({ "text": chunk(i) }),
                serde_json::to_value(EchoCheckpoint {
                    turn: turn.index,
                    emitted: i + 1,
                    turns_completed,
                    conversation: conversation.clone(),
                })
                .expect("a checkpoint serializes"),
            );
        }

        if fails {
            let code = config.fail_code.unwrap_or_else(|| "echo_failure".into());
            let message = format!(
                "echo was configured to fail attempt {attempt} of turn {}",
                turn.index + 1
            );
            return Err(if config.fail_retryable.unwrap_or(true) {
                RuntimeError::retryable(code, message)
            } else {
                RuntimeError::fatal(code, message)
            });
        }

        let mut output = json!({
            "turn": turn.index + 1,
            "attempt": attempt,
            "resumed_from_chunk": start,
            "turns_completed_before": turns_completed,
        });
        if !conversation.is_empty() {
            output["previous_prompts"] = json!(conversation);
        }
        if let Some(approval) = approval {
            output["approval"] = approval;
        }
        if config.sized() {
            output["chunks"] = json!(total);
            output["bytes"] = json!((0..total).map(|i| chunk(i).len()).sum::<usize>());
        } else {
            output["text"] = json!(base.concat());
        }
        Ok(TurnOutput {
            output,
            usage: Usage {
                input_tokens: turn.prompt.split_whitespace().count() as u64,
                output_tokens: total as u64,
                cost_usd: 0.0,
                tool_calls: 0,
            },
            checkpoint: Some(
                serde_json::to_value(EchoCheckpoint {
                    turn: turn.index + 1,
                    emitted: 0,
                    turns_completed: turns_completed + 1,
                    conversation: conversation
                        .iter()
                        .cloned()
                        .chain([turn.prompt.clone()])
                        .collect(),
                })
                .expect("a checkpoint serializes"),
            ),
        })
    }
}

/// Asks whether `tool` may run, says the answer as a chunk and returns it for the result; on
/// [`Answer::Hold`] saves `checkpoint` (asking again is where a resumed attempt starts) and
/// stops with [`RuntimeError::held`].
async fn ask(
    io: &TurnIo,
    tool: &str,
    turn: &Turn,
    checkpoint: EchoCheckpoint,
) -> Result<serde_json::Value, RuntimeError> {
    let id = format!("echo-{tool}-turn-{}", turn.index + 1);
    let request = ToolAsk {
        id: id.clone(),
        tool: tool.to_string(),
        input: json!({ "prompt": turn.prompt }),
    };
    let (text, approval) = match io.ask(request).await {
        Answer::Decided(Decision::Allow { updated_input }) => (
            format!("[{tool} allowed] "),
            json!({ "tool": tool, "decision": "allowed", "input": updated_input }),
        ),
        Answer::Decided(Decision::Deny { message }) => (
            format!("[{tool} denied: {message}] "),
            json!({ "tool": tool, "decision": "denied", "message": message }),
        ),
        Answer::Hold => {
            io.save_checkpoint(serde_json::to_value(checkpoint).expect("a checkpoint serializes"));
            return Err(RuntimeError::held(id));
        }
    };
    io.emit("text", json!({ "text": text }));
    Ok(approval)
}

/// Honour a cancellation, late if configured to.
async fn stop_after_cancel(ignore_ms: u64) -> Result<TurnOutput, RuntimeError> {
    if ignore_ms > 0 {
        tokio::time::sleep(Duration::from_millis(ignore_ms)).await;
    }
    Err(RuntimeError::canceled())
}
