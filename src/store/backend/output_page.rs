//! [`OutputReads`] for both stores: one statement that sizes the next chunks (without loading
//! their data into this process), keeps those that fit the byte budget, and returns them joined
//! to the execution's status and output length. The dialects differ only in how a chunk's size
//! in bytes is spelled.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::types::Json;
use uuid::Uuid;

use super::{PgStore, SqliteStore};
use crate::domain::ExecutionStatus;
use crate::store::{OutputPage, OutputReads, StoreError, StoredChunk};

/// The page query, with the dialect's expression for a chunk's size in bytes. The sizes are
/// computed over the narrow `sizes` set (seq and size only); only the chunks that fit are read
/// whole: those whose running total stays within the budget, and the first (`upto = size`) even
/// when it alone is larger. A LEFT JOIN keeps the execution's row when no chunk follows.
macro_rules! page_query {
    ($size:literal) => {
        concat!(
            "WITH sizes AS (SELECT seq, ",
            $size,
            " AS size FROM output_chunks \
               WHERE execution_id = $1 AND seq > $2 AND (superseded = FALSE OR $5) \
               ORDER BY seq LIMIT CAST($3 AS BIGINT)), \
             page AS (SELECT seq FROM (SELECT seq, size, SUM(size) OVER (ORDER BY seq) AS upto \
               FROM sizes) w WHERE upto <= $4 OR upto = size) \
             SELECT e.status, e.output_seq, c.seq, c.activity_id, c.attempt, c.kind, c.data, \
               c.created_at, c.source_id, c.source_key, c.reused_from, c.superseded \
             FROM executions e LEFT JOIN output_chunks c \
               ON c.execution_id = e.id AND c.seq IN (SELECT seq FROM page) \
             WHERE e.id = $1 ORDER BY c.seq"
        )
    };
}

macro_rules! output_reads {
    ($store:ident, $size:literal) => {
        #[async_trait]
        impl OutputReads for $store {
            async fn output_page(
                &self,
                id: Uuid,
                after_seq: u64,
                max_chunks: u32,
                max_bytes: u64,
                include_superseded: bool,
            ) -> Result<Option<OutputPage>, StoreError> {
                let rows = sqlx::query(page_query!($size))
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
                    .ok_or_else(|| StoreError::Corrupt(format!("execution status: {status}")))?;
                let output_seq = first.try_get::<i64, _>("output_seq")? as u64;
                let mut chunks = Vec::with_capacity(rows.len());
                for row in &rows {
                    let Some(seq) = row.try_get::<Option<i64>, _>("seq")? else {
                        continue; // the LEFT JOIN's row when no chunk follows
                    };
                    chunks.push(StoredChunk {
                        execution_id: id,
                        seq: seq as u64,
                        activity_id: row.try_get("activity_id")?,
                        attempt: row.try_get::<i64, _>("attempt")? as u32,
                        kind: row.try_get("kind")?,
                        data: row.try_get::<Json<serde_json::Value>, _>("data")?.0,
                        reused_from: row.try_get("reused_from")?,
                        created_at: row.try_get("created_at")?,
                        source_id: row.try_get("source_id")?,
                        source_key: row.try_get("source_key")?,
                        superseded: row.try_get("superseded")?,
                    });
                }
                Ok(Some(OutputPage {
                    status,
                    output_seq,
                    chunks,
                }))
            }
        }
    };
}

// SQLite keeps `data` as TEXT; its length in bytes is that of the same value as a BLOB.
output_reads!(SqliteStore, "length(CAST(data AS BLOB))");
// PostgreSQL keeps `data` as JSONB; the size that matters is that of the JSON text sent on.
output_reads!(PgStore, "octet_length(data::text)");
