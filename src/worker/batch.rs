//! The output of a running attempt on its way to the server: chunks and checkpoints queue here
//! in the order the runtime sent them and leave in batches bounded by count and bytes.
//!
//! A checkpoint leaves with (never before) the batch that holds the last chunk it covers, so a
//! resumed attempt never skips output. The batcher also keeps the index of its first pending
//! chunk among the chunks the lease has sent, which every batch carries so that the server stores
//! a batch sent again after a lost reply only once.

use std::collections::VecDeque;

use crate::contract::{ChunkIn, MAX_DOCUMENT_BYTES, MAX_REPORT_BYTES, TOO_LARGE_CODE, encoded_len};
use crate::domain::Failure;
use crate::runtime::Progress;

/// A checkpoint waiting to be sent.
#[derive(Debug)]
struct PendingCheckpoint {
    value: serde_json::Value,
    bytes: usize,
    /// How many of the lease's chunks it covers: it leaves with the batch that reaches this index.
    covers: u64,
    /// Tells this checkpoint from a newer one, so acknowledging a batch clears only what it sent.
    generation: u64,
}

/// One batch, as it is sent (and sent again, unchanged, when no reply came).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Batch {
    /// The index of `chunks[0]` among the chunks this lease has sent.
    pub first_chunk: u64,
    /// The chunks, in order.
    pub chunks: Vec<ChunkIn>,
    /// The checkpoint, when this batch holds every chunk it covers.
    pub checkpoint: Option<serde_json::Value>,
    checkpoint_generation: Option<u64>,
}

/// Chunks and the newest checkpoint not yet acknowledged by the server.
#[derive(Debug)]
pub(super) struct Batcher {
    chunks: VecDeque<(ChunkIn, usize)>,
    /// The sum of the encoded sizes (`ChunkIn::encoded_len`) of `chunks`, which a batch keeps
    /// under `max_bytes`.
    bytes: usize,
    checkpoint: Option<PendingCheckpoint>,
    generations: u64,
    /// Chunks of this lease the server has acknowledged: the index of `chunks[0]`.
    sent: u64,
    max_chunks: usize,
    max_bytes: usize,
    /// The largest chunk and checkpoint the server takes (its `--max-chunk-bytes` and
    /// `--max-checkpoint-bytes`), when the worker knows them: an in-process worker does.
    max_chunk: usize,
    max_checkpoint: usize,
}

impl Batcher {
    /// An empty batcher whose batches hold at most `max_chunks` chunks and, unless a batch is a
    /// single chunk, at most `max_bytes` bytes of them.
    pub fn new(max_chunks: usize, max_bytes: usize) -> Self {
        Batcher {
            chunks: VecDeque::new(),
            bytes: 0,
            checkpoint: None,
            generations: 0,
            sent: 0,
            max_chunks: max_chunks.max(1),
            max_bytes: max_bytes.min(MAX_REPORT_BYTES),
            max_chunk: MAX_REPORT_BYTES,
            max_checkpoint: MAX_DOCUMENT_BYTES,
        }
    }

    /// Holds chunks and checkpoints to the server's limits: one over them ends the attempt,
    /// for good, with the limit named, instead of being refused at every send.
    pub fn with_limits(mut self, max_chunk: usize, max_checkpoint: usize) -> Self {
        self.max_chunk = max_chunk.min(MAX_REPORT_BYTES);
        self.max_checkpoint = max_checkpoint.min(MAX_DOCUMENT_BYTES);
        self
    }

    /// Queues what the runtime sent. A chunk or checkpoint too large for any report is dropped
    /// and comes back as the failure that ends the attempt.
    pub fn take(&mut self, progress: Progress) -> Result<(), Failure> {
        let checkpoint = match progress {
            Progress::Chunk {
                kind,
                data,
                checkpoint,
            } => {
                let chunk = ChunkIn { kind, data };
                let bytes = chunk.encoded_len();
                if bytes > MAX_REPORT_BYTES || encoded_len(&chunk.data) > MAX_DOCUMENT_BYTES {
                    return Err(too_large(&format!("a `{}` chunk", chunk.kind), bytes));
                }
                if bytes > self.max_chunk {
                    let what = format!("a `{}` chunk", chunk.kind);
                    return Err(over_limit(
                        &what,
                        bytes,
                        self.max_chunk,
                        "--max-chunk-bytes",
                    ));
                }
                self.chunks.push_back((chunk, bytes));
                self.bytes += bytes;
                checkpoint
            }
            Progress::Checkpoint(checkpoint) => Some(checkpoint),
        };
        if let Some(value) = checkpoint {
            let bytes = encoded_len(&value);
            if bytes > MAX_DOCUMENT_BYTES {
                return Err(too_large("a checkpoint", bytes));
            }
            if bytes > self.max_checkpoint {
                let limit = self.max_checkpoint;
                return Err(over_limit(
                    "a checkpoint",
                    bytes,
                    limit,
                    "--max-checkpoint-bytes",
                ));
            }
            self.generations += 1;
            self.checkpoint = Some(PendingCheckpoint {
                value,
                bytes,
                covers: self.sent + self.chunks.len() as u64,
                generation: self.generations,
            });
        }
        Ok(())
    }

    /// Whether nothing is waiting to be sent.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.checkpoint.is_none()
    }

    /// Whether a whole batch is waiting, so it should go now rather than at the end of the
    /// batching window.
    pub fn is_full(&self) -> bool {
        self.chunks.len() >= self.max_chunks || self.bytes >= self.max_bytes
    }

    /// The index the next batch starts at: how many chunks the server has acknowledged.
    pub fn first_chunk(&self) -> u64 {
        self.sent
    }

    /// The next batch: the oldest chunks, as many as the limits allow (at least one, if any
    /// wait), and the checkpoint when the batch covers it and still fits in a report.
    pub fn next_batch(&self) -> Batch {
        let mut count = 0;
        let mut bytes = 0;
        // A batch ends where the pending checkpoint's chunks end, so a checkpoint covers exactly
        // the chunks stored with it and before: the server marks what an interrupted attempt
        // emitted after its last checkpoint as superseded when the retry emits it again.
        let upto = self.checkpoint.as_ref().map_or(self.chunks.len(), |c| {
            (c.covers.saturating_sub(self.sent) as usize).min(self.chunks.len())
        });
        for (_, size) in self.chunks.iter().take(upto) {
            let fits = count == 0 || (count < self.max_chunks && bytes + size <= self.max_bytes);
            if !fits {
                break;
            }
            count += 1;
            bytes += size;
        }
        let end = self.sent + count as u64;
        let checkpoint = self
            .checkpoint
            .as_ref()
            .filter(|c| c.covers <= end && bytes + c.bytes <= MAX_REPORT_BYTES);
        Batch {
            first_chunk: self.sent,
            chunks: self
                .chunks
                .iter()
                .take(count)
                .map(|(c, _)| c.clone())
                .collect(),
            checkpoint: checkpoint.map(|c| c.value.clone()),
            checkpoint_generation: checkpoint.map(|c| c.generation),
        }
    }

    /// The server stored `batch`: drop it from the queue and move the index past it.
    pub fn acknowledge(&mut self, batch: &Batch) {
        self.remove(batch);
        self.sent += batch.chunks.len() as u64;
    }

    /// The server refused `batch` for good: drop it without moving the index, since the server
    /// stored none of it and the next batch must start where this one did.
    pub fn discard(&mut self, batch: &Batch) {
        self.remove(batch);
        if let Some(checkpoint) = &mut self.checkpoint {
            checkpoint.covers = checkpoint.covers.saturating_sub(batch.chunks.len() as u64);
        }
    }

    fn remove(&mut self, batch: &Batch) {
        for _ in 0..batch.chunks.len() {
            if let Some((_, bytes)) = self.chunks.pop_front() {
                self.bytes -= bytes;
            }
        }
        if batch.checkpoint_generation.is_some()
            && batch.checkpoint_generation == self.checkpoint.as_ref().map(|c| c.generation)
        {
            self.checkpoint = None;
        }
    }

    /// Whether everything waiting fits in one last message whose own payload (an outcome)
    /// weighs `reserve` bytes: within the batch limits, and with the checkpoint, under
    /// [`MAX_REPORT_BYTES`]. When it does not, send [`Self::next_batch`] first.
    pub fn fits_with(&self, reserve: usize) -> bool {
        let count = self.chunks.len();
        let checkpoint = self.checkpoint.as_ref().map_or(0, |c| c.bytes);
        let covered = self
            .checkpoint
            .as_ref()
            .is_none_or(|c| c.covers >= self.sent + count as u64);
        covered
            && count <= self.max_chunks
            && (count <= 1 || self.bytes <= self.max_bytes)
            && self.bytes + checkpoint + reserve <= MAX_REPORT_BYTES
    }

    /// Everything waiting, for the last message (see [`Self::fits_with`]).
    pub fn take_all(&mut self) -> (Vec<ChunkIn>, Option<serde_json::Value>) {
        self.bytes = 0;
        let chunks = self.chunks.drain(..).map(|(c, _)| c).collect();
        (chunks, self.checkpoint.take().map(|c| c.value))
    }
}

/// The failure of an attempt whose runtime produced `what`, of `bytes` bytes, over the server's
/// `limit` (the setting named). No retry can fix it: the runtime would produce the same.
fn over_limit(what: &str, bytes: usize, limit: usize, setting: &str) -> Failure {
    Failure {
        details: serde_json::json!({"limit": setting, "bytes": bytes, "max": limit}),
        ..Failure::new(
            TOO_LARGE_CODE,
            format!(
                "the runtime produced {what} of {bytes} bytes; the server takes at most {limit} \
                 (server setting {setting}), so it cannot be stored"
            ),
            false,
        )
    }
}

/// The failure of an attempt whose runtime produced `what`, of `bytes` bytes, larger than any
/// report can carry. No retry can fix it: the runtime would produce the same.
pub(super) fn too_large(what: &str, bytes: usize) -> Failure {
    Failure::new(
        TOO_LARGE_CODE,
        format!(
            "the runtime produced {what} of {bytes} bytes; a worker report carries at most \
             {MAX_DOCUMENT_BYTES} bytes in one document (MAX_DOCUMENT_BYTES) and \
             {MAX_REPORT_BYTES} bytes in all (MAX_REPORT_BYTES), so it cannot be stored"
        ),
        false,
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn chunk(text: &str) -> Progress {
        Progress::Chunk {
            kind: "text".into(),
            data: json!(text),
            checkpoint: None,
        }
    }

    fn texts(batch: &Batch) -> Vec<String> {
        batch
            .chunks
            .iter()
            .map(|c| c.data.as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn batches_hold_at_most_the_chunk_count() {
        let mut batcher = Batcher::new(3, 1 << 20);
        for i in 0..7 {
            batcher.take(chunk(&i.to_string())).unwrap();
        }
        assert!(batcher.is_full());
        let mut seen = Vec::new();
        while !batcher.is_empty() {
            let batch = batcher.next_batch();
            assert!(batch.chunks.len() <= 3);
            assert_eq!(batch.first_chunk, seen.len() as u64);
            seen.extend(texts(&batch));
            batcher.acknowledge(&batch);
        }
        assert_eq!(seen, ["0", "1", "2", "3", "4", "5", "6"]);
        assert_eq!(batcher.first_chunk(), 7);
    }

    #[test]
    fn batches_hold_at_most_the_byte_limit_but_a_big_chunk_goes_alone() {
        // Each chunk weighs 4 ("text") + 12 (a quoted 10-letter string) = 16 bytes.
        let mut batcher = Batcher::new(100, 40);
        for _ in 0..5 {
            batcher.take(chunk("abcdefghij")).unwrap();
        }
        assert!(
            batcher.is_full(),
            "80 bytes waiting is more than a 40-byte batch"
        );
        let batch = batcher.next_batch();
        assert_eq!(batch.chunks.len(), 2, "a third chunk would make 48 bytes");
        batcher.acknowledge(&batch);

        let mut big = Batcher::new(100, 40);
        big.take(chunk(&"x".repeat(100))).unwrap();
        big.take(chunk("y")).unwrap();
        let batch = big.next_batch();
        assert_eq!(
            batch.chunks.len(),
            1,
            "a chunk over the batch limit goes alone"
        );
        big.acknowledge(&batch);
        assert_eq!(texts(&big.next_batch()), ["y"]);
    }

    #[test]
    fn a_checkpoint_leaves_with_the_batch_that_ends_at_the_last_chunk_it_covers() {
        let mut batcher = Batcher::new(2, 1 << 20);
        batcher.take(chunk("a")).unwrap();
        batcher.take(chunk("b")).unwrap();
        batcher.take(chunk("c")).unwrap();
        batcher
            .take(Progress::Checkpoint(json!({"at": 3})))
            .unwrap();
        batcher.take(chunk("d")).unwrap();
        let first = batcher.next_batch();
        assert_eq!(texts(&first), ["a", "b"]);
        assert_eq!(
            first.checkpoint, None,
            "it covers `c`, which is not in this batch"
        );
        batcher.acknowledge(&first);
        let second = batcher.next_batch();
        assert_eq!(texts(&second), ["c"], "`d` is not covered: it waits");
        assert_eq!(second.checkpoint, Some(json!({"at": 3})));
        assert!(
            !batcher.fits_with(0),
            "nor may it go out beside the checkpoint"
        );
        batcher.acknowledge(&second);
        let third = batcher.next_batch();
        assert_eq!(texts(&third), ["d"]);
        assert_eq!(third.checkpoint, None);
        batcher.acknowledge(&third);
        assert!(batcher.is_empty());
    }

    #[test]
    fn a_batch_sent_again_is_the_same_batch_and_a_newer_checkpoint_survives_its_ack() {
        let mut batcher = Batcher::new(10, 1 << 20);
        batcher.take(Progress::Checkpoint(json!(1))).unwrap();
        let batch = batcher.next_batch();
        assert_eq!(
            batcher.next_batch(),
            batch,
            "unacknowledged, it is sent again as it was"
        );
        batcher.take(Progress::Checkpoint(json!(2))).unwrap();
        batcher.acknowledge(&batch);
        assert_eq!(batcher.next_batch().checkpoint, Some(json!(2)));
    }

    #[test]
    fn a_discarded_batch_does_not_move_the_index() {
        let mut batcher = Batcher::new(1, 1 << 20);
        batcher.take(chunk("bad")).unwrap();
        batcher.take(chunk("good")).unwrap();
        let refused = batcher.next_batch();
        batcher.discard(&refused);
        let next = batcher.next_batch();
        assert_eq!(next.first_chunk, 0);
        assert_eq!(texts(&next), ["good"]);
    }

    #[test]
    fn a_chunk_or_checkpoint_over_the_report_limit_is_a_non_retryable_failure() {
        let mut batcher = Batcher::new(10, 1 << 20);
        let huge = "x".repeat(MAX_REPORT_BYTES);
        let failure = batcher.take(chunk(&huge)).unwrap_err();
        assert_eq!(failure.code, TOO_LARGE_CODE);
        assert!(!failure.retryable);
        assert!(failure.message.contains(&MAX_REPORT_BYTES.to_string()));
        let failure = batcher.take(Progress::Checkpoint(json!(huge))).unwrap_err();
        assert!(
            failure.message.contains("checkpoint"),
            "{}",
            failure.message
        );
        assert!(batcher.is_empty(), "nothing too large is queued");
    }

    #[test]
    fn the_last_message_carries_only_what_fits_with_its_outcome() {
        let mut batcher = Batcher::new(3, 1 << 20);
        for i in 0..5 {
            batcher.take(chunk(&i.to_string())).unwrap();
        }
        assert!(!batcher.fits_with(0), "five chunks are more than one batch");
        let batch = batcher.next_batch();
        batcher.acknowledge(&batch);
        assert!(batcher.fits_with(0));
        assert!(
            !batcher.fits_with(MAX_REPORT_BYTES),
            "no room left for the chunks beside a maximal outcome"
        );
        let (chunks, checkpoint) = batcher.take_all();
        assert_eq!(chunks.len(), 2);
        assert_eq!(checkpoint, None);
        assert!(batcher.is_empty());
    }
}
