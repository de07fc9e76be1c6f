//! The end of an attempt: the final report (or the release of a draining worker), sent with the
//! output still queued. What does not fit beside the outcome goes first as progress batches, so
//! no message exceeds the contract's limits; a server that is away is tried again, and a server
//! that refuses the report for good gets a failure instead of the same report forever.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::batch::{Batcher, too_large};
use super::stop::Stop;
use crate::contract::{
    ActivityOutcome, Assignment, Lease, MAX_DOCUMENT_BYTES, MAX_REPORT_BYTES, Progress,
    REPORT_REFUSED_CODE, Release, Report, WorkerApi, WorkerApiError,
};
use crate::domain::Failure;

/// The failure that ends an attempt whose `what` the server refused with `message`.
pub(super) fn refused(what: &str, message: &str) -> Failure {
    Failure::new(
        REPORT_REFUSED_CODE,
        format!("the server refused {what} of this attempt: {message}"),
        false,
    )
}

/// Tells the server how the attempt stopped: a report, a release, or nothing if its lease is
/// lost. A report offers this attempt's slot for the execution's next task unless `draining`
/// has fired; the task the server leased to the worker in reply is returned, to run next.
pub(super) async fn finish(
    api: &dyn WorkerApi,
    lease: &Lease,
    batcher: Batcher,
    stop: Stop,
    draining: &CancellationToken,
    workspace: Option<String>,
) -> Option<Assignment> {
    let mut sender = Sender {
        api,
        lease,
        batcher,
        give_up: None,
        workspace,
    };
    match stop {
        Stop::LeaseLost => None,
        Stop::Drained => {
            sender.give_up = Some(Instant::now() + super::RELEASE_PATIENCE);
            sender.release().await;
            None
        }
        stop => {
            let outcome = stop
                .outcome()
                .expect("only a release or a lost lease has none");
            sender.report(outcome, draining).await
        }
    }
}

/// Sends an attempt's last messages.
struct Sender<'a> {
    api: &'a dyn WorkerApi,
    lease: &'a Lease,
    batcher: Batcher,
    /// The directory the attempt worked in, recorded with it.
    workspace: Option<String>,
    /// When to stop trying a server that does not answer; `None` tries until the lease is lost
    /// (once it expires, the server times the attempt out and says so).
    give_up: Option<Instant>,
}

impl Sender<'_> {
    /// Reports `outcome` with the output still queued; returns the next task if the server
    /// leased one to this worker in reply.
    async fn report(
        &mut self,
        outcome: ActivityOutcome,
        draining: &CancellationToken,
    ) -> Option<Assignment> {
        let mut outcome = within_limit(outcome);
        match self.flush(outcome.encoded_len()).await {
            Ok(()) => {}
            Err(WorkerApiError::Refused(message)) => {
                // The rest of the output is dropped with it: the attempt has failed anyway.
                tracing::warn!(%message, "progress report refused; ending the attempt");
                self.batcher.take_all();
                outcome = failed(refused("a progress report", &message));
            }
            Err(error) => {
                tracing::warn!(%error, "could not send the attempt's last output");
                return None;
            }
        }
        let first_chunk = Some(self.batcher.first_chunk());
        let (chunks, checkpoint) = self.batcher.take_all();
        if let ActivityOutcome::Failed {
            checkpoint: slot, ..
        } = &mut outcome
        {
            *slot = checkpoint;
        }
        let report = Report {
            lease: self.lease.clone(),
            first_chunk,
            chunks,
            outcome,
            accept_next: !draining.is_cancelled(),
            workspace: self.workspace.clone(),
        };
        let message = match self.retrying(|| self.api.report(&report)).await {
            Ok(next) => {
                crate::telemetry::metrics::output_sent(
                    report.chunks.len(),
                    report
                        .chunks
                        .iter()
                        .map(crate::contract::ChunkIn::encoded_len)
                        .sum(),
                );
                return next;
            }
            Err(WorkerApiError::Refused(message)) => message,
            Err(error) => {
                tracing::warn!(%error, "report not delivered");
                return None;
            }
        };
        tracing::warn!(%message, "report refused");
        let already_refused = matches!(&report.outcome, ActivityOutcome::Failed { failure, .. } if failure.code == REPORT_REFUSED_CODE);
        // A refused failure report is sent once more only when its chunks may be why (output
        // past the execution's limit): without them it is taken, instead of the attempt
        // waiting out its lease to be retried.
        if already_refused && report.chunks.is_empty() {
            return None;
        }
        // End the attempt rather than leave it running until its lease expires; the output
        // of the refused report is dropped with it.
        let fallback = Report {
            lease: self.lease.clone(),
            first_chunk,
            chunks: Vec::new(),
            outcome: failed(refused("the report", &message)),
            accept_next: false,
            workspace: self.workspace.clone(),
        };
        if let Err(error) = self.retrying(|| self.api.report(&fallback)).await {
            tracing::warn!(%error, "failure report not delivered either");
        }
        None
    }

    /// Hands the attempt back with its output and newest checkpoint.
    async fn release(&mut self) {
        if let Err(error) = self.flush(0).await {
            tracing::warn!(%error, "could not send the attempt's last output before its release");
            return;
        }
        let (chunks, checkpoint) = self.batcher.take_all();
        let release = Release {
            lease: self.lease.clone(),
            chunks,
            checkpoint,
        };
        match self.retrying(|| self.api.release(&release)).await {
            Ok(()) => tracing::info!("attempt released"),
            Err(error) => tracing::warn!(%error, "release not delivered"),
        }
    }

    /// Sends progress batches until what is left fits in one message beside `reserve` bytes.
    async fn flush(&mut self, reserve: usize) -> Result<(), WorkerApiError> {
        while !self.batcher.fits_with(reserve) {
            let batch = self.batcher.next_batch();
            let progress = Progress {
                lease: self.lease.clone(),
                first_chunk: Some(batch.first_chunk),
                chunks: batch.chunks.clone(),
                checkpoint: batch.checkpoint.clone(),
                workspace: self.workspace.clone(),
                asks: Vec::new(),
                awaiting: false,
            };
            // A cancellation requested now changes nothing: the runtime has stopped.
            match self.retrying(|| self.api.progress(&progress)).await {
                Ok(_) => self.batcher.acknowledge(&batch),
                Err(error) => {
                    self.batcher.discard(&batch);
                    return Err(error);
                }
            }
        }
        Ok(())
    }

    /// Makes `call`, again while the server is unavailable, with back-off, until `give_up`.
    async fn retrying<T, F>(&self, call: impl Fn() -> F) -> Result<T, WorkerApiError>
    where
        F: Future<Output = Result<T, WorkerApiError>>,
    {
        let mut delay = Duration::from_millis(50);
        loop {
            match call().await {
                Err(WorkerApiError::Unavailable(message))
                    if self.give_up.is_none_or(|t| Instant::now() + delay < t) =>
                {
                    tracing::warn!(%message, ?delay, "call failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                other => return other,
            }
        }
    }
}

fn failed(failure: Failure) -> ActivityOutcome {
    ActivityOutcome::Failed {
        failure,
        retry_after_ms: None,
        checkpoint: None,
    }
}

/// `outcome`, or the failure it becomes when it is too large for any report.
fn within_limit(outcome: ActivityOutcome) -> ActivityOutcome {
    let bytes = outcome.encoded_len();
    if bytes <= MAX_REPORT_BYTES && outcome.largest_document() <= MAX_DOCUMENT_BYTES {
        return outcome;
    }
    let what = match outcome {
        ActivityOutcome::Completed { .. } => "a result (with its checkpoint)",
        _ => "a failure",
    };
    failed(too_large(what, bytes))
}
