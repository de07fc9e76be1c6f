//! What workers call: claim tasks, report progress, report how an attempt ended.

use tokio_util::sync::CancellationToken;

use super::apply::{ApplyError, Plan};
use super::{Engine, EngineError};
use crate::contract::{
    ActivityOutcome, Assignment, ChunkIn, PollRequest, Progress, ProgressReply, Release, Report,
};
use crate::domain::{HistoryEvent, Lease, Turn, Usage};
use crate::machine::ActivityPhase;
use crate::store::{
    ClaimRequest, Fence, NewChunk, ProgressRecord, ReleaseOutcome, ReleaseRecord, StoreError,
    TaskRecord, WorkerUpsert,
};

fn assignment(task: TaskRecord) -> Result<Assignment, EngineError> {
    let turn: Turn = serde_json::from_value(task.turn).map_err(|e| {
        EngineError::Internal(format!(
            "task {}/{} has an unreadable turn: {e}",
            task.execution_id, task.activity_id
        ))
    })?;
    Ok(Assignment {
        lease: Lease {
            execution_id: task.execution_id,
            activity_id: task.activity_id,
            attempt: task.attempt,
            lease_token: task.lease_token.unwrap_or_default(),
        },
        runtime: task.runtime,
        turn,
        checkpoint: task.checkpoint,
        heartbeat_ms: task.heartbeat_ms,
    })
}

fn tag(lease: &Lease, chunks: Vec<ChunkIn>) -> Vec<NewChunk> {
    chunks
        .into_iter()
        .map(|c| NewChunk {
            source: None,
            activity_id: lease.activity_id.clone(),
            attempt: lease.attempt,
            kind: c.kind,
            data: c.data,
            reused_from: None,
        })
        .collect()
}

/// A reported usage the store can keep and sum: a cost that is not a finite, non-negative number
/// would make every later transition of the execution unreadable or meaningless.
fn check_usage(usage: &Usage) -> Result<(), EngineError> {
    if !usage.cost_usd.is_finite() || usage.cost_usd < 0.0 {
        return Err(EngineError::InvalidArgument(format!(
            "usage.cost_usd is {}; it must be a finite number of US dollars, 0 or more",
            usage.cost_usd
        )));
    }
    Ok(())
}

fn stale(lease: &Lease) -> EngineError {
    EngineError::Stale(format!(
        "attempt {} of {} in execution {} no longer holds its lease",
        lease.attempt, lease.activity_id, lease.execution_id
    ))
}

impl Engine {
    /// Claims up to `request.max_tasks` tasks; when there are none, waits up to `request.wait`
    /// for one, or until `stop` fires (the server is shutting down). A claim in progress is
    /// never cut off, so no task is leased to a worker that is not told about it.
    /// `request.slots` is how many attempts the worker runs at once, for `ListWorkers`.
    pub async fn poll(
        &self,
        request: &PollRequest,
        stop: &CancellationToken,
    ) -> Result<Vec<Assignment>, EngineError> {
        let now = self.clock.now_ms();
        let (slots, wait) = (request.slots, request.wait);
        let mut claim = ClaimRequest {
            worker_id: request.worker_id.clone(),
            runtimes: request.runtimes.clone(),
            queue: request.queue.clone(),
            max: request.max_tasks,
            now,
        };
        let persist = self.workers.saw(super::WorkerSeen {
            worker_id: claim.worker_id.clone(),
            runtimes: claim.runtimes.clone(),
            queue: claim.queue.clone(),
            slots,
            last_seen: now,
        });
        if persist {
            let upsert = WorkerUpsert {
                worker_id: claim.worker_id.clone(),
                runtimes: claim.runtimes.clone(),
                queue: claim.queue.clone(),
                slots,
                now,
            };
            if let Err(e) = self.store.upsert_worker(&upsert).await {
                self.workers.unpersisted(&claim.worker_id);
                return Err(e.into());
            }
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.notifier.tasks().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            claim.now = self.clock.now_ms();
            let tasks = self.store.claim_tasks(&claim).await?;
            if !tasks.is_empty() {
                for task in &tasks {
                    self.notifier.execution_changed(task.execution_id);
                }
                self.notifier.deadline_added();
                let mut assignments = Vec::with_capacity(tasks.len());
                for task in tasks {
                    let (id, activity) = (task.execution_id, task.activity_id.clone());
                    match assignment(task) {
                        Ok(a) => assignments.push(a),
                        // A task whose turn cannot be read would fail this poll, and every
                        // later one: its execution is quarantined and the others go out.
                        Err(e) => {
                            let why = format!("task {activity} has an unreadable turn: {e}");
                            self.quarantine(id, &why).await;
                        }
                    }
                }
                if assignments.is_empty() {
                    continue;
                }
                return Ok(assignments);
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline) => return Ok(Vec::new()),
                _ = stop.cancelled() => return Ok(Vec::new()),
            }
        }
    }

    /// Appends output and a checkpoint for a running attempt and extends its lease. The reply
    /// says whether the attempt must stop. `first_chunk` is the index of `chunks[0]` among the chunks
    /// this lease has sent: a batch sent again (its reply was lost) is not stored twice.
    pub async fn progress(&self, progress: Progress) -> Result<ProgressReply, EngineError> {
        let Progress {
            lease,
            first_chunk,
            chunks,
            checkpoint,
        } = progress;
        let lease = &lease;
        let has_chunks = !chunks.is_empty();
        let record = ProgressRecord {
            lease: lease.clone(),
            first_chunk,
            chunks: tag(lease, chunks),
            checkpoint,
            now: self.clock.now_ms(),
        };
        let outcome = match self.store.record_progress(&record).await {
            Ok(outcome) => outcome.ok_or_else(|| stale(lease))?,
            Err(e @ StoreError::ChunkGap { .. }) => {
                return Err(EngineError::InvalidArgument(e.to_string()));
            }
            Err(e) => return Err(e.into()),
        };
        if has_chunks {
            self.notifier.execution_changed(lease.execution_id);
            if let Some(parent) = outcome.parent_id {
                self.notifier.execution_changed(parent);
            }
        }
        Ok(ProgressReply {
            cancel_requested: outcome.cancel_requested,
        })
    }

    /// Hands a running attempt back (its worker is draining): saves its last output and
    /// checkpoint and makes the same attempt claimable again at once, so another worker resumes
    /// it from the checkpoint instead of waiting for the lease to expire. When cancellation was
    /// requested meanwhile, the attempt is recorded as cancelled instead.
    pub async fn release(&self, release: Release) -> Result<(), EngineError> {
        let Release {
            lease,
            chunks,
            checkpoint,
        } = release;
        let lease = &lease;
        let record = ReleaseRecord {
            lease: lease.clone(),
            chunks: tag(lease, chunks.clone()),
            checkpoint,
            now: self.clock.now_ms(),
        };
        match self.store.release_task(&record).await? {
            None => Err(stale(lease)),
            Some(ReleaseOutcome::Released) => {
                tracing::info!(execution = %lease.execution_id, activity = %lease.activity_id, attempt = lease.attempt, "attempt released");
                self.notifier.task_ready();
                self.notifier.execution_changed(lease.execution_id);
                Ok(())
            }
            Some(ReleaseOutcome::CancelRequested) => {
                self.report(Report {
                    lease: lease.clone(),
                    first_chunk: None,
                    chunks,
                    outcome: ActivityOutcome::Canceled { abandoned: false },
                })
                .await
            }
        }
    }

    /// Records how an attempt ended, with its last output, in one transition.
    pub async fn report(&self, report: Report) -> Result<(), EngineError> {
        let Report {
            lease,
            first_chunk,
            chunks,
            outcome,
        } = report;
        let lease = &lease;
        let task = self
            .store
            .get_task(lease.execution_id, &lease.activity_id)
            .await?
            .filter(|t| {
                t.attempt == lease.attempt
                    && t.lease_token.as_deref() == Some(lease.lease_token.as_str())
            })
            .ok_or_else(|| stale(lease))?;
        if let ActivityOutcome::Completed { usage, .. } = &outcome {
            check_usage(usage)?;
        }
        if let Some(first) = first_chunk
            && first > task.chunks_sent
        {
            return Err(EngineError::InvalidArgument(
                StoreError::ChunkGap {
                    first,
                    stored: task.chunks_sent,
                }
                .to_string(),
            ));
        }
        let now = self.clock.now_ms();
        // Chunks a progress report already stored (its reply was lost, so the worker sends them
        // again with its last report) are not stored twice. Only this lease's worker writes
        // them, and it waits for each reply, so the count cannot move meanwhile.
        let skip = first_chunk.map_or(0, |first| task.chunks_sent.saturating_sub(first) as usize);
        let chunks = tag(lease, chunks.into_iter().skip(skip).collect());
        let result = self
            .apply_with(lease.execution_id, |state| {
                let crate::machine::ExecutionState::Agent(state) = state else {
                    return Err(stale(lease));
                };
                let open = state.activity.as_ref().is_some_and(|a| {
                    a.activity_id == lease.activity_id
                        && a.attempt == lease.attempt
                        && a.phase == ActivityPhase::Scheduled
                });
                if !open {
                    return Err(stale(lease));
                }
                let started = HistoryEvent::ActivityStarted {
                    activity_id: lease.activity_id.clone(),
                    attempt: lease.attempt,
                    worker: task.lease_owner.clone().unwrap_or_default(),
                    started_at: task.leased_at.unwrap_or(now),
                };
                let (ended, checkpoint) = match &outcome {
                    ActivityOutcome::Completed {
                        output,
                        usage,
                        checkpoint,
                    } => (
                        HistoryEvent::ActivityCompleted {
                            activity_id: lease.activity_id.clone(),
                            attempt: lease.attempt,
                            output: output.clone(),
                            usage: *usage,
                            checkpoint: checkpoint.clone(),
                        },
                        None,
                    ),
                    ActivityOutcome::Failed {
                        failure,
                        retry_after_ms,
                        checkpoint,
                    } => (
                        HistoryEvent::ActivityFailed {
                            activity_id: lease.activity_id.clone(),
                            attempt: lease.attempt,
                            failure: failure.clone(),
                            retry_after_ms: *retry_after_ms,
                            at: now,
                        },
                        checkpoint.clone(),
                    ),
                    ActivityOutcome::Canceled { abandoned } => (
                        HistoryEvent::ActivityCanceled {
                            activity_id: lease.activity_id.clone(),
                            attempt: lease.attempt,
                            abandoned: *abandoned,
                        },
                        None,
                    ),
                };
                Ok(Some(Plan {
                    inputs: vec![started, ended],
                    fences: vec![Fence::Lease {
                        activity_id: lease.activity_id.clone(),
                        attempt: lease.attempt,
                        lease_token: lease.lease_token.clone(),
                    }],
                    chunks: chunks.clone(),
                    checkpoint,
                    consume_timer: None,
                }))
            })
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(ApplyError::Fenced) => Err(stale(lease)),
            Err(ApplyError::Conflict) => Err(EngineError::Internal(
                "conflict escaped the apply loop".into(),
            )),
            Err(ApplyError::Engine(e)) => Err(e),
        }
    }
}
