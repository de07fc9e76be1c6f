//! Tool approvals: the CLI's `can_use_tool` control requests become [`TurnIo::ask`]s, and a held
//! ask becomes a deferred tool call that `--resume` runs.
//!
//! In `default` permission mode the CLI runs with `--permission-prompt-tool stdio` and, before a
//! tool that needs permission, prints `{"type":"control_request","request":{"subtype":
//! "can_use_tool","tool_name","input","tool_use_id",...}}` and waits (a pending ask never times
//! out). The answer is a `control_response` with `{"behavior":"allow","updatedInput":{...}}` or
//! `{"behavior":"deny","message":"..."}`; a denial reaches the model as an `is_error` tool result.
//!
//! **Holding.** When nobody answers in time ([`Answer::Hold`]) the CLI must stop without running
//! the tool and without writing an answer into the session, and a later `--resume` must run that
//! same call (asking again) without a model call being made twice. Found with CLI 2.1.332:
//! - closing stdin or interrupting while an ask is pending writes an error tool result for it
//!   ("Tool permission stream closed before response received") and calls the model again;
//! - after a SIGKILL the session ends at the `tool_use`; `--resume` then fills in a synthetic
//!   "[Tool call interrupted ...]" result, so the call never runs;
//! - a call that a PreToolUse hook *deferred* is recorded as an `attachment` row of type
//!   `hook_deferred_tool` after the `tool_use`, and `--resume` (with no new prompt) runs that
//!   call: the permission check asks again with the same `tool_use_id`, the tool runs once, and
//!   the CLI makes the next model call with its result (plus "Continue from where you left off.").
//!
//! So a hold SIGKILLs the CLI's group while the ask is pending and appends that `hook_deferred_tool`
//! row to the session file itself, then checkpoints the file with [`HELD_KEY`]; the resumed attempt
//! sends no prompt and answers the repeated ask from the recorded decision.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::io::AsyncWriteExt;

use super::chunks::str_field;
use crate::runtime::{Decision, RuntimeError, ToolAsk};

/// The checkpoint key of a held tool call: `{"tool_use_id", "turn"}`. A turn that starts from a
/// checkpoint holding it for its own index resumes the deferred call instead of sending its prompt.
pub(super) const HELD_KEY: &str = "held_tool_call";

/// How long a hold waits for the CLI to have written the pending `tool_use` to the session file
/// (it writes on its own schedule; the ask usually comes after the row).
const RECORDED_WITHIN: Duration = Duration::from_secs(10);

/// A `can_use_tool` request of the CLI, waiting for its answer.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct PermissionAsk {
    /// The control request's id, echoed in the answer.
    pub request_id: Value,
    /// The model's tool_use id: the approval's stable id across attempts.
    pub tool_use_id: String,
    /// The tool, e.g. `Bash` or `mcp__files__write_file`.
    pub tool_name: String,
    /// The tool's input as the model gave it.
    pub input: Value,
}

impl PermissionAsk {
    /// The request in `message` if it is a well-formed `can_use_tool`; `None` otherwise.
    pub fn from_request(message: &Map<String, Value>) -> Option<Self> {
        let request = message.get("request")?.as_object()?;
        if str_field(request, "subtype") != Some("can_use_tool") {
            return None;
        }
        Some(PermissionAsk {
            request_id: message.get("request_id")?.clone(),
            tool_use_id: str_field(request, "tool_use_id")?.to_owned(),
            tool_name: str_field(request, "tool_name")?.to_owned(),
            input: request.get("input").cloned().unwrap_or_else(|| json!({})),
        })
    }

    /// What the runtime asks the approver.
    pub fn to_tool_ask(&self) -> ToolAsk {
        ToolAsk {
            id: self.tool_use_id.clone(),
            tool: self.tool_name.clone(),
            input: self.input.clone(),
        }
    }

    /// The control response that carries `decision` to the CLI. An allow echoes the model's
    /// input unless the decision replaces it, as the Agent SDK does.
    pub fn reply(&self, decision: &Decision) -> Value {
        let response = match decision {
            Decision::Allow { updated_input } => json!({
                "behavior": "allow",
                "updatedInput": updated_input.clone().unwrap_or_else(|| self.input.clone()),
            }),
            Decision::Deny { message } => json!({"behavior": "deny", "message": message}),
        };
        json!({
            "type": "control_response",
            "response": {"subtype": "success", "request_id": self.request_id, "response": response},
        })
    }
}

/// The session's file under the config directory `root`, if the CLI has written one.
async fn session_file(root: &Path, session_id: &str) -> Option<PathBuf> {
    let mut projects = tokio::fs::read_dir(root.join("projects")).await.ok()?;
    while let Ok(Some(project)) = projects.next_entry().await {
        let path = project.path().join(format!("{session_id}.jsonl"));
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Some(path);
        }
    }
    None
}

/// The session row of the assistant message that holds `tool_use_id`, from the file's text.
fn tool_use_row(content: &str, tool_use_id: &str) -> Option<Map<String, Value>> {
    content.lines().rev().find_map(|line| {
        if !line.contains(tool_use_id) {
            return None;
        }
        let row: Map<String, Value> = serde_json::from_str(line).ok()?;
        let holds = row.get("type").and_then(Value::as_str) == Some("assistant")
            && row["message"]["content"]
                .as_array()?
                .iter()
                .any(|b| b["type"] == "tool_use" && b["id"] == tool_use_id);
        holds.then_some(row)
    })
}

/// Waits (briefly) until the session file records the pending tool call; returns the file and
/// that row, or `None` if it never appeared.
pub(super) async fn wait_recorded(
    root: &Path,
    session_id: &str,
    tool_use_id: &str,
) -> Option<(PathBuf, Map<String, Value>)> {
    let deadline = tokio::time::Instant::now() + RECORDED_WITHIN;
    loop {
        if let Some(path) = session_file(root, session_id).await
            && let Ok(content) = tokio::fs::read_to_string(&path).await
            && let Some(row) = tool_use_row(&content, tool_use_id)
        {
            return Some((path, row));
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Appends the `hook_deferred_tool` row for `ask` after its `tool_use` row (`row`), so that
/// `--resume` runs the call. Only after the CLI is dead: the file is then ours alone.
pub(super) async fn defer_in_session(
    path: &Path,
    row: &Map<String, Value>,
    ask: &PermissionAsk,
) -> Result<(), RuntimeError> {
    let deferred = json!({
        "parentUuid": row.get("uuid"),
        "isSidechain": false,
        "attachment": {
            "type": "hook_deferred_tool",
            "toolUseID": ask.tool_use_id,
            "toolName": ask.tool_name,
            "toolInput": ask.input,
            "hookName": "cairn",
            "hookEvent": "PreToolUse",
            "permissionMode": "default",
        },
        "type": "attachment",
        "uuid": uuid::Uuid::new_v4().to_string(),
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "sessionId": row.get("sessionId"),
        "cwd": row.get("cwd"),
        "version": row.get("version"),
    });
    let failed = |e: std::io::Error| {
        RuntimeError::retryable(
            "session_defer_failed",
            format!(
                "cannot mark the held tool call in the Claude Code session file {}: {e}",
                path.display()
            ),
        )
    };
    let mut file = tokio::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .await
        .map_err(failed)?;
    // The CLI ends every row with a newline, so the appended row is a line of its own.
    let line = format!("{deferred}\n");
    file.write_all(line.as_bytes()).await.map_err(failed)?;
    file.sync_all().await.map_err(failed)
}

/// The held call of `checkpoint` if it was held in turn `turn`: the resumed attempt runs it
/// instead of sending the prompt again.
pub(super) fn held_in_turn(checkpoint: Option<&Value>, turn: u32) -> Option<String> {
    let held = checkpoint?.get(HELD_KEY)?;
    if held.get("turn")?.as_u64()? != u64::from(turn) {
        return None;
    }
    Some(held.get("tool_use_id")?.as_str()?.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask() -> PermissionAsk {
        let line = r#"{"type":"control_request","request_id":"r-9","request":{"subtype":"can_use_tool","tool_name":"Bash","input":{"command":"touch x"},"tool_use_id":"toolu_7"}}"#;
        PermissionAsk::from_request(&serde_json::from_str(line).unwrap()).expect("an ask")
    }

    #[test]
    fn answers_echo_the_request_and_the_input_unless_replaced() {
        let ask = ask();
        assert_eq!(ask.to_tool_ask().id, "toolu_7");
        let allow = ask.reply(&Decision::Allow {
            updated_input: None,
        });
        assert_eq!(allow["response"]["request_id"], "r-9");
        assert_eq!(
            allow["response"]["response"]["updatedInput"]["command"],
            "touch x"
        );
        let replaced = ask.reply(&Decision::Allow {
            updated_input: Some(json!({"command": "touch y"})),
        });
        assert_eq!(
            replaced["response"]["response"]["updatedInput"]["command"],
            "touch y"
        );
        let deny = ask.reply(&Decision::Deny {
            message: "not today".into(),
        });
        assert_eq!(deny["response"]["response"]["behavior"], "deny");
        assert_eq!(deny["response"]["response"]["message"], "not today");
    }

    #[test]
    fn a_held_call_resumes_only_in_its_own_turn() {
        let checkpoint =
            json!({"session_id": "s", HELD_KEY: {"tool_use_id": "toolu_7", "turn": 2}});
        assert_eq!(
            held_in_turn(Some(&checkpoint), 2).as_deref(),
            Some("toolu_7")
        );
        assert_eq!(held_in_turn(Some(&checkpoint), 3), None);
        assert_eq!(held_in_turn(Some(&json!({"session_id": "s"})), 2), None);
    }
}
