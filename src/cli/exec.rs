//! `cairn exec ...`

use std::process::ExitCode;

use clap::Subcommand;

use super::ClientArgs;
use super::client::status_error;
use super::follow::watch;
use super::output::{Output, cut, time};
use crate::api::pb;

#[derive(Debug, Subcommand)]
pub(super) enum ExecCommand {
    /// List executions, newest first.
    List {
        #[command(flatten)]
        client: ClientArgs,
        /// Only these statuses (repeatable): pending, running, completed, failed, canceled.
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
        #[command(flatten)]
        client: ClientArgs,
        /// Its id.
        id: String,
    },
    /// Print an execution's history; `--json` exports it for `cairn exec replay --file`.
    History {
        #[command(flatten)]
        client: ClientArgs,
        /// Its id.
        id: String,
    },
    /// Check that the current code reproduces an execution's history.
    Replay(super::replay::ReplayArgs),
    /// Retry a failed or cancelled execution (or every one matching filters), reusing the
    /// turns it completed.
    Retry(super::retry::RetryArgs),
    /// Stream an execution's output until it closes.
    Watch {
        #[command(flatten)]
        client: ClientArgs,
        /// Its id.
        id: String,
        /// Start after this output seq (0 replays everything).
        #[arg(long, default_value_t = 0)]
        after_seq: u64,
    },
    /// Cancel an execution.
    Cancel {
        #[command(flatten)]
        client: ClientArgs,
        /// Its id.
        id: String,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
}

/// Parses `KEY=VALUE`.
pub(super) fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))
}

/// Parses `30s`, `15m`, `24h`, `7d` into milliseconds.
pub(super) fn parse_age(s: &str) -> anyhow::Result<i64> {
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = number
        .parse()
        .map_err(|_| anyhow::anyhow!("`{s}` is not a duration like 30m, 24h or 7d"))?;
    let ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => anyhow::bail!("`{s}` is not a duration like 30m, 24h or 7d"),
    };
    Ok(n * ms)
}

/// Prints an execution in full.
pub(super) fn show(out: &Output, e: &pb::Execution) {
    if out.json {
        return out.print_json(e);
    }
    println!("{} {}", out.paint("1", "execution"), e.id);
    println!("  status     {}", out.status(&e.status));
    println!("  agent      {}  runtime {}", e.agent_id, e.runtime);
    if let Some(a) = &e.activity {
        let cancel = if a.cancel_requested {
            " (cancel requested)"
        } else {
            ""
        };
        println!(
            "  activity   {} attempt {}: {}{cancel}",
            a.activity_id, a.attempt, a.state
        );
    }
    println!("  input      {}", cut(&e.input_json, 100));
    if !e.result_json.is_empty() {
        println!("  result     {}", cut(&e.result_json, 100));
    }
    if let Some(f) = &e.failure {
        println!(
            "  failure    {} {}: {}",
            out.paint("31", &f.code),
            if f.retryable {
                "(retryable)"
            } else {
                "(not retryable)"
            },
            f.message
        );
    }
    if !e.labels.is_empty() {
        let mut labels: Vec<String> = e.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        println!("  labels     {}", labels.join(" "));
    }
    if let Some(u) = &e.usage {
        println!(
            "  usage      {} in / {} out tokens, ${:.4}, {} tool calls",
            u.input_tokens, u.output_tokens, u.cost_usd, u.tool_calls
        );
    }
    println!("  created    {}", time(e.created_at_ms));
    println!("  started    {}", time(e.started_at_ms));
    println!(
        "  closed     {}{}",
        time(e.closed_at_ms),
        if e.closed_at_ms > 0 {
            format!(" ({} ms)", e.duration_ms)
        } else {
            String::new()
        }
    );
    println!(
        "  history    {} events, output {} chunks",
        e.history_length, e.output_length
    );
}

/// A one-line progress display on stderr that the output stream retires, race-free, before it
/// prints the first chunk.
#[derive(Clone)]
pub(super) struct Spinner(std::sync::Arc<std::sync::Mutex<(bool, bool)>>);

impl Spinner {
    /// A spinner that has drawn nothing.
    pub(super) fn new() -> Self {
        Spinner(Default::default())
    }

    /// Draws frame `tick` with `text`; false once retired.
    pub(super) fn draw(&self, tick: usize, text: &str) -> bool {
        const FRAMES: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
        let mut state = self.0.lock().expect("never poisoned");
        let (retired, drawn) = &mut *state;
        if *retired {
            return false;
        }
        eprint!("\r\x1b[2K{} {text}", FRAMES[tick % FRAMES.len()]);
        *drawn = true;
        true
    }

    /// Erases the line and stops drawing.
    pub(super) fn retire(&self) {
        let mut state = self.0.lock().expect("never poisoned");
        if !state.0 && state.1 {
            eprint!("\r\x1b[2K");
        }
        state.0 = true;
    }
}

pub(super) use super::follow::follow;

/// The exit code for an execution's final status.
pub(super) fn exit_code(status: &str) -> ExitCode {
    match status {
        "COMPLETED" => ExitCode::SUCCESS,
        "CANCELED" => ExitCode::from(130),
        _ => ExitCode::FAILURE,
    }
}

pub(super) async fn run(command: ExecCommand, out: &Output) -> anyhow::Result<ExitCode> {
    match command {
        ExecCommand::List {
            client,
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
        ExecCommand::Get { client, id } => {
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
                    parent_id: id,
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
            if out.json {
                let mut value = serde_json::to_value(&execution)?;
                value["children"] = serde_json::to_value(&children)?;
                out.print_json(&value);
            } else {
                show(out, &execution);
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
        ExecCommand::History { client, id } => {
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
            client,
            id,
            after_seq,
        } => {
            let c = client.connect().await?;
            let closed = watch(&client.servers()?, c, out, &id, after_seq, None).await?;
            if !out.json {
                eprintln!(
                    "{} {}",
                    out.paint("2", "execution closed:"),
                    out.status(&closed.status)
                );
            }
            return Ok(exit_code(&closed.status));
        }
        ExecCommand::Replay(args) => return super::replay::run(args, out).await,
        ExecCommand::Retry(args) => return super::retry::run(args, out).await,
        ExecCommand::Cancel { client, id, reason } => {
            let mut c = client.connect().await?;
            let e = c
                .executions
                .cancel_execution(pb::CancelExecutionRequest { id, reason })
                .await
                .map_err(status_error)?
                .into_inner();
            show(out, &e);
        }
    }
    Ok(ExitCode::SUCCESS)
}
