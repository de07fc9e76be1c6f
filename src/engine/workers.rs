//! The workers this server has heard from, and how often their `workers` rows are written.
//!
//! Every poll says who the worker is; writing that on every poll would add a database write per
//! long-poll, so a server writes a worker's row only when it changed or when the last write is
//! older than [`PERSIST_EVERY_MS`]. `ListWorkers` and "why does this task wait" read the table, so
//! they see workers of every server.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::domain::Millis;

/// A worker as last seen by this server.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSeen {
    /// The id the worker announced (`--worker-id`; by default host name, process id and a
    /// random suffix).
    pub worker_id: String,
    /// The runtimes it announced.
    pub runtimes: Vec<String>,
    /// The queue it serves.
    pub queue: String,
    /// How many attempts it runs at once (0 when it did not say).
    pub slots: u32,
    /// When it last polled.
    pub last_seen: Millis,
    /// The policy it advertised (`None`: none, it admits everything).
    pub policy: Option<crate::domain::WorkerPolicy>,
}

/// How often a polling worker's row is refreshed at most (unless what it announces changes).
pub const PERSIST_EVERY_MS: Millis = 5_000;

/// How long after its last poll or heartbeat a worker still counts as connected. Longer than the
/// longest poll wait plus [`PERSIST_EVERY_MS`], so a worker in a long poll is never "gone".
pub const CONNECTED_WITHIN_MS: Millis = 90_000;

/// Workers seen by this server; entries older than a minute are dropped.
#[derive(Debug, Default)]
pub struct WorkerDirectory {
    seen: Mutex<HashMap<String, (WorkerSeen, Millis)>>,
}

const FORGET_AFTER_MS: Millis = 60_000;

impl WorkerDirectory {
    /// Records a poll; returns whether the worker's row should be written now.
    pub fn saw(&self, worker: WorkerSeen) -> bool {
        let mut seen = self.seen.lock().expect("the lock is never poisoned");
        let now = worker.last_seen;
        seen.retain(|_, (w, _)| now - w.last_seen < FORGET_AFTER_MS);
        let persist = match seen.get(&worker.worker_id) {
            Some((old, persisted)) => {
                now - persisted >= PERSIST_EVERY_MS
                    || old.runtimes != worker.runtimes
                    || old.queue != worker.queue
                    || old.slots != worker.slots
                    || old.policy != worker.policy
            }
            None => true,
        };
        let persisted = match (persist, seen.get(&worker.worker_id)) {
            (false, Some((_, at))) => *at,
            _ => now,
        };
        seen.insert(worker.worker_id.clone(), (worker, persisted));
        persist
    }

    /// Forgets when a worker's row was written, so its next poll writes it again (after the
    /// write failed).
    pub fn unpersisted(&self, worker_id: &str) {
        self.seen
            .lock()
            .expect("the lock is never poisoned")
            .remove(worker_id);
    }

    /// The workers seen within the last minute.
    pub fn snapshot(&self) -> Vec<WorkerSeen> {
        let seen = self.seen.lock().expect("the lock is never poisoned");
        seen.values().map(|(w, _)| w.clone()).collect()
    }
}
