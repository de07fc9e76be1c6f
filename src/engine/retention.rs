//! Retention: closed executions past the operator's window are deleted, a few trees at a time,
//! with everything that was only theirs (see `store/retention.rs` for what a tree is and what
//! may go); and `DeleteExecution`, one tree on request.
//!
//! A pass works in batches of [`BATCH`] trees, one short transaction each, and yields between
//! them, so the group committer and the sweeper (on SQLite, behind the same single writer) wait
//! at most one batch. Deleting reads no execution the engine caches: it deletes only closed
//! trees, and the cache holds open executions.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Engine, EngineError};
use crate::store::{Deleted, NamespaceFilter};

/// Trees per transaction.
pub const BATCH: u32 = 32;

/// How long closed executions are kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// The server's window; `None` keeps executions for good.
    pub default: Option<Duration>,
    /// Namespaces with a window of their own (`None`: kept for good).
    pub namespaces: BTreeMap<String, Option<Duration>>,
}

impl RetentionPolicy {
    /// Whether this policy ever deletes anything.
    pub fn deletes(&self) -> bool {
        self.default.is_some() || self.namespaces.values().any(Option::is_some)
    }
}

impl Engine {
    /// One retention pass: deletes every tree closed longer ago than its namespace's window.
    /// Returns how many executions it deleted.
    pub async fn retention_pass(&self, policy: &RetentionPolicy) -> Result<u64, EngineError> {
        let now = self.now();
        let cutoff = |window: &Duration| {
            now.saturating_sub(i64::try_from(window.as_millis()).unwrap_or(i64::MAX))
        };
        let mut passes: Vec<(NamespaceFilter, i64)> = policy
            .namespaces
            .iter()
            .filter_map(|(namespace, window)| {
                Some((
                    NamespaceFilter::Only(namespace.clone()),
                    cutoff(window.as_ref()?),
                ))
            })
            .collect();
        if let Some(window) = &policy.default {
            let own = policy.namespaces.keys().cloned().collect();
            passes.push((NamespaceFilter::Except(own), cutoff(window)));
        }
        let mut deleted = 0;
        for (namespaces, cutoff) in passes {
            loop {
                let roots = self.store.expired_trees(&namespaces, cutoff, BATCH).await?;
                if roots.is_empty() {
                    break;
                }
                let done = self.store.delete_trees(&roots).await?;
                deleted += done.executions;
                if done.roots.is_empty() || roots.len() < BATCH as usize {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
        if deleted > 0 {
            tracing::info!(executions = deleted, "retention deleted closed executions");
        }
        Ok(deleted)
    }

    /// Runs a retention pass every `every` until `shutdown` fires. A failed pass is logged and
    /// tried again at the next tick: retention is never worth stopping the server for.
    pub async fn run_retention(
        self: std::sync::Arc<Self>,
        policy: RetentionPolicy,
        every: Duration,
        shutdown: CancellationToken,
    ) {
        loop {
            if let Err(e) = self.retention_pass(&policy).await {
                tracing::warn!(error = %e, "a retention pass failed; trying again later");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    /// Deletes execution `id` with its members (a team's children): refused while any of them
    /// is open, for a member (its team is deleted instead), and while an execution retried
    /// from it exists.
    pub async fn delete_execution(&self, id: Uuid) -> Result<Deleted, EngineError> {
        let record = self.execution(id).await?;
        if !record.status.is_closed() {
            return Err(EngineError::FailedPrecondition(format!(
                "execution {id} is {}: only a closed execution can be deleted; cancel it first",
                record.status.as_str()
            )));
        }
        if record.parent_id.is_some() {
            return Err(EngineError::FailedPrecondition(format!(
                "execution {id} is a member of team execution {}: delete the team's execution, \
                 which deletes its members with it",
                record.root_id
            )));
        }
        let deleted = self.store.delete_trees(&[id]).await?;
        if deleted.roots.is_empty() {
            return Err(EngineError::FailedPrecondition(format!(
                "execution {id} still has an open member, or an execution retried from it \
                 exists: delete that retry first"
            )));
        }
        Ok(deleted)
    }
}
