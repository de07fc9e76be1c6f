//! `cairn chat AGENT`: a conversation on the terminal. Each line typed is a message; each
//! answer streams as it is written. It survives a server restart (the stream resumes after the
//! last seq printed, a message is sent again with the same request id), and `--execution ID`
//! reattaches to a conversation started elsewhere.

use std::process::ExitCode;

use super::args::{ClientArgs, parse_age};
use super::client::{Client, Servers, status_error};
use super::execution::exit_code;
use super::follow::{Followed, Tty, Until, watch_until};
use super::output::Output;
use crate::api::pb;

#[derive(Debug, clap::Args)]
pub(super) struct ChatArgs {
    /// The agent (name or id) to start a conversation with.
    #[arg(required_unless_present = "execution", conflicts_with = "execution")]
    agent: Option<String>,
    /// Reattach to this conversation instead of starting one.
    #[arg(long)]
    execution: Option<String>,
    /// How long the conversation waits for a message before it completes (e.g. 30m, 24h;
    /// default 24h).
    #[arg(long)]
    idle_timeout: Option<String>,
    /// The task queue (default: `default`).
    #[arg(long, default_value = "")]
    queue: String,
}

/// Starts (or reattaches to) a conversation and talks until `/close` or the end of input.
pub(super) async fn run(
    args: ChatArgs,
    flags: ClientArgs,
    out: &Output,
) -> anyhow::Result<ExitCode> {
    let servers = flags.servers()?;
    let (_, mut client) = servers.connect(0).await?;
    let id = match &args.execution {
        Some(id) => id.clone(),
        None => {
            let request = pb::StartExecutionRequest {
                namespace: flags.namespace.clone(),
                agent: args.agent.clone().unwrap_or_default(),
                interactive: true,
                idle_timeout_ms: duration_flag_ms(args.idle_timeout.as_deref())?,
                queue: args.queue.clone(),
                ..Default::default()
            };
            client
                .executions
                .start_execution(request)
                .await
                .map_err(status_error)?
                .into_inner()
                .execution_id
        }
    };
    converse(&servers, client, out, &id).await
}

/// A duration flag (`--idle-timeout`, `--execution-timeout`) in milliseconds; 0 when not
/// given, which the server reads as its default (no limit for an execution timeout).
pub(super) fn duration_flag_ms(given: Option<&str>) -> anyhow::Result<u64> {
    Ok(given.map(parse_age).transpose()?.unwrap_or(0).max(0) as u64)
}

/// Talks with the conversation `id`: prints what was said so far, then each answer as it
/// streams, and sends each line read as the next message.
pub(super) async fn converse(
    servers: &Servers,
    client: Client,
    out: &Output,
    id: &str,
) -> anyhow::Result<ExitCode> {
    if !out.json {
        eprintln!(
            "{}",
            out.paint(
                "2",
                &format!(
                    "conversation {id}: type a message; /close ends it, Ctrl-D leaves it open"
                )
            )
        );
    }
    let mut last_seq = 0;
    // Any wait stops the first follow: the conversation as it is now.
    let mut waiting_after = 0;
    let mut turns = 0;
    loop {
        let until = Until {
            raw: false,
            waiting_after: Some(waiting_after),
            turns,
        };
        let (followed, seq) = watch_until(
            servers,
            client.clone(),
            out,
            id,
            last_seq,
            until,
            Tty::default(),
        )
        .await?;
        last_seq = seq;
        let execution = match followed {
            Followed::Closed(closed) => {
                if !out.json {
                    eprintln!("{}", out.status(&closed.status));
                }
                return Ok(exit_code(&closed.status));
            }
            Followed::Waiting(execution) => execution,
        };
        waiting_after = execution.history_length;
        if execution.waiting_for == "approval" {
            super::ask::answer_on_terminal(servers, out, &execution).await?;
            continue;
        }
        eprint!("{}", out.paint("1;36", "> "));
        let Some(line) = super::terminal::read_line().await else {
            eprintln!("\nleft conversation {id} open; reattach with `cairn chat --execution {id}`");
            return Ok(ExitCode::SUCCESS);
        };
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        if text == "/close" {
            send_retrying(servers, id, Message::Close).await?;
            (waiting_after, turns) = (u64::MAX, u32::MAX);
            continue;
        }
        // The answer to this message is in once its turn completed.
        let sent = send_retrying(servers, id, Message::Text(text.to_string())).await?;
        turns = sent.turn;
    }
}

/// What a line asks for.
#[derive(Clone)]
enum Message {
    Text(String),
    Close,
}

/// Sends a message (or the close) to whichever server answers, again with the same request id
/// while the servers are unreachable, so a restart between two messages loses none and
/// delivers none twice.
async fn send_retrying(
    servers: &Servers,
    id: &str,
    message: Message,
) -> anyhow::Result<pb::SendMessageResponse> {
    let request_id = format!("chat-{}", uuid::Uuid::now_v7());
    servers
        .call(|mut client| {
            let (id, request_id, message) = (id.to_string(), request_id.clone(), message.clone());
            async move {
                match message {
                    Message::Text(text) => client
                        .executions
                        .send_message(pb::SendMessageRequest {
                            id,
                            text,
                            request_id,
                        })
                        .await
                        .map(|r| r.into_inner()),
                    Message::Close => client
                        .executions
                        .close_execution(pb::CloseExecutionRequest { id })
                        .await
                        .map(|r| pb::SendMessageResponse {
                            execution: Some(r.into_inner()),
                            ..Default::default()
                        }),
                }
            }
        })
        .await
        .map_err(status_error)
}
