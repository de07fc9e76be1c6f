//! The sweeper: fires due timers and times out attempts whose deadlines passed. Any number of
//! servers may run one; fences make each timer fire and each timeout apply exactly once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::apply::{ApplyError, Plan};
use super::{Engine, EngineError};
use crate::domain::{HistoryEvent, TimeoutKind};
use crate::store::{Fence, TaskRecord, TaskStatus, TimerKind, TimerRecord};

/// How the sweeper runs.
#[derive(Debug, Clone)]
pub struct SweeperOptions {
    /// The longest it sleeps between looks (deadlines written by other servers are seen at most
    /// this late).
    pub max_sleep: Duration,
    /// How many timers and tasks it handles per look.
    pub batch: u32,
}

impl Default for SweeperOptions {
    fn default() -> Self {
        SweeperOptions {
            max_sleep: Duration::from_millis(500),
            batch: 256,
        }
    }
}

/// Runs the sweep loop of an engine until cancelled.
pub struct Sweeper {
    engine: Arc<Engine>,
    options: SweeperOptions,
}

impl Sweeper {
    /// A sweeper over `engine`.
    pub fn new(engine: Arc<Engine>, options: SweeperOptions) -> Self {
        Sweeper { engine, options }
    }

    /// Sweeps until `shutdown` fires. Errors are logged and retried: a database blip must not
    /// stop timers for good.
    ///
    /// Armed before each sweep's reads, it publishes when it will wake before it sleeps, so a
    /// deadline written meanwhile wakes it only when it is earlier than that (see `notify`).
    pub async fn run(self, shutdown: CancellationToken) {
        let notifier = self.engine.notifier.clone();
        loop {
            notifier.sweeper_reading();
            let next = self.engine.sweep(self.options.batch).await;
            let now = self.engine.now();
            let sleep = match next {
                Ok(next) => {
                    let until = next.map(|at| Duration::from_millis((at - now).max(0) as u64));
                    until
                        .unwrap_or(self.options.max_sleep)
                        .min(self.options.max_sleep)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "sweep failed; retrying");
                    self.options.max_sleep
                }
            };
            let millis = u64::try_from(sleep.as_millis()).unwrap_or(u64::MAX);
            notifier.sweeper_plans(crate::domain::after(now, millis));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(sleep) => {}
                _ = notifier.deadline() => {}
            }
        }
    }
}

impl Engine {
    /// Fires due timers and applies passed deadlines once; returns the next deadline, or `None`
    /// when some row failed (the caller looks again after its usual pause, not at once).
    ///
    /// Run by the sweeper loop after [`Notifier::sweeper_reading`](super::Notifier::sweeper_reading): right
    /// before it reads the next deadline it drops a pending wake-up, which that read covers (so
    /// run it from one sweeper per engine).
    ///
    /// Each timer and each expired task is handled on its own: an error on one is logged (once
    /// while it keeps failing, with its id) and the others proceed, so one bad row cannot stop
    /// every other timeout.
    pub async fn sweep(&self, batch: u32) -> Result<Option<i64>, EngineError> {
        let now = self.clock.now_ms();
        let mut failing = HashMap::new();
        for timer in self.store.due_timers(now, batch).await? {
            if let Err(e) = self.fire_timer(&timer).await {
                let key = format!(
                    "timer {} of execution {}",
                    timer.timer_id, timer.execution_id
                );
                failing.insert(key, e.to_string());
            }
        }
        for task in self.store.expired_tasks(now, batch).await? {
            if let Err(e) = self.time_out(&task, now).await {
                let key = format!(
                    "attempt {} of {} in execution {}",
                    task.attempt, task.activity_id, task.execution_id
                );
                failing.insert(key, e.to_string());
            }
        }
        let failed = !failing.is_empty();
        self.note_sweep_failures(failing);
        if failed {
            return Ok(None);
        }
        self.notifier.sweeper_reads_next_deadline();
        Ok(self.store.next_deadline().await?)
    }

    /// Logs the rows that failed in this sweep and not in the one before, so a row that keeps
    /// failing is logged once rather than at every look; a row that recovers and fails again is
    /// logged again. Only the last sweep's failures are kept, so this stays small.
    fn note_sweep_failures(&self, failing: HashMap<String, String>) {
        let mut last = self
            .sweep_failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (row, error) in &failing {
            if !last.contains(row) {
                tracing::warn!(%row, %error, "sweep could not apply a timer or timeout; the other rows proceed");
            }
        }
        *last = failing.into_keys().collect();
    }

    async fn fire_timer(&self, timer: &TimerRecord) -> Result<(), EngineError> {
        if matches!(
            timer.kind,
            TimerKind::Inbox | TimerKind::IdleTimeout | TimerKind::ExecutionTimeout
        ) {
            return self.deliver(timer).await;
        }
        let result = self
            .apply_with(timer.execution_id, |_| {
                Ok(Some(Plan {
                    inputs: vec![HistoryEvent::TimerFired {
                        timer_id: timer.timer_id.clone(),
                    }],
                    fences: vec![Fence::Timer {
                        timer_id: timer.timer_id.clone(),
                    }],
                    ..Default::default()
                }))
            })
            .await;
        settle(result)
    }

    /// Delivers an input another execution sent (a child's close to its parent, a parent's
    /// cancel to its child), exactly once: the inbox row is the fence and is deleted with it.
    async fn deliver(&self, timer: &TimerRecord) -> Result<(), EngineError> {
        let input: HistoryEvent = match HistoryEvent::deserialize(&timer.payload) {
            Ok(input) => input,
            Err(e) => {
                // An input nobody can read can never be delivered: it is dropped (once, logged
                // with its ids) rather than retried at every sweep.
                tracing::error!(execution = %timer.execution_id, timer = %timer.timer_id, error = %e, "dropped an inbox row whose input cannot be read");
                self.store
                    .delete_timer(timer.execution_id, &timer.timer_id)
                    .await?;
                return Ok(());
            }
        };
        let delivered = match input {
            // A cancel goes through `cancel`, which also stops an attempt nobody claimed yet; it is
            // idempotent, so a crash before the row is deleted only repeats a no-op.
            HistoryEvent::CancelRequested { reason } => {
                match self.cancel(timer.execution_id, reason).await {
                    Ok(_)
                    | Err(EngineError::FailedPrecondition(_))
                    | Err(EngineError::NotFound(_)) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            input => settle(
                self.apply_with(timer.execution_id, |_| {
                    Ok(Some(Plan {
                        inputs: vec![input.clone()],
                        fences: vec![Fence::Timer {
                            timer_id: timer.timer_id.clone(),
                        }],
                        consume_timer: Some(timer.timer_id.clone()),
                        ..Default::default()
                    }))
                })
                .await,
            ),
        };
        delivered?;
        // Gone already when the transition consumed it; still here when the receiver could not
        // take the input (it closed meanwhile), which must not be retried forever.
        self.store
            .delete_timer(timer.execution_id, &timer.timer_id)
            .await?;
        Ok(())
    }

    async fn time_out(&self, task: &TaskRecord, now: i64) -> Result<(), EngineError> {
        let (kind, fence) = if task.status == TaskStatus::Ready {
            (
                TimeoutKind::ScheduleToStart,
                Fence::Unclaimed {
                    activity_id: task.activity_id.clone(),
                    attempt: task.attempt,
                },
            )
        } else {
            let kind = if task.attempt_deadline.is_some_and(|d| d <= now) {
                TimeoutKind::StartToClose
            } else {
                TimeoutKind::Heartbeat
            };
            let fence = Fence::Lease {
                activity_id: task.activity_id.clone(),
                attempt: task.attempt,
                lease_token: task.lease_token.clone().unwrap_or_default(),
            };
            (kind, fence)
        };
        let mut inputs = Vec::new();
        if task.status == TaskStatus::Leased {
            inputs.push(HistoryEvent::ActivityStarted {
                activity_id: task.activity_id.clone(),
                attempt: task.attempt,
                worker: task.lease_owner.clone().unwrap_or_default(),
                started_at: task.leased_at.unwrap_or(now),
                workspace: task.workspace.clone(),
            });
        }
        inputs.push(HistoryEvent::ActivityTimedOut {
            activity_id: task.activity_id.clone(),
            attempt: task.attempt,
            kind,
            at: now,
        });
        tracing::info!(execution = %task.execution_id, activity = %task.activity_id, attempt = task.attempt, ?kind, "attempt timed out");
        let result = self
            .apply_with(task.execution_id, |_| {
                Ok(Some(Plan {
                    inputs: inputs.clone(),
                    fences: vec![fence.clone()],
                    ..Default::default()
                }))
            })
            .await;
        settle(result)
    }
}

/// A fence that failed means another server (or the worker itself) got there first: fine.
fn settle<T>(result: Result<T, ApplyError>) -> Result<(), EngineError> {
    match result {
        Ok(_) | Err(ApplyError::Fenced) | Err(ApplyError::Conflict) => Ok(()),
        Err(ApplyError::Engine(EngineError::FailedPrecondition(message))) => {
            // The execution moved past this timer or attempt (e.g. it closed): nothing to do.
            tracing::debug!(%message, "sweep found nothing to apply");
            Ok(())
        }
        Err(ApplyError::Engine(e) | ApplyError::Final(e)) => Err(e),
    }
}
