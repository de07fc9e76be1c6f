//! `cairn exec replay` and the history export of `cairn exec history --json`.
//!
//! `cairn exec replay ID` asks the server to replay a stored history with the server's code.
//! `cairn exec replay --file F` replays an exported history here, with this binary's code and
//! no server: that is how a new build is checked against histories taken from a database that
//! older code wrote. The file is what `cairn exec history --json` prints (the shape of the
//! recorded histories under `tests/histories/` too), so an export replays as it is.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::args::ClientArgs;
use super::client::{Client, status_error};
use super::output::Output;
use crate::api::{pb, replay_response};
use crate::domain::{ExecutionKind, ExecutionStatus, NumberedEvent, RecordedHistory};
use crate::engine::ReplayReport;
use crate::machine::{MachineContext, replay_kind};

/// `cairn exec replay`.
#[derive(Debug, clap::Args)]
pub(super) struct ReplayArgs {
    /// The execution whose stored history the server replays with its code.
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    id: Option<String>,
    /// Replay this exported history (`cairn exec history --json`) here, with this binary's
    /// code; no server is needed.
    #[arg(long)]
    file: Option<PathBuf>,
}

pub(super) async fn run(
    args: ReplayArgs,
    client: ClientArgs,
    out: &Output,
) -> anyhow::Result<ExitCode> {
    let (what, reply) = match (&args.id, &args.file) {
        (_, Some(file)) => (file.display().to_string(), replay_file(file)?),
        (Some(id), None) => {
            let mut c = client.connect().await?;
            let reply = c
                .executions
                .replay_execution(pb::ReplayExecutionRequest { id: id.clone() })
                .await
                .map_err(status_error)?
                .into_inner();
            (format!("execution {id}"), reply)
        }
        (None, None) => anyhow::bail!("give an execution id or --file"),
    };
    print(out, &what, &reply);
    Ok(if reply.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Replays an exported history with this binary's machine code.
fn replay_file(file: &Path) -> anyhow::Result<pb::ReplayExecutionResponse> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let recorded: RecordedHistory = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not an exported history (the output of `cairn exec history --json`)",
            file.display()
        )
    })?;
    let events = recorded
        .events_in_order()
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let ctx = MachineContext {
        execution_id: recorded.execution_id,
    };
    let report = ReplayReport {
        events: events.len() as u64,
        verdict: replay_kind(recorded.kind, ctx, &events),
    };
    replay_response(report).map_err(status_error)
}

fn print(out: &Output, what: &str, reply: &pb::ReplayExecutionResponse) {
    if out.json {
        return out.print_json(reply);
    }
    match &reply.divergence {
        None => println!(
            "{} {what}: {} events replay with the current code (ends {})",
            out.paint("32", "OK"),
            reply.events,
            reply.status
        ),
        Some(d) => {
            println!(
                "{} {what} at seq {} ({})",
                out.paint("31", "DIVERGES"),
                d.seq,
                d.kind
            );
            println!("  history has  {}", d.history_has);
            println!("  code would   {}", d.code_would);
        }
    }
}

/// An execution's history as one JSON document that `cairn exec replay --file` reads back.
pub(super) async fn export(client: &mut Client, id: &str) -> anyhow::Result<String> {
    let execution = client
        .executions
        .get_execution(pb::GetExecutionRequest { id: id.to_string() })
        .await
        .map_err(status_error)?
        .into_inner();
    let events = client
        .executions
        .get_history(pb::GetHistoryRequest {
            id: id.to_string(),
            after_seq: 0,
        })
        .await
        .map_err(status_error)?
        .into_inner()
        .events;
    let recorded = RecordedHistory {
        execution_id: execution.id.parse().context("the server sent a bad id")?,
        kind: ExecutionKind::parse(&execution.kind)
            .with_context(|| format!("unknown execution kind `{}`", execution.kind))?,
        status: ExecutionStatus::parse(&execution.status)
            .with_context(|| format!("unknown status `{}`", execution.status))?,
        events: events
            .iter()
            .map(|e| {
                Ok(NumberedEvent {
                    seq: e.seq,
                    event: serde_json::from_str(&e.payload_json)
                        .with_context(|| format!("event {} is not one this build knows", e.seq))?,
                    created_at_ms: Some(e.created_at_ms),
                })
            })
            .collect::<anyhow::Result<_>>()?,
    };
    // Printed as is, not through `Output::print_json`, which would rewrite `*_json` fields that
    // an agent's configuration may contain: the export must read back exactly.
    Ok(serde_json::to_string_pretty(&recorded)?)
}
