//! `cairn exec send`, `close`, `approvals`, `approve` and `deny`: a person in the loop of an
//! execution, one command at a time.

use super::args::ClientArgs;
use super::ask::{pending, resolve};
use super::client::status_error;
use super::execution::show;
use super::output::{Output, cut};
use crate::api::pb;

/// The commands, as `cairn exec` takes them.
#[derive(Debug, clap::Subcommand)]
pub(super) enum TalkCommand {
    /// Send a conversation its next message (it runs when the turns before it have).
    Send {
        /// The conversation's execution id.
        id: String,
        /// The message (several words are joined with spaces).
        #[arg(required = true)]
        text: Vec<String>,
        /// Idempotency key: sending twice with the same key appends the message once.
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Close a conversation: it completes after the turns it has.
    Close {
        /// The conversation's execution id.
        id: String,
    },
    /// List the tool calls waiting for an answer (of one execution, or of every waiting one).
    Approvals {
        /// Only this execution.
        id: Option<String>,
    },
    /// Allow a tool call an execution asked about.
    Approve {
        /// The execution's id.
        id: String,
        /// The approval's id (see `cairn exec approvals`).
        approval: String,
    },
    /// Deny a tool call an execution asked about; the model receives the message.
    Deny {
        /// The execution's id.
        id: String,
        /// The approval's id (see `cairn exec approvals`).
        approval: String,
        /// Why, as the model will read it.
        #[arg(long, default_value = "")]
        message: String,
    },
}

pub(super) async fn run(
    command: TalkCommand,
    flags: ClientArgs,
    out: &Output,
) -> anyhow::Result<()> {
    let mut c = flags.connect().await?;
    match command {
        TalkCommand::Send {
            id,
            text,
            request_id,
        } => {
            let request = pb::SendMessageRequest {
                id,
                text: text.join(" "),
                request_id: request_id.unwrap_or_default(),
            };
            let sent = c
                .executions
                .send_message(request)
                .await
                .map_err(status_error)?
                .into_inner();
            if out.json {
                out.print_json(&sent);
            } else {
                let note = if sent.created {
                    ""
                } else {
                    " (already sent with this request id)"
                };
                println!("turn {}{note}", sent.turn);
            }
        }
        TalkCommand::Close { id } => {
            let request = pb::CloseExecutionRequest { id };
            let closed = c
                .executions
                .close_execution(request)
                .await
                .map_err(status_error)?
                .into_inner();
            show(out, &closed);
        }
        TalkCommand::Approvals { id } => {
            let executions = match id {
                Some(id) => vec![
                    c.executions
                        .get_execution(pb::GetExecutionRequest { id })
                        .await
                        .map_err(status_error)?
                        .into_inner(),
                ],
                None => {
                    let request = pb::ListExecutionsRequest {
                        namespace: flags.namespace.clone(),
                        status: vec!["WAITING".into()],
                        page_size: 1000,
                        ..Default::default()
                    };
                    c.executions
                        .list_executions(request)
                        .await
                        .map_err(status_error)?
                        .into_inner()
                        .executions
                }
            };
            let asks: Vec<(&pb::Execution, &pb::Approval)> = executions
                .iter()
                .flat_map(|e| pending(e).map(move |a| (e, a)))
                .collect();
            if out.json {
                let asks: Vec<serde_json::Value> = asks
                    .iter()
                    .map(|(e, a)| serde_json::json!({ "execution_id": e.id, "approval": a }))
                    .collect();
                out.print_json(&asks);
            } else {
                let rows: Vec<Vec<String>> = asks
                    .iter()
                    .map(|(e, a)| {
                        vec![
                            e.id.clone(),
                            a.approval_id.clone(),
                            a.tool.clone(),
                            cut(&a.input_json, 60),
                        ]
                    })
                    .collect();
                out.table(&["EXECUTION", "APPROVAL", "TOOL", "INPUT"], &rows);
            }
        }
        TalkCommand::Approve { id, approval } => {
            let e = resolve(&flags.servers()?, &id, &approval, true, String::new())
                .await
                .map_err(status_error)?;
            show(out, &e);
        }
        TalkCommand::Deny {
            id,
            approval,
            message,
        } => {
            let e = resolve(&flags.servers()?, &id, &approval, false, message)
                .await
                .map_err(status_error)?;
            show(out, &e);
        }
    }
    Ok(())
}
