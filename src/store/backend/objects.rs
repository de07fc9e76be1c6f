//! [`Objects`](crate::store::Objects) for both dialects, and `insert_objects`, the one
//! set-based statement that writes the objects of a group commit, a progress report or a
//! release inside its transaction. `sql_objects!` expands after `sql_transition!` (for `sql`,
//! `pack` and `run_rows`).

macro_rules! sql_objects {
    ($store:ident, octets = $octets:literal) => {
        /// Content-addressed: a row that exists already is left as it is.
        static INSERT_OBJECTS: LazyLock<String> = LazyLock::new(|| sql(
            "INSERT INTO objects (id, base, data, created_at) \
             SELECT value->>'id', value->>'base', value->>'data', CAST(value->>'at' AS BIGINT) \
             FROM {rows} WHERE TRUE ON CONFLICT (id) DO NOTHING",
        ));

        /// Writes `objects` in one statement (more only past the parameter's byte budget).
        async fn insert_objects(
            tx: &mut Tx<'_>,
            statements: &AtomicU64,
            objects: &[$crate::store::NewObject],
            now: Millis,
        ) -> Result<(), StoreError> {
            if objects.is_empty() {
                return Ok(());
            }
            let rows = pack(objects.iter().map(|o| serde_json::json!({
                "id": o.id, "base": o.base, "data": o.data, "at": now,
            })))?;
            run_rows(tx, statements, INSERT_OBJECTS.as_str(), rows).await?;
            Ok(())
        }

        const _: () = {
            use $crate::store::{Objects, StoredObject};

            #[async_trait]
            impl Objects for $store {
                async fn object_chain(&self, id: &str) -> Result<Vec<StoredObject>, StoreError> {
                    let rows = sqlx::query(
                        "WITH RECURSIVE chain(id, base, data, depth) AS ( \
                           SELECT id, base, data, 0 FROM objects WHERE id = $1 \
                           UNION ALL SELECT o.id, o.base, o.data, c.depth + 1 \
                           FROM objects o JOIN chain c ON o.id = c.base) \
                         SELECT id, base, data FROM chain ORDER BY depth",
                    )
                    .bind(id)
                    .fetch_all(&self.read)
                    .await?;
                    rows.iter()
                        .map(|row| {
                            Ok(StoredObject {
                                id: row.try_get("id")?,
                                base: row.try_get("base")?,
                                data: row.try_get("data")?,
                            })
                        })
                        .collect()
                }

                async fn object_totals(&self) -> Result<(u64, u64), StoreError> {
                    let row = sqlx::query(
                        concat!("SELECT COUNT(*) AS n, CAST(COALESCE(SUM(", $octets, "), 0) AS BIGINT) AS bytes FROM objects"),
                    )
                    .fetch_one(&self.read)
                    .await?;
                    Ok((
                        row.try_get::<i64, _>("n")?.max(0) as u64,
                        row.try_get::<i64, _>("bytes")?.max(0) as u64,
                    ))
                }
            }
        };
    };
}
