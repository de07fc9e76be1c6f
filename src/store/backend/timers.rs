//! [`Timers`](crate::store::Timers) for both dialects: due timers, the next deadline (of timers
//! and of task leases and timeouts), and deleting a timer. Timer rows are written by transitions
//! (`write_committed_timers` in `committed.rs`).

macro_rules! sql_timers {
    ($store:ident) => {
        const _: () = {
            use $crate::store::{TimerKind, TimerRecord, Timers};

            #[async_trait]
            impl Timers for $store {
                async fn due_timers(&self, now: Millis, limit: u32) -> Result<Vec<TimerRecord>, StoreError> {
                    let rows = sqlx::query(
                        "SELECT execution_id, timer_id, fire_at, kind, payload FROM timers WHERE fire_at <= $1 \
                         ORDER BY fire_at LIMIT CAST($2 AS BIGINT)",
                    )
                    .bind(now)
                    .bind(i64::from(limit))
                    .fetch_all(&self.read)
                    .await?;
                    rows.iter()
                        .map(|row| {
                            let kind: String = row.try_get("kind")?;
                            Ok(TimerRecord {
                                execution_id: row.try_get("execution_id")?,
                                timer_id: row.try_get("timer_id")?,
                                fire_at: row.try_get("fire_at")?,
                                kind: TimerKind::parse(&kind).ok_or_else(|| corrupt("timer kind", &kind))?,
                                payload: row.try_get::<Json<serde_json::Value>, _>("payload")?.0,
                            })
                        })
                        .collect()
                }

                async fn next_deadline(&self) -> Result<Option<Millis>, StoreError> {
                    Ok(sqlx::query_scalar(
                        "SELECT MIN(t) FROM ( \
                           SELECT MIN(fire_at) AS t FROM timers \
                           UNION ALL SELECT MIN(lease_expires_at) FROM tasks WHERE status = 'leased' \
                           UNION ALL SELECT MIN(attempt_deadline) FROM tasks WHERE status = 'leased' \
                           UNION ALL SELECT MIN(schedule_deadline) FROM tasks WHERE status = 'ready' \
                         ) AS deadlines",
                    )
                    .fetch_one(&self.read)
                    .await?)
                }

                async fn delete_timer(&self, execution_id: Uuid, timer_id: &str) -> Result<(), StoreError> {
                    sqlx::query("DELETE FROM timers WHERE execution_id = $1 AND timer_id = $2")
                        .bind(execution_id)
                        .bind(timer_id)
                        .execute(&self.write)
                        .await?;
                    Ok(())
                }
            }
        };
    };
}
