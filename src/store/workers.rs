//! Workers as their polls announce them, for operators. The SQL is in `backend/workers.rs`.

use async_trait::async_trait;

use super::StoreError;
use crate::domain::{Millis, WorkerPolicy};

/// The `workers` table.
#[async_trait]
pub trait Workers: Send + Sync {
    /// Records that a worker polled (insert or update of its `workers` row).
    async fn upsert_worker(&self, worker: &WorkerUpsert) -> Result<(), StoreError>;
    /// Workers last seen (polling or heartbeating, on any server) at or after `seen_since`,
    /// ordered by id.
    async fn list_workers(&self, seen_since: Millis) -> Result<Vec<WorkerRecord>, StoreError>;
    /// Removes a worker's row (it stopped cleanly), so it leaves `ListWorkers` at once. Returns
    /// whether there was one. Leases it still holds are untouched: they expire or are released.
    async fn delete_worker(&self, worker_id: &str) -> Result<bool, StoreError>;
}

/// A worker as its poll announces it; upserted into `workers`.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerUpsert {
    /// Its identity (the lease owner of what it claims).
    pub worker_id: String,
    /// The runtimes it has.
    pub runtimes: Vec<String>,
    /// The queue it serves.
    pub queue: String,
    /// How many attempts it runs at once (0 when it did not say).
    pub slots: u32,
    /// The policy it advertised; `None` for a worker that advertises none (it admits all).
    pub policy: Option<WorkerPolicy>,
    /// When it polled.
    pub now: Millis,
}

/// A worker as operators see it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerRecord {
    /// Its identity.
    pub worker_id: String,
    /// The runtimes it has.
    pub runtimes: Vec<String>,
    /// The queue it serves.
    pub queue: String,
    /// How many attempts it runs at once (0 when it did not say).
    pub slots: u32,
    /// How many leases it holds now.
    pub slots_in_use: u32,
    /// When a server first heard from it.
    pub first_seen: Millis,
    /// Its latest poll or heartbeat, on any server.
    pub last_seen: Millis,
    /// The policy it advertised in its latest recorded poll; `None`: it admits everything.
    pub policy: Option<WorkerPolicy>,
}
