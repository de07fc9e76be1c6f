//! A worker's report of how an attempt ended: one transition, made from what the engine knows of
//! the attempt's task — remembered when this engine handed the lease out itself (see
//! `leases.rs`), else read — and, when it schedules the next turn, that turn leased to the same worker.

use super::apply::{Applied, ApplyError, Plan};
use super::commands::EagerOffer;
use super::leases::KnownTask;
use super::limits::check_usage;
use super::worker_side::{stale, tag};
use super::{Engine, EngineError};
use crate::contract::{ActivityOutcome, Assignment, Report};
use crate::domain::{HistoryEvent, Millis};
use crate::machine::ActivityPhase;
use crate::store::{Fence, StoreError, TaskRecord};

/// What a report is made from: the task as the engine knows it, and the execution's output total.
/// Remembered facts (no output total) are checked by the commit's fence; a report fenced on them
/// is made again from a read.
struct TaskFacts {
    runtime: String,
    queue: String,
    owner: Option<String>,
    leased_at: Option<Millis>,
    chunks_sent: u64,
    workspace: Option<String>,
    /// The execution's stored output bytes, when read (a remembered task leaves the check of
    /// the output limit to its fence).
    output_bytes: Option<u64>,
}

impl TaskFacts {
    fn from_read(task: TaskRecord, output_bytes: u64) -> TaskFacts {
        TaskFacts {
            runtime: task.runtime,
            queue: task.queue,
            owner: task.lease_owner,
            leased_at: task.leased_at,
            chunks_sent: task.chunks_sent,
            workspace: task.workspace,
            output_bytes: Some(output_bytes),
        }
    }

    fn from_memory(task: KnownTask) -> TaskFacts {
        TaskFacts {
            runtime: task.runtime,
            queue: task.queue,
            owner: Some(task.owner),
            leased_at: Some(task.leased_at),
            chunks_sent: task.chunks_sent,
            workspace: task.workspace,
            output_bytes: None,
        }
    }

    /// Made from memory, not read: the commit's fence checks it.
    fn is_remembered(&self) -> bool {
        self.output_bytes.is_none()
    }
}

/// A report made from remembered facts that no longer hold: make it again from a read.
struct OutOfDate;

impl Engine {
    /// Records how an attempt ended, with its last output, in one transition. When the report
    /// accepts it and the transition schedules the execution's next turn, that task is leased to
    /// the reporting worker in the same transition and returned (eager dispatch): the worker
    /// runs it without a poll, and nothing else can claim it.
    pub async fn report(&self, report: Report) -> Result<Option<Assignment>, EngineError> {
        if let ActivityOutcome::Completed { usage, .. } = &report.outcome {
            check_usage(usage)?;
        }
        let lease = &report.lease;
        if let Some(known) = self.leases.take(lease)
            && let Ok(made) = self
                .report_from(&report, TaskFacts::from_memory(known))
                .await
        {
            return made;
        }
        self.reads
            .tasks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (task, output_bytes) = self
            .store
            .get_task_for_report(lease.execution_id, &lease.activity_id)
            .await?
            .filter(|(t, _)| {
                t.attempt == lease.attempt
                    && t.lease_token.as_deref() == Some(lease.lease_token.as_str())
            })
            .ok_or_else(|| stale(lease))?;
        match self
            .report_from(&report, TaskFacts::from_read(task, output_bytes))
            .await
        {
            Ok(made) => made,
            Err(OutOfDate) => Err(stale(lease)),
        }
    }

    async fn report_from(
        &self,
        report: &Report,
        task: TaskFacts,
    ) -> Result<Result<Option<Assignment>, EngineError>, OutOfDate> {
        let lease = &report.lease;
        // A report that names no directory (a release that found cancellation) records the one
        // its progress did.
        let workspace = report.workspace.clone().or_else(|| task.workspace.clone());
        if let Some(first) = report.first_chunk
            && first > task.chunks_sent
        {
            if task.is_remembered() {
                return Err(OutOfDate); // its progress went through another server
            }
            return Ok(Err(EngineError::InvalidArgument(
                StoreError::ChunkGap {
                    first,
                    stored: task.chunks_sent,
                }
                .to_string(),
            )));
        }
        let now = self.clock.now_ms();
        // Chunks a progress report already stored (its reply was lost, so the worker sends them
        // again with its last report) are not stored twice. Only this lease's worker writes
        // them, and it waits for each reply, so the count cannot move meanwhile.
        let skip = report
            .first_chunk
            .map_or(0, |first| task.chunks_sent.saturating_sub(first) as usize);
        let chunks = tag(lease, report.chunks.iter().skip(skip).cloned().collect());
        // The output limit: checked against the total read, or by the fence of a remembered
        // task (a report over the limit is then fenced, and refused from a read).
        let output_bytes_at_most = match task.output_bytes {
            Some(stored) => {
                if let Err(e) = self.check_report_output(stored, &chunks) {
                    return Ok(Err(e));
                }
                None
            }
            None => {
                let adding = crate::store::chunk_bytes(&chunks).max(0) as u64;
                match self.max_output_bytes().checked_sub(adding) {
                    Some(room) => Some(room),
                    None => return Err(OutOfDate),
                }
            }
        };
        // The outcome's checkpoint is encoded once, whatever the apply loop recomputes.
        let encoded = self.checkpoints.encode(
            lease.execution_id,
            match &report.outcome {
                ActivityOutcome::Completed { checkpoint, .. }
                | ActivityOutcome::Failed { checkpoint, .. } => checkpoint.clone(),
                ActivityOutcome::Canceled { .. } => None,
            },
        );
        // Only a completed turn schedules another; the worker serves this task's runtime and
        // queue, which are those of every task of the execution.
        let eager = match (&report.outcome, &task.owner) {
            (ActivityOutcome::Completed { .. }, Some(owner)) if report.accept_next => {
                Some(EagerOffer::new(
                    owner.clone(),
                    vec![task.runtime.clone()],
                    task.queue.clone(),
                ))
            }
            _ => None,
        };
        let mut fences = vec![Fence::Lease {
            activity_id: lease.activity_id.clone(),
            attempt: lease.attempt,
            lease_token: lease.lease_token.clone(),
        }];
        if let Some(output_bytes_at_most) = output_bytes_at_most {
            fences.push(Fence::TaskAsKnown {
                activity_id: lease.activity_id.clone(),
                chunks_sent: task.chunks_sent,
                workspace: task.workspace.clone(),
                output_bytes_at_most,
            });
        }
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
                    worker: task.owner.clone().unwrap_or_default(),
                    started_at: task.leased_at.unwrap_or(now),
                    workspace: workspace.clone(),
                };
                let (ended, checkpoint) = match &report.outcome {
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
                    fences: fences.clone(),
                    chunks: chunks.clone(),
                    checkpoint,
                    consume_timer: None,
                    eager: eager.clone(),
                    objects: encoded.objects.clone(),
                }))
            })
            .await;
        Ok(match result {
            Ok(Some(Applied::Committed(_, next))) => {
                self.checkpoints.committed(lease.execution_id, &encoded);
                match next {
                    Some(next) => {
                        self.leases
                            .granted(next.assignment.lease.clone(), next.task.clone());
                        self.resolved(next.assignment).await.map(Some)
                    }
                    None => Ok(None),
                }
            }
            Ok(_) => Ok(None),
            Err(ApplyError::Fenced) if task.is_remembered() => return Err(OutOfDate),
            Err(ApplyError::Fenced) => Err(stale(lease)),
            Err(ApplyError::Conflict) => Err(EngineError::Internal(
                "conflict escaped the apply loop".into(),
            )),
            Err(ApplyError::Engine(e) | ApplyError::Final(e)) => Err(e),
        })
    }
}
