//! Cross-server wake-ups through PostgreSQL `LISTEN`/`NOTIFY`.
//!
//! A group commit's notifications are sent after its data transaction commits, by the store's
//! [`Outbox`], in a tiny transaction of their own with `synchronous_commit = off` (one statement,
//! shared by the commits that finished while the previous one was sent): a notification takes
//! PostgreSQL's cluster-wide notify lock from its commit until the commit is flushed, so sent
//! inside the data transaction it would serialise otherwise unrelated commits and their fsyncs.
//! Notifications are wake-up hints: one lost to a crash between the two commits costs a wake-up
//! that the long-poll timeout or the feed's reconnect (which wakes everything) makes up for. The
//! other write transactions (progress, release, quarantine) still send from inside, so they are
//! delivered exactly when the change commits (and never for a rollback). Each server listens on one connection and feeds
//! what it hears into its in-process `Notifier`, so a long-poll or an output stream on server B
//! wakes for a change committed through server A. SQLite has a single server process, whose
//! in-process wake-ups already see every change, so its sender does nothing.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
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

    /// Adds what `other` announces.
    fn merge(&mut self, other: Notes) {
        self.others.extend(other.others);
        if let Some(at) = other.deadline {
            self.deadline_added(at);
        }
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

/// Hands the notifications of a group commit that has just committed to the store's outbox,
/// which sends them soon after (see [`Outbox`]); the commit's reply does not wait for them.
pub(crate) fn after_pg(store: &super::PgStore, notes: Notes) {
    store.outbox.post(notes);
}

/// SQLite: nothing to send after a commit (see the module comment).
pub(crate) fn after_sqlite(_store: &super::SqliteStore, _notes: Notes) {}

/// The most group commits' notifications one send takes.
const OUTBOX_BATCH: usize = 256;

/// How long the outbox gathers after the first notifications of a send arrive: the commits that
/// finish meanwhile share the send (a cross-server wake-up comes that much later; this server's
/// own waiters were woken in-process at the commit).
const OUTBOX_GATHER: std::time::Duration = std::time::Duration::from_millis(2);

/// Sends the notifications of committed group commits, one statement (its own transaction, with
/// `synchronous_commit` off) at a time: those of the commits that finish within
/// [`OUTBOX_GATHER`] of the first, or while a send is under way, are merged into one, so under
/// load many commits share a notification transaction, and a commit's reply never waits for its
/// notifications. A failed send is logged,
/// not retried: the data is committed, and a missed wake-up is made up for.
#[derive(Clone, Debug)]
pub(crate) struct Outbox {
    posted: tokio::sync::mpsc::UnboundedSender<Notes>,
}

impl Outbox {
    /// Starts the sender over `pool`; it runs until every handle is dropped.
    pub(crate) fn start(pool: PgPool) -> Outbox {
        let (posted, mut rx) = tokio::sync::mpsc::unbounded_channel::<Notes>();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(OUTBOX_BATCH);
            while rx.recv_many(&mut batch, OUTBOX_BATCH).await > 0 {
                tokio::time::sleep(OUTBOX_GATHER).await;
                while batch.len() < OUTBOX_BATCH
                    && let Ok(more) = rx.try_recv()
                {
                    batch.push(more);
                }
                let mut notes = Notes::default();
                for posted in batch.drain(..) {
                    notes.merge(posted);
                }
                send_after(&pool, &notes).await;
            }
        });
        Outbox { posted }
    }

    /// Queues the notifications of a committed transaction.
    fn post(&self, notes: Notes) {
        if !notes.is_empty() {
            // Fails only when the sender has stopped, with the runtime: nothing is waiting then.
            let _ = self.posted.send(notes);
        }
    }
}

/// Sends `notes` in one statement that is its own transaction, `synchronous_commit` off for it.
async fn send_after(pool: &PgPool, notes: &Notes) {
    if pool.is_closed() {
        return;
    }
    let (channels, payloads) = notes.columns();
    let sent = sqlx::query(
        "SELECT set_config('synchronous_commit', 'off', true), pg_notify(c, p) \
         FROM UNNEST($1::text[], $2::text[]) AS n(c, p)",
    )
    .bind(channels)
    .bind(payloads)
    .execute(pool)
    .await;
    if let Err(e) = sent
        && !pool.is_closed()
    {
        tracing::warn!(error = %e, "could not send change notifications after a commit");
    }
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

/// The backend process ids of one store's own connections. PostgreSQL delivers a notification
/// to every listener, its sender's server too; that server already woke its waiters in-process
/// when it committed, so hearing its own notifications again would only wake them twice (a
/// stream reads its page again, a long-poll claims again, the sweeper looks again).
#[derive(Clone, Debug, Default)]
pub(crate) struct OwnBackends(Arc<Mutex<HashSet<u32>>>);

impl OwnBackends {
    /// Learns the backend of a new connection of the store's pool.
    pub(crate) async fn add(&self, conn: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(conn)
            .await?;
        self.0
            .lock()
            .expect("the lock is never poisoned")
            .insert(pid as u32);
        Ok(())
    }

    fn contains(&self, pid: u32) -> bool {
        self.0
            .lock()
            .expect("the lock is never poisoned")
            .contains(&pid)
    }
}

/// Listens on a dedicated connection, skipping the notifications this store's own connections
/// sent. When the connection drops, the feed says `Missed` and the listener reconnects
/// (re-subscribing) on the next read; it ends when the pool closes.
pub(crate) async fn pg_changes(pool: &PgPool, own: OwnBackends) -> Result<ChangeFeed, StoreError> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen_all([TASKS, DEADLINES, EXECUTIONS]).await?;
    let feed = futures::stream::unfold(listener, move |mut listener| {
        let own = own.clone();
        async move {
            loop {
                match listener.try_recv().await {
                    Ok(Some(n)) => {
                        if own.contains(n.process_id()) {
                            continue;
                        }
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
