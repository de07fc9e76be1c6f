//! Connecting to one MCP server: spawn a stdio server or reach a streamable HTTP one, and do the
//! MCP handshake.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use process_wrap::tokio::{CommandWrap, ProcessGroup};
use rmcp::service::RunningService;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::config::McpServerConfig;
use crate::runtime::RuntimeError;

/// A connected MCP client session; `()` because we answer no server-initiated requests.
pub(super) type McpSession = RunningService<RoleClient, ()>;

/// How many of a stdio server's last stderr lines an error message quotes.
const STDERR_TAIL_LINES: usize = 20;

/// Starts (stdio) or reaches (HTTP) the server `name` and completes the MCP handshake within
/// `timeout`.
pub(super) async fn connect(
    name: &str,
    config: &McpServerConfig,
    timeout: Duration,
) -> Result<McpSession, RuntimeError> {
    let failed = |retryable: bool, why: String| {
        let message = format!("MCP server `{name}` {why}");
        let error = if retryable {
            RuntimeError::retryable("mcp_server_failed", message)
        } else {
            RuntimeError::fatal("mcp_server_failed", message)
        };
        error.with_details(json!({ "server": name }))
    };
    match config {
        McpServerConfig::Stdio { command, args, env } => {
            let mut cmd = tokio::process::Command::new(command);
            // A clean environment: the worker's credentials stay the worker's. The server gets
            // what the worker chooses (`base_env`) and what its configuration gives it.
            cmd.args(args)
                .env_clear()
                .envs(crate::runtime::policy::base_env())
                .envs(env);
            let mut cmd = CommandWrap::from(cmd);
            // Its own process group, so shutting it down also ends what it spawned (npx, shells).
            cmd.wrap(ProcessGroup::leader());
            let (transport, stderr) = TokioChildProcess::builder(cmd)
                .stderr(Stdio::piped())
                .spawn()
                // A program that cannot be started will not start on the next attempt either.
                .map_err(|e| failed(false, format!("could not start `{command}`: {e}")))?;
            let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
            if let Some(stderr) = stderr {
                tokio::spawn(keep_tail(stderr, stderr_tail.clone()));
            }
            let describe_stderr = || {
                let lines = stderr_tail.lock().expect("stderr tail lock");
                if lines.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; its stderr ends with: {}",
                        Vec::from(lines.clone()).join(" | ")
                    )
                }
            };
            match tokio::time::timeout(timeout, ().serve(transport)).await {
                Ok(Ok(session)) => Ok(session),
                Ok(Err(e)) => Err(failed(
                    true,
                    format!(
                        "(`{command}`) failed the MCP handshake: {e}{}",
                        describe_stderr()
                    ),
                )),
                Err(_) => Err(failed(
                    true,
                    format!(
                        "(`{command}`) did not finish the MCP handshake within {} s{}",
                        timeout.as_secs_f64(),
                        describe_stderr()
                    ),
                )),
            }
        }
        McpServerConfig::Http { url } => {
            let transport = StreamableHttpClientTransport::from_uri(url.as_str());
            match tokio::time::timeout(timeout, ().serve(transport)).await {
                Ok(Ok(session)) => Ok(session),
                Ok(Err(e)) => Err(failed(
                    true,
                    format!("at {url} failed the MCP handshake: {e}"),
                )),
                Err(_) => Err(failed(
                    true,
                    format!(
                        "at {url} did not finish the MCP handshake within {} s",
                        timeout.as_secs_f64()
                    ),
                )),
            }
        }
    }
}

/// Keeps the last lines a server wrote to stderr, for error messages, and drains the pipe so a
/// chatty server never blocks on a full one.
async fn keep_tail(stderr: tokio::process::ChildStderr, tail: Arc<Mutex<VecDeque<String>>>) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let mut tail = tail.lock().expect("stderr tail lock");
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}
