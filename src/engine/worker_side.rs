//! What workers call: claim tasks, report progress, report how an attempt ended.

use tokio_util::sync::CancellationToken;

use super::apply::{Applied, ApplyError, Plan};
use super::commands::EagerOffer;
use super::limits::{check_usage, output_limit};
use super::notify::{PollStep, Reservation, Wake};
use super::{Engine, EngineError};
use crate::contract::{
    ActivityOutcome, Assignment, ChunkIn, PollRequest, Progress, ProgressReply, Release, Report,
};
use crate::domain::{HistoryEvent, Lease, Turn, WorkerPolicy};
use crate::machine::ActivityPhase;
use crate::store::{
    ClaimRequest, Fence, NewChunk, ProgressRecord, ReleaseOutcome, ReleaseRecord, StoreError,
    TaskRecord, WorkerUpsert, lease_deadline,
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

pub(super) fn stale(lease: &Lease) -> EngineError {
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
        // An unrestricted policy admits every task: nothing to check, nothing to skip.
        let restrictive = request.policy.as_ref().filter(|p| !p.unrestricted);
        let mut claim = ClaimRequest {
            worker_id: request.worker_id.clone(),
            runtimes: request.runtimes.clone(),
            queue: request.queue.clone(),
            max: request.max_tasks,
            now,
            policy: restrictive.map(WorkerPolicy::fingerprint),
        };
        let persist = self.workers.saw(super::WorkerSeen {
            worker_id: claim.worker_id.clone(),
            runtimes: claim.runtimes.clone(),
            queue: claim.queue.clone(),
            slots,
            last_seen: now,
            policy: request.policy.clone(),
        });
        if persist {
            let upsert = WorkerUpsert {
                worker_id: claim.worker_id.clone(),
                runtimes: claim.runtimes.clone(),
                queue: claim.queue.clone(),
                slots,
                policy: request.policy.clone(),
                now,
            };
            if let Err(e) = self.store.upsert_worker(&upsert).await {
                self.workers.unpersisted(&claim.worker_id);
                return Err(e.into());
            }
        }
        let waiter = self.notifier.register_poll(
            &claim.worker_id,
            &claim.runtimes,
            &claim.queue,
            claim.max,
            restrictive,
            self.orphan_handler(),
        );
        let deadline = tokio::time::Instant::now() + wait;
        let _waiting = crate::telemetry::metrics::long_poll(&request.queue);
        loop {
            waiter.arm();
            claim.now = self.clock.now_ms();
            if let Some(policy) = restrictive {
                self.refuse_unadmitted(&claim, policy).await?;
            }
            let mut tasks = self.store.claim_tasks(&claim).await?;
            if let Some(policy) = restrictive {
                tasks = self.admitted(&claim, policy, tasks).await?;
            }
            if !tasks.is_empty() {
                let assignments = self.assignments(tasks).await;
                if assignments.is_empty() {
                    continue;
                }
                return Ok(assignments);
            }
            let mut step = waiter.sleep();
            loop {
                match step {
                    PollStep::Claim => break,
                    PollStep::Handed(assignment) => {
                        return Ok(vec![self.resolved(*assignment).await?]);
                    }
                    // A start is committing a task leased to this poll: never cut it off, so
                    // the hand-over (or its undoing) always finds the poll.
                    PollStep::Reserved => waiter.woken().await,
                    PollStep::Wait => {
                        let timed_out = tokio::select! {
                            _ = waiter.woken() => false,
                            _ = tokio::time::sleep_until(deadline) => true,
                            _ = stop.cancelled() => true,
                        };
                        if timed_out {
                            match waiter.after_wake() {
                                PollStep::Handed(assignment) => {
                                    return Ok(vec![self.resolved(*assignment).await?]);
                                }
                                PollStep::Reserved => {
                                    step = PollStep::Reserved;
                                    continue;
                                }
                                _ => return Ok(Vec::new()),
                            }
                        }
                    }
                }
                step = waiter.after_wake();
            }
        }
    }

    /// The assignments of claimed tasks; a task whose turn cannot be read would fail this poll,
    /// and every later one, so its execution is quarantined and the others go out.
    async fn assignments(&self, tasks: Vec<TaskRecord>) -> Vec<Assignment> {
        // No execution watcher is woken: a claim adds no output and changes no status a
        // follower reports (it sends chunks, waits and the close), so waking one cost a read.
        self.notifier.deadline_written(lease_deadline(&tasks));
        let mut assignments = Vec::with_capacity(tasks.len());
        for task in tasks {
            let (id, activity) = (task.execution_id, task.activity_id.clone());
            match assignment(task) {
                Ok(a) => match self.resolved(a).await {
                    Ok(a) => assignments.push(a),
                    // A stored checkpoint that cannot be read back is as corrupt as the turn.
                    Err(EngineError::Internal(why)) => {
                        self.quarantine(id, &why).await;
                    }
                    // Not handed out: its lease expires and the attempt is retried.
                    Err(e) => {
                        tracing::warn!(execution = %id, error = %e, "could not read a claimed task's checkpoint");
                    }
                },
                Err(e) => {
                    let why = format!("task {activity} has an unreadable turn: {e}");
                    self.quarantine(id, &why).await;
                }
            }
        }
        assignments
    }

    /// What becomes of a task a start leased to a poll that left before returning it: it is
    /// released at once, so another worker claims it instead of waiting out its lease.
    fn orphan_handler(&self) -> Box<dyn FnOnce(Assignment) + Send + Sync> {
        let store = self.store.clone();
        let notifier = self.notifier.clone();
        let now = self.clock.now_ms();
        Box::new(move |assignment: Assignment| {
            let record = ReleaseRecord {
                lease: assignment.lease,
                chunks: Vec::new(),
                checkpoint: None,
                objects: Vec::new(),
                now,
                // Hands back no chunks: no output limit to hold them to.
                max_output_bytes: u64::MAX,
            };
            // Dropped outside a runtime only at process exit, when the lease may expire instead.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    match store.release_task(&record).await {
                        Ok(Some(_)) => notifier.task_ready(Wake::Any),
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, execution = %record.lease.execution_id,
                            "could not release a task its poll left behind; its lease will expire")
                        }
                    }
                });
            }
        })
    }

    /// Gives the task a start leased to `reservation` to its poll; when the poll has gone, the
    /// lease is released at once.
    pub(crate) async fn hand_over(
        &self,
        reservation: Reservation,
        assignment: Option<Box<Assignment>>,
    ) {
        let Some(assignment) = assignment else {
            // Nothing was leased (a duplicate start, or no task scheduled): the poll claims.
            drop(reservation);
            return;
        };
        if let Err(assignment) = reservation.hand(assignment) {
            let release = Release {
                lease: assignment.lease,
                chunks: Vec::new(),
                checkpoint: None,
            };
            if let Err(e) = self.release(release).await {
                tracing::warn!(error = %e, "could not release a task whose poll left; its lease will expire");
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
            workspace,
            asks,
            awaiting,
        } = progress;
        let lease = &lease;
        let has_chunks = !chunks.is_empty();
        let encoded = self.checkpoints.encode(lease.execution_id, checkpoint);
        let record = ProgressRecord {
            lease: lease.clone(),
            first_chunk,
            chunks: tag(lease, chunks),
            checkpoint: encoded.value.clone(),
            objects: encoded.objects.clone(),
            workspace,
            now: self.clock.now_ms(),
            max_output_bytes: self.max_output_bytes(),
        };
        let outcome = match self.store.record_progress(&record).await {
            Ok(outcome) => outcome.ok_or_else(|| stale(lease))?,
            Err(e) => return Err(output_limit(e)),
        };
        self.checkpoints.committed(lease.execution_id, &encoded);
        if has_chunks {
            self.notifier.execution_changed(lease.execution_id);
            if let Some(parent) = outcome.parent_id {
                self.notifier.execution_changed(parent);
            }
        }
        Ok(ProgressReply {
            cancel_requested: outcome.cancel_requested,
            decisions: self.asked(lease, asks, awaiting).await?,
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
        let encoded = self.checkpoints.encode(lease.execution_id, checkpoint);
        let record = ReleaseRecord {
            lease: lease.clone(),
            chunks: tag(lease, chunks.clone()),
            checkpoint: encoded.value.clone(),
            objects: encoded.objects.clone(),
            now: self.clock.now_ms(),
            max_output_bytes: self.max_output_bytes(),
        };
        match self
            .store
            .release_task(&record)
            .await
            .map_err(output_limit)?
        {
            None => Err(stale(lease)),
            Some(ReleaseOutcome::Released) => {
                self.checkpoints.committed(lease.execution_id, &encoded);
                tracing::info!(execution = %lease.execution_id, activity = %lease.activity_id, attempt = lease.attempt, "attempt released");
                self.notifier.task_ready(Wake::Any);
                self.notifier.execution_changed(lease.execution_id);
                Ok(())
            }
            Some(ReleaseOutcome::CancelRequested) => self
                .report(Report {
                    lease: lease.clone(),
                    first_chunk: None,
                    chunks,
                    outcome: ActivityOutcome::Canceled { abandoned: false },
                    accept_next: false,
                    workspace: None,
                })
                .await
                .map(|_| ()),
        }
    }

    /// Records how an attempt ended, with its last output, in one transition. When the report
    /// accepts it and the transition schedules the execution's next turn, that task is leased to
    /// the reporting worker in the same transition and returned (eager dispatch): the worker
    /// runs it without a poll, and nothing else can claim it.
    pub async fn report(&self, report: Report) -> Result<Option<Assignment>, EngineError> {
        let Report {
            lease,
            first_chunk,
            chunks,
            outcome,
            accept_next,
            workspace,
        } = report;
        let lease = &lease;
        let (task, output_bytes) = self
            .store
            .get_task_for_report(lease.execution_id, &lease.activity_id)
            .await?
            .filter(|(t, _)| {
                t.attempt == lease.attempt
                    && t.lease_token.as_deref() == Some(lease.lease_token.as_str())
            })
            .ok_or_else(|| stale(lease))?;
        // A report that names no directory (a release that found cancellation) records the one
        // its progress did.
        let workspace = workspace.or_else(|| task.workspace.clone());
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
        self.check_report_output(output_bytes, &chunks)?;
        // The outcome's checkpoint is encoded once, whatever the apply loop recomputes.
        let encoded = self.checkpoints.encode(
            lease.execution_id,
            match &outcome {
                ActivityOutcome::Completed { checkpoint, .. }
                | ActivityOutcome::Failed { checkpoint, .. } => checkpoint.clone(),
                ActivityOutcome::Canceled { .. } => None,
            },
        );
        // Only a completed turn schedules another; the worker serves this task's runtime and
        // queue, which are those of every task of the execution.
        let eager = match (&outcome, &task.lease_owner) {
            (ActivityOutcome::Completed { .. }, Some(owner)) if accept_next => {
                Some(EagerOffer::new(
                    owner.clone(),
                    vec![task.runtime.clone()],
                    task.queue.clone(),
                ))
            }
            _ => None,
        };
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
                    workspace: workspace.clone(),
                };
                let (ended, checkpoint) = match &outcome {
                    ActivityOutcome::Completed { output, usage, .. } => (
                        HistoryEvent::ActivityCompleted {
                            activity_id: lease.activity_id.clone(),
                            attempt: lease.attempt,
                            output: output.clone(),
                            usage: *usage,
                            checkpoint: encoded.value.clone(),
                        },
                        None,
                    ),
                    ActivityOutcome::Failed {
                        failure,
                        retry_after_ms,
                        ..
                    } => (
                        super::approvals::failed_or_held(
                            state,
                            lease,
                            failure,
                            *retry_after_ms,
                            now,
                        ),
                        encoded.value.clone(),
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
                    eager: eager.clone(),
                    objects: encoded.objects.clone(),
                }))
            })
            .await;
        match result {
            Ok(Some(Applied::Committed(_, next))) => {
                self.checkpoints.committed(lease.execution_id, &encoded);
                match next {
                    Some(next) => Ok(Some(self.resolved(*next).await?)),
                    None => Ok(None),
                }
            }
            Ok(_) => Ok(None),
            Err(ApplyError::Fenced) => Err(stale(lease)),
            Err(ApplyError::Conflict) => Err(EngineError::Internal(
                "conflict escaped the apply loop".into(),
            )),
            Err(ApplyError::Engine(e) | ApplyError::Final(e)) => Err(e),
        }
    }
}
