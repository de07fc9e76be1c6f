//! [`Runtimes`](crate::store::Runtimes) for both dialects: the registrations of runtimes served
//! by workers outside this binary, and the newest registration of each.

/// The newest registration of each runtime (ties go to the greater worker id, so the answer is
/// the same on every read), with the first time any worker registered it and how many did.
macro_rules! newest_runtimes {
    ($filter:literal) => {
        concat!(
            "SELECT r.name, r.worker_id, r.description, r.config_schema, r.last_seen, \
             (SELECT MIN(f.first_seen) FROM runtimes f WHERE f.name = r.name) AS first_seen, \
             (SELECT COUNT(*) FROM runtimes c WHERE c.name = r.name) AS registered_by \
             FROM runtimes r WHERE NOT EXISTS (SELECT 1 FROM runtimes n WHERE n.name = r.name \
             AND (n.last_seen > r.last_seen OR (n.last_seen = r.last_seen AND n.worker_id > r.worker_id)))",
            $filter,
            " ORDER BY r.name"
        )
    };
}

macro_rules! sql_runtimes {
    ($store:ident) => {
        const _: () = {
            use $crate::store::{RuntimeRecord, RuntimeUpsert, Runtimes};

            fn runtime_from_row(row: &DbRow) -> Result<RuntimeRecord, StoreError> {
                let registered_by: i64 = row.try_get("registered_by")?;
                Ok(RuntimeRecord {
                    name: row.try_get("name")?,
                    worker_id: row.try_get("worker_id")?,
                    description: row.try_get("description")?,
                    config_schema: row.try_get::<Json<serde_json::Value>, _>("config_schema")?.0,
                    first_seen: row.try_get("first_seen")?,
                    last_seen: row.try_get("last_seen")?,
                    registered_by: u32::try_from(registered_by).unwrap_or(u32::MAX),
                })
            }

            #[async_trait]
            impl Runtimes for $store {
                async fn upsert_runtimes(
                    &self,
                    worker_id: &str,
                    runtimes: &[RuntimeUpsert],
                    now: Millis,
                ) -> Result<(), StoreError> {
                    // A registration names a handful of runtimes (the API bounds how many), so
                    // one statement each inside one transaction is plenty.
                    let mut tx = self.begin_write().await?;
                    for r in runtimes {
                        sqlx::query(
                            "INSERT INTO runtimes (name, worker_id, description, config_schema, first_seen, last_seen) \
                             VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (name, worker_id) DO UPDATE SET \
                             description = excluded.description, config_schema = excluded.config_schema, \
                             last_seen = excluded.last_seen",
                        )
                        .bind(&r.name)
                        .bind(worker_id)
                        .bind(&r.description)
                        .bind(Json(&r.config_schema))
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    }
                    tx.commit().await?;
                    Ok(())
                }

                async fn list_runtimes(&self) -> Result<Vec<RuntimeRecord>, StoreError> {
                    let rows = sqlx::query(newest_runtimes!(""))
                        .fetch_all(&self.read)
                        .await?;
                    rows.iter().map(runtime_from_row).collect()
                }

                async fn external_runtime(
                    &self,
                    name: &str,
                ) -> Result<Option<RuntimeRecord>, StoreError> {
                    let row = sqlx::query(newest_runtimes!(" AND r.name = $1"))
                        .bind(name)
                        .fetch_optional(&self.read)
                        .await?;
                    row.as_ref().map(runtime_from_row).transpose()
                }
            }
        };
    };
}
