//! In-process wake-ups: workers waiting for tasks, and watchers of executions.

use tokio::sync::{Notify, broadcast};
use uuid::Uuid;

/// Wakes long-polling workers and output streams when something they wait for was committed.
#[derive(Debug)]
pub struct Notifier {
    tasks: Notify,
    timers: Notify,
    executions: broadcast::Sender<Uuid>,
}

impl Default for Notifier {
    fn default() -> Self {
        Notifier {
            tasks: Notify::new(),
            timers: Notify::new(),
            executions: broadcast::channel(4096).0,
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
        // No receiver is fine: nobody is watching.
        let _ = self.executions.send(id);
    }

    /// Subscribes to execution changes (ids of changed executions; lagging means "re-read").
    pub fn subscribe(&self) -> broadcast::Receiver<Uuid> {
        self.executions.subscribe()
    }
}
