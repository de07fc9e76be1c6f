//! `claude_code`: runs an agent turn with the real Claude Code CLI.
//!
//! Each turn spawns `claude` in a process group of its own, speaking stream-json both ways as
//! the Claude Agent SDK does (see `shared/reference/claude-code-stream-json.md`): the prompt is a
//! `user` message on stdin, and every stdout line becomes output chunks. The session id is
//! checkpointed as soon as the CLI names it, so the next turn, or a retry of this one, continues
//! the same conversation with `--resume`. Cancellation interrupts through the control protocol,
//! then escalates to SIGTERM and SIGKILL of the process group and of the tool groups below it.
//!
//! Checkpoints carry the session's file from the CLI's config directory, restored before
//! `--resume` on whichever worker runs the next turn or the retry (`portable.rs`).
//!
//! In `default` permission mode the CLI's permission asks become approvals (`approve.rs`); an
//! ask nobody answers in time is held: the CLI is killed, the call marked deferred in the
//! session, and the next attempt resumes the session so the call runs (or is denied) once.
//!
//! The CLI starts with a clean environment: the worker's `PATH`, `HOME` and locale, the
//! variables the CLI itself reads from the worker's environment (`cli_env`: the provider's
//! endpoint and credentials, its switches), and the agent's admitted `env`. MCP servers it
//! starts get none of the CLI's: each runs through `env -i` (`with_isolated_servers`).

mod approve;
mod chunks;
mod config;
mod group;
mod outcome;
mod parse;
mod portable;
mod process;
mod session;
mod spans;

#[cfg(test)]
mod fixture_tests;

use std::io;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::process::Command;

use self::config::ClaudeCodeConfig;
use self::process::CliProcess;
use self::session::{Opening, Session};
use super::{
    AgentRuntime, ConfigError, RuntimeDescription, RuntimeError, RuntimeSettings, TurnIo,
    TurnOutput,
};
use crate::domain::{AgentSpec, Turn};

/// The `claude_code` runtime: each turn runs the Claude Code CLI in a process group of its own,
/// continuing the session the last turn checkpointed.
#[derive(Debug, Clone)]
pub struct ClaudeCodeRuntime {
    /// The `claude` binary: a path, or a name looked up on `PATH`.
    cli: PathBuf,
    /// `CLAUDE_CONFIG_DIR` for the CLI: where it keeps sessions. `None` keeps the CLI's default
    /// (`$HOME/.claude`).
    config_dir: Option<PathBuf>,
    /// Environment set by the worker on top of its own; wins over an agent's `env`.
    env: Vec<(String, String)>,
}

impl ClaudeCodeRuntime {
    /// The runtime, configured from the worker's settings.
    pub fn new(settings: &RuntimeSettings) -> Self {
        ClaudeCodeRuntime {
            cli: settings
                .claude_cli
                .clone()
                .unwrap_or_else(|| PathBuf::from("claude")),
            config_dir: settings.claude_config_dir.clone(),
            env: Vec::new(),
        }
    }

    /// Sets an environment variable for every CLI this runtime starts, over the worker's own
    /// environment and over the agent's `env`. For embedders and tests that point the CLI at
    /// another endpoint without changing the worker process's environment.
    pub fn with_env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// What `describe()` returns; also used to reject unknown keys.
    fn description() -> RuntimeDescription {
        RuntimeDescription {
            name: "claude_code",
            description: "Runs each turn with the Claude Code CLI (`claude`) on the worker, resuming its session across turns and retries.",
            config_keys: config::config_keys(),
        }
    }

    /// The working directory: the configured one, or a scratch directory of the execution's,
    /// removed when the turn ends.
    async fn working_dir(
        &self,
        config: &ClaudeCodeConfig,
        io: &TurnIo,
    ) -> Result<PathBuf, RuntimeError> {
        if let Some(cwd) = &config.cwd {
            let cwd = PathBuf::from(cwd);
            if !tokio::fs::metadata(&cwd).await.is_ok_and(|m| m.is_dir()) {
                return Err(RuntimeError::fatal(
                    "cwd_not_found",
                    format!(
                        "runtime_config.cwd `{}` is not a directory on this worker",
                        cwd.display()
                    ),
                ));
            }
            return Ok(cwd);
        }
        let scratch = std::env::temp_dir()
            .join("cairn-claude-code")
            .join(io.attempt.execution_id.to_string());
        tokio::fs::create_dir_all(&scratch).await.map_err(|e| {
            RuntimeError::fatal(
                "workdir_unavailable",
                format!(
                    "cannot create the working directory {}: {e}",
                    scratch.display()
                ),
            )
        })?;
        Ok(scratch)
    }

    /// The CLI command for one turn.
    fn command(
        &self,
        config: &ClaudeCodeConfig,
        agent: &AgentSpec,
        resume: Option<&str>,
        cwd: &Path,
    ) -> Command {
        let mut command = Command::new(&self.cli);
        command.args(["--output-format", "stream-json", "--verbose"]);
        let base = super::policy::base_env();
        command.args(config.with_isolated_servers(&base).flags(agent));
        if let Some(session_id) = resume {
            // The `=` form keeps an id that starts with a dash from being read as a flag.
            command.arg(format!("--resume={session_id}"));
        }
        command.args(["--input-format", "stream-json"]);
        // A clean environment: what every process the worker starts gets, what the CLI needs
        // from the worker's (its provider, credentials and switches), then the agent's `env`.
        // `CLAUDECODE`, set when the worker itself runs inside Claude Code, is not passed, so
        // the child does not believe it is nested.
        command.env_clear().envs(base).envs(cli_env());
        command.current_dir(cwd).env("PWD", cwd);
        if let Some(dir) = &self.config_dir {
            command.env("CLAUDE_CONFIG_DIR", dir);
        }
        command.envs(&config.env);
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Where the CLI keeps its sessions, as far as this worker can tell (`None`: the CLI's
    /// default under the worker's `HOME`).
    fn effective_config_dir(&self, config: &ClaudeCodeConfig) -> Option<String> {
        const VAR: &str = "CLAUDE_CONFIG_DIR";
        self.env
            .iter()
            .rev()
            .find(|(name, _)| name == VAR)
            .map(|(_, dir)| dir.clone())
            .or_else(|| config.env.get(VAR).cloned())
            .or_else(|| self.config_dir.as_ref().map(|d| d.display().to_string()))
            .or_else(|| std::env::var(VAR).ok())
    }

    /// The failure for a CLI that could not be started.
    fn spawn_error(&self, error: io::Error) -> RuntimeError {
        let cli = self.cli.display();
        let details = json!({"cli": cli.to_string(), "error": error.to_string()});
        match error.kind() {
            io::ErrorKind::NotFound => RuntimeError::fatal(
                "cli_not_found",
                format!(
                    "the Claude Code CLI `{cli}` was not found on this worker. Install it with \
                     `npm install -g @anthropic-ai/claude-code` (or `npm install \
                     @anthropic-ai/claude-code` and use node_modules/.bin/claude), and point the \
                     worker setting `claude_cli` at the binary if it is not on PATH"
                ),
            ),
            io::ErrorKind::PermissionDenied => RuntimeError::fatal(
                "cli_not_executable",
                format!(
                    "the Claude Code CLI `{cli}` is not executable; check the worker setting `claude_cli`"
                ),
            ),
            _ => RuntimeError::retryable(
                "cli_spawn_failed",
                format!("could not start the Claude Code CLI `{cli}`: {error}"),
            ),
        }
        .with_details(details)
    }
}

/// The variables of the worker's environment the CLI reads: its provider's endpoint and
/// credentials (`ANTHROPIC_*`, `CLAUDE_CODE_*`), its config directory, its switches
/// (`DISABLE_*`, `IS_SANDBOX`, `MCP_*`) and how the worker reaches the network.
fn cli_env() -> Vec<(String, String)> {
    const PREFIXES: [&str; 4] = ["ANTHROPIC_", "CLAUDE_", "DISABLE_", "MCP_"];
    const NAMES: [&str; 8] = [
        "IS_SANDBOX",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "NODE_EXTRA_CA_CERTS",
    ];
    std::env::vars()
        .filter(|(name, _)| {
            name != "CLAUDECODE"
                && (PREFIXES.iter().any(|p| name.starts_with(p)) || NAMES.contains(&name.as_str()))
        })
        .collect()
}

#[async_trait]
impl AgentRuntime for ClaudeCodeRuntime {
    fn name(&self) -> &'static str {
        "claude_code"
    }

    fn describe(&self) -> RuntimeDescription {
        ClaudeCodeRuntime::description()
    }

    fn validate(&self, agent: &AgentSpec) -> Result<(), ConfigError> {
        ClaudeCodeConfig::from_agent(agent).map(|_| ())
    }

    async fn run(&self, turn: Turn, io: TurnIo) -> Result<TurnOutput, RuntimeError> {
        let config = ClaudeCodeConfig::from_agent(&turn.agent)
            .map_err(|e| RuntimeError::fatal("invalid_configuration", e.message))?;
        if io.cancel.is_cancelled() {
            return Err(RuntimeError::canceled());
        }
        let resume = io
            .previous_checkpoint()
            .and_then(|c| c.get("session_id"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        // A tool call held in this turn is resumed, not the prompt sent again (`approve.rs`).
        let held = approve::held_in_turn(io.previous_checkpoint(), turn.index)
            .filter(|_| resume.is_some());
        let cwd = self.working_dir(&config, &io).await?;
        io.set_workspace(cwd.display().to_string());
        let config_root = portable::config_root(self.effective_config_dir(&config).as_deref());
        // The session's files, from whichever worker saved them, so `--resume` finds it here.
        if let (Some(root), Some(files)) = (
            &config_root,
            io.previous_checkpoint()
                .and_then(|c| c.get(portable::FILES_KEY))
                .and_then(Value::as_object),
        ) {
            portable::restore(root, files).await?;
        }
        let command = self.command(&config, &turn.agent, resume.as_deref(), &cwd);
        let process = CliProcess::spawn(command).map_err(|e| self.spawn_error(e))?;
        // The pid is also the process group id: what an operator (or a test) needs to check
        // that nothing of the run is left behind.
        io.emit(
            "status",
            json!({
                "event": "started",
                "pid": process.pid(),
                "process_group": process.group.id(),
                "cwd": cwd.display().to_string(),
                "resume_session_id": resume,
                "resume_held_tool_call": held,
            }),
        );
        let mut checkpoint_base = serde_json::Map::new();
        checkpoint_base.insert("cwd".into(), json!(cwd.display().to_string()));
        checkpoint_base.insert(
            "config_dir".into(),
            json!(self.effective_config_dir(&config)),
        );
        let opening = match held {
            Some(_) => Opening::HeldToolCall,
            None => Opening::Prompt(&turn.prompt),
        };
        if let Some(tool_use_id) = &held {
            checkpoint_base.insert(
                approve::HELD_KEY.into(),
                json!({"tool_use_id": tool_use_id, "turn": turn.index}),
            );
        }
        let result = Session::new(process, &io, checkpoint_base, config_root, turn.index)
            .run(opening)
            .await;
        // A scratch directory lives as long as its turn: the session the next turn resumes is
        // in the checkpoint and the config directory, not here, and the next turn may run on
        // another worker anyway. The path is the execution's, so a resumed session finds the
        // same `cwd` (created again, empty). A turn held at a tool call is not over: the
        // attempt that runs the call after its decision may need what the turn wrote so far.
        let held = matches!(&result, Err(error) if error.is_held().is_some());
        if config.cwd.is_none()
            && !held
            && let Err(error) = tokio::fs::remove_dir_all(&cwd).await
        {
            tracing::warn!(%error, cwd = %cwd.display(), "could not remove a scratch directory");
        }
        result
    }
}
