//! `GetStats`: agents by runtime and the executions of a window, grouped, as the database
//! computes them.

use tonic::Status;

use super::error::invalid;
use super::tenancy::Scope;
use super::{ApiState, pb, validate};
use crate::engine::StatsReport;
use crate::store::StatsGroup;

/// Validates the request, asks the engine, converts the report.
pub(super) async fn get_stats(
    state: &ApiState,
    scope: &Scope,
    r: pb::GetStatsRequest,
) -> Result<pb::GetStatsResponse, Status> {
    let namespace = scope.namespace(&r.namespace)?;
    let window = match validate::duration_ms("window_ms", r.window_ms)? {
        0 => None,
        ms => Some(std::time::Duration::from_millis(ms)),
    };
    let by = match r.by.as_str() {
        "" => StatsGroup::Runtime,
        by => StatsGroup::parse(by).ok_or_else(|| {
            invalid(format!(
                "by `{}` is unknown; use runtime, agent or model",
                validate::quote(by)
            ))
        })?,
    };
    let report = state.engine.stats(&namespace, window, by).await?;
    Ok(response(report))
}

fn response(report: StatsReport) -> pb::GetStatsResponse {
    pb::GetStatsResponse {
        since_ms: report.since,
        by: report.by.as_str().to_string(),
        agents: report
            .agents
            .into_iter()
            .map(|a| pb::AgentCounts {
                runtime: a.runtime,
                active: a.active,
                archived: a.archived,
            })
            .collect(),
        executions: report
            .executions
            .into_iter()
            .map(|e| pb::ExecutionStats {
                total: e.total(),
                error_rate: e.error_rate(),
                key: e.key,
                pending: e.pending,
                running: e.running,
                completed: e.completed,
                failed: e.failed,
                canceled: e.canceled,
                duration_p50_ms: e.duration_p50_ms,
                duration_p95_ms: e.duration_p95_ms,
                duration_mean_ms: e.duration_mean_ms,
                input_tokens: e.input_tokens,
                output_tokens: e.output_tokens,
                cost_usd: e.cost_usd,
                tool_calls: e.tool_calls,
            })
            .collect(),
    }
}
