//! [`Workers`](crate::store::Workers) for both dialects: the upsert of a polling worker and the
//! list operators see, with slots in use and heartbeats from the leases each worker holds.

macro_rules! sql_workers {
    ($store:ident) => {
        const _: () = {
            use $crate::domain::WorkerPolicy;
            use $crate::store::{WorkerRecord, WorkerUpsert, Workers};

            #[async_trait]
            impl Workers for $store {
                async fn upsert_worker(&self, w: &WorkerUpsert) -> Result<(), StoreError> {
                    sqlx::query(
                        "INSERT INTO workers (worker_id, runtimes, queue, slots, first_seen, last_seen, policy) \
                         VALUES ($1, $2, $3, $4, $5, $5, $6) ON CONFLICT (worker_id) DO UPDATE SET \
                         runtimes = excluded.runtimes, queue = excluded.queue, slots = excluded.slots, \
                         last_seen = excluded.last_seen, policy = excluded.policy",
                    )
                    .bind(&w.worker_id)
                    .bind(Json(&w.runtimes))
                    .bind(&w.queue)
                    .bind(i64::from(w.slots))
                    .bind(w.now)
                    .bind(w.policy.as_ref().map(WorkerPolicy::to_json))
                    .execute(&self.write)
                    .await?;
                    Ok(())
                }

                async fn list_workers(&self, seen_since: Millis) -> Result<Vec<WorkerRecord>, StoreError> {
                    // Slots in use and the latest heartbeat come from the leases the worker holds,
                    // which every progress report keeps current on whichever server it reaches.
                    let rows = sqlx::query(
                        "SELECT w.worker_id, w.runtimes, w.queue, w.slots, w.first_seen, w.last_seen, w.policy, \
                         COUNT(t.activity_id) AS in_use, MAX(t.lease_expires_at - t.heartbeat_ms) AS heartbeat \
                         FROM workers w LEFT JOIN tasks t ON t.lease_owner = w.worker_id AND t.status = 'leased' \
                         GROUP BY w.worker_id, w.runtimes, w.queue, w.slots, w.first_seen, w.last_seen, w.policy \
                         ORDER BY w.worker_id",
                    )
                    .fetch_all(&self.read)
                    .await?;
                    let mut workers = Vec::new();
                    for row in &rows {
                        let polled: Millis = row.try_get("last_seen")?;
                        let heartbeat: Option<Millis> = row.try_get("heartbeat")?;
                        let last_seen = heartbeat.map_or(polled, |h| h.max(polled));
                        if last_seen < seen_since {
                            continue;
                        }
                        workers.push(WorkerRecord {
                            worker_id: row.try_get("worker_id")?,
                            runtimes: row.try_get::<Json<Vec<String>>, _>("runtimes")?.0,
                            queue: row.try_get("queue")?,
                            slots: row.try_get::<i64, _>("slots")? as u32,
                            slots_in_use: row.try_get::<i64, _>("in_use")? as u32,
                            first_seen: row.try_get("first_seen")?,
                            last_seen,
                            policy: match row.try_get::<Option<String>, _>("policy")? {
                                None => None,
                                Some(text) => Some(WorkerPolicy::from_json(&text).map_err(|e| {
                                    StoreError::Corrupt(format!("worker policy: {e}"))
                                })?),
                            },
                        });
                    }
                    Ok(workers)
                }

                async fn delete_worker(&self, worker_id: &str) -> Result<bool, StoreError> {
                    let deleted = sqlx::query("DELETE FROM workers WHERE worker_id = $1")
                        .bind(worker_id)
                        .execute(&self.write)
                        .await?;
                    Ok(deleted.rows_affected() > 0)
                }
            }
        };
    };
}
