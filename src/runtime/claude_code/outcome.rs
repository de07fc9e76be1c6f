//! How a finished CLI run becomes a turn's output or a failure that says what went wrong.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use serde_json::{Value, json};

use super::parse::{StreamState, TurnResult};
use crate::domain::Usage;
use crate::runtime::{RuntimeError, TurnOutput};

/// How the CLI process ended, for error details.
#[derive(Debug, Default)]
pub(super) struct ExitFacts {
    /// The exit status, if the process was reaped.
    pub status: Option<ExitStatus>,
    /// The last part of stderr.
    pub stderr_tail: String,
}

impl ExitFacts {
    fn describe(&self) -> String {
        match self.status {
            Some(status) => match (status.code(), status.signal()) {
                (Some(code), _) => format!("exited with code {code}"),
                (None, Some(signal)) => format!("was killed by signal {signal}"),
                _ => "exited".to_owned(),
            },
            None => "did not exit in time and was killed".to_owned(),
        }
    }

    fn stderr_suffix(&self) -> String {
        if self.stderr_tail.is_empty() {
            String::new()
        } else {
            format!("; stderr: {}", last_chars(&self.stderr_tail, 500))
        }
    }
}

/// The turn's output, or the failure, from what the run printed and how it ended.
pub(super) fn finish(
    state: &StreamState,
    exit: &ExitFacts,
    checkpoint: Option<Value>,
) -> Result<TurnOutput, RuntimeError> {
    let details = details(state, exit);
    let Some(result) = &state.result else {
        return Err(no_result(state, exit).with_details(details));
    };
    if result.is_error {
        return Err(failed_result(state, result, exit).with_details(details));
    }
    let mut output = result.chunk.clone();
    if let Value::Object(fields) = &mut output {
        fields.insert("tool_calls".into(), json!(state.tool_calls));
    }
    Ok(TurnOutput {
        output,
        usage: Usage {
            input_tokens: result.input_tokens,
            output_tokens: result.output_tokens,
            cost_usd: result.cost_usd,
            tool_calls: state.tool_calls,
        },
        checkpoint,
    })
}

/// The CLI ended without a `result` message.
fn no_result(state: &StreamState, exit: &ExitFacts) -> RuntimeError {
    let how = exit.describe();
    let stderr = exit.stderr_suffix();
    if !state.saw_init {
        // It never read the prompt: a bad flag, a refused permission mode, a broken install.
        // Such failures repeat, so another attempt would fail the same way.
        return RuntimeError::fatal(
            "cli_startup_failed",
            format!("Claude Code {how} before starting a session{stderr}"),
        );
    }
    RuntimeError::retryable(
        "cli_exited",
        format!("Claude Code {how} in the middle of the turn, without a result{stderr}"),
    )
}

/// The CLI reported a failed turn.
fn failed_result(state: &StreamState, result: &TurnResult, exit: &ExitFacts) -> RuntimeError {
    let text = result.text.clone().unwrap_or_default();
    let reason = if result.errors.is_empty() {
        text.clone()
    } else {
        result.errors.join("; ")
    };
    if is_api_error(result) {
        return api_error(state, result, &text);
    }
    if result
        .errors
        .iter()
        .any(|e| e.contains("No conversation found"))
    {
        return RuntimeError::fatal(
            "session_not_found",
            format!(
                "Claude Code cannot resume the session of the checkpoint ({reason}). Checkpoints \
                 carry the session's file unless it was over 2 MiB or was not yet written when \
                 the checkpoint was saved; such a session resumes only where its file is: point \
                 the worker setting `claude_config_dir` at storage all workers share"
            ),
        );
    }
    match result.subtype.as_str() {
        "error_max_turns" => RuntimeError::fatal(
            "max_turns",
            format!(
                "Claude Code stopped after {} model turns, the agent's max_turns; raise \
                 runtime_config.max_turns to let it go on",
                result.num_turns
            ),
        ),
        "error_max_budget_usd" => RuntimeError::fatal(
            "max_budget",
            format!("Claude Code stopped at its budget limit: {reason}"),
        ),
        subtype => RuntimeError::retryable(
            "claude_code_error",
            format!(
                "Claude Code ended the turn with an error ({subtype}) and {}: {reason}{}",
                exit.describe(),
                exit.stderr_suffix()
            ),
        ),
    }
}

/// Whether the failure came from the model provider's API rather than from Claude Code.
fn is_api_error(result: &TurnResult) -> bool {
    result.terminal_reason.as_deref() == Some("api_error")
        || result.api_error_status.is_some()
        || result
            .text
            .as_deref()
            .is_some_and(|t| t.starts_with("API Error"))
}

/// An API failure, retryable when the cause is transient.
fn api_error(state: &StreamState, result: &TurnResult, text: &str) -> RuntimeError {
    let status = result.api_error_status.or(state.api.retry_status);
    let kind = state.api.error_kind.as_deref();
    let retryable = match status {
        // Timeouts, conflicts, rate limits and server-side failures pass; `529` is "overloaded".
        Some(408 | 409 | 429) => true,
        Some(status) if status >= 500 => true,
        Some(_) => false,
        // No status: the connection failed, or the CLI only named the kind of error.
        None => !matches!(
            kind,
            Some(
                "authentication_failed" | "billing_error" | "invalid_request" | "max_output_tokens"
            )
        ),
    };
    let mut cause = Vec::new();
    if let Some(status) = status {
        cause.push(format!("HTTP {status}"));
    }
    if let Some(kind) = kind {
        cause.push(kind.to_owned());
    }
    let cause = if cause.is_empty() {
        String::new()
    } else {
        format!(" ({})", cause.join(", "))
    };
    let verdict = if retryable {
        "transient, worth retrying"
    } else {
        "not transient: check the API key, account and request"
    };
    let message = format!(
        "Claude Code got an API error from the model provider{cause}, {verdict}: {}",
        last_chars(text, 500)
    );
    let code = match status {
        Some(429) => "rate_limited",
        _ => "api_error",
    };
    if retryable {
        RuntimeError::retryable(code, message)
    } else {
        RuntimeError::fatal(code, message)
    }
}

/// The structured facts every failure carries.
fn details(state: &StreamState, exit: &ExitFacts) -> Value {
    let result = state.result.as_ref();
    json!({
        "exit_code": exit.status.and_then(|s| s.code()),
        "signal": exit.status.and_then(|s| s.signal()),
        "stderr_tail": last_chars(&exit.stderr_tail, 2000),
        "session_id": state.session_id,
        "subtype": result.map(|r| r.subtype.clone()),
        "terminal_reason": result.and_then(|r| r.terminal_reason.clone()),
        "errors": result.map(|r| r.errors.clone()),
        "api_error_status": result.and_then(|r| r.api_error_status).or(state.api.retry_status),
        "api_error_kind": state.api.error_kind,
        "api_retries": state.api.retries,
        "malformed_lines": state.malformed_lines,
    })
}

/// The last `n` characters of `text`.
fn last_chars(text: &str, n: usize) -> String {
    let count = text.chars().count();
    text.chars().skip(count.saturating_sub(n)).collect()
}
