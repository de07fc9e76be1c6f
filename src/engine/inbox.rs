//! The in-process worker's inbox: a start leases its first task, in its own transaction, to the
//! in-process worker when that worker has a free slot and its policy admits the agent, and hands
//! the task straight to it (eager dispatch without a poll, and without a claim). Without it a
//! start needed a poll asleep on this server, and under load the polls are mostly away claiming
//! the tasks of starts that found none; a poll handed a task also comes back with a claim.
//!
//! The slot is taken before the transaction (a permit of the worker's own semaphore), so a worker
//! with no free slot never receives a task this way: the task goes to the queue as before. A task
//! handed to a worker that has stopped listening is released at once; one lost with a worker that
//! died is retried after its lease, like any other.
//!
//! `reserve_first_task` chooses for a start between this inbox and a poll asleep on this server
//! (`policy.rs` `reserve_poll`), and `hand_first_task` hands the leased task to the one chosen.

use std::sync::{Arc, Mutex};

use tokio::sync::OwnedSemaphorePermit;

use super::Engine;
use super::commands::EagerOffer;
use super::notify::Reservation;
use crate::contract::{Assignment, Inbox};

/// Who a start leases its first task to in its own transaction (eager dispatch).
pub(crate) enum FirstTask {
    /// A free slot of the in-process worker.
    Inbox(InboxSlot),
    /// A poll asleep on this server.
    Poll(Reservation),
}

/// A slot of the in-process worker, taken for one start's first task.
pub(crate) struct InboxSlot {
    permit: OwnedSemaphorePermit,
    inbox: Arc<Inbox>,
}

/// The in-process worker attached to an engine, if any.
#[derive(Default)]
pub(crate) struct Attached(Mutex<Option<Arc<Inbox>>>);

impl Attached {
    fn get(&self) -> Option<Arc<Inbox>> {
        self.0.lock().expect("the lock is never poisoned").clone()
    }
}

impl Engine {
    /// Attaches an in-process worker's inbox: starts hand it their first task while it has a free
    /// slot (one worker at a time; a second replaces the first).
    pub fn attach_inbox(&self, inbox: Inbox) {
        *self.inbox.0.lock().expect("the lock is never poisoned") = Some(Arc::new(inbox));
    }

    /// Detaches the inbox of `worker_id` (it is stopping): no start hands it a task after this.
    pub fn detach_inbox(&self, worker_id: &str) {
        let mut attached = self.inbox.0.lock().expect("the lock is never poisoned");
        if attached.as_ref().is_some_and(|i| i.worker_id == worker_id) {
            *attached = None;
        }
    }

    /// Who takes the first task of a start of `runtime` in `queue`: a free slot of the
    /// in-process worker first (its polls then sleep on, where a poll handed a task comes back
    /// with a claim of its own), else a poll asleep on this server; `None` when neither admits
    /// `runtime_config` (the task goes to the queue).
    pub(crate) fn reserve_first_task(
        &self,
        runtime: &str,
        queue: &str,
        runtime_config: &serde_json::Value,
    ) -> Option<(FirstTask, EagerOffer)> {
        if let Some((slot, offer)) = self.reserve_inbox(runtime, queue, runtime_config) {
            return Some((FirstTask::Inbox(slot), offer));
        }
        self.reserve_poll(runtime, queue, runtime_config)
            .map(|(reservation, offer)| (FirstTask::Poll(reservation), offer))
    }

    /// Hands the task the start leased (if it leased one) to whom it was reserved for.
    pub(crate) async fn hand_first_task(&self, to: FirstTask, assignment: Option<Box<Assignment>>) {
        match to {
            FirstTask::Inbox(slot) => self.hand_to_inbox(slot, assignment).await,
            FirstTask::Poll(reservation) => self.hand_over(reservation, assignment).await,
        }
    }

    /// A free slot of the attached worker for a first task of `runtime` in `queue`, if it takes
    /// them and its policy admits `runtime_config`.
    fn reserve_inbox(
        &self,
        runtime: &str,
        queue: &str,
        runtime_config: &serde_json::Value,
    ) -> Option<(InboxSlot, EagerOffer)> {
        let inbox = self.inbox.get()?;
        if inbox.queue != queue
            || !inbox.runtimes.iter().any(|r| r == runtime)
            || inbox.policy.admits(runtime, runtime_config).is_err()
        {
            return None;
        }
        let permit = inbox.slots.clone().try_acquire_owned().ok()?;
        let offer = EagerOffer::new(
            inbox.worker_id.clone(),
            inbox.runtimes.clone(),
            inbox.queue.clone(),
        );
        Some((InboxSlot { permit, inbox }, offer))
    }

    /// Hands the task leased in the start's transaction to the worker whose slot it took; with
    /// nothing leased the slot is just given back. A worker that no longer listens gets its task
    /// released, so another takes it at once.
    async fn hand_to_inbox(&self, slot: InboxSlot, assignment: Option<Box<Assignment>>) {
        let Some(assignment) = assignment else {
            return;
        };
        if let Err(refused) = slot.inbox.deliver.send((*assignment, slot.permit)) {
            let (assignment, _permit) = refused.0;
            self.release_undelivered(assignment.lease, "its worker stopped")
                .await;
        }
    }
}
