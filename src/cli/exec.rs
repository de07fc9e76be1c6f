//! `cairn exec ...`

use std::process::ExitCode;

use clap::Subcommand;

use super::args::{ClientArgs, parse_age, parse_label};
use super::client::status_error;
use super::execution::{exit_code, show};
use super::follow::{Tty, watch};
use super::output::{Output, cut, time};
use super::prompter::Prompter;
use crate::api::pb;

#[derive(Debug, Subcommand)]
pub(super) enum ExecCommand {
    /// List executions, newest first.
    List {
        /// Only these statuses (repeatable): pending, running, waiting, completed, failed,
        /// canceled.
        #[arg(long)]
        status: Vec<String>,
        /// Only this agent (name or id).
        #[arg(long)]
        agent: Option<String>,
        /// Only this runtime.
        #[arg(long)]
        runtime: Option<String>,
        /// Only children of this execution.
        #[arg(long)]
        parent: Option<String>,
        /// Only executions created within this long (e.g. 30m, 24h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// Only executions with this label (KEY=VALUE, repeatable).
        #[arg(long, value_parser = parse_label)]
        label: Vec<(String, String)>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show an execution.
    Get {
        /// The execution's id, as `cairn run` and `cairn exec list` print it.
        id: String,
    },
    /// Print an execution's history; `--json` exports it for `cairn exec replay --file`.
    History {
        /// The execution's id, as `cairn run` and `cairn exec list` print it.
        id: String,
    },
    /// Check that the current code reproduces an execution's history.
    Replay(super::replay::ReplayArgs),
    /// Retry a failed or cancelled execution (or every one matching filters), reusing the
    /// turns it completed.
    Retry(super::retry::RetryArgs),
    /// Stream an execution's output until it closes.
    Watch {
        /// The execution's id, as `cairn run` and `cairn exec list` print it.
        id: String,
        /// Start after this output seq (0 replays everything).
        #[arg(long, default_value_t = 0)]
        after_seq: u64,
        /// Print every chunk, also those an interrupted attempt emitted and its retry emitted
        /// again (by default each is printed once, as the retry emitted it).
        #[arg(long)]
        raw: bool,
        /// Never ask on the terminal about an approval; print the ask and the commands that
        /// answer it, as without a terminal.
        #[arg(long)]
        no_prompt: bool,
    },
    /// Delete a closed execution (with its members, if it is a team's) and everything only it
    /// refers to; the server's `--retention` does this by age.
    Delete {
        /// The execution's id, as `cairn run` and `cairn exec list` print it.
        id: String,
    },
    #[command(flatten)]
    Talk(super::conversation::TalkCommand),
    /// Cancel an execution.
    Cancel {
        /// The execution's id, as `cairn run` and `cairn exec list` print it.
        id: String,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
}

pub(super) async fn run(
    command: ExecCommand,
    client: ClientArgs,
    out: &Output,
) -> anyhow::Result<ExitCode> {
    match command {
        ExecCommand::List {
            status,
            agent,
            runtime,
            parent,
            since,
            label,
            limit,
        } => {
            let mut c = client.connect().await?;
            let created_after_ms = match since {
                Some(since) => chrono::Utc::now().timestamp_millis() - parse_age(&since)?,
                None => 0,
            };
            let request = pb::ListExecutionsRequest {
                namespace: client.namespace,
                status,
                agent: agent.unwrap_or_default(),
                runtime: runtime.unwrap_or_default(),
                parent_id: parent.unwrap_or_default(),
                created_after_ms,
                created_before_ms: 0,
                labels: label.into_iter().collect(),
                page_size: limit,
                page_token: String::new(),
            };
            let executions = c
                .executions
                .list_executions(request)
                .await
                .map_err(status_error)?
                .into_inner()
                .executions;
            if out.json {
                out.print_json(&executions);
            } else {
                let rows: Vec<Vec<String>> = executions
                    .iter()
                    .map(|e| {
                        vec![
                            e.id.clone(),
                            out.status(&e.status),
                            e.runtime.clone(),
                            time(e.created_at_ms),
                            cut(&e.input_json, 40),
                        ]
                    })
                    .collect();
                out.table(&["ID", "STATUS", "RUNTIME", "CREATED", "INPUT"], &rows);
            }
        }
        ExecCommand::Get { id } => {
            let mut c = client.connect().await?;
            let request = pb::GetExecutionRequest { id: id.clone() };
            let execution = c
                .executions
                .get_execution(request)
                .await
                .map_err(status_error)?
                .into_inner();
            let children = if execution.kind == "team" {
                let request = pb::ListExecutionsRequest {
                    namespace: execution.namespace.clone(),
                    parent_id: id.clone(),
                    page_size: 1000,
                    ..Default::default()
                };
                let mut children = c
                    .executions
                    .list_executions(request)
                    .await
                    .map_err(status_error)?
                    .into_inner()
                    .executions;
                children.sort_by(|a, b| {
                    a.created_at_ms
                        .cmp(&b.created_at_ms)
                        .then(a.child_key.cmp(&b.child_key))
                });
                children
            } else {
                Vec::new()
            };
            let attempts = attempts(&mut c, &id).await?;
            if out.json {
                let mut value = serde_json::to_value(&execution)?;
                value["children"] = serde_json::to_value(&children)?;
                value["attempts"] = serde_json::Value::from(attempts);
                out.print_json(&value);
            } else {
                show(out, &execution);
                for a in &attempts {
                    println!(
                        "  attempt {} #{}  worker {}  in {}",
                        a["activity_id"].as_str().unwrap_or_default(),
                        a["attempt"],
                        a["worker"].as_str().unwrap_or_default(),
                        a["workspace"].as_str().unwrap_or("(not recorded)"),
                    );
                }
                for child in &children {
                    println!(
                        "  └─ {:<20} {:<10} {:<12} {}",
                        child.child_key,
                        out.status(&child.status),
                        child.runtime,
                        child.id
                    );
                }
            }
        }
        ExecCommand::History { id } => {
            let mut c = client.connect().await?;
            if out.json {
                println!("{}", super::replay::export(&mut c, &id).await?);
                return Ok(ExitCode::SUCCESS);
            }
            let events = c
                .executions
                .get_history(pb::GetHistoryRequest { id, after_seq: 0 })
                .await
                .map_err(status_error)?
                .into_inner()
                .events;
            for e in &events {
                let payload: serde_json::Value =
                    serde_json::from_str(&e.payload_json).unwrap_or_default();
                let mut fields = payload.as_object().cloned().unwrap_or_default();
                fields.remove("type");
                let fields = serde_json::Value::Object(fields).to_string();
                println!(
                    "{:>4}  {}  {:<24} {}",
                    e.seq,
                    out.paint("2", &time(e.created_at_ms)),
                    out.paint("1", &e.r#type),
                    cut(&fields, 120)
                );
            }
        }
        ExecCommand::Watch {
            id,
            after_seq,
            raw,
            no_prompt,
        } => {
            let c = client.connect().await?;
            let servers = client.servers()?;
            let prompter = Prompter::start(&servers, out, !no_prompt);
            let tty = Tty {
                spinner: None,
                prompter: prompter.as_ref(),
            };
            let closed = watch(&servers, c, out, &id, after_seq, raw, tty).await?;
            if !out.json {
                eprintln!(
                    "{} {}",
                    out.paint("2", "execution closed:"),
                    out.status(&closed.status)
                );
            }
            return Ok(exit_code(&closed.status));
        }
        ExecCommand::Replay(args) => return super::replay::run(args, client, out).await,
        ExecCommand::Talk(command) => super::conversation::run(command, client, out).await?,
        ExecCommand::Retry(args) => return super::retry::run(args, client, out).await,
        ExecCommand::Cancel { id, reason } => {
            let mut c = client.connect().await?;
            let e = c
                .executions
                .cancel_execution(pb::CancelExecutionRequest { id, reason })
                .await
                .map_err(status_error)?
                .into_inner();
            show(out, &e);
        }
        ExecCommand::Delete { id } => return super::retention::delete(&client, &id).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// The attempts that ended, from the history's `ActivityStarted` events: activity, attempt,
/// the worker that ran it and the directory it worked in there (files an agent wrote stay on
/// that worker; the session, transcript and output move with the execution).
async fn attempts(
    c: &mut super::client::Client,
    id: &str,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut attempts = Vec::new();
    let mut after_seq = 0;
    loop {
        let request = pb::GetHistoryRequest {
            id: id.to_owned(),
            after_seq,
        };
        let events = c
            .executions
            .get_history(request)
            .await
            .map_err(status_error)?
            .into_inner()
            .events;
        let Some(last) = events.last() else {
            return Ok(attempts);
        };
        after_seq = last.seq;
        for e in events.iter().filter(|e| e.r#type == "ActivityStarted") {
            let payload: serde_json::Value = serde_json::from_str(&e.payload_json)?;
            attempts.push(serde_json::json!({
                "activity_id": payload["activity_id"],
                "attempt": payload["attempt"],
                "worker": payload["worker"],
                "workspace": payload["workspace"],
            }));
        }
    }
}
