//! How client commands print an execution, and which exit code its final status gives.

use std::process::ExitCode;

use super::output::{Output, cut, time};
use crate::api::pb;

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

/// The exit code for an execution's final status.
pub(super) fn exit_code(status: &str) -> ExitCode {
    match status {
        "COMPLETED" => ExitCode::SUCCESS,
        "CANCELED" => ExitCode::from(130),
        _ => ExitCode::FAILURE,
    }
}
