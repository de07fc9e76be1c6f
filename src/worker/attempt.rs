//! One attempt on one worker: run the runtime, stream its output in batches while it runs, and
//! stop it when the server asks, the worker drains, or its output cannot be stored. What happens
//! after it stops (a report, a release, or nothing) is [`super::finish`].

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::approve::WorkerApprover;
use super::batch::Batcher;
use super::cadence::{Cadence, heartbeat_interval};
use super::finish::{self, refused};
use super::stop::{Ended, Stop, Stopping};
use super::{WorkerOptions, WorkerStats};
use crate::contract::{
    ActivityOutcome, Assignment, Lease, MAX_BATCH_BYTES, MAX_BATCH_CHUNKS, Progress, Release,
    Report, WorkerApi, WorkerApiError,
};
use crate::domain::Failure;
use crate::runtime::{self, AttemptInfo, RuntimeError, TurnIo, TurnOutput, Workspace};

/// Runs one attempt to its end, in a span naming it, and then each next task the server leases
/// to this worker in reply to the report (eager dispatch), on the same slot. When `release`
/// fires first (the worker is draining), the runtime is stopped and the attempt is released
/// instead of reported. Each attempt's span is a child of the span that
/// started the execution (its `traceparent` comes with the turn), so every attempt joins one
/// trace. Once `draining` fires, reports accept no next task, and one that was
/// leased already is released at once.
pub(super) async fn run(
    api: Arc<dyn WorkerApi>,
    options: &WorkerOptions,
    assignment: Assignment,
    release: CancellationToken,
    draining: CancellationToken,
    stats: &WorkerStats,
) {
    use tracing::Instrument;
    let mut next = Some(assignment);
    while let Some(assignment) = next.take() {
        let lease = &assignment.lease;
        let span = tracing::info_span!("attempt", execution_id = %lease.execution_id, activity_id = %lease.activity_id, attempt = lease.attempt, runtime = %assignment.runtime);
        let running = crate::telemetry::metrics::attempt_running(&assignment.runtime);
        if let Some(traceparent) = &assignment.turn.traceparent {
            crate::telemetry::trace::set_parent(&span, traceparent);
        }
        next = run_attempt(api.as_ref(), options, assignment, &release, &draining)
            .instrument(span)
            .await;
        drop(running);
        let Some(assignment) = &next else { break };
        stats.eager_tasks.fetch_add(1, Ordering::Relaxed);
        if draining.is_cancelled() {
            hand_back(api.as_ref(), assignment).await;
            break;
        }
    }
}

/// Reports an attempt failed before its runtime started.
async fn fail_at_once(api: &dyn WorkerApi, lease: Lease, failure: Failure) {
    let report = Report {
        lease,
        first_chunk: Some(0),
        chunks: Vec::new(),
        outcome: ActivityOutcome::Failed {
            failure,
            retry_after_ms: None,
            checkpoint: None,
        },
        accept_next: false,
        workspace: None,
    };
    if let Err(error) = api.report(&report).await {
        tracing::warn!(%error, "could not report an attempt that failed before it started");
    }
}

/// Releases a task leased to this worker that it will not run (it is draining, or a poll got it
/// with no slot left for it), so another worker takes it at once.
pub(super) async fn hand_back(api: &dyn WorkerApi, assignment: &Assignment) {
    let release = Release::unrun(assignment.lease.clone());
    if let Err(error) = api.release(&release).await {
        tracing::warn!(%error, "could not hand back a task; its lease will expire");
    }
}

async fn run_attempt(
    api: &dyn WorkerApi,
    options: &WorkerOptions,
    assignment: Assignment,
    release: &CancellationToken,
    draining: &CancellationToken,
) -> Option<Assignment> {
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
        fail_at_once(api, lease, failure).await;
        return None;
    };
    // The server routes by the policy this worker advertised; this is the same check, plus
    // what only the worker sees (a `cwd` through symbolic links). A refusal will not change on
    // another attempt here, so it is final, and names the rule.
    if let Err(refusal) =
        runtime::policy::admits_here(&options.policy, &assignment.runtime, &assignment.turn.agent)
    {
        let failure = Failure {
            details: serde_json::json!({"rule": refusal.rule}),
            ..Failure::new(
                "policy_refused",
                format!("worker {}: {refusal}", options.worker_id),
                false,
            )
        };
        fail_at_once(api, lease, failure).await;
        return None;
    }
    let cancel = CancellationToken::new();
    let info = AttemptInfo {
        execution_id: lease.execution_id,
        activity_id: lease.activity_id.clone(),
        attempt: lease.attempt,
    };
    let approver = Arc::new(WorkerApprover::new(options.approval_hold));
    let (io, rx) = TurnIo::new(info, cancel.clone(), assignment.checkpoint.clone());
    let io = io.with_approver(approver.clone());
    let workspace = io.workspace();
    let turn = assignment.turn.clone();
    // The runtime's spans (model and tool calls) are children of the attempt's.
    let handle = tokio::spawn(tracing::Instrument::instrument(
        async move { runtime.run(turn, io).await },
        tracing::Span::current(),
    ));
    let mut running = Running {
        api,
        lease,
        batcher: Batcher::new(
            options.max_batch.min(MAX_BATCH_CHUNKS),
            options.max_batch_bytes.min(MAX_BATCH_BYTES),
        )
        .with_limits(options.max_chunk_bytes, options.max_checkpoint_bytes),
        cadence: Cadence::new(
            options.flush_interval,
            heartbeat_interval(assignment.heartbeat_ms),
        ),
        cancel,
        stopping: Stopping::No,
        abandon_at: None,
        grace: options.cancel_grace,
        workspace: workspace.clone(),
        workspace_sent: None,
        approver,
    };
    let stop = running.drive(handle, rx, release).await;
    // A runtime that names no directory works in the worker's own (where MCP servers start).
    let workspace = workspace.get().or_else(|| {
        std::env::current_dir()
            .ok()
            .map(|d| d.display().to_string())
    });
    finish::finish(
        api,
        &running.lease,
        running.batcher,
        stop,
        draining,
        workspace,
    )
    .await
}

/// The lease is gone; the attempt must stop without telling the server anything more.
struct LeaseLost;

/// An attempt while its runtime runs.
struct Running<'a> {
    api: &'a dyn WorkerApi,
    lease: Lease,
    batcher: Batcher,
    cadence: Cadence,
    /// The runtime's token.
    cancel: CancellationToken,
    /// Why the token fired, if it did.
    stopping: Stopping,
    /// When a runtime that ignores its token is abandoned.
    abandon_at: Option<Instant>,
    grace: Duration,
    /// The directory the runtime named, sent with the progress reports until one carrying it is
    /// acknowledged.
    workspace: Workspace,
    /// The directory the server last acknowledged.
    workspace_sent: Option<String>,
    /// The runtime's asks about tool calls, sent with the progress reports.
    approver: Arc<WorkerApprover>,
}

impl Running<'_> {
    /// Streams the runtime's output until it ends, is abandoned, or the lease is lost.
    async fn drive(
        &mut self,
        mut handle: JoinHandle<Result<TurnOutput, RuntimeError>>,
        mut rx: UnboundedReceiver<runtime::Progress>,
        release: &CancellationToken,
    ) -> Stop {
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        loop {
            let send_at = self.cadence.next_send(self.batcher.is_full());
            tokio::select! {
                joined = &mut handle => {
                    self.take_all(&mut rx);
                    let result = joined.unwrap_or_else(|e| Err(RuntimeError::retryable(
                        "runtime_panicked",
                        format!("the runtime crashed: {e}"),
                    )));
                    return Stop::of(Ended::Returned(result), self.stopping.clone());
                }
                Some(progress) = rx.recv() => {
                    self.take(progress);
                    if !(self.batcher.is_full() && self.cadence.may_send_now()) {
                        continue;
                    }
                }
                _ = tokio::time::sleep_until(send_at) => {}
                // An ask goes to the server at once.
                _ = self.approver.wake.notified() => {}
                _ = release.cancelled(), if self.stopping == Stopping::No => {
                    tracing::info!("stopping the attempt to release it");
                    self.stop_runtime(Stopping::Draining);
                    continue;
                }
                _ = tokio::time::sleep_until(self.abandon_at.unwrap_or(far)) => {
                    handle.abort();
                    self.take_all(&mut rx);
                    tracing::warn!(execution = %self.lease.execution_id, "runtime ignored cancellation; abandoned");
                    return Stop::of(Ended::Abandoned, self.stopping.clone());
                }
            }
            self.take_all(&mut rx);
            if let Err(LeaseLost) = self.send().await {
                self.cancel.cancel();
                handle.abort();
                return Stop::LeaseLost;
            }
        }
    }

    fn take(&mut self, progress: runtime::Progress) {
        match self.batcher.take(progress) {
            Ok(()) => self.cadence.output_arrived(),
            Err(failure) => {
                tracing::warn!(message = %failure.message, "output too large; ending the attempt");
                self.stop_runtime(Stopping::Failing(failure));
            }
        }
    }

    fn take_all(&mut self, rx: &mut UnboundedReceiver<runtime::Progress>) {
        while let Ok(progress) = rx.try_recv() {
            self.take(progress);
        }
    }

    /// Fires the runtime's token (once) and records why, unless a stronger reason came first.
    fn stop_runtime(&mut self, reason: Stopping) {
        if self.stopping.yields_to(&reason) {
            self.stopping = reason;
        }
        if !self.cancel.is_cancelled() {
            self.cancel.cancel();
            self.abandon_at = Some(Instant::now() + self.grace);
        }
    }

    /// Sends the next batch, or a heartbeat when nothing waits, and acts on the answer.
    async fn send(&mut self) -> Result<(), LeaseLost> {
        let batch = self.batcher.next_batch();
        let (asks, awaiting) = self.approver.take();
        let progress = Progress {
            lease: self.lease.clone(),
            first_chunk: Some(batch.first_chunk),
            chunks: batch.chunks.clone(),
            checkpoint: batch.checkpoint.clone(),
            // Named once: the task row keeps it for the lease.
            workspace: self
                .workspace
                .get()
                .filter(|w| self.workspace_sent.as_ref() != Some(w)),
            asks,
            awaiting,
        };
        match self.api.progress(&progress).await {
            Ok(reply) => {
                if progress.workspace.is_some() {
                    self.workspace_sent = progress.workspace;
                }
                self.approver.replied(&progress.asks, reply.decisions);
                crate::telemetry::metrics::output_sent(
                    batch.chunks.len(),
                    batch
                        .chunks
                        .iter()
                        .map(crate::contract::ChunkIn::encoded_len)
                        .sum(),
                );
                self.batcher.acknowledge(&batch);
                self.cadence.sent(!self.batcher.is_empty());
                if reply.cancel_requested && self.stopping.yields_to(&Stopping::CancelRequested) {
                    tracing::info!(execution = %self.lease.execution_id, "cancellation requested");
                    self.stop_runtime(Stopping::CancelRequested);
                }
            }
            Err(WorkerApiError::LeaseLost(message)) => {
                tracing::warn!(%message, "lease lost; stopping the attempt");
                return Err(LeaseLost);
            }
            Err(WorkerApiError::Unavailable(message)) => {
                // The batch stays queued, ahead of anything newer, for the next try.
                self.approver.put_back(progress.asks);
                tracing::warn!(%message, "progress report failed; will retry");
                self.cadence.failed();
            }
            Err(WorkerApiError::Refused(message)) => {
                // Sending it again would be refused again: drop it and end the attempt.
                tracing::warn!(%message, "progress report refused; ending the attempt");
                self.batcher.discard(&batch);
                self.cadence.sent(!self.batcher.is_empty());
                self.stop_runtime(Stopping::Failing(refused("a progress report", &message)));
            }
        }
        Ok(())
    }
}
