//! Driving one CLI run: the prompt in, chunks out, and the stop sequence on cancellation.

use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::approve::{self, HELD_KEY, PermissionAsk};
use super::outcome::{self, ExitFacts};
use super::parse::StreamState;
use super::portable;
use super::process::CliProcess;
use super::spans::GenAiSpans;
use crate::runtime::{Answer, Decision, RuntimeError, TurnIo, TurnOutput};

/// How long the CLI gets to exit after printing its result and seeing stdin close.
const EXIT_GRACE: Duration = Duration::from_secs(10);
/// How long an interrupt gets to stop the turn (the CLI answers with a `result`).
const INTERRUPT_GRACE: Duration = Duration::from_secs(2);
/// How long the CLI gets to exit once stdin is closed, and again after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// How often the session file is looked at while the CLI runs: it writes the file on its own
/// schedule, possibly after the stdout line of a step, and a long tool call prints nothing.
const CAPTURE_EVERY: Duration = Duration::from_secs(1);

/// How a run begins.
pub(super) enum Opening<'p> {
    /// Send the turn's prompt.
    Prompt(&'p str),
    /// The turn's prompt was sent by an attempt that held a tool call (`approve.rs`): the resumed
    /// session runs that call first, so nothing is sent but the handshake.
    HeldToolCall,
}

/// What became of a permission ask.
enum Settled {
    /// The CLI has its answer; the run goes on.
    Answered,
    /// The attempt was cancelled while waiting.
    Canceled,
    /// Nobody answered in time: the run stopped (see [`Session::hold`]).
    Held(RuntimeError),
}

/// A running CLI and what it has said so far.
pub(super) struct Session<'a> {
    process: CliProcess,
    state: StreamState,
    /// The GenAI spans of the model responses and tool calls seen so far.
    spans: GenAiSpans,
    io: &'a TurnIo,
    /// The checkpoint without its session id: where the session lives.
    checkpoint_base: serde_json::Map<String, Value>,
    /// The CLI's config directory, whose session files the checkpoints carry (`portable.rs`).
    config_root: Option<PathBuf>,
    /// The session id, once the CLI named it.
    session_id: Option<String>,
    /// The last checkpoint saved.
    checkpoint: Option<Value>,
    /// The turn's index, recorded with a held tool call.
    turn_index: u32,
}

impl<'a> Session<'a> {
    /// A session over a just-spawned process. `checkpoint_base` holds the checkpoint's fields
    /// other than `session_id`.
    pub fn new(
        process: CliProcess,
        io: &'a TurnIo,
        checkpoint_base: serde_json::Map<String, Value>,
        config_root: Option<PathBuf>,
        turn_index: u32,
    ) -> Self {
        Session {
            process,
            state: StreamState::default(),
            spans: GenAiSpans::default(),
            io,
            checkpoint_base,
            config_root,
            session_id: None,
            checkpoint: None,
            turn_index,
        }
    }

    /// Saves a checkpoint: the session id and where it ran, with the session's files as they
    /// are now, so any worker can resume it.
    async fn save_checkpoint(&mut self) {
        let Some(session_id) = self.session_id.clone() else {
            return;
        };
        let mut checkpoint = self.checkpoint_base.clone();
        checkpoint.insert("session_id".into(), Value::from(session_id.as_str()));
        if let Some(root) = &self.config_root
            && let Some(files) = portable::capture(root, &session_id).await
        {
            checkpoint.insert(portable::FILES_KEY.into(), Value::Object(files));
        }
        let checkpoint = Value::Object(checkpoint);
        if self.checkpoint.as_ref() != Some(&checkpoint) {
            self.io.save_checkpoint(checkpoint.clone());
            self.checkpoint = Some(checkpoint);
        }
    }

    /// Sends the prompt and runs the turn to its end, to cancellation, or to a held ask.
    pub async fn run(mut self, opening: Opening<'_>) -> Result<TurnOutput, RuntimeError> {
        let message = match opening {
            // A stream-json user message, as the Agent SDK writes it; the CLI fills in the
            // session.
            Opening::Prompt(prompt) => json!({
                "type": "user",
                "session_id": "",
                "message": {"role": "user", "content": prompt},
                "parent_tool_use_id": null,
            }),
            // The CLI reads stdin before it starts; the handshake is what the SDK sends first.
            Opening::HeldToolCall => json!({
                "type": "control_request",
                "request_id": format!("cairn_initialize_{}", self.process.pid()),
                "request": {"subtype": "initialize", "hooks": null},
            }),
        };
        if let Err(error) = self.process.send(&message).await {
            // The CLI is already gone; its exit status and stderr say why.
            tracing::warn!(%error, "could not send the prompt to Claude Code");
            self.process.close_stdin();
        }
        let mut capture = tokio::time::interval(CAPTURE_EVERY);
        capture.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.io.cancel.cancelled() => return self.cancel().await,
                // Saved only when the file changed (see `save_checkpoint`).
                _ = capture.tick() => self.save_checkpoint().await,
                line = self.process.next_line() => match line {
                    Ok(Some(line)) => {
                        let Some(ask) = self.handle(&line).await else { continue };
                        match self.settle(ask).await {
                            Settled::Answered => {}
                            Settled::Canceled => return self.cancel().await,
                            Settled::Held(held) => return Err(held),
                        }
                    }
                    Ok(None) => break,
                    Err(error) if error.kind() == std::io::ErrorKind::InvalidData => {
                        // The same run would print the same line again.
                        self.process.group.kill_tree();
                        let _ = self.process.wait_for(STOP_GRACE).await;
                        return Err(RuntimeError::fatal("cli_line_too_long", error.to_string()));
                    }
                    Err(error) => {
                        tracing::warn!(%error, "reading Claude Code's output failed");
                        break;
                    }
                },
            }
        }
        let status = tokio::select! {
            status = self.process.wait_for(EXIT_GRACE) => status,
            _ = self.io.cancel.cancelled() => return self.cancel().await,
        };
        // Whatever the CLI left in its group (an MCP server, a stuck tool) goes with it.
        self.process.group.kill_tree();
        // The session file as the turn left it, for the next turn on whichever worker.
        self.save_checkpoint().await;
        let exit = ExitFacts {
            status,
            stderr_tail: self.process.stderr_tail().await,
        };
        outcome::finish(&self.state, &exit, self.checkpoint.clone())
    }

    /// Takes one stdout line: emits its chunks, saves a checkpoint once the session id is
    /// known, answers control requests, and closes stdin after the result so the CLI exits.
    /// Returns a permission ask for the caller to settle.
    async fn handle(&mut self, line: &str) -> Option<PermissionAsk> {
        let outcome = self.state.accept(line);
        self.spans.observe(line);
        // A tool call or its result is a step of the turn the session file now records: a
        // retry elsewhere resumes after it.
        let step = outcome
            .chunks
            .iter()
            .any(|c| c.kind == "tool_use" || c.kind == "tool_result");
        // A resumed held call stays in the checkpoints until its result is in the session: a
        // retry before that must resume it again rather than send the prompt.
        if let Some(held) = self
            .checkpoint_base
            .get(HELD_KEY)
            .map(|h| h["tool_use_id"].clone())
            && outcome
                .chunks
                .iter()
                .any(|c| c.kind == "tool_result" && c.data["tool_use_id"] == held)
        {
            self.checkpoint_base.remove(HELD_KEY);
        }
        for chunk in outcome.chunks {
            self.io.emit(chunk.kind, chunk.data);
        }
        if let Some(session_id) = outcome.session_started {
            self.session_id = Some(session_id);
            self.save_checkpoint().await;
        } else if step {
            self.save_checkpoint().await;
        }
        if let Some(reply) = outcome.reply
            && let Err(error) = self.process.send(&reply).await
        {
            tracing::warn!(%error, "could not answer a control request of Claude Code");
        }
        if self.state.result.is_some() && self.process.stdin_open() {
            self.process.close_stdin();
        }
        outcome.ask
    }

    /// Asks the approver about a tool call the CLI waits on, and answers the CLI. Output the CLI
    /// prints meanwhile waits in the pipe: the CLI itself waits for this answer.
    async fn settle(&mut self, ask: PermissionAsk) -> Settled {
        self.io.emit(
            "status",
            json!({
                "event": "approval_requested",
                "tool_use_id": ask.tool_use_id,
                "tool": ask.tool_name,
                "input": ask.input,
            }),
        );
        let answer = tokio::select! {
            answer = self.io.ask(ask.to_tool_ask()) => answer,
            _ = self.io.cancel.cancelled() => return Settled::Canceled,
        };
        let decision = match answer {
            Answer::Decided(decision) => decision,
            Answer::Hold => return Settled::Held(self.hold(&ask).await),
        };
        let (event, message) = match &decision {
            Decision::Allow { .. } => ("approval_allowed", None),
            Decision::Deny { message } => ("approval_denied", Some(message.clone())),
        };
        self.io.emit(
            "status",
            json!({"event": event, "tool_use_id": ask.tool_use_id, "message": message}),
        );
        if let Err(error) = self.process.send(&ask.reply(&decision)).await {
            tracing::warn!(%error, "could not answer a permission ask of Claude Code");
        }
        Settled::Answered
    }

    /// Stops at a tool call nobody answered in time, so that a later attempt runs it exactly
    /// once without repeating a model call (`approve.rs` says why this way): waits until the
    /// session file records the call, SIGKILLs the CLI's group while the ask is pending (so it
    /// writes no answer), marks the call deferred in the file, and checkpoints the file with the
    /// held call. Returns the error that ends the attempt.
    async fn hold(&mut self, ask: &PermissionAsk) -> RuntimeError {
        let recorded = match (&self.config_root, &self.session_id) {
            (Some(root), Some(session_id)) => {
                approve::wait_recorded(root, session_id, &ask.tool_use_id).await
            }
            _ => None,
        };
        self.process.group.kill_tree();
        let _ = self.process.wait_for(STOP_GRACE).await;
        let Some((path, row)) = recorded else {
            // Without the call in the session, a resume could not run it: a retry starts the
            // turn over instead, and asks again when the model calls the tool again.
            return RuntimeError::retryable(
                "held_call_not_recorded",
                format!(
                    "the Claude Code session does not record the tool call {} that waits for approval",
                    ask.tool_use_id
                ),
            );
        };
        if let Err(error) = approve::defer_in_session(&path, &row, ask).await {
            return error;
        }
        self.checkpoint_base.insert(
            HELD_KEY.into(),
            json!({"tool_use_id": ask.tool_use_id, "turn": self.turn_index}),
        );
        self.save_checkpoint().await;
        RuntimeError::held(ask.tool_use_id.clone())
    }

    /// Stops the run: an interrupt first, so the CLI stops its tool and records the interruption
    /// in the session (a resumed attempt then sees a coherent transcript); then end of input;
    /// then SIGTERM; and finally SIGKILL for the CLI and every tool group below it.
    async fn cancel(mut self) -> Result<TurnOutput, RuntimeError> {
        let pid = self.process.pid();
        self.io
            .emit("status", json!({"event": "canceling", "pid": pid}));
        self.process.group.remember_descendants();
        let interrupt = json!({
            "type": "control_request",
            "request_id": format!("cairn_interrupt_{pid}"),
            "request": {"subtype": "interrupt"},
        });
        if self.process.send(&interrupt).await.is_ok() {
            self.drain(INTERRUPT_GRACE, |state| state.result.is_some())
                .await;
        }
        self.process.group.remember_descendants();
        self.process.close_stdin();
        if !self.drain_until_exit(STOP_GRACE).await {
            self.process.group.signal_tree(Signal::SIGTERM);
            self.drain_until_exit(STOP_GRACE).await;
        }
        self.process.group.kill_tree();
        // Reap the CLI so it does not linger as a zombie.
        let _ = self.process.wait_for(STOP_GRACE).await;
        Err(RuntimeError::canceled())
    }

    /// Handles stdout lines for at most `limit`, until `done` holds or stdout ends. Returns
    /// whether `done` held.
    async fn drain(&mut self, limit: Duration, done: impl Fn(&StreamState) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if done(&self.state) {
                return true;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return false,
                line = self.process.next_line() => match line {
                    // An ask that comes while stopping goes unanswered: the CLI is killed.
                    Ok(Some(line)) => drop(self.handle(&line).await),
                    Ok(None) | Err(_) => return false,
                },
            }
        }
    }

    /// Handles stdout until it ends and the CLI exits, for at most `limit`. Returns whether the
    /// CLI exited.
    async fn drain_until_exit(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        self.drain(limit, |_| false).await;
        let left = deadline.saturating_duration_since(Instant::now());
        self.process.wait_for(left).await.is_some()
    }
}
