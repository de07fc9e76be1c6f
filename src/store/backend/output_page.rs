//! [`OutputReads`] for both stores: one statement that sizes the next chunks (without loading
//! their data into this process), keeps those that fit the byte budget, and returns them joined
//! to the execution's row. When the page ends the output of an execution that has closed or
//! waits, the whole row (with its labels) comes on that last row, so the follower's last event
//! (or its `Waiting`) costs no read of its own. The dialects differ in how a
//! chunk's size in bytes is spelled and in how labels are gathered into one JSON object.

/// The next chunks that fit the page (`page`): sizes computed over the narrow `sizes` set (seq
/// and size only), and only the chunks that fit are read whole: those whose running total stays
/// within the budget, and the first (`upto = size`) even when it alone is larger.
macro_rules! page_seqs {
    ($size:literal) => {
        concat!(
            "WITH sizes AS (SELECT seq, ",
            $size,
            " AS size FROM output_chunks \
               WHERE execution_id = $1 AND seq > $2 AND (superseded = FALSE OR $5) \
               ORDER BY seq LIMIT CAST($3 AS BIGINT)), \
             page AS (SELECT seq FROM (SELECT seq, size, SUM(size) OVER (ORDER BY seq) AS upto \
               FROM sizes) w WHERE upto <= $4 OR upto = size) "
        )
    };
}

/// The page's chunks, joined to the execution's row (a LEFT JOIN keeps the row when no chunk
/// follows), after `page_seqs!` and the execution's columns.
macro_rules! page_chunks {
    () => {
        "c.seq AS chunk_seq, c.activity_id, c.attempt, c.kind AS chunk_kind, c.data, \
           c.created_at AS chunk_created_at, c.source_id, c.source_key, c.reused_from, \
           c.superseded \
         FROM executions e LEFT JOIN output_chunks c \
           ON c.execution_id = e.id AND c.seq IN (SELECT seq FROM page) \
         WHERE e.id = $1 ORDER BY c.seq"
    };
}

/// The page with the execution's namespace, status and output length only (`whole` false).
macro_rules! narrow_page_query {
    ($size:literal) => {
        concat!(
            page_seqs!($size),
            "SELECT e.namespace, e.status, e.next_seq, e.output_seq, FALSE AS whole, ",
            page_chunks!()
        )
    };
}

/// The page with the execution's whole row on the row that ends the output of an execution
/// that closed or waits (its last chunk, or the LEFT JOIN's row when no chunk follows): once per
/// stream, not with every page or every chunk.
macro_rules! wide_page_query {
    ($size:literal, $object_agg:literal) => {
        concat!(
            page_seqs!($size),
            "SELECT e.id, e.namespace, e.kind, e.agent_id, e.runtime, e.status, e.parent_id, \
               e.root_id, e.retry_of, e.request_id, e.next_seq, e.output_seq, e.input_tokens, \
               e.output_tokens, e.cost_usd, e.tool_calls, e.created_at, e.started_at, \
               e.closed_at, e.team_id, e.child_key, ",
            whole!(),
            " AS whole, CASE WHEN ",
            whole!(),
            " THEN e.input END AS input, CASE WHEN ",
            whole!(),
            " THEN e.result END AS result, CASE WHEN ",
            whole!(),
            " THEN e.failure END AS failure, CASE WHEN ",
            whole!(),
            " THEN e.state END AS state, CASE WHEN ",
            whole!(),
            " THEN ",
            start_event!("e.id"),
            " END AS start, CASE WHEN ",
            whole!(),
            " THEN (SELECT ",
            $object_agg,
            "(key, value) FROM execution_labels WHERE execution_id = $1) END AS labels_json, ",
            page_chunks!()
        )
    };
}

/// Whether a row of the wide page query ends the output of an execution that closed or waits.
macro_rules! whole {
    () => {
        "(e.status IN ('COMPLETED', 'FAILED', 'CANCELED', 'WAITING') \
          AND (c.seq IS NULL OR c.seq >= e.output_seq))"
    };
}

/// Implements [`OutputReads`](crate::store::OutputReads) for `$store`, inside a dialect module
/// (after `sql_rows!`, whose row decoders it uses).
macro_rules! sql_output_reads {
    ($store:ident, query = $query:expr) => {
        #[async_trait]
        impl $crate::store::OutputReads for $store {
            async fn output_page(
                &self,
                id: Uuid,
                after_seq: u64,
                max_chunks: u32,
                max_bytes: u64,
                include_superseded: bool,
            ) -> Result<Option<$crate::store::OutputPage>, StoreError> {
                let rows = sqlx::query($query)
                    .bind(id)
                    // Seqs are stored as i64: a larger `after_seq` is past every chunk.
                    .bind(i64::try_from(after_seq).unwrap_or(i64::MAX))
                    .bind(i64::from(max_chunks))
                    .bind(i64::try_from(max_bytes).unwrap_or(i64::MAX))
                    .bind(include_superseded)
                    .fetch_all(&self.read)
                    .await?;
                let Some(first) = rows.first() else {
                    return Ok(None);
                };
                let status: String = first.try_get("status")?;
                let status = ExecutionStatus::parse(&status)
                    .ok_or_else(|| corrupt("execution status", &status))?;
                let output_seq = first.try_get::<i64, _>("output_seq")? as u64;
                let mut chunks = Vec::with_capacity(rows.len());
                let mut execution = None;
                for row in &rows {
                    if row.try_get::<bool, _>("whole")? {
                        execution = whole_execution(row);
                    }
                    let Some(seq) = row.try_get::<Option<i64>, _>("chunk_seq")? else {
                        continue; // the LEFT JOIN's row when no chunk follows
                    };
                    chunks.push($crate::store::StoredChunk {
                        execution_id: id,
                        seq: seq as u64,
                        activity_id: row.try_get("activity_id")?,
                        attempt: row.try_get::<i64, _>("attempt")? as u32,
                        kind: row.try_get("chunk_kind")?,
                        data: row.try_get::<Json<serde_json::Value>, _>("data")?.0,
                        reused_from: row.try_get("reused_from")?,
                        created_at: row.try_get("chunk_created_at")?,
                        source_id: row.try_get("source_id")?,
                        source_key: row.try_get("source_key")?,
                        superseded: row.try_get("superseded")?,
                    });
                }
                Ok(Some($crate::store::OutputPage {
                    namespace: first.try_get("namespace")?,
                    status,
                    next_seq: first.try_get::<i64, _>("next_seq")? as u64,
                    output_seq,
                    chunks,
                    execution,
                }))
            }
        }
    };
}
