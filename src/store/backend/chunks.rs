//! Writing output chunks, shared by the commit of a transition and by progress reports and
//! releases of leased attempts: `sql_chunks!` expands `append_chunks` and its parts into a
//! dialect module (after `sql_rows!`).

macro_rules! sql_chunks {
    () => {

        /// Appends chunks after the execution's last output seq; returns the new last seq and
        /// the execution's parent. A child's chunks are appended to its parent's output too,
        /// tagged with the child, so a team's stream interleaves its children's. Chunks that
        /// would take the execution's `output_bytes` past `max_output_bytes` are refused
        /// (`OutputLimit`) before any is inserted; the caller drops the transaction.
        async fn append_chunks(
            tx: &mut Tx<'_>,
            execution_id: Uuid,
            chunks: &[NewChunk],
            now: Millis,
            max_output_bytes: u64,
        ) -> Result<(u64, Option<Uuid>), StoreError> {
            let row = sqlx::query(
                "UPDATE executions SET output_seq = output_seq + $2, output_bytes = output_bytes + $3 \
                 WHERE id = $1 RETURNING output_seq, output_bytes, parent_id, child_key",
            )
            .bind(execution_id)
            .bind(chunks.len() as i64)
            .bind(chunk_bytes(chunks))
            .fetch_one(&mut **tx)
            .await?;
            // The row's update holds its lock to the commit, so the total read back is the one
            // this write makes: no concurrent writer can slip in under the limit with it.
            let total = row.try_get::<i64, _>("output_bytes")?.max(0) as u64;
            if !chunks.is_empty() && total > max_output_bytes {
                return Err(StoreError::OutputLimit { total, limit: max_output_bytes });
            }
            let last: i64 = row.try_get("output_seq")?;
            let parent_id: Option<Uuid> = row.try_get("parent_id")?;
            let child_key: Option<String> = row.try_get("child_key")?;
            write_chunks(tx, execution_id, last, parent_id, child_key, chunks, now).await?;
            Ok((last as u64, parent_id))
        }

        /// Inserts chunks ending at seq `last` of `execution_id`, and a copy at the end of the
        /// parent's output, tagged with the child.
        async fn write_chunks(
            tx: &mut Tx<'_>,
            execution_id: Uuid,
            last: i64,
            parent_id: Option<Uuid>,
            child_key: Option<String>,
            chunks: &[NewChunk],
            now: Millis,
        ) -> Result<(), StoreError> {
            if chunks.is_empty() {
                return Ok(());
            }
            insert_chunks(tx, execution_id, last, chunks, None, now).await?;
            if let Some(parent_id) = parent_id {
                let parent_last: i64 = sqlx::query_scalar(
                    "UPDATE executions SET output_seq = output_seq + $2 WHERE id = $1 RETURNING output_seq",
                )
                .bind(parent_id)
                .bind(chunks.len() as i64)
                .fetch_one(&mut **tx)
                .await?;
                let source = (execution_id, child_key.unwrap_or_default());
                insert_chunks(tx, parent_id, parent_last, chunks, Some(&source), now).await?;
            }
            Ok(())
        }

        /// Inserts chunks ending at seq `last`.
        async fn insert_chunks(
            tx: &mut Tx<'_>,
            execution_id: Uuid,
            last: i64,
            chunks: &[NewChunk],
            source: Option<&(Uuid, String)>,
            now: Millis,
        ) -> Result<(), StoreError> {
            let first = last - chunks.len() as i64 + 1;
            for (n, batch) in chunks.chunks(rows_per_statement(10)).enumerate() {
                let offset = first + (n * rows_per_statement(10)) as i64;
                insert_chunk_batch(tx, execution_id, offset, batch, source, now).await?;
            }
            Ok(())
        }

        /// Inserts chunks at seqs `first..`, in one statement (the caller keeps the batch
        /// within the bind-parameter limit).
        async fn insert_chunk_batch(
            tx: &mut Tx<'_>,
            execution_id: Uuid,
            first: i64,
            chunks: &[NewChunk],
            source: Option<&(Uuid, String)>,
            now: Millis,
        ) -> Result<(), StoreError> {
            let mut insert = QueryBuilder::<Db>::new(
                "INSERT INTO output_chunks (execution_id, seq, activity_id, attempt, kind, data, created_at, \
                 source_id, source_key, reused_from) ",
            );
            insert.push_values(chunks.iter().enumerate(), |mut b, (i, chunk)| {
                b.push_bind(execution_id)
                    .push_bind(first + i as i64)
                    .push_bind(chunk.activity_id.clone())
                    .push_bind(i64::from(chunk.attempt))
                    .push_bind(chunk.kind.clone())
                    .push_bind($crate::store::backend::json_param::JsonParam::of(&chunk.data))
                    .push_bind(now)
                    .push_bind(chunk.source.as_ref().or(source).map(|s| s.0))
                    .push_bind(chunk.source.as_ref().or(source).map(|s| s.1.clone()))
                    .push_bind(chunk.reused_from);
            });
            insert.build().execute(&mut **tx).await?;
            Ok(())
        }
    };
}
