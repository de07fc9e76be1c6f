//! [`Gauges`](crate::store::Gauges) for both dialects: the grouped count of waiting tasks.

macro_rules! sql_metrics {
    ($store:ident) => {
        const _: () = {
            use $crate::store::{Gauges, TasksWaiting};

            #[async_trait]
            impl Gauges for $store {
                async fn tasks_waiting(&self) -> Result<Vec<TasksWaiting>, StoreError> {
                    let rows = sqlx::query(
                        "SELECT queue, runtime, COUNT(*) AS waiting FROM tasks WHERE status = 'ready' \
                         GROUP BY queue, runtime ORDER BY queue, runtime",
                    )
                    .fetch_all(&self.read)
                    .await?;
                    rows.iter()
                        .map(|row| {
                            Ok(TasksWaiting {
                                queue: row.try_get("queue")?,
                                runtime: row.try_get("runtime")?,
                                count: row.try_get::<i64, _>("waiting")?.max(0) as u64,
                            })
                        })
                        .collect()
                }
            }
        };
    };
}
