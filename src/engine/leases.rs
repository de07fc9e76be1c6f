//! The leases this engine handed out — claimed by a poll through it, or granted in one of its
//! own transitions (eager dispatch) — remembered until their attempt reports, so the report
//! needs no read of its task row.
//!
//! A report is made from what the engine knows of its task: the worker and runtime it runs on,
//! its queue, when it was leased, how many chunks the lease has stored and the working directory
//! it named. All of that is known when the lease is handed out, and only this lease's progress
//! changes it. The report carries `Fence::TaskAsKnown` beside its `Lease` fence, which also holds
//! the execution's stored output to what the report's chunks leave of the limit: when a
//! progress reached the task through another server since (a worker that failed over), or the
//! output would pass the limit, the commit is `Fenced`, and the report is made again from a read.
//!
//! Bounded: an entry leaves when its attempt reports or releases, or is forgotten when its
//! progress stores chunks (a read is then cheaper than keeping count); leases that are never
//! reported (their worker died) are dropped when the book is full.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::domain::{Lease, Millis};

/// How many leases the book holds at most; when full, it starts over empty.
const MAX_LEASES: usize = 16_384;

/// What the engine knows of a task it leased in one of its own transitions.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KnownTask {
    /// The runtime it runs on.
    pub runtime: String,
    /// Its queue.
    pub queue: String,
    /// The worker that holds the lease.
    pub owner: String,
    /// When it was leased (the claim's or the granting transition's time, as the store wrote it).
    pub leased_at: Millis,
    /// The chunks its lease has stored.
    pub chunks_sent: u64,
    /// The working directory its progress named.
    pub workspace: Option<String>,
}

/// The leases this engine granted and has not yet seen reported.
#[derive(Default)]
pub(crate) struct LeaseBook {
    leases: Mutex<HashMap<Lease, KnownTask>>,
}

impl LeaseBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Lease, KnownTask>> {
        self.leases.lock().expect("the lock is never poisoned")
    }

    /// Remembers a lease this engine handed out (claimed, or granted by a committed transition).
    pub(crate) fn granted(&self, lease: Lease, task: KnownTask) {
        let mut leases = self.lock();
        if leases.len() >= MAX_LEASES {
            leases.clear();
        }
        leases.insert(lease, task);
    }

    /// Takes what is known of `lease`, if this engine granted it: its report is being made.
    pub(crate) fn take(&self, lease: &Lease) -> Option<KnownTask> {
        self.lock().remove(lease)
    }

    /// A progress of `lease` went through this engine: with chunks, the lease is forgotten (the
    /// report reads its task); with a working directory only, the directory is remembered.
    pub(crate) fn progressed(&self, lease: &Lease, stored_chunks: bool, workspace: Option<&str>) {
        let mut leases = self.lock();
        if stored_chunks {
            leases.remove(lease);
        } else if let Some(workspace) = workspace
            && let Some(task) = leases.get_mut(lease)
        {
            task.workspace = Some(workspace.to_string());
        }
    }

    /// Forgets `lease` (released, or its state is no longer known).
    pub(crate) fn forget(&self, lease: &Lease) {
        self.lock().remove(lease);
    }

    /// How many leases the book holds (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(token: &str) -> Lease {
        Lease {
            execution_id: uuid::Uuid::nil(),
            activity_id: "turn-1".into(),
            attempt: 1,
            lease_token: token.into(),
        }
    }

    fn task() -> KnownTask {
        KnownTask {
            runtime: "echo".into(),
            queue: "default".into(),
            owner: "w-1".into(),
            leased_at: 5,
            chunks_sent: 0,
            workspace: None,
        }
    }

    #[test]
    fn a_lease_is_taken_once_and_only_with_its_token() {
        let book = LeaseBook::default();
        book.granted(lease("a"), task());
        assert_eq!(book.take(&lease("b")), None);
        assert_eq!(book.take(&lease("a")), Some(task()));
        assert_eq!(book.take(&lease("a")), None);
    }

    #[test]
    fn progress_with_chunks_forgets_and_a_directory_is_remembered() {
        let book = LeaseBook::default();
        book.granted(lease("a"), task());
        book.progressed(&lease("a"), false, Some("/tmp/w"));
        assert_eq!(
            book.take(&lease("a")).unwrap().workspace.as_deref(),
            Some("/tmp/w")
        );
        book.granted(lease("a"), task());
        book.progressed(&lease("a"), true, None);
        assert_eq!(book.take(&lease("a")), None);
    }

    #[test]
    fn a_full_book_starts_over() {
        let book = LeaseBook::default();
        for n in 0..MAX_LEASES {
            book.granted(lease(&n.to_string()), task());
        }
        assert_eq!(book.len(), MAX_LEASES);
        book.granted(lease("one more"), task());
        assert_eq!(book.len(), 1);
    }
}
