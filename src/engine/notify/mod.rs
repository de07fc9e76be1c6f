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
//!
//! The sweeper is woken only by a deadline earlier than the wake-up it planned: a new lease's
//! expiry (tens of seconds away) almost never is, so claims and reports do not make it read.
//! It is armed before it reads: from then until it publishes its plan every deadline wakes it.

mod polls;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use uuid::Uuid;

use crate::domain::Millis;

pub use polls::{PollStep, PollWaiter, Reservation, Wake};

/// Wakes long-polling workers, the sweeper and output streams when something they wait for was
/// committed. Watchers register per execution, so a change wakes only those who watch it.
#[derive(Debug, Default)]
pub struct Notifier {
    polls: Mutex<polls::Polls>,
    claims: AtomicU64,
    sweeper: SweeperWake,
    watched: Mutex<HashMap<Uuid, Arc<Watched>>>,
}

/// The followers of one execution: their wake-up, and the last commits this server made of it.
#[derive(Debug, Default)]
struct Watched {
    notify: Arc<Notify>,
    /// The newest [`TAILS`] commits' tails, oldest first: a follower woken once for several
    /// commits takes them one after another.
    tails: Mutex<std::collections::VecDeque<Arc<Tail>>>,
}

/// How many commits' tails a watched execution keeps.
const TAILS: usize = 16;

/// What a commit on this server made of an execution that followers watch: the page they would
/// read next, handed to them instead of a read (see `follow.rs`), when they saw the row just as
/// the commit found it.
#[derive(Debug)]
pub struct Tail {
    /// The row's version (`next_seq`) and output length the commit moved it forward from.
    pub before: (u64, u64),
    /// The page after the commit: the row's status, version and output length, the chunks the
    /// commit appended, and the whole row when the execution closed or waits.
    pub page: crate::store::OutputPage,
}

impl Tail {
    /// The page a committed update hands its followers: the chunks it appended (numbered up to
    /// the output length the commit returned), after the version and output length it started
    /// from.
    pub fn of(
        namespace: String,
        expected: u64,
        next_seq: u64,
        mut chunks: Vec<crate::store::StoredChunk>,
        after: crate::store::RowAfter,
    ) -> Tail {
        let first = after.output_seq + 1 - chunks.len() as u64;
        for (i, chunk) in chunks.iter_mut().enumerate() {
            chunk.seq = first + i as u64;
        }
        Tail {
            before: (expected, first - 1),
            page: crate::store::OutputPage {
                namespace,
                status: after.status,
                next_seq,
                output_seq: after.output_seq,
                chunks,
                execution: after.record,
            },
        }
    }
}

/// When the sweeper plans to wake, and the wake-up that cuts its sleep short.
#[derive(Debug)]
struct SweeperWake {
    /// The planned wake-up (epoch milliseconds, the engine's clock); [`NO_PLAN`] while the
    /// sweeper reads, or before it first planned, so that then every deadline wakes it.
    planned: AtomicI64,
    /// Holds a permit when nobody waits, so a wake-up sent before the sweeper sleeps still counts.
    notify: Notify,
}

/// "No plan": every deadline is earlier, so every deadline wakes the sweeper.
const NO_PLAN: Millis = Millis::MAX;

impl Default for SweeperWake {
    fn default() -> Self {
        SweeperWake {
            planned: AtomicI64::new(NO_PLAN),
            notify: Notify::new(),
        }
    }
}

/// Interest in one execution; dropping it unregisters.
pub struct Watch {
    notifier: Arc<Notifier>,
    id: Uuid,
    watched: Arc<Watched>,
}

impl Watch {
    /// The `Notify` to wait on. Create its `notified()` future *before* reading, so a change
    /// between the read and the wait is not lost.
    pub fn notify(&self) -> &Notify {
        &self.watched.notify
    }

    /// The commit this server made of the execution from (version, output length) `before`,
    /// among the last few made while it was watched.
    pub fn tail_from(&self, before: (u64, u64)) -> Option<Arc<Tail>> {
        self.watched
            .tails
            .lock()
            .expect("the lock is never poisoned")
            .iter()
            .rev()
            .find(|t| t.before == before)
            .cloned()
    }

    /// A wake-up for the next change, not yet enabled: enable it *before* reading, so a change
    /// between the read and the wait is not lost. Owned, so it can outlive a borrow of the watch.
    pub fn arm(&self) -> std::pin::Pin<Box<tokio::sync::futures::OwnedNotified>> {
        Box::pin(self.watched.notify.clone().notified_owned())
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
        if Arc::strong_count(&self.watched) <= 2 {
            watched.remove(&self.id);
        }
    }
}

impl Notifier {
    /// A timer or deadline due `at` was committed (call it after the commit): wakes the sweeper
    /// if that is earlier than the wake-up it planned. One at or after it wakes nobody: the
    /// sweeper reads again then, after this commit, and finds it.
    pub fn deadline_added(&self, at: Millis) {
        if at < self.sweeper.planned.load(Ordering::SeqCst) {
            self.sweeper.notify.notify_one();
        }
    }

    /// A deadline was committed whose time the caller does not know: wakes the sweeper.
    pub fn wake_sweeper(&self) {
        self.sweeper.notify.notify_one();
    }

    /// [`Notifier::deadline_added`] when the caller knows when, else [`Notifier::wake_sweeper`].
    pub fn deadline_written(&self, at: Option<Millis>) {
        match at {
            Some(at) => self.deadline_added(at),
            None => self.wake_sweeper(),
        }
    }

    /// The sweeper is about to read due rows and the next deadline. Until it plans again, every
    /// deadline wakes it (a permit its next wait takes at once), so one committed while it
    /// reads, which its read may have missed, is not lost.
    pub fn sweeper_reading(&self) {
        self.sweeper.planned.store(NO_PLAN, Ordering::SeqCst);
    }

    /// The sweeper is about to read the next deadline (armed since before its look): a wake-up
    /// pending now is for a deadline committed before that read, which finds it, so it is
    /// dropped. (The timers and timeouts a look applies write deadlines of their own; each would
    /// otherwise cost one more look.) One sent after this stays and wakes the sweeper.
    pub fn sweeper_reads_next_deadline(&self) {
        use futures::FutureExt;
        // A wake-up that arrives between this poll and the drop is passed back by `Notified`'s
        // drop, as a permit: never lost.
        let _ = self.sweeper.notify.notified().now_or_never();
    }

    /// The sweeper read and will sleep until `wake_at` (or a wake-up). A deadline committed
    /// after its read began either loads this plan and compares, or loads [`NO_PLAN`] and wakes.
    pub fn sweeper_plans(&self, wake_at: Millis) {
        self.sweeper.planned.store(wake_at, Ordering::SeqCst);
    }

    /// Waits for a wake-up of the sweeper ([`Notifier::deadline_added`] with an earlier
    /// deadline, [`Notifier::wake_sweeper`], [`Notifier::wake_all`]).
    pub async fn deadline(&self) {
        self.sweeper.notify.notified().await;
    }

    /// An execution's row, history or output changed.
    pub fn execution_changed(&self, id: Uuid) {
        let watched = self.watched.lock().expect("the lock is never poisoned");
        if let Some(w) = watched.get(&id) {
            w.notify.notify_waiters();
        }
    }

    /// Whether anyone on this server follows execution `id`.
    pub fn is_watched(&self, id: Uuid) -> bool {
        self.watched
            .lock()
            .expect("the lock is never poisoned")
            .contains_key(&id)
    }

    /// A commit on this server changed execution `id` into `tail`: kept for its followers (the
    /// newest [`TAILS`]), who are then woken.
    pub fn execution_committed(&self, id: Uuid, tail: Tail) {
        let watched = self.watched.lock().expect("the lock is never poisoned");
        if let Some(w) = watched.get(&id) {
            let mut tails = w.tails.lock().expect("the lock is never poisoned");
            if tails.len() == TAILS {
                tails.pop_front();
            }
            tails.push_back(Arc::new(tail));
            drop(tails);
            w.notify.notify_waiters();
        }
    }

    /// Wakes every waiter: long-polls, the sweeper and every watched execution. For when
    /// notifications from other servers may have been missed.
    pub fn wake_all(&self) {
        self.wake_all_polls();
        self.wake_sweeper();
        let watched = self.watched.lock().expect("the lock is never poisoned");
        for w in watched.values() {
            w.notify.notify_waiters();
        }
    }

    /// Registers interest in one execution.
    pub fn watch(self: &Arc<Self>, id: Uuid) -> Watch {
        let watched = self
            .watched
            .lock()
            .expect("the lock is never poisoned")
            .entry(id)
            .or_default()
            .clone();
        Watch {
            notifier: self.clone(),
            id,
            watched,
        }
    }
}

#[cfg(test)]
mod tests;
