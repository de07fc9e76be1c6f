//! [`Stats`](crate::store::Stats) for both dialects: agents by runtime and status, and the
//! executions of a window grouped by runtime, agent or model, with their duration percentiles.
//!
//! Everything is aggregated by the database: one grouped scan for counts and sums, one for the
//! percentiles. Both read the window through `executions_created` (`namespace, created_at`), so
//! their cost follows the executions in the window, not the table. The percentiles differ by
//! dialect (a macro parameter): PostgreSQL has `percentile_cont`; SQLite ranks the durations of
//! each group with a window function and interpolates between the two ranks that straddle the
//! percentile, which is the same definition (linear interpolation at `(n - 1) * p`), exact, not
//! sampled.

/// The percentile query of PostgreSQL. `{key}` is the grouping expression; `$1` the namespace and
/// `$2` the window's start.
pub(super) const PG_PERCENTILES: &str = "SELECT {key} AS k, \
     percentile_cont(0.5) WITHIN GROUP (ORDER BY e.duration_ms) AS p50, \
     percentile_cont(0.95) WITHIN GROUP (ORDER BY e.duration_ms) AS p95 \
     FROM executions e {joins} \
     WHERE e.namespace = $1 AND e.created_at >= $2 AND e.duration_ms IS NOT NULL \
     GROUP BY {key}";

/// The percentile query of SQLite: rank `i` (from 0) among `n` durations of the group; the
/// percentile `p` lies at `(n - 1) * p`, between ranks `floor` and `floor + 1`, weighted by the
/// fraction. Only the (at most four) ranks that matter reach the aggregate.
pub(super) const SQLITE_PERCENTILES: &str = "WITH ranked AS (\
       SELECT {key} AS k, CAST(e.duration_ms AS DOUBLE PRECISION) AS ms, \
       ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY e.duration_ms) - 1 AS i, \
       COUNT(*) OVER (PARTITION BY {key}) AS n \
       FROM executions e {joins} \
       WHERE e.namespace = $1 AND e.created_at >= $2 AND e.duration_ms IS NOT NULL), \
     pos AS (SELECT k, ms, i, (n - 1) * 0.5 AS a, (n - 1) * 0.95 AS b, \
       CAST((n - 1) * 0.5 AS INTEGER) AS fa, CAST((n - 1) * 0.95 AS INTEGER) AS fb FROM ranked) \
     SELECT k, \
       SUM(CASE WHEN i = fa THEN ms * (1 - (a - fa)) WHEN i = fa + 1 THEN ms * (a - fa) ELSE 0 END) AS p50, \
       SUM(CASE WHEN i = fb THEN ms * (1 - (b - fb)) WHEN i = fb + 1 THEN ms * (b - fb) ELSE 0 END) AS p95 \
     FROM pos WHERE i IN (fa, fa + 1, fb, fb + 1) GROUP BY k";

/// The joins every grouping may need (the agent's name and model, the team's name).
pub(super) const STATS_JOINS: &str =
    "LEFT JOIN agents a ON a.id = e.agent_id LEFT JOIN teams t ON t.id = e.team_id";

/// The grouping expression of `by`.
pub(super) fn group_key(by: crate::store::StatsGroup) -> &'static str {
    match by {
        crate::store::StatsGroup::Runtime => "e.runtime",
        crate::store::StatsGroup::Agent => "COALESCE(a.name, t.name, '')",
        crate::store::StatsGroup::Model => "COALESCE(a.model_id, '')",
    }
}

/// A query with its grouping expression and joins filled in (no joins by runtime, which the
/// execution row has). The expressions come from [`group_key`] and the constants above, never
/// from a request.
pub(super) fn stats_sql(template: &str, by: crate::store::StatsGroup) -> String {
    let joins = match by {
        crate::store::StatsGroup::Runtime => "",
        _ => STATS_JOINS,
    };
    template
        .replace("{key}", group_key(by))
        .replace("{joins}", joins)
}

macro_rules! sql_stats {
    ($store:ident, percentiles = $percentiles:path) => {
        const _: () = {
            use $crate::store::backend::stats::stats_sql;
            use $crate::store::{AgentCounts, ExecutionStats, Stats, StatsGroup};

            #[async_trait]
            impl Stats for $store {
                async fn agent_counts(&self, namespace: &str) -> Result<Vec<AgentCounts>, StoreError> {
                    let rows = sqlx::query(
                        "SELECT runtime, \
                         COUNT(CASE WHEN status = 'active' THEN 1 END) AS active, \
                         COUNT(CASE WHEN status = 'archived' THEN 1 END) AS archived \
                         FROM agents WHERE namespace = $1 GROUP BY runtime ORDER BY runtime",
                    )
                    .bind(namespace)
                    .fetch_all(&self.read)
                    .await?;
                    rows.iter()
                        .map(|row| {
                            Ok(AgentCounts {
                                runtime: row.try_get("runtime")?,
                                active: row.try_get::<i64, _>("active")?.max(0) as u64,
                                archived: row.try_get::<i64, _>("archived")?.max(0) as u64,
                            })
                        })
                        .collect()
                }

                async fn execution_stats(
                    &self,
                    namespace: &str,
                    since: Millis,
                    by: StatsGroup,
                ) -> Result<Vec<ExecutionStats>, StoreError> {
                    let sums = stats_sql(
                        "SELECT {key} AS k, e.status AS status, COUNT(*) AS n, \
                         CAST(COALESCE(SUM(e.input_tokens), 0) AS BIGINT) AS input_tokens, \
                         CAST(COALESCE(SUM(e.output_tokens), 0) AS BIGINT) AS output_tokens, \
                         CAST(COALESCE(SUM(e.cost_usd), 0) AS DOUBLE PRECISION) AS cost_usd, \
                         CAST(COALESCE(SUM(e.tool_calls), 0) AS BIGINT) AS tool_calls, \
                         COUNT(e.duration_ms) AS closed, \
                         CAST(COALESCE(SUM(e.duration_ms), 0) AS DOUBLE PRECISION) AS duration_sum \
                         FROM executions e {joins} \
                         WHERE e.namespace = $1 AND e.created_at >= $2 \
                         GROUP BY {key}, e.status",
                        by,
                    );
                    let rows = sqlx::query(sqlx::AssertSqlSafe(sums))
                        .bind(namespace)
                        .bind(since)
                        .fetch_all(&self.read)
                        .await?;
                    let mut groups: BTreeMap<String, (ExecutionStats, f64, u64)> = BTreeMap::new();
                    for row in &rows {
                        let key: String = row.try_get("k")?;
                        let status: String = row.try_get("status")?;
                        let status = ExecutionStatus::parse(&status).ok_or_else(|| {
                            StoreError::Corrupt(format!("execution status `{status}`"))
                        })?;
                        let count = |column: &str| -> Result<u64, StoreError> {
                            Ok(row.try_get::<i64, _>(column)?.max(0) as u64)
                        };
                        let (group, duration_sum, closed) = groups
                            .entry(key.clone())
                            .or_insert_with(|| (ExecutionStats { key, ..Default::default() }, 0.0, 0));
                        let n = count("n")?;
                        match status {
                            ExecutionStatus::Pending => group.pending += n,
                            // A waiting execution is open and counted with the running ones.
                            ExecutionStatus::Running | ExecutionStatus::Waiting => group.running += n,
                            ExecutionStatus::Completed => group.completed += n,
                            ExecutionStatus::Failed => group.failed += n,
                            ExecutionStatus::Canceled => group.canceled += n,
                        }
                        group.input_tokens = group.input_tokens.saturating_add(count("input_tokens")?);
                        group.output_tokens = group.output_tokens.saturating_add(count("output_tokens")?);
                        group.tool_calls = group.tool_calls.saturating_add(count("tool_calls")?);
                        group.cost_usd += row.try_get::<f64, _>("cost_usd")?;
                        *duration_sum += row.try_get::<f64, _>("duration_sum")?;
                        *closed += count("closed")?;
                    }
                    let percentiles = sqlx::query(sqlx::AssertSqlSafe(stats_sql($percentiles, by)))
                        .bind(namespace)
                        .bind(since)
                        .fetch_all(&self.read)
                        .await?;
                    for row in &percentiles {
                        let key: String = row.try_get("k")?;
                        if let Some((group, _, _)) = groups.get_mut(&key) {
                            group.duration_p50_ms = row.try_get("p50")?;
                            group.duration_p95_ms = row.try_get("p95")?;
                        }
                    }
                    Ok(groups
                        .into_values()
                        .map(|(mut group, duration_sum, closed)| {
                            if closed > 0 {
                                group.duration_mean_ms = Some(duration_sum / closed as f64);
                            }
                            group
                        })
                        .collect())
                }
            }
        };
    };
}
