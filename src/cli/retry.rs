//! `cairn exec retry`: retry one execution, or every one matching filters.
//!
//! A bulk retry is safe to run again, and to run twice at once: the server retries each
//! execution once (the retry's request id is derived from the execution's id, and the database
//! refuses a second one), so a second run reports the executions the first one retried as
//! skipped. `--force` retries them again.

use std::process::ExitCode;

use serde::Serialize;

use super::args::{ClientArgs, parse_age, parse_label, policy_with_attempts};
use super::client::{Client, status_error};
use super::execution::exit_code;
use super::follow::follow;
use super::output::Output;
use crate::api::pb;

/// `cairn exec retry`.
#[derive(Debug, clap::Args)]
pub(super) struct RetryArgs {
    /// The execution to retry. Without it, every execution matching the filters below is.
    #[arg(required_unless_present = "status")]
    id: Option<String>,
    /// Reuse only the turns that completed before this seq of its history (see
    /// `cairn exec history ID`).
    #[arg(long, requires = "id")]
    from_seq: Option<u64>,
    /// A new prompt for turn N (N=TEXT, repeatable); that turn and every later one run again.
    #[arg(long = "prompt", value_parser = parse_prompt, requires = "id")]
    prompts: Vec<(u32, String)>,
    /// How many attempts each turn of the retry gets (0 = unlimited); by default the retry
    /// keeps the retry policy of the execution it retries.
    #[arg(long)]
    max_attempts: Option<u32>,
    /// Retry even executions that were retried before.
    #[arg(long)]
    force: bool,
    /// Start the retry and print its id, without waiting for it.
    #[arg(long, requires = "id")]
    detach: bool,
    /// Retry every execution with this status (failed or canceled; repeatable).
    #[arg(long, conflicts_with = "id")]
    status: Vec<String>,
    /// Only executions created within this long (e.g. 30m, 24h, 7d).
    #[arg(long, conflicts_with = "id")]
    since: Option<String>,
    /// Only this runtime.
    #[arg(long, conflicts_with = "id")]
    runtime: Option<String>,
    /// Only this agent (name or id).
    #[arg(long, conflicts_with = "id")]
    agent: Option<String>,
    /// Only executions with this label (KEY=VALUE, repeatable).
    #[arg(long, value_parser = parse_label, conflicts_with = "id")]
    label: Vec<(String, String)>,
}

/// Parses `N=TEXT`.
fn parse_prompt(s: &str) -> Result<(u32, String), String> {
    let (turn, text) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not N=TEXT (a turn number, from 1, and its prompt)"))?;
    let turn = turn
        .trim()
        .parse()
        .map_err(|_| format!("`{turn}` is not a turn number"))?;
    Ok((turn, text.to_string()))
}

pub(super) async fn run(
    args: RetryArgs,
    flags: ClientArgs,
    out: &Output,
) -> anyhow::Result<ExitCode> {
    let mut client = flags.connect().await?;
    match args.id.clone() {
        Some(id) => one(&mut client, args, id, out).await,
        None => bulk(&mut client, args, &flags.namespace, out).await,
    }
}

/// Retries one execution and, unless detached, streams the retry until it closes.
async fn one(
    client: &mut Client,
    args: RetryArgs,
    id: String,
    out: &Output,
) -> anyhow::Result<ExitCode> {
    let request = pb::RetryExecutionRequest {
        id: id.clone(),
        from_seq: args.from_seq.unwrap_or(0),
        prompts: args.prompts.into_iter().collect(),
        retry_policy: args.max_attempts.map(policy_with_attempts),
        force: args.force,
    };
    let retried = client
        .executions
        .retry_execution(request)
        .await
        .map_err(status_error)?
        .into_inner();
    let retry = retried.execution_id.clone();
    if args.detach {
        if out.json {
            out.print_json(&retried);
        } else {
            println!("{retry}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !out.json {
        let note = if retried.created {
            format!(
                "retrying {id} as {retry}, reusing {} completed turn(s)",
                retried.reused_turns
            )
        } else {
            format!("{id} was already retried as {retry} (--force retries it again)")
        };
        eprintln!(
            "{}",
            out.paint("2", &format!("{note}; streaming its output"))
        );
    }
    let closed = follow(client, out, &retry, 0, None).await?;
    if !out.json {
        eprintln!(
            "{} {}",
            out.paint("2", "execution closed:"),
            out.status(&closed.status)
        );
    }
    Ok(exit_code(&closed.status))
}

/// What a bulk retry did, for `--json`.
#[derive(Debug, Default, Serialize)]
struct Summary {
    /// Executions retried now, with their retries.
    retried: Vec<Outcome>,
    /// Executions that had been retried already, with those retries.
    skipped: Vec<Outcome>,
    /// Executions whose retry was refused, with why.
    errors: Vec<Refused>,
}

#[derive(Debug, Serialize)]
struct Outcome {
    id: String,
    retry: String,
    reused_turns: u32,
}

#[derive(Debug, Serialize)]
struct Refused {
    id: String,
    error: String,
}

/// Retries every execution matching the filters, oldest first, showing progress on stderr.
async fn bulk(
    client: &mut Client,
    args: RetryArgs,
    namespace: &str,
    out: &Output,
) -> anyhow::Result<ExitCode> {
    if let Some(bad) = args
        .status
        .iter()
        .find(|s| !s.eq_ignore_ascii_case("failed") && !s.eq_ignore_ascii_case("canceled"))
    {
        anyhow::bail!("--status {bad}: only failed or canceled executions can be retried");
    }
    let mut matches = matching(client, &args, namespace).await?;
    matches.reverse();
    let total = matches.len();
    let width = total.to_string().len();
    let mut summary = Summary::default();
    for (i, id) in matches.into_iter().enumerate() {
        let request = pb::RetryExecutionRequest {
            id: id.clone(),
            retry_policy: args.max_attempts.map(policy_with_attempts),
            force: args.force,
            ..Default::default()
        };
        let progress = format!("[{:>width$}/{total}] {id}", i + 1);
        match client.executions.retry_execution(request).await {
            Ok(reply) => {
                let r = reply.into_inner();
                let outcome = Outcome {
                    id,
                    retry: r.execution_id,
                    reused_turns: r.reused_turns,
                };
                if r.created {
                    eprintln!(
                        "{progress} retried as {} (reusing {} turn(s))",
                        outcome.retry, outcome.reused_turns
                    );
                    summary.retried.push(outcome);
                } else {
                    eprintln!("{progress} skipped: already retried as {}", outcome.retry);
                    summary.skipped.push(outcome);
                }
            }
            Err(status) => {
                let error = status_error(status).to_string();
                eprintln!("{progress} {}: {error}", out.paint("31", "refused"));
                summary.errors.push(Refused { id, error });
            }
        }
    }
    if out.json {
        out.print_json(&summary);
    } else {
        println!(
            "retried {}, skipped {} already retried{}, refused {}",
            summary.retried.len(),
            summary.skipped.len(),
            if summary.skipped.is_empty() || args.force {
                ""
            } else {
                " (--force retries them again)"
            },
            summary.errors.len()
        );
    }
    Ok(if summary.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The ids of every execution the filters match, newest first.
async fn matching(
    client: &mut Client,
    args: &RetryArgs,
    namespace: &str,
) -> anyhow::Result<Vec<String>> {
    let created_after_ms = match &args.since {
        Some(since) => chrono::Utc::now().timestamp_millis() - parse_age(since)?,
        None => 0,
    };
    let mut ids = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = pb::ListExecutionsRequest {
            namespace: namespace.to_string(),
            status: args.status.clone(),
            agent: args.agent.clone().unwrap_or_default(),
            runtime: args.runtime.clone().unwrap_or_default(),
            created_after_ms,
            labels: args.label.iter().cloned().collect(),
            page_size: 1000,
            page_token,
            ..Default::default()
        };
        let page = client
            .executions
            .list_executions(request)
            .await
            .map_err(status_error)?
            .into_inner();
        ids.extend(page.executions.into_iter().map(|e| e.id));
        if page.next_page_token.is_empty() {
            return Ok(ids);
        }
        page_token = page.next_page_token;
    }
}
