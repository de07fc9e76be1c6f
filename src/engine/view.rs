//! The read side of an execution: what a client sees when it looks at one. The engine decodes
//! the stored state by the execution's kind and says what its open activity is doing; the API
//! only converts the view to protobuf.

use uuid::Uuid;

use super::{CONNECTED_WITHIN_MS, Engine, EngineError, execution_state};
use crate::domain::Millis;
use crate::machine::{ActivityPhase, Approval, ExecutionState, WaitingFor};
use crate::store::{ExecutionRecord, TaskRecord, TaskStatus};

/// An execution as clients see it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionView {
    /// The stored row.
    pub record: ExecutionRecord,
    /// What the open activity of an agent execution is doing; `None` when none is open (and for
    /// teams, whose activities belong to their children).
    pub activity: Option<ActivityView>,
    /// The task queue of an agent execution; empty for teams.
    pub queue: String,
    /// Whether it is a conversation (takes messages after its turns).
    pub interactive: bool,
    /// What a `WAITING` execution waits for.
    pub waiting_for: Option<WaitingFor>,
    /// The approvals its current turn asked for, answered or not.
    pub approvals: Vec<Approval>,
    /// How many turns it has completed.
    pub turns: u32,
}

impl ExecutionView {
    fn bare(record: ExecutionRecord) -> ExecutionView {
        ExecutionView {
            record,
            activity: None,
            queue: String::new(),
            interactive: false,
            waiting_for: None,
            approvals: Vec::new(),
            turns: 0,
        }
    }
}

/// The open activity of an agent execution.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityView {
    /// `turn-N`.
    pub activity_id: String,
    /// The current (or last) attempt.
    pub attempt: u32,
    /// Where the attempt stands.
    pub state: ActivityState,
    /// Whether the running attempt was asked to stop.
    pub cancel_requested: bool,
}

/// Where an open activity's attempt stands.
#[derive(Debug, Clone, PartialEq)]
pub enum ActivityState {
    /// Waiting out the retry back-off before the next attempt.
    BackingOff {
        /// How long is left.
        remaining_ms: Millis,
        /// The attempt that comes after it.
        next_attempt: u32,
    },
    /// Leased to a worker.
    Running {
        /// The worker holding the lease.
        worker: String,
    },
    /// Ready for a worker to claim.
    Waiting {
        /// The runtime it needs.
        runtime: String,
        /// The queue it waits on.
        queue: String,
        /// True when no connected worker offers that runtime on that queue, so it waits for
        /// the fleet to change rather than for a free slot. Known only in [`Engine::view`].
        unserved: bool,
        /// Why no connected worker that offers the runtime on the queue takes it: none of
        /// their policies admits the agent (each refusal names its rule). Known only in
        /// [`Engine::view`].
        refused: Option<String>,
    },
    /// Scheduled, with no task row to say more (it is being written or was just taken down).
    Scheduled,
}

impl Engine {
    /// One execution with what its open activity is doing. An open execution whose state cannot
    /// be decoded is quarantined (failed with `corrupt_state`, logged once) and shown as such, so
    /// the reader sees why it stopped; a closed one, whose state nothing reads any more, is shown
    /// from its row without an activity, and the unreadable state is logged.
    pub async fn view(&self, id: Uuid) -> Result<ExecutionView, EngineError> {
        self.view_of(self.execution(id).await?).await
    }

    /// [`Engine::view`] of a row the caller has just read (to check its namespace, say), so it
    /// is not read twice.
    pub async fn view_of(&self, mut record: ExecutionRecord) -> Result<ExecutionView, EngineError> {
        let id = record.id;
        let state = match execution_state(&record) {
            Ok(state) => state,
            Err(e) => {
                if !record.status.is_closed() {
                    self.quarantine(id, &e.to_string()).await;
                    record = self.execution(id).await?;
                }
                tracing::warn!(execution = %id, error = %e, "viewing an execution whose state cannot be read");
                return Ok(ExecutionView::bare(record));
            }
        };
        let open = match &state {
            ExecutionState::Agent(agent) => agent.activity.as_ref(),
            ExecutionState::Team(_) => None,
        };
        let task = match open {
            Some(activity) => self.store.get_task(id, &activity.activity_id).await?,
            None => None,
        };
        let mut view = self.describe(record, &state, task.as_ref());
        // A team shows what its members ask, and waits while one does.
        if let ExecutionState::Team(_) = &state {
            let asked = self.member_approvals(id).await?;
            if asked.iter().any(|(_, a)| a.decision.is_none()) {
                view.waiting_for = Some(WaitingFor::Approval);
            }
            view.approvals = asked.into_iter().map(|(_, a)| a).collect();
        }
        if let Some(ActivityView {
            state:
                ActivityState::Waiting {
                    runtime,
                    queue,
                    unserved,
                    refused,
                },
            ..
        }) = view.activity.as_mut()
        {
            let since = self.now() - CONNECTED_WITHIN_MS;
            let workers = self.store.list_workers(since).await?;
            *unserved = !workers
                .iter()
                .any(|w| &w.queue == queue && w.runtimes.contains(runtime));
            if let Some(task) = &task
                && !*unserved
            {
                let config = super::policy::runtime_config(task);
                *refused = self.unadmitted(runtime, Some(queue), &config).await?;
            }
        }
        Ok(view)
    }

    /// The view of a row already read (a list entry, a closed execution), without the task
    /// lookups of [`Engine::view`]. A row whose state cannot be decoded is shown without its
    /// activity and queue, and logged, so one bad row cannot hide the others of a list.
    pub fn summary(&self, record: ExecutionRecord) -> ExecutionView {
        match execution_state(&record) {
            Ok(state) => self.describe(record, &state, None),
            Err(e) => {
                tracing::warn!(execution = %record.id, error = %e, "listing an execution whose state cannot be read");
                ExecutionView::bare(record)
            }
        }
    }

    fn describe(
        &self,
        record: ExecutionRecord,
        state: &ExecutionState,
        task: Option<&TaskRecord>,
    ) -> ExecutionView {
        let ExecutionState::Agent(agent) = state else {
            return ExecutionView::bare(record);
        };
        let activity = agent.activity.as_ref().map(|a| ActivityView {
            activity_id: a.activity_id.clone(),
            attempt: a.attempt,
            cancel_requested: a.cancel_requested,
            state: match (&a.phase, task) {
                (ActivityPhase::BackingOff { fire_at, .. }, _) => ActivityState::BackingOff {
                    remaining_ms: (fire_at - self.now()).max(0),
                    next_attempt: a.attempt + 1,
                },
                (_, Some(t)) if t.status == TaskStatus::Leased => ActivityState::Running {
                    worker: t.lease_owner.clone().unwrap_or_default(),
                },
                (_, Some(t)) => ActivityState::Waiting {
                    runtime: t.runtime.clone(),
                    queue: t.queue.clone(),
                    unserved: false,
                    refused: None,
                },
                (_, None) => ActivityState::Scheduled,
            },
        });
        ExecutionView {
            record,
            activity,
            queue: agent.queue.clone(),
            interactive: agent.conversation.is_some(),
            waiting_for: agent.waiting_for(),
            approvals: agent.approvals.clone(),
            turns: agent.turns.len() as u32,
        }
    }
}
