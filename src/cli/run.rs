//! `cairn run AGENT PROMPT`: start, stream live, exit with the execution's outcome.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use super::args::{ClientArgs, parse_label, policy_with_attempts};
use super::client::{Client, status_error};
use super::execution::exit_code;
use super::follow::{Tty, watch};
use super::output::Output;
use super::prompter::Prompter;
use super::spinner::Spinner;
use crate::api::pb;

#[derive(Debug, clap::Args)]
pub(super) struct RunArgs {
    /// The agent or team (name or id).
    agent: String,
    /// The prompt (several words are joined with spaces); a conversation may start without.
    #[arg(required_unless_present_any = ["turn", "interactive"])]
    prompt: Vec<String>,
    /// A prompt per turn, instead of one prompt (repeatable).
    #[arg(long, conflicts_with = "prompt")]
    turn: Vec<String>,
    /// Idempotency key: running twice with the same key starts one execution.
    #[arg(long)]
    request_id: Option<String>,
    /// A label (KEY=VALUE, repeatable).
    #[arg(long, value_parser = parse_label)]
    label: Vec<(String, String)>,
    /// How many attempts each turn gets (0 = unlimited).
    #[arg(long)]
    max_attempts: Option<u32>,
    /// The task queue (only workers serving it run the execution; default: `default`).
    #[arg(long, default_value = "")]
    queue: String,
    /// Start and print the id, without waiting.
    #[arg(long)]
    detach: bool,
    /// Start a conversation: after each answer it waits for the next message (typed here, or
    /// sent with `cairn exec send`) until closed.
    #[arg(long)]
    interactive: bool,
    /// How long a conversation waits for a message before it completes (e.g. 30m, 24h;
    /// default 24h).
    #[arg(long, requires = "interactive")]
    idle_timeout: Option<String>,
    /// How long the whole execution may run before it fails with `execution_timeout` (e.g.
    /// 90s, 30m, 2h; default: no limit). A team's stops its members.
    #[arg(long)]
    execution_timeout: Option<String>,
    /// Never ask on the terminal about an approval; print the ask and the commands that
    /// answer it, as without a terminal. (A conversation's approvals come between its messages,
    /// so `--interactive` always asks.)
    #[arg(long, conflicts_with = "interactive")]
    no_prompt: bool,
}

/// Runs the command in a root span (exported when `OTEL_EXPORTER_OTLP_ENDPOINT` is set) whose
/// context every call carries, so the server's spans and the execution's attempts join its trace.
pub(super) async fn run(
    args: RunArgs,
    flags: ClientArgs,
    out: &Output,
) -> anyhow::Result<ExitCode> {
    use tracing::Instrument;
    let _tracing = crate::telemetry::trace::client();
    let span = tracing::info_span!(
        "cairn run",
        otel.kind = "client",
        gen_ai.agent.name = %args.agent,
    );
    run_in_span(args, flags, out).instrument(span).await
}

async fn run_in_span(args: RunArgs, flags: ClientArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let mut client = flags.connect().await?;
    // The name may be an agent's or a team's: agents first.
    let lookup = pb::GetAgentRequest {
        namespace: flags.namespace.clone(),
        agent: args.agent.clone(),
    };
    let is_team = match client.agents.get_agent(lookup).await {
        Ok(_) => false,
        Err(status) if status.code() == tonic::Code::NotFound => {
            let lookup = pb::GetTeamRequest {
                namespace: flags.namespace.clone(),
                team: args.agent.clone(),
            };
            client.teams.get_team(lookup).await.is_ok()
        }
        Err(status) => return Err(status_error(status)),
    };
    let (agent, team) = if is_team {
        (String::new(), args.agent.clone())
    } else {
        (args.agent.clone(), String::new())
    };
    let request = pb::StartExecutionRequest {
        namespace: flags.namespace.clone(),
        agent,
        team,
        prompt: args.prompt.join(" "),
        prompts: args.turn.clone(),
        request_id: args.request_id.clone().unwrap_or_default(),
        labels: args.label.iter().cloned().collect(),
        retry_policy: args.max_attempts.map(policy_with_attempts),
        timeouts: None,
        queue: args.queue.clone(),
        runtime: String::new(),
        interactive: args.interactive,
        idle_timeout_ms: super::chat::duration_flag_ms(args.idle_timeout.as_deref())?,
        execution_timeout_ms: super::chat::duration_flag_ms(args.execution_timeout.as_deref())?,
    };
    let started = client
        .executions
        .start_execution(request)
        .await
        .map_err(status_error)?
        .into_inner();
    let id = started.execution_id;
    if args.detach {
        if out.json {
            out.print_json(&serde_json::json!({ "execution_id": id, "created": started.created }));
        } else {
            println!("{id}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.interactive {
        return super::chat::converse(&flags.servers()?, client, out, &id).await;
    }
    if !out.json {
        let note = if started.created {
            "started"
        } else {
            "already started (same request id)"
        };
        eprintln!(
            "{}",
            out.paint(
                "2",
                &format!("execution {id} {note}; streaming output (Ctrl-C to cancel or detach)")
            )
        );
    }
    let watcher = client.clone();
    let watched = id.clone();
    let out_copy = *out;
    let servers = flags.servers()?;
    let spinner = (!out.json && std::io::stderr().is_terminal()).then(Spinner::new);
    let follow_spinner = spinner.clone();
    let prompter = Prompter::start(&servers, out, !args.no_prompt);
    let stop_prompting = prompter.as_ref().map(Prompter::stopper);
    let mut follow_task = tokio::spawn(async move {
        let tty = Tty {
            spinner: follow_spinner.as_ref(),
            prompter: prompter.as_ref(),
        };
        watch(&servers, watcher, &out_copy, &watched, 0, false, tty).await
    });
    let progress =
        spinner.map(|spinner| tokio::spawn(show_progress(client.clone(), id.clone(), spinner)));
    loop {
        tokio::select! {
            closed = &mut follow_task => {
                if let Some(progress) = &progress {
                    progress.abort();
                }
                let closed = closed??;
                if out.json {
                    out.print_json(&closed);
                } else {
                    match &closed.failure {
                        Some(f) => eprintln!("{} {}: {}", out.status(&closed.status), f.code, f.message),
                        None => eprintln!("{}", out.status(&closed.status)),
                    }
                }
                return Ok(exit_code(&closed.status));
            }
            _ = tokio::signal::ctrl_c() => {
                // The question below takes the next line typed, not a pending approval's prompt.
                if let Some(stop) = &stop_prompting {
                    stop.abort();
                }
                if ask_cancel(&id).await {
                    let request = pb::CancelExecutionRequest { id: id.clone(), reason: "cancelled from cairn run".into() };
                    client.executions.cancel_execution(request).await.map_err(status_error)?;
                    eprintln!("cancel requested; waiting for the execution to stop…");
                } else {
                    eprintln!("detached; execution {id} goes on. Watch it with `cairn exec watch {id}`.");
                    follow_task.abort();
                    return Ok(ExitCode::SUCCESS);
                }
            }
        }
    }
}

/// Asks on the terminal whether to cancel; without a terminal, cancels.
async fn ask_cancel(id: &str) -> bool {
    if !std::io::stdin().is_terminal() {
        return true;
    }
    eprint!("\ncancel execution {id}? [y/N] ");
    let _ = std::io::stderr().flush();
    let answer = super::terminal::read_line().await.unwrap_or_default();
    matches!(answer.trim(), "y" | "Y" | "yes")
}

/// On a terminal, while the execution has produced no output yet, shows what it waits for
/// (a worker, a back-off, a running attempt) on one self-erasing stderr line.
async fn show_progress(mut client: Client, id: String, spinner: Spinner) {
    for tick in 0.. {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        let Ok(execution) = client
            .executions
            .get_execution(pb::GetExecutionRequest { id: id.clone() })
            .await
        else {
            continue;
        };
        let execution = execution.into_inner();
        let state = execution.activity.map(|a| a.state).unwrap_or_default();
        if !spinner.draw(tick, &format!("{} {state}", execution.status)) {
            return;
        }
    }
}
