//! The read that follows an execution's output: the next page of chunks, bounded by count and by
//! bytes, together with the execution's status and output length, in one statement. A follower
//! wakes, makes this one read, and knows both what to send and whether more is coming — and, when
//! the execution has closed or waits and nothing more is to come, the whole execution to say so.

use async_trait::async_trait;
use uuid::Uuid;

use super::{ExecutionRecord, StoreError, StoredChunk};
use crate::domain::ExecutionStatus;

/// One page of an execution's output and where the execution stands, read together.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputPage {
    /// The execution's namespace (it never changes): a stream's first page is also its
    /// namespace check.
    pub namespace: String,
    /// The execution's status when the page was read.
    pub status: ExecutionStatus,
    /// The row's version (`next_seq`) when the page was read.
    pub next_seq: u64,
    /// The seq of the execution's last chunk when the page was read (0: none yet).
    pub output_seq: u64,
    /// The chunks after the asked seq, in order: at most the asked count, and no more than the
    /// asked bytes of chunk data except that the first chunk always comes, whatever its size.
    pub chunks: Vec<StoredChunk>,
    /// The execution's whole row (labels included), from the same snapshot, when the page
    /// reaches the end of the output (its last chunk, or no chunk after the asked seq) of an
    /// execution that has closed or waits: what a follower says next, without a read of its own.
    pub execution: Option<Box<ExecutionRecord>>,
}

/// Paged reads of output for followers (a trait of its own so the store's other traits stay
/// narrow).
#[async_trait]
pub trait OutputReads: Send + Sync {
    /// The chunks of `id` with seq > `after_seq`, at most `max_chunks` of them, stopping before
    /// the chunk that would take the page's data past `max_bytes` (the first chunk always comes),
    /// skipping superseded chunks unless `include_superseded`;
    /// with the execution's status and output length from the same snapshot. `None` when there is
    /// no such execution.
    async fn output_page(
        &self,
        id: Uuid,
        after_seq: u64,
        max_chunks: u32,
        max_bytes: u64,
        include_superseded: bool,
    ) -> Result<Option<OutputPage>, StoreError>;
}
