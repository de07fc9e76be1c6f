//! Gauges only the database knows, read when metrics are scraped. The SQL is in
//! `backend/metrics.rs`.

use async_trait::async_trait;

use super::StoreError;

/// Reads for `/metrics`, each one bounded query.
#[async_trait]
pub trait Gauges: Send + Sync {
    /// Tasks ready for a worker and not claimed, counted by queue and runtime (one grouped
    /// `COUNT`; the rows are as many as the queue × runtime pairs in use).
    async fn tasks_waiting(&self) -> Result<Vec<TasksWaiting>, StoreError>;
}

/// How many tasks of one runtime wait in one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TasksWaiting {
    /// The queue.
    pub queue: String,
    /// The runtime that runs them.
    pub runtime: String,
    /// How many are ready and not claimed.
    pub count: u64,
}
