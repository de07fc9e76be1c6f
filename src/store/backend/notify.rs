//! Cross-server wake-ups through PostgreSQL `LISTEN`/`NOTIFY`.
//!
//! A group commit sends its notifications right after its data transaction commits, in a tiny
//! transaction of its own with `synchronous_commit = off` (one statement): a notification takes
//! PostgreSQL's cluster-wide notify lock from its commit until the commit is flushed, so sent
//! inside the data transaction it would serialise otherwise unrelated commits and their fsyncs.
//! Notifications are wake-up hints: one lost to a crash between the two commits costs a wake-up
//! that the long-poll timeout or the feed's reconnect (which wakes everything) makes up for. The
//! other write transactions (progress, release, quarantine) still send from inside, so they are
//! delivered exactly when the change commits (and never for a rollback). Each server listens on one connection and feeds
//! what it hears into its in-process `Notifier`, so a long-poll or an output stream on server B
//! wakes for a change committed through server A. SQLite has a single server process, whose
//! in-process wake-ups already see every change, so its sender does nothing.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::{PgPool, Postgres, Sqlite, Transaction};
use uuid::Uuid;

use crate::domain::Millis;
use crate::store::{Change, ChangeFeed, StoreError};

/// A task became claimable (payload: empty).
const TASKS: &str = "cairn_tasks";
/// A timer or deadline was written (payload: the earliest one, epoch milliseconds; an empty
/// payload, from a server before this one, means "when is unknown").
const DEADLINES: &str = "cairn_deadlines";
/// An execution changed (payload: its id).
const EXECUTIONS: &str = "cairn_executions";

/// The notifications one transaction sends, without duplicates. The deadlines it wrote go out
/// as one notification, carrying the earliest: a sweeper that plans to wake before it sleeps on.
#[derive(Debug, Default)]
pub(crate) struct Notes {
    others: BTreeSet<(&'static str, String)>,
    deadline: Option<Millis>,
}

impl Notes {
    /// A task became claimable.
    pub(crate) fn task_ready(&mut self) {
        self.others.insert((TASKS, String::new()));
    }

    /// A timer or deadline was written, due `at`; of several, the earliest is sent.
    pub(crate) fn deadline_added(&mut self, at: Millis) {
        self.deadline = Some(self.deadline.map_or(at, |known| known.min(at)));
    }

    /// An execution's row, history or output changed.
    pub(crate) fn execution(&mut self, id: Uuid) {
        self.others.insert((EXECUTIONS, id.to_string()));
    }

    fn is_empty(&self) -> bool {
        self.others.is_empty() && self.deadline.is_none()
    }

    /// The channels and payloads, as two arrays for `UNNEST`.
    fn columns(&self) -> (Vec<String>, Vec<String>) {
        let deadline = self.deadline.map(|at| (DEADLINES, at.to_string()));
        self.others
            .iter()
            .cloned()
            .chain(deadline)
            .map(|(channel, payload)| (channel.to_string(), payload))
            .unzip()
    }
}

/// Queues the notifications in the transaction, in one statement; delivered at commit.
pub(crate) async fn send_pg(
    tx: &mut Transaction<'_, Postgres>,
    notes: &Notes,
) -> Result<(), StoreError> {
    if notes.is_empty() {
        return Ok(());
    }
    let (channels, payloads) = notes.columns();
    sqlx::query("SELECT pg_notify(c, p) FROM UNNEST($1::text[], $2::text[]) AS n(c, p)")
        .bind(channels)
        .bind(payloads)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Sends the notifications of a transaction that has just committed on `conn`, in one statement
/// that is its own transaction, with `synchronous_commit` off for it (see the module comment).
/// A failure is logged, not returned: the data is committed, and a missed wake-up is made up for.
pub(crate) async fn after_pg(
    conn: &mut sqlx::pool::PoolConnection<Postgres>,
    notes: &Notes,
    statements: &AtomicU64,
) {
    if notes.is_empty() {
        return;
    }
    let (channels, payloads) = notes.columns();
    statements.fetch_add(1, Ordering::Relaxed);
    let sent = sqlx::query(
        "SELECT set_config('synchronous_commit', 'off', true), pg_notify(c, p) \
         FROM UNNEST($1::text[], $2::text[]) AS n(c, p)",
    )
    .bind(channels)
    .bind(payloads)
    .execute(&mut **conn)
    .await;
    if let Err(e) = sent {
        tracing::warn!(error = %e, "could not send change notifications after a commit");
    }
}

/// SQLite: nothing to send after a commit (see the module comment).
pub(crate) async fn after_sqlite(
    _conn: &mut sqlx::pool::PoolConnection<Sqlite>,
    _notes: &Notes,
    _statements: &AtomicU64,
) {
}

/// SQLite: nothing to send (see the module comment).
pub(crate) async fn send_sqlite(
    _tx: &mut Transaction<'_, Sqlite>,
    _notes: &Notes,
) -> Result<(), StoreError> {
    Ok(())
}

fn parse(channel: &str, payload: &str) -> Option<Change> {
    match channel {
        TASKS => Some(Change::TaskReady),
        // Unparseable (or empty, from an older server): when is unknown, so the sweeper wakes.
        DEADLINES => Some(Change::DeadlineAdded(payload.parse().ok())),
        EXECUTIONS => payload.parse().ok().map(Change::Execution),
        _ => None,
    }
}

/// Listens on a dedicated connection. When the connection drops, the feed says `Missed` and
/// the listener reconnects (re-subscribing) on the next read; it ends when the pool closes.
pub(crate) async fn pg_changes(pool: &PgPool) -> Result<ChangeFeed, StoreError> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen_all([TASKS, DEADLINES, EXECUTIONS]).await?;
    let feed = futures::stream::unfold(listener, |mut listener| async move {
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => {
                    if let Some(change) = parse(n.channel(), n.payload()) {
                        return Some((change, listener));
                    }
                }
                Ok(None) => return Some((Change::Missed, listener)),
                Err(sqlx::Error::PoolClosed) => return None,
                Err(e) => {
                    tracing::warn!(error = %e, "change feed lost its connection; reconnecting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    return Some((Change::Missed, listener));
                }
            }
        }
    });
    Ok(Box::pin(feed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_announces_one_deadline_the_earliest() {
        let mut notes = Notes::default();
        notes.deadline_added(5_000);
        notes.deadline_added(2_000);
        notes.deadline_added(9_000);
        notes.task_ready();
        let (channels, payloads) = notes.columns();
        assert_eq!(channels, [TASKS, DEADLINES]);
        assert_eq!(payloads, ["", "2000"]);
    }

    #[test]
    fn a_deadline_without_a_readable_time_wakes_as_before() {
        assert_eq!(
            parse(DEADLINES, "2000"),
            Some(Change::DeadlineAdded(Some(2_000)))
        );
        assert_eq!(parse(DEADLINES, ""), Some(Change::DeadlineAdded(None)));
        assert_eq!(parse(DEADLINES, "soon"), Some(Change::DeadlineAdded(None)));
    }
}
