//! What a worker's messages may hold beyond their shape, and the limits on a whole execution
//! (its history's events, its output's bytes), checked by the engine before anything is written.
//!
//! *History events* (`--max-history-events`): the execution row's `next_seq` counts its events,
//! so the check costs nothing. A transition that would take the history past the limit is not
//! written. When a client sent it (a message, an approval's answer) it is refused, naming the
//! limit; otherwise (a worker's report, a timer, a cancel) the execution fails instead, with
//! `HistoryLimitReached` as the input (as Temporal terminates a workflow whose history is too
//! large), and those few closing events are the only ones written past the limit.
//!
//! *Output bytes* (`--max-output-bytes`): the execution row counts the bytes of the chunks
//! stored for it (`output_bytes`, migration 0014; a team's copies of its children's chunks are
//! not counted again, each child is held to the limit itself). Progress and releases check it
//! inside their write (the row's update returns the new total, and a total over the limit rolls
//! the transaction back). A report's chunks, written by a group commit, are checked before the
//! write against the stored total read with its task: only the attempt holding the execution's
//! lease writes its output, and it sends its progress and report one after the other, so nothing
//! can slip in between the check and the write. A report made from a remembered lease (no read,
//! see `leases.rs`) leaves the check to its commit: `Fence::TaskAsKnown` holds the stored total
//! to what its chunks leave of the limit, and a report fenced by it is made again from a read,
//! which refuses it here.

use super::EngineError;
use crate::domain::{HistoryEvent, Usage};
use crate::store::{NewChunk, StoreError, chunk_bytes};

/// The default of `--max-history-events`: Temporal's hard limit on a workflow's history.
pub const DEFAULT_MAX_HISTORY_EVENTS: u64 = 50_000;

/// The default of `--max-output-bytes`: 64 MiB per execution.
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 64 * 1024 * 1024;

/// Whether a transition with these inputs came from a client that can be told no (and whose
/// input adds work), rather than from a worker, a timer or a cancel, which the execution must
/// answer: the first is refused at the history limit, the others fail the execution.
pub(super) fn refusable_at_history_limit(inputs: &[HistoryEvent]) -> bool {
    inputs.iter().any(|input| {
        matches!(
            input,
            HistoryEvent::MessageReceived { .. } | HistoryEvent::ApprovalResolved { .. }
        )
    })
}

/// The refusal of a client's input at the history limit.
pub(super) fn history_limit_refusal(id: uuid::Uuid, events: u64, limit: u64) -> EngineError {
    EngineError::FailedPrecondition(format!(
        "execution {id} has {events} history events and this would take it past {limit}, this \
         server's limit (server setting --max-history-events); nothing was written"
    ))
}

/// What the caller of a transition that reached the history limit hears: the execution failed
/// in its place, so the input was not taken (a worker's report is as good as fenced).
pub(super) fn failed_at_history_limit(id: uuid::Uuid, limit: u64) -> EngineError {
    EngineError::FailedPrecondition(format!(
        "execution {id} failed: its history reached {limit} events, this server's limit (server \
         setting --max-history-events)"
    ))
}

impl super::Engine {
    /// The output limit this engine holds executions to.
    pub(super) fn max_output_bytes(&self) -> u64 {
        self.options
            .max_output_bytes
            .unwrap_or(DEFAULT_MAX_OUTPUT_BYTES)
    }

    /// Refuses a report whose chunks would take the execution's stored output past
    /// `--max-output-bytes`, before anything is written (see the module comment for why reading
    /// the total first is enough): `stored` is the execution's total, read with the task.
    pub(super) fn check_report_output(
        &self,
        stored: u64,
        chunks: &[NewChunk],
    ) -> Result<(), EngineError> {
        if chunks.is_empty() {
            return Ok(());
        }
        let total = stored.saturating_add(chunk_bytes(chunks).max(0) as u64);
        let limit = self.max_output_bytes();
        if total > limit {
            return Err(output_limit(StoreError::OutputLimit { total, limit }));
        }
        Ok(())
    }
}

/// A store error as the engine reports it: output over the limit (and a gap in a lease's
/// chunks) is the worker's request to fix, `INVALID_ARGUMENT`, not a storage failure.
pub(super) fn output_limit(e: StoreError) -> EngineError {
    match e {
        StoreError::OutputLimit { .. } | StoreError::ChunkGap { .. } => {
            EngineError::InvalidArgument(e.to_string())
        }
        e => e.into(),
    }
}

/// A reported usage the store can keep and sum: a cost that is not a finite, non-negative number
/// would make every later transition of the execution unreadable or meaningless.
pub(super) fn check_usage(usage: &Usage) -> Result<(), EngineError> {
    if !usage.cost_usd.is_finite() || usage.cost_usd < 0.0 {
        return Err(EngineError::InvalidArgument(format!(
            "usage.cost_usd is {}; it must be a finite number of US dollars, 0 or more",
            usage.cost_usd
        )));
    }
    Ok(())
}
