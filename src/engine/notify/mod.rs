//! In-process wake-ups: workers waiting for tasks, the sweeper waiting for deadlines, and
//! watchers of single executions.
//!
//! Long-polls register as waiters with the runtimes and queue they serve. A task made ready
//! wakes *one* waiter that can take it (not every waiting poll: no thundering herd with many idle
//! workers), or none when a waiter already woken has room for it in its next claim. Wake-ups are
//! never lost: a waiter is armed before it claims, so a task readied during its claim wakes it
//! again; a waiter that leaves while woken passes its wake-ups on; a notification that does not
//! say which runtime and queue (another server's, through the change feed) wakes one waiter of
//! each kind. A start may also *reserve* a sleeping waiter and hand it the first task, leased to
//! it in the start's own transition (eager dispatch), so the poll returns without a claim.

mod polls;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use uuid::Uuid;

pub use polls::{PollStep, PollWaiter, Reservation, Wake};

/// Wakes long-polling workers, the sweeper and output streams when something they wait for was
/// committed. Watchers register per execution, so a change wakes only those who watch it.
#[derive(Debug, Default)]
pub struct Notifier {
    polls: Mutex<polls::Polls>,
    claims: AtomicU64,
    timers: Notify,
    watched: Mutex<HashMap<Uuid, Arc<Notify>>>,
}

/// Interest in one execution; dropping it unregisters.
pub struct Watch {
    notifier: Arc<Notifier>,
    id: Uuid,
    notify: Arc<Notify>,
}

impl Watch {
    /// The `Notify` to wait on. Create its `notified()` future *before* reading, so a change
    /// between the read and the wait is not lost.
    pub fn notify(&self) -> &Notify {
        &self.notify
    }

    /// A wake-up for the next change, not yet enabled: enable it *before* reading, so a change
    /// between the read and the wait is not lost. Owned, so it can outlive a borrow of the watch.
    pub fn arm(&self) -> std::pin::Pin<Box<tokio::sync::futures::OwnedNotified>> {
        Box::pin(self.notify.clone().notified_owned())
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut watched = self
            .notifier
            .watched
            .lock()
            .expect("the lock is never poisoned");
        // Two references left: the map's and ours. Then nobody else watches this execution.
        if Arc::strong_count(&self.notify) <= 2 {
            watched.remove(&self.id);
        }
    }
}

impl Notifier {
    /// A timer or deadline was written that may be earlier than the sweeper's next wake-up.
    pub fn deadline_added(&self) {
        self.timers.notify_one();
    }

    /// Waits for [`Notifier::deadline_added`].
    pub async fn deadline(&self) {
        self.timers.notified().await;
    }

    /// An execution's row, history or output changed.
    pub fn execution_changed(&self, id: Uuid) {
        let watched = self.watched.lock().expect("the lock is never poisoned");
        if let Some(notify) = watched.get(&id) {
            notify.notify_waiters();
        }
    }

    /// Wakes every waiter: long-polls, the sweeper and every watched execution. For when
    /// notifications from other servers may have been missed.
    pub fn wake_all(&self) {
        self.wake_all_polls();
        self.timers.notify_one();
        let watched = self.watched.lock().expect("the lock is never poisoned");
        for notify in watched.values() {
            notify.notify_waiters();
        }
    }

    /// Registers interest in one execution.
    pub fn watch(self: &Arc<Self>, id: Uuid) -> Watch {
        let notify = self
            .watched
            .lock()
            .expect("the lock is never poisoned")
            .entry(id)
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone();
        Watch {
            notifier: self.clone(),
            id,
            notify,
        }
    }
}

#[cfg(test)]
mod tests;
