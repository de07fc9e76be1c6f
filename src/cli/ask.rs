//! What a waiting execution asks of a person, as `cairn run`, `exec watch` and `chat` show it,
//! and answering an approval on the terminal.

use std::io::{BufRead, IsTerminal, Write};

use super::client::{Client, status_error};
use super::output::cut;
use crate::api::pb;

/// Lines that say what `execution` waits for and how to answer.
pub(super) fn waiting_lines(execution: &pb::Execution) -> Vec<String> {
    let id = &execution.id;
    match execution.waiting_for.as_str() {
        "input" => vec![format!(
            "[waiting for a message: `cairn exec send {id} TEXT`, or `cairn exec close {id}`]"
        )],
        "approval" => pending(execution)
            .map(|a| {
                format!(
                    "[approval {} asked: run {} with {}? `cairn exec approve {id} {}` or `cairn exec deny {id} {} --message WHY`]",
                    a.approval_id,
                    a.tool,
                    cut(&a.input_json, 200),
                    a.approval_id,
                    a.approval_id
                )
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The approvals of `execution` nobody answered yet.
pub(super) fn pending(execution: &pb::Execution) -> impl Iterator<Item = &pb::Approval> {
    execution.approvals.iter().filter(|a| a.state == "pending")
}

/// On a terminal, asks about each pending approval of `execution` and sends the answers;
/// without one, only says what is asked. Returns whether anything was answered.
pub(super) async fn answer_on_terminal(
    client: &mut Client,
    execution: &pb::Execution,
) -> anyhow::Result<bool> {
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let mut answered = false;
    for approval in pending(execution).cloned().collect::<Vec<_>>() {
        eprintln!(
            "approval {}: run {} with {}?",
            approval.approval_id,
            approval.tool,
            cut(&approval.input_json, 400)
        );
        if !interactive {
            continue;
        }
        eprint!("allow? [y/N, or a reason to deny] ");
        std::io::stderr().flush()?;
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let line = line.trim();
        let allow = matches!(line, "y" | "Y" | "yes");
        let message = if allow || matches!(line, "" | "n" | "N" | "no") {
            String::new()
        } else {
            line.to_string()
        };
        resolve(client, &execution.id, &approval.approval_id, allow, message).await?;
        answered = true;
    }
    Ok(answered)
}

/// Sends one answer.
pub(super) async fn resolve(
    client: &mut Client,
    id: &str,
    approval_id: &str,
    allow: bool,
    message: String,
) -> anyhow::Result<pb::Execution> {
    let request = pb::ResolveApprovalRequest {
        id: id.to_string(),
        approval_id: approval_id.to_string(),
        allow,
        message,
        updated_input_json: String::new(),
        request_id: format!("cli-{}", uuid::Uuid::now_v7()),
    };
    Ok(client
        .executions
        .resolve_approval(request)
        .await
        .map_err(status_error)?
        .into_inner())
}
