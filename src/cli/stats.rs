//! `cairn stats [--since 24h] [--by runtime|agent|model]`: agents by runtime and the executions
//! started in a window, as the database aggregates them (`GetStats`).

use std::process::ExitCode;

use comfy_table::{CellAlignment, Table, presets};

use super::args::ClientArgs;
use super::client::status_error;
use super::output::Output;
use crate::api::pb;

#[derive(Debug, clap::Args)]
pub(super) struct StatsArgs {
    /// Count executions created within this long of now (`90m`, `24h`, `7d`; `all` for every
    /// execution).
    #[arg(long, default_value = "24h", value_parser = parse_window)]
    since: Window,
    /// Group executions by `runtime`, `agent` or `model`.
    #[arg(long, default_value = "runtime", value_parser = ["runtime", "agent", "model"])]
    by: String,
}

/// How far back the stats look; `None` is every execution.
#[derive(Debug, Clone, Copy)]
struct Window(Option<std::time::Duration>);

fn parse_window(s: &str) -> Result<Window, String> {
    if s == "all" {
        return Ok(Window(None));
    }
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => {
            Err("the window must be longer than 0; use `all` for every execution".into())
        }
        Ok(d) => Ok(Window(Some(d))),
        Err(e) => Err(format!("`{s}` is not a duration like 90m, 24h or 7d ({e})")),
    }
}

pub(super) async fn run(
    args: StatsArgs,
    client: ClientArgs,
    out: &Output,
) -> anyhow::Result<ExitCode> {
    let namespace = client.namespace.clone();
    let mut client = client.connect().await?;
    let window_ms = args
        .since
        .0
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let request = pb::GetStatsRequest {
        namespace,
        window_ms,
        by: args.by.clone(),
    };
    let stats = client
        .executions
        .get_stats(request)
        .await
        .map_err(status_error)?
        .into_inner();
    if out.json {
        out.print_json(&stats);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}", agents_table(&stats.agents));
    println!();
    println!("{}", executions_table(&stats));
    Ok(ExitCode::SUCCESS)
}

fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_style(presets::NOTHING)
        .set_header(header.iter().copied());
    table
}

fn agents_table(agents: &[pb::AgentCounts]) -> Table {
    let mut t = table(&["RUNTIME", "AGENTS ACTIVE", "ARCHIVED"]);
    for a in agents {
        t.add_row(vec![
            a.runtime.clone(),
            a.active.to_string(),
            a.archived.to_string(),
        ]);
    }
    right_align(&mut t, 1..3);
    t
}

fn executions_table(stats: &pb::GetStatsResponse) -> Table {
    let mut t = table(&[
        &stats.by.to_uppercase(),
        "TOTAL",
        "COMPLETED",
        "FAILED",
        "CANCELED",
        "OPEN",
        "ERROR RATE",
        "P50",
        "P95",
        "MEAN",
        "TOKENS IN",
        "TOKENS OUT",
        "COST USD",
        "TOOL CALLS",
    ]);
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{:.0}ms", v));
    for e in &stats.executions {
        t.add_row(vec![
            if e.key.is_empty() {
                "-".into()
            } else {
                e.key.clone()
            },
            e.total.to_string(),
            e.completed.to_string(),
            e.failed.to_string(),
            e.canceled.to_string(),
            (e.pending + e.running).to_string(),
            format!("{:.1}%", e.error_rate * 100.0),
            ms(e.duration_p50_ms),
            ms(e.duration_p95_ms),
            ms(e.duration_mean_ms),
            e.input_tokens.to_string(),
            e.output_tokens.to_string(),
            format!("{:.4}", e.cost_usd),
            e.tool_calls.to_string(),
        ]);
    }
    right_align(&mut t, 1..14);
    t
}

fn right_align(table: &mut Table, columns: std::ops::Range<usize>) {
    for i in columns {
        if let Some(column) = table.column_mut(i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
}
