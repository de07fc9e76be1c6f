//! Runtimes served by workers outside this binary, as their workers register them. The SQL is
//! in `backend/runtimes.rs`.

use async_trait::async_trait;

use super::StoreError;
use crate::domain::Millis;

/// The `runtimes` table: one row per runtime and the worker that registered it.
#[async_trait]
pub trait Runtimes: Send + Sync {
    /// Records that `worker_id` serves `runtimes` (insert, or update of description, schema and
    /// `last_seen`; `first_seen` stays), all in one transaction.
    async fn upsert_runtimes(
        &self,
        worker_id: &str,
        runtimes: &[RuntimeUpsert],
        now: Millis,
    ) -> Result<(), StoreError>;
    /// Every registered runtime with the newest registration of each (the one whose
    /// description and schema count), ordered by name.
    async fn list_runtimes(&self) -> Result<Vec<RuntimeRecord>, StoreError>;
    /// The newest registration of the runtime called `name`, if any worker ever registered it.
    async fn external_runtime(&self, name: &str) -> Result<Option<RuntimeRecord>, StoreError>;
}

/// A runtime as a worker registers it.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeUpsert {
    /// Its name, unique among runtimes (never a built-in one's).
    pub name: String,
    /// One sentence for people.
    pub description: String,
    /// The JSON Schema an agent's `runtime_config` must satisfy.
    pub config_schema: serde_json::Value,
}

/// A registered runtime: its newest registration, and how widely it was registered.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeRecord {
    /// Its name.
    pub name: String,
    /// The worker whose registration this is (the newest).
    pub worker_id: String,
    /// One sentence for people.
    pub description: String,
    /// The JSON Schema of its `runtime_config`.
    pub config_schema: serde_json::Value,
    /// When any worker first registered it.
    pub first_seen: Millis,
    /// When a worker last registered it.
    pub last_seen: Millis,
    /// How many workers ever registered it (connected or not).
    pub registered_by: u32,
}
