//! What a waiting execution asks of a person, as `cairn run`, `exec watch` and `chat` show it,
//! and answering an approval on the terminal.

use std::io::Write;

use super::client::Servers;
use super::client::status_error;
use super::output::{Output, cut};
use super::terminal;
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
                    "[approval {} asked: run {} with {}? {}]",
                    a.approval_id,
                    a.tool,
                    cut(&a.input_json, 200),
                    how_to_answer(id, &a.approval_id)
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

/// How to answer approval `approval_id` of execution `id` with another command.
fn how_to_answer(id: &str, approval_id: &str) -> String {
    format!(
        "`cairn exec approve {id} {approval_id}` or `cairn exec deny {id} {approval_id} --message WHY`"
    )
}

/// For a conversation (`cairn chat`, `cairn run --interactive`): on a terminal, offers each
/// pending approval of `execution` in turn; without one, only says what is asked.
pub(super) async fn answer_on_terminal(
    servers: &Servers,
    out: &Output,
    execution: &pb::Execution,
) -> anyhow::Result<()> {
    let interactive = terminal::interactive();
    for approval in pending(execution) {
        if interactive {
            offer(servers, out, &execution.id, approval).await?;
        } else {
            eprintln!(
                "approval {}: run {} with {}? {}",
                approval.approval_id,
                approval.tool,
                cut(&approval.input_json, 400),
                how_to_answer(&execution.id, &approval.approval_id)
            );
        }
    }
    Ok(())
}

/// What a person answered to one ask.
enum Answer {
    Allow,
    /// Deny, with the message the model reads (may be empty).
    Deny(String),
    /// Leave it pending, to be answered later or elsewhere.
    Skip,
}

/// Asks the person at the terminal whether `approval` of execution `id` may run, and sends
/// the answer. An approval answered elsewhere in the meantime is not asked about (nor is an
/// answer refused because another came first an error): a stream that resumed after a break
/// shows the wait again, and whoever answers first wins.
pub(super) async fn offer(
    servers: &Servers,
    out: &Output,
    id: &str,
    approval: &pb::Approval,
) -> anyhow::Result<()> {
    let approval_id = approval.approval_id.as_str();
    if !still_pending(servers, id, approval_id).await? {
        return Ok(());
    }
    let answer = ask(out, approval).await;
    let (allow, message) = match answer {
        Answer::Allow => (true, String::new()),
        Answer::Deny(message) => (false, message),
        Answer::Skip => {
            let note = format!(
                "[left pending; answer with {}]",
                how_to_answer(id, approval_id)
            );
            eprintln!("{}", out.paint("2", &note));
            return Ok(());
        }
    };
    let note = match resolve(servers, id, approval_id, allow, message).await {
        Ok(_) if allow => format!("[approval {approval_id} allowed]"),
        Ok(_) => format!("[approval {approval_id} denied]"),
        Err(status) if status.code() == tonic::Code::FailedPrecondition => {
            format!(
                "[approval {approval_id} not answered: {}]",
                status.message()
            )
        }
        Err(status) => return Err(status_error(status)),
    };
    eprintln!("{}", out.paint("2", &note));
    Ok(())
}

/// Whether approval `approval_id` of `id` still waits for an answer, as the server has it now.
async fn still_pending(servers: &Servers, id: &str, approval_id: &str) -> anyhow::Result<bool> {
    let execution = servers
        .call(|mut client| {
            let request = pb::GetExecutionRequest { id: id.to_string() };
            async move { client.executions.get_execution(request).await }
        })
        .await
        .map_err(status_error)?
        .into_inner();
    Ok(pending(&execution).any(|a| a.approval_id == approval_id))
}

/// Puts the question and reads the answer; anything but an answer asks again, and the end of
/// input skips.
async fn ask(out: &Output, approval: &pb::Approval) -> Answer {
    loop {
        let question = format!(
            "allow {} {}? [y]es / [n]o (deny) / [s]kip: ",
            approval.tool,
            cut(&approval.input_json, 400)
        );
        eprint!("{}", out.paint("1;33", &question));
        let _ = std::io::stderr().flush();
        let Some(line) = terminal::read_line().await else {
            eprintln!();
            return Answer::Skip;
        };
        match line.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" => return Answer::Allow,
            "n" | "no" => {
                eprint!("message for the model (optional): ");
                let _ = std::io::stderr().flush();
                let message = terminal::read_line().await.unwrap_or_default();
                return Answer::Deny(message.trim().to_string());
            }
            "" | "s" | "skip" => return Answer::Skip,
            _ => {}
        }
    }
}

/// Sends one answer (also for `cairn exec approve` and `deny`) with one request id through
/// every try, so an answer whose reply a broken connection lost is not taken twice (nor refused
/// as a second answer) when sent again.
pub(super) async fn resolve(
    servers: &Servers,
    id: &str,
    approval_id: &str,
    allow: bool,
    message: String,
) -> Result<pb::Execution, tonic::Status> {
    let request = pb::ResolveApprovalRequest {
        id: id.to_string(),
        approval_id: approval_id.to_string(),
        allow,
        message,
        updated_input_json: String::new(),
        request_id: format!("cli-{}", uuid::Uuid::now_v7()),
    };
    servers
        .call(|mut client| {
            let request = request.clone();
            async move { client.executions.resolve_approval(request).await }
        })
        .await
        .map(|reply| reply.into_inner())
}
