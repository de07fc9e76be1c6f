//! The limits an operator sets on a server (`cairn server --max-…`), checked at the edge before
//! anything is written: a request over one is refused with `INVALID_ARGUMENT` naming the limit
//! and its setting. A worker treats that refusal as final and fails the attempt once, for good,
//! with the limit in its failure, so an oversized checkpoint never loops.

use serde_json::Value;
use tonic::Status;

use super::super::error::invalid;
use super::Limits;
use crate::contract::{ChunkIn, encoded_len};
use crate::domain::RetryPolicy;

/// Chunks and a checkpoint of one worker message within the chunk, batch and checkpoint limits.
pub(crate) fn report(
    limits: &Limits,
    chunks: &[ChunkIn],
    checkpoint: Option<&Value>,
) -> Result<(), Status> {
    let mut total = 0;
    for (i, chunk) in chunks.iter().enumerate() {
        let bytes = chunk.encoded_len();
        if bytes > limits.max_chunk_bytes {
            return Err(invalid(format!(
                "chunks[{i}] is {bytes} bytes; the limit is {} bytes per chunk (server setting \
                 --max-chunk-bytes)",
                limits.max_chunk_bytes
            )));
        }
        total += bytes;
    }
    if total > limits.max_batch_bytes {
        return Err(invalid(format!(
            "the chunks of this report are {total} bytes; the limit is {} bytes per batch \
             (server setting --max-batch-bytes)",
            limits.max_batch_bytes
        )));
    }
    if let Some(checkpoint) = checkpoint {
        let bytes = encoded_len(checkpoint);
        if bytes > limits.max_checkpoint_bytes {
            return Err(invalid(format!(
                "the checkpoint is {bytes} bytes; the limit is {} bytes per checkpoint (server \
                 setting --max-checkpoint-bytes)",
                limits.max_checkpoint_bytes
            )));
        }
    }
    Ok(())
}

/// A retry policy within `--max-attempts`: one that asks for more attempts is refused, and one
/// that asks for no limit (0) gets the server's, so no execution retries forever.
pub(crate) fn retry_policy(
    limits: &Limits,
    policy: Option<RetryPolicy>,
) -> Result<Option<RetryPolicy>, Status> {
    let Some(mut policy) = policy else {
        return Ok(None);
    };
    if policy.maximum_attempts > limits.max_attempts {
        return Err(invalid(format!(
            "retry_policy.maximum_attempts {} is over this server's limit of {} (server setting \
             --max-attempts)",
            policy.maximum_attempts, limits.max_attempts
        )));
    }
    if policy.maximum_attempts == 0 {
        policy.maximum_attempts = limits.max_attempts;
    }
    Ok(Some(policy))
}
