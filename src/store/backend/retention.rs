//! [`Retention`](crate::store::Retention) for both dialects. Expands after `sql_transition!`
//! (for `sql`). Row locks differ: PostgreSQL locks the objects it is about to delete with `SKIP
//! LOCKED`, so an object a concurrent transaction is writing again (and so refers to: see
//! `INSERT_OBJECTS`) is skipped rather than waited for; SQLite's one writer needs no lock.

macro_rules! sql_retention {
    ($store:ident, skip_locked = $skip_locked:literal, texts = $texts:literal) => {
        /// A tree `e` that may be deleted: top-level, closed, every member closed, and no
        /// execution retried from any member. The members besides the root are found as
        /// `executions_root` indexes them (`root_id <> id`: 0017).
        macro_rules! deletable {
            () => {
                "e.parent_id IS NULL AND e.status IN ('COMPLETED', 'FAILED', 'CANCELED') \
                 AND NOT EXISTS (SELECT 1 FROM executions m WHERE m.root_id = e.id AND m.root_id <> m.id \
                     AND m.status NOT IN ('COMPLETED', 'FAILED', 'CANCELED')) \
                 AND NOT EXISTS (SELECT 1 FROM executions r WHERE r.retry_of = e.id) \
                 AND NOT EXISTS (SELECT 1 FROM executions m JOIN executions r ON r.retry_of = m.id \
                     WHERE m.root_id = e.id AND m.root_id <> m.id)"
            };
        }

        static STILL_DELETABLE: LazyLock<String> = LazyLock::new(|| sql(concat!(
            "SELECT e.id FROM executions e WHERE e.id IN (SELECT {u:id} FROM {rows}) AND ",
            deletable!()
        )));
        static MEMBERS: LazyLock<String> = LazyLock::new(|| {
            sql("SELECT id FROM executions WHERE id IN (SELECT {u:id} FROM {rows}) UNION ALL \
                 SELECT id FROM executions WHERE root_id IN (SELECT {u:id} FROM {rows}) AND root_id <> id")
        });
        static REFERENCED: LazyLock<String> = LazyLock::new(|| sql(
            "SELECT DISTINCT object_id FROM object_refs WHERE execution_id IN (SELECT {u:id} FROM {rows})",
        ));
        /// The rows of the members, table by table; the execution rows last.
        static DELETE_ROWS: LazyLock<Vec<String>> = LazyLock::new(|| {
            [
                "history_events", "output_chunks", "tasks", "timers", "execution_labels",
                "object_refs",
            ]
            .iter()
            .map(|table| sql(&format!(
                "DELETE FROM {table} WHERE execution_id IN (SELECT {{u:id}} FROM {{rows}})"
            )))
            .chain(std::iter::once(sql(
                "DELETE FROM executions WHERE id IN (SELECT {u:id} FROM {rows})",
            )))
            .collect()
        });
        static LOCK_OBJECTS: LazyLock<String> = LazyLock::new(|| sql(concat!(
            "SELECT id FROM objects WHERE id IN (SELECT value->>'id' FROM {rows}) ORDER BY id",
            $skip_locked
        )));
        /// Objects nothing refers to: no reference row, and no object based on them (so a
        /// chain goes from its newest patch down, one statement per step).
        static DELETE_OBJECTS: LazyLock<String> = LazyLock::new(|| sql(
            "DELETE FROM objects WHERE id IN (SELECT value->>'id' FROM {rows}) \
             AND NOT EXISTS (SELECT 1 FROM object_refs r WHERE r.object_id = objects.id) \
             AND NOT EXISTS (SELECT 1 FROM objects o WHERE o.base = objects.id) RETURNING id",
        ));

        fn id_rows(ids: &[uuid::Uuid]) -> String {
            serde_json::Value::Array(ids.iter().map(|id| serde_json::json!({ "id": id })).collect())
                .to_string()
        }

        fn text_rows(ids: &[String]) -> String {
            serde_json::Value::Array(ids.iter().map(|id| serde_json::json!({ "id": id })).collect())
                .to_string()
        }

        const _: () = {
            use $crate::store::{Deleted, NamespaceFilter, Retention};

            #[async_trait]
            impl Retention for $store {
                async fn expired_trees(
                    &self,
                    namespaces: &NamespaceFilter,
                    cutoff: Millis,
                    limit: u32,
                ) -> Result<Vec<uuid::Uuid>, StoreError> {
                    let (only, except) = match namespaces {
                        NamespaceFilter::Only(namespace) => (Some(namespace.as_str()), Vec::new()),
                        NamespaceFilter::Except(list) => (None, list.clone()),
                    };
                    let ids: Vec<uuid::Uuid> = sqlx::query_scalar(concat!(
                        "SELECT e.id FROM executions e WHERE e.closed_at < $2 \
                         AND e.parent_id IS NULL AND e.closed_at IS NOT NULL \
                         AND (e.namespace = CAST($3 AS TEXT) OR (CAST($3 AS TEXT) IS NULL \
                              AND e.namespace NOT IN (", $texts, "))) AND ",
                        deletable!(),
                        " ORDER BY e.closed_at LIMIT CAST($4 AS BIGINT)"
                    ))
                    .bind(serde_json::to_string(&except).map_err(|e| StoreError::Corrupt(e.to_string()))?)
                    .bind(cutoff)
                    .bind(only)
                    .bind(i64::from(limit))
                    .fetch_all(&self.read)
                    .await?;
                    Ok(ids)
                }

                async fn delete_trees(&self, roots: &[uuid::Uuid]) -> Result<Deleted, StoreError> {
                    if roots.is_empty() {
                        return Ok(Deleted::default());
                    }
                    let mut tx = self.begin_write().await?;
                    let roots: Vec<uuid::Uuid> = sqlx::query_scalar(STILL_DELETABLE.as_str())
                        .bind(id_rows(roots))
                        .fetch_all(&mut *tx)
                        .await?;
                    if roots.is_empty() {
                        return Ok(Deleted::default());
                    }
                    let members: Vec<uuid::Uuid> = sqlx::query_scalar(MEMBERS.as_str())
                        .bind(id_rows(&roots))
                        .fetch_all(&mut *tx)
                        .await?;
                    let members_json = id_rows(&members);
                    let referenced: Vec<String> = sqlx::query_scalar(REFERENCED.as_str())
                        .bind(&members_json)
                        .fetch_all(&mut *tx)
                        .await?;
                    for statement in DELETE_ROWS.iter() {
                        sqlx::query(statement.as_str()).bind(&members_json).execute(&mut *tx).await?;
                    }
                    let mut objects: Vec<String> = if referenced.is_empty() {
                        Vec::new()
                    } else {
                        sqlx::query_scalar(LOCK_OBJECTS.as_str())
                            .bind(text_rows(&referenced))
                            .fetch_all(&mut *tx)
                            .await?
                    };
                    let mut deleted_objects = 0u64;
                    while !objects.is_empty() {
                        let gone: Vec<String> = sqlx::query_scalar(DELETE_OBJECTS.as_str())
                            .bind(text_rows(&objects))
                            .fetch_all(&mut *tx)
                            .await?;
                        if gone.is_empty() {
                            break;
                        }
                        deleted_objects += gone.len() as u64;
                        objects.retain(|id| !gone.contains(id));
                    }
                    tx.commit().await?;
                    Ok(Deleted {
                        executions: members.len() as u64,
                        roots,
                        objects: deleted_objects,
                    })
                }
            }
        };
    };
}
