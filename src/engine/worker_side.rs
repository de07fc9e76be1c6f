//! What workers call: claim tasks, report progress, hand an attempt back. How an attempt ended is
//! recorded in `report.rs`.

use tokio_util::sync::CancellationToken;

use super::limits::output_limit;
use super::notify::{PollStep, Reservation, Wake};
use super::{Engine, EngineError};
use crate::contract::{
    ActivityOutcome, Assignment, ChunkIn, PollRequest, Progress, ProgressReply, Release, Report,
};
use crate::domain::{Lease, Turn, WorkerPolicy};
use crate::store::{
    ClaimRequest, NewChunk, ProgressRecord, ReleaseOutcome, ReleaseRecord, TaskRecord,
    WorkerUpsert, lease_deadline,
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

pub(super) fn tag(lease: &Lease, chunks: Vec<ChunkIn>) -> Vec<NewChunk> {
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
            self.remember_claimed(&task);
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

    /// Remembers a lease a poll through this engine claimed, so its report reads no task row.
    fn remember_claimed(&self, task: &TaskRecord) {
        if let (Some(token), Some(owner), Some(leased_at)) =
            (&task.lease_token, &task.lease_owner, task.leased_at)
        {
            let lease = Lease {
                execution_id: task.execution_id,
                activity_id: task.activity_id.clone(),
                attempt: task.attempt,
                lease_token: token.clone(),
            };
            let known = super::leases::KnownTask {
                runtime: task.runtime.clone(),
                queue: task.queue.clone(),
                owner: owner.clone(),
                leased_at,
                chunks_sent: task.chunks_sent,
                workspace: task.workspace.clone(),
            };
            self.leases.granted(lease, known);
        }
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
            self.release_undelivered(assignment.lease, "its poll left")
                .await;
        }
    }

    /// Releases a task leased to a worker that never got it (`why`), so another takes the same
    /// attempt at once instead of after its lease.
    pub(crate) async fn release_undelivered(&self, lease: Lease, why: &str) {
        if let Err(e) = self.release(Release::unrun(lease)).await {
            tracing::warn!(error = %e, "could not release a task whose worker never got it ({why}); its lease will expire");
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
        let named = workspace.clone();
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
        self.leases.progressed(lease, has_chunks, named.as_deref());
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
        self.leases.forget(lease);
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
}
