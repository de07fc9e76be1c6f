//! Routing by worker policy: a worker advertises its policy in its polls, and the engine leases
//! it only tasks whose agent that policy admits ([`WorkerPolicy::admits`], the check the worker
//! applies again before it runs a turn). A task a policy refuses is marked refused by that
//! policy's fingerprint, so claims under it skip the task for good while other workers still
//! take it; `cairn exec get` says which rule keeps a waiting task from every connected worker,
//! and `CreateAgent`/`UpdateAgent` warn when no connected worker would admit an agent.

use serde::Deserialize;
use serde_json::Value;

use super::commands::EagerOffer;
use super::notify::{Reservation, Wake};
use super::{CONNECTED_WITHIN_MS, Engine, EngineError};
use crate::domain::{Refusal, Turn, WorkerPolicy};
use crate::store::{ClaimRequest, ReleaseRecord, TaskRecord};

/// The `runtime_config` of the agent of a stored turn (`Null` when it has none or the turn
/// cannot be read: quarantining such a task is the claim's business).
pub(super) fn runtime_config(task: &TaskRecord) -> Value {
    Turn::deserialize(&task.turn)
        .ok()
        .and_then(|turn| turn.agent.configuration.get("runtime_config").cloned())
        .unwrap_or(Value::Null)
}

impl Engine {
    /// Before a claim under `policy`: marks the tasks the claim would take that the policy
    /// refuses, so the claim passes them by. Others' polls are woken for them.
    pub(super) async fn refuse_unadmitted(
        &self,
        claim: &ClaimRequest,
        policy: &WorkerPolicy,
    ) -> Result<(), EngineError> {
        let Some(fingerprint) = &claim.policy else {
            return Ok(());
        };
        let mut refused = false;
        for task in self.store.claimable_tasks(claim).await? {
            if let Err(refusal) = policy.admits(&task.runtime, &runtime_config(&task)) {
                tracing::info!(execution = %task.execution_id, worker = %claim.worker_id, %refusal, "a worker's policy refuses a task");
                self.store
                    .refuse_task(task.execution_id, &task.activity_id, fingerprint)
                    .await?;
                refused = true;
            }
        }
        if refused {
            self.notifier.task_ready(Wake::Any);
        }
        Ok(())
    }

    /// After a claim under `policy`: the claimed tasks it admits. One it refuses (it became
    /// ready after [`Engine::refuse_unadmitted`] looked) is marked refused and released at once.
    pub(super) async fn admitted(
        &self,
        claim: &ClaimRequest,
        policy: &WorkerPolicy,
        tasks: Vec<TaskRecord>,
    ) -> Result<Vec<TaskRecord>, EngineError> {
        let Some(fingerprint) = &claim.policy else {
            return Ok(tasks);
        };
        let mut admitted = Vec::with_capacity(tasks.len());
        for task in tasks {
            if policy.admits(&task.runtime, &runtime_config(&task)).is_ok() {
                admitted.push(task);
                continue;
            }
            self.store
                .refuse_task(task.execution_id, &task.activity_id, fingerprint)
                .await?;
            let release = ReleaseRecord {
                lease: crate::domain::Lease {
                    execution_id: task.execution_id,
                    activity_id: task.activity_id.clone(),
                    attempt: task.attempt,
                    lease_token: task.lease_token.clone().unwrap_or_default(),
                },
                chunks: Vec::new(),
                checkpoint: None,
                objects: Vec::new(),
                now: self.clock.now_ms(),
                // Hands back no chunks: no output limit to hold them to.
                max_output_bytes: u64::MAX,
            };
            self.store.release_task(&release).await?;
            self.notifier.task_ready(Wake::Any);
        }
        Ok(admitted)
    }

    /// Why no connected worker of `runtime` on `queue` (any queue when `None`) admits an agent
    /// with this `runtime_config`: `None` when one does, or when none of that runtime is
    /// connected (which is said otherwise); else the refusal of each, by worker.
    pub async fn unadmitted(
        &self,
        runtime: &str,
        queue: Option<&str>,
        runtime_config: &Value,
    ) -> Result<Option<String>, EngineError> {
        let since = self.now() - CONNECTED_WITHIN_MS;
        let workers = self.store.list_workers(since).await?;
        let mut refusals: Vec<(String, Refusal)> = Vec::new();
        for worker in workers.iter().filter(|w| {
            w.runtimes.iter().any(|r| r == runtime) && queue.is_none_or(|q| q == w.queue)
        }) {
            match worker
                .policy
                .as_ref()
                .map_or(Ok(()), |p| p.admits(runtime, runtime_config))
            {
                Ok(()) => return Ok(None),
                Err(refusal) => refusals.push((worker.worker_id.clone(), refusal)),
            }
        }
        if refusals.is_empty() {
            return Ok(None);
        }
        let each: Vec<String> = refusals
            .iter()
            .map(|(worker, refusal)| format!("{worker}: {refusal}"))
            .collect();
        Ok(Some(format!(
            "no connected worker's policy admits this agent ({})",
            each.join("; ")
        )))
    }

    /// Leases the first task of a start to a poll waiting on this server, if one sleeps that
    /// takes `runtime` in `queue` and whose policy admits `runtime_config` (eager dispatch).
    pub(super) fn reserve_poll(
        &self,
        runtime: &str,
        queue: &str,
        runtime_config: &serde_json::Value,
    ) -> Option<(Reservation, EagerOffer)> {
        let admits = |p: &WorkerPolicy| p.admits(runtime, runtime_config).is_ok();
        let reservation = self.notifier.reserve_admitted(runtime, queue, &admits)?;
        let offer = EagerOffer::new(
            reservation.worker_id.clone(),
            reservation.runtimes.clone(),
            reservation.queue.clone(),
        );
        Some((reservation, offer))
    }

    /// A worker stopped cleanly: its row goes, so `ListWorkers` no longer shows it.
    pub async fn deregister(&self, worker_id: &str) -> Result<(), EngineError> {
        self.workers.unpersisted(worker_id);
        self.store.delete_worker(worker_id).await?;
        Ok(())
    }
}
