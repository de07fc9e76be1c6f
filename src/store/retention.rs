//! Retention: deleting closed executions and everything that is only theirs. The SQL is in
//! `backend/retention.rs`.
//!
//! The unit is a *tree*: a top-level execution and its children (a team's members), deleted
//! together once every member has closed, so a closed child of an open team stays until its
//! team closes. A tree that a remaining execution was retried from stays until its retries are
//! gone: a retry reads its original's history, output and checkpoints. Stored objects go with
//! the last execution that refers to them (`object_refs`, written with every object), never
//! while another execution, or an object based on them, still does.

use async_trait::async_trait;
use uuid::Uuid;

use super::StoreError;
use crate::domain::Millis;

/// The namespaces a retention pass looks in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamespaceFilter {
    /// This namespace only (one with a retention of its own).
    Only(String),
    /// Every namespace but these (the server's retention, for those without their own).
    Except(Vec<String>),
}

/// What a deletion removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deleted {
    /// The top-level executions whose trees were deleted.
    pub roots: Vec<Uuid>,
    /// Executions deleted (roots and their children).
    pub executions: u64,
    /// Stored objects no remaining execution referred to.
    pub objects: u64,
}

/// Finding and deleting closed trees.
#[async_trait]
pub trait Retention: Send + Sync {
    /// Up to `limit` top-level executions of `namespaces` that closed before `cutoff`, oldest
    /// first, whose trees may be deleted (every member closed, no retry of any member left).
    async fn expired_trees(
        &self,
        namespaces: &NamespaceFilter,
        cutoff: Millis,
        limit: u32,
    ) -> Result<Vec<Uuid>, StoreError>;

    /// Deletes, in one transaction, the trees of those of `roots` that may still be deleted
    /// (checked again inside it): every row of their executions (history, output, tasks,
    /// timers, labels, object references, the executions) and the objects nothing else refers
    /// to. Others of `roots` (a child's id, an open tree, a retried one) are left alone.
    async fn delete_trees(&self, roots: &[Uuid]) -> Result<Deleted, StoreError>;
}
