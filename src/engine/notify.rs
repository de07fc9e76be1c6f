//! In-process wake-ups: workers waiting for tasks, the sweeper waiting for deadlines, and
//! watchers of single executions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use uuid::Uuid;

/// Wakes long-polling workers, the sweeper and output streams when something they wait for was
/// committed. Watchers register per execution, so a change wakes only those who watch it.
#[derive(Debug, Default)]
pub struct Notifier {
    tasks: Notify,
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
    /// A task became ready.
    pub fn task_ready(&self) {
        self.tasks.notify_waiters();
    }

    /// Waits for [`Notifier::task_ready`]. Create the future *before* looking for work, so a
    /// notification between the look and the wait is not lost.
    pub fn tasks(&self) -> &Notify {
        &self.tasks
    }

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
        self.tasks.notify_waiters();
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
