//! Wake-ups from other servers: the store's change feed (PostgreSQL `LISTEN`), fed into this
//! server's [`Notifier`](super::Notifier), so long-polls, the sweeper and output streams wake for
//! changes committed anywhere, not only through this server.

use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::Engine;
use super::notify::Wake;
use crate::store::Change;

impl Engine {
    /// Follows the store's change feed until `shutdown` fires; returns at once when the store has
    /// none (SQLite). Reconnects with back-off, and wakes every waiter after each (re)connection,
    /// since notifications sent while it was away are lost.
    pub async fn follow_changes(self: Arc<Self>, shutdown: CancellationToken) {
        let mut backoff = reconnect_backoff();
        loop {
            let feed = tokio::select! {
                _ = shutdown.cancelled() => return,
                feed = self.store.changes() => feed,
            };
            let mut feed = match feed {
                Ok(Some(feed)) => feed,
                Ok(None) => return,
                Err(e) => {
                    let delay = backoff.next().unwrap_or(Duration::from_secs(5));
                    tracing::warn!(error = %e, ?delay, "cannot listen for changes; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(delay) => continue,
                    }
                }
            };
            backoff = reconnect_backoff();
            self.notifier.wake_all();
            loop {
                let change = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    change = feed.next() => change,
                };
                match change {
                    // The notification does not say which runtime and queue: one poll of each
                    // kind claims. (The store's feed skips this server's own notifications:
                    // it woke its waiters in-process when it committed.)
                    Some(Change::TaskReady) => self.notifier.task_ready(Wake::Any),
                    Some(Change::DeadlineAdded(at)) => self.notifier.deadline_written(at),
                    Some(Change::Execution(id)) => self.notifier.execution_changed(id),
                    Some(Change::Missed) => self.notifier.wake_all(),
                    None => break,
                }
            }
        }
    }
}

fn reconnect_backoff() -> impl Iterator<Item = Duration> {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build()
}
