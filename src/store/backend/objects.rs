//! [`Objects`](crate::store::Objects) for both dialects, and `object_writes`, the set-based
//! statements that write the objects of a group commit, a progress report or a release inside
//! its transaction. `sql_objects!` expands after `sql_transition!` (for `sql` and `pack`).

macro_rules! sql_objects {
    ($store:ident, octets = $octets:literal) => {
        /// Content-addressed: a row that exists already keeps its content, but is written again
        /// (the same values), so the writer holds its row lock to the end of the transaction:
        /// retention (`retention.rs`) skips a locked object, and one it deleted meanwhile is
        /// inserted again. Either way an object a transaction refers to exists when it commits.
        static INSERT_OBJECTS: LazyLock<String> = LazyLock::new(|| sql(
            "INSERT INTO objects (id, base, data, created_at) \
             SELECT value->>'id', value->>'base', value->>'data', CAST(value->>'at' AS BIGINT) \
             FROM {rows} WHERE TRUE ON CONFLICT (id) DO UPDATE SET created_at = objects.created_at",
        ));

        /// Which execution wrote which object, for retention.
        static INSERT_OBJECT_REFS: LazyLock<String> = LazyLock::new(|| sql(
            "INSERT INTO object_refs (object_id, execution_id) \
             SELECT value->>'id', {u:execution} FROM {rows} WHERE TRUE ON CONFLICT DO NOTHING",
        ));

        /// The writes of `objects` (each with the execution that refers to it), as statements
        /// with their rows: the objects, one row per id (an upsert may not touch a row twice in
        /// one statement) in id order, so two transactions writing the same objects lock their
        /// rows in one order; then the references.
        fn object_writes(
            objects: &[(uuid::Uuid, &$crate::store::NewObject)],
            now: Millis,
        ) -> Result<[(&'static str, Packed); 2], StoreError> {
            let unique: std::collections::BTreeMap<&str, &$crate::store::NewObject> =
                objects.iter().map(|(_, o)| (o.id.as_str(), *o)).collect();
            let rows = pack(unique.values().map(|o| serde_json::json!({
                "id": o.id, "base": o.base, "data": o.data, "at": now,
            })))?;
            let refs: std::collections::BTreeSet<(&str, uuid::Uuid)> =
                objects.iter().map(|(e, o)| (o.id.as_str(), *e)).collect();
            let refs = pack(refs.iter().map(|(id, e)| serde_json::json!({
                "id": id, "execution": e,
            })))?;
            Ok([(INSERT_OBJECTS.as_str(), rows), (INSERT_OBJECT_REFS.as_str(), refs)])
        }

        /// Writes `objects` inside a progress report's or a release's transaction.
        async fn insert_objects(
            tx: &mut Tx<'_>,
            objects: &[(uuid::Uuid, &$crate::store::NewObject)],
            now: Millis,
        ) -> Result<(), StoreError> {
            if objects.is_empty() {
                return Ok(());
            }
            for (statement, rows) in object_writes(objects, now)? {
                for array in rows.into_arrays() {
                    sqlx::query(statement).bind(array).execute(&mut **tx).await?;
                }
            }
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
