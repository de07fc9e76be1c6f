//! The workers this server has heard from recently, for `ListRuntimes` and operators.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::domain::Millis;

/// A worker as last seen by this server.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSeen {
    /// Its identity.
    pub worker_id: String,
    /// The runtimes it announced.
    pub runtimes: Vec<String>,
    /// The queue it serves.
    pub queue: String,
    /// When it last polled.
    pub last_seen: Millis,
}

/// Workers seen by this server; entries older than a minute are dropped.
#[derive(Debug, Default)]
pub struct WorkerDirectory {
    seen: Mutex<HashMap<String, WorkerSeen>>,
}

const FORGET_AFTER_MS: Millis = 60_000;

impl WorkerDirectory {
    /// Records a poll.
    pub fn saw(&self, worker: WorkerSeen) {
        let mut seen = self.seen.lock().expect("the lock is never poisoned");
        let now = worker.last_seen;
        seen.retain(|_, w| now - w.last_seen < FORGET_AFTER_MS);
        seen.insert(worker.worker_id.clone(), worker);
    }

    /// The workers seen within the last minute.
    pub fn snapshot(&self) -> Vec<WorkerSeen> {
        let seen = self.seen.lock().expect("the lock is never poisoned");
        seen.values().cloned().collect()
    }
}
