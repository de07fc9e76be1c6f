//! One attempt on one worker: run the runtime, stream its progress, report its end.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{WorkerApi, WorkerApiError, WorkerOptions};
use crate::domain::{Failure, Lease};
use crate::engine::{ActivityOutcome, Assignment, ChunkIn};
use crate::runtime::{AttemptInfo, Progress, RuntimeError, TurnIo, TurnOutput};

/// Output waiting to be sent, and the newest checkpoint that covers all of it.
#[derive(Default)]
struct Pending {
    chunks: Vec<ChunkIn>,
    checkpoint: Option<serde_json::Value>,
}

impl Pending {
    fn take(&mut self, progress: Progress) {
        match progress {
            Progress::Chunk {
                kind,
                data,
                checkpoint,
            } => {
                self.chunks.push(ChunkIn { kind, data });
                if checkpoint.is_some() {
                    self.checkpoint = checkpoint;
                }
            }
            Progress::Checkpoint(checkpoint) => self.checkpoint = Some(checkpoint),
        }
    }

    fn drain_from(&mut self, rx: &mut UnboundedReceiver<Progress>) {
        while let Ok(progress) = rx.try_recv() {
            self.take(progress);
        }
    }
}

/// The interval at which a running attempt reports even without output: often enough to keep
/// its lease, and to learn of cancellation within half a second.
fn heartbeat_interval(heartbeat_ms: u64) -> Duration {
    Duration::from_millis((heartbeat_ms / 3).clamp(10, 500))
}

/// Runs one attempt to its end, in a span naming it. Runtime failures become reports. When
/// `release` fires first (the worker is draining), the runtime is stopped and the attempt is
/// released with its last output and checkpoint instead of reported.
pub(super) async fn run(
    api: Arc<dyn WorkerApi>,
    options: &WorkerOptions,
    assignment: Assignment,
    release: CancellationToken,
) {
    use tracing::Instrument;
    let lease = &assignment.lease;
    let span = tracing::info_span!("attempt", execution = %lease.execution_id, activity = %lease.activity_id, attempt = lease.attempt, runtime = %assignment.runtime);
    run_attempt(api, options, assignment.clone(), release)
        .instrument(span)
        .await;
}

async fn run_attempt(
    api: Arc<dyn WorkerApi>,
    options: &WorkerOptions,
    assignment: Assignment,
    release: CancellationToken,
) {
    let lease = assignment.lease.clone();
    let Some(runtime) = options.runtimes.get(&assignment.runtime).cloned() else {
        // The server only hands out tasks of runtimes the worker announced; this is a bug.
        let failure = Failure::new(
            "runtime_unavailable",
            format!(
                "worker {} has no runtime `{}`",
                options.worker_id, assignment.runtime
            ),
            true,
        );
        let outcome = ActivityOutcome::Failed {
            failure,
            retry_after_ms: None,
            checkpoint: None,
        };
        let _ = api.report(&lease, Some(0), Vec::new(), outcome).await;
        return;
    };
    let cancel = CancellationToken::new();
    let info = AttemptInfo {
        execution_id: lease.execution_id,
        activity_id: lease.activity_id.clone(),
        attempt: lease.attempt,
    };
    let (io, mut rx) = TurnIo::new(info, cancel.clone(), assignment.checkpoint.clone());
    let turn = assignment.turn.clone();
    let mut handle = tokio::spawn(async move { runtime.run(turn, io).await });

    let heartbeat = heartbeat_interval(assignment.heartbeat_ms);
    let mut pending = Pending::default();
    // Chunks of this lease the server has acknowledged: the index of the next batch's first.
    let mut sent: u64 = 0;
    let mut last_report = Instant::now();
    let mut first_unsent: Option<Instant> = None;
    let mut abandon_at: Option<Instant> = None;
    // Why the runtime's token fired: the server asked (report Canceled) or the worker is
    // draining (release). A server cancel wins if both happen.
    let mut cancel_requested = false;
    let mut releasing = false;
    let far = Instant::now() + Duration::from_secs(86_400 * 365);

    let result: Result<Result<TurnOutput, RuntimeError>, bool> = loop {
        let flush_at = first_unsent
            .map_or(far, |t| t + options.flush_interval)
            .min(last_report + heartbeat);
        tokio::select! {
            joined = &mut handle => {
                pending.drain_from(&mut rx);
                break match joined {
                    Ok(result) => Ok(result),
                    Err(e) => Ok(Err(RuntimeError::retryable("runtime_panicked", format!("the runtime crashed: {e}")))),
                };
            }
            Some(progress) = rx.recv() => {
                pending.take(progress);
                first_unsent.get_or_insert_with(Instant::now);
                if pending.chunks.len() < options.max_batch {
                    continue;
                }
            }
            _ = tokio::time::sleep_until(flush_at) => {}
            _ = release.cancelled(), if !releasing && !cancel_requested => {
                tracing::info!("stopping the attempt to release it");
                releasing = true;
                cancel.cancel();
                abandon_at = Some(Instant::now() + options.cancel_grace);
                continue;
            }
            _ = tokio::time::sleep_until(abandon_at.unwrap_or(far)) => {
                handle.abort();
                pending.drain_from(&mut rx);
                tracing::warn!(execution = %lease.execution_id, "runtime ignored cancellation; abandoned");
                break Err(true);
            }
        }
        pending.drain_from(&mut rx);
        let chunks = std::mem::take(&mut pending.chunks);
        let checkpoint = pending.checkpoint.take();
        match api
            .progress(&lease, Some(sent), chunks.clone(), checkpoint.clone())
            .await
        {
            Ok(cancel_requested_now) => {
                sent += chunks.len() as u64;
                last_report = Instant::now();
                first_unsent = None;
                if cancel_requested_now && !cancel_requested {
                    tracing::info!(execution = %lease.execution_id, "cancellation requested");
                    cancel_requested = true;
                    if !cancel.is_cancelled() {
                        cancel.cancel();
                        abandon_at = Some(Instant::now() + options.cancel_grace);
                    }
                }
            }
            Err(WorkerApiError::LeaseLost(message)) => {
                tracing::warn!(%message, "lease lost; stopping the attempt");
                cancel.cancel();
                handle.abort();
                return;
            }
            Err(e) => {
                // Keep the output for the next try, ahead of anything newer.
                tracing::warn!(error = %e, "progress report failed; will retry");
                let mut newer = std::mem::take(&mut pending.chunks);
                pending.chunks = chunks;
                pending.chunks.append(&mut newer);
                pending.checkpoint = pending.checkpoint.take().or(checkpoint);
                last_report = Instant::now();
            }
        }
    };

    // Stopped for the drain (not finished, not failed on its own): hand it over.
    let stopped = match &result {
        Err(_) => true,
        Ok(Err(e)) => e.is_canceled() || cancel.is_cancelled(),
        Ok(Ok(_)) => false,
    };
    if releasing && !cancel_requested && stopped {
        release_attempt(api.as_ref(), &lease, pending).await;
        return;
    }
    let outcome = match result {
        Err(abandoned) => ActivityOutcome::Canceled { abandoned },
        Ok(Ok(output)) => ActivityOutcome::Completed {
            output: output.output,
            usage: output.usage,
            checkpoint: output.checkpoint,
        },
        Ok(Err(e)) if e.is_canceled() || cancel.is_cancelled() => {
            ActivityOutcome::Canceled { abandoned: false }
        }
        Ok(Err(e)) => ActivityOutcome::Failed {
            failure: Failure {
                code: e.code,
                message: e.message,
                retryable: e.retryable,
                details: e.details,
            },
            retry_after_ms: e.retry_after.map(|d| d.as_millis() as u64),
            checkpoint: pending.checkpoint.take(),
        },
    };
    report_until_done(api.as_ref(), &lease, sent, pending.chunks, outcome).await;
}

/// Releases the attempt with its unsent output and newest checkpoint, retrying a while when no
/// server answers (the worker is shutting down; past that, the lease expiry hands it over).
async fn release_attempt(api: &dyn WorkerApi, lease: &Lease, mut pending: Pending) {
    let chunks = std::mem::take(&mut pending.chunks);
    let checkpoint = pending.checkpoint.take();
    let mut delay = Duration::from_millis(50);
    let give_up = Instant::now() + super::RELEASE_PATIENCE;
    loop {
        match api.release(lease, chunks.clone(), checkpoint.clone()).await {
            Ok(()) => {
                tracing::info!("attempt released");
                return;
            }
            Err(WorkerApiError::Unavailable(message)) if Instant::now() + delay < give_up => {
                tracing::warn!(%message, ?delay, "release failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                tracing::warn!(error = %e, "release refused");
                return;
            }
        }
    }
}

/// Sends the final report, retrying while the server is unreachable (the lease bounds how long
/// that can matter: once it expires, the server times the attempt out itself).
async fn report_until_done(
    api: &dyn WorkerApi,
    lease: &Lease,
    first_chunk: u64,
    chunks: Vec<ChunkIn>,
    outcome: ActivityOutcome,
) {
    let mut delay = Duration::from_millis(50);
    loop {
        match api
            .report(lease, Some(first_chunk), chunks.clone(), outcome.clone())
            .await
        {
            Ok(()) => return,
            Err(WorkerApiError::Unavailable(message)) => {
                tracing::warn!(%message, ?delay, "report failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                tracing::warn!(error = %e, "report refused");
                return;
            }
        }
    }
}
