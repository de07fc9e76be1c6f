//! Following an execution's output: live, in pages bounded by count and bytes, with
//! back-pressure, at most one store read per wake-up.
//!
//! A wake-up from a commit made on this server needs no read at all when the follower saw the
//! row just as that commit found it (its version and output length): the commit hands over what
//! it made of the row — status, the chunks it appended, and the whole row if the execution closed
//! or waits — as the page the follower would have read (`notify::Tail`). The last few commits'
//! tails are kept, so a follower woken once for several takes them one after another. Any other
//! wake-up (another server's commit, a progress report, tails that do not continue what the
//! follower saw) reads.
//!
//! Memory per follower is bounded by about two pages: the next page is read only once the
//! reader has taken the previous one (a channel of one page, reserved before the read), so a
//! slow reader slows its follower down instead of making the server buffer the output.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::futures::OwnedNotified;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::view::ExecutionView;
use super::{Engine, EngineError, Watch};
use crate::store::{OutputPage, StoredChunk};

/// How many chunks one page takes at most.
pub const PAGE_CHUNKS: u32 = 512;

/// How many bytes of chunk data one page takes at most (a single larger chunk still comes, as a
/// page of its own).
pub const PAGE_BYTES: u64 = 4 << 20;

/// How long a follower waits without a wake-up before it looks again anyway.
const SAFETY_NET: Duration = Duration::from_secs(10);

/// What a follower hands its reader.
#[derive(Debug)]
pub enum OutputEvent {
    /// The next chunks, in order.
    Chunks(Vec<StoredChunk>),
    /// The execution closed and every chunk was sent; the last event.
    Closed(Box<ExecutionView>),
    /// The execution waits (a conversation for its next message, a turn for an approval) and
    /// every chunk was sent. Sent again each time what it waits for changes.
    Waiting(Box<ExecutionView>),
    /// The server is shutting down; the reader resumes elsewhere after `after_seq`. The last
    /// event.
    Interrupted {
        /// The seq of the last chunk sent.
        after_seq: u64,
    },
}

/// The reading end of a follower: one page at a time. Dropping it stops the follower.
pub type OutputFollower = mpsc::Receiver<Result<OutputEvent, EngineError>>;

impl Engine {
    /// Follows the output of `id` after `after_seq` until the execution has closed and every
    /// chunk was handed over, or until `shutdown`. `NotFound` at once when there is no such
    /// execution, or when `admits` refuses its namespace (word for word the same).
    pub async fn follow_output(
        self: &Arc<Self>,
        id: Uuid,
        after_seq: u64,
        include_superseded: bool,
        admits: impl FnOnce(&str) -> bool,
        shutdown: CancellationToken,
    ) -> Result<OutputFollower, EngineError> {
        // Registered and armed before the first read, so no change after it is missed.
        let changes = self.notifier.watch(id);
        let mut armed = changes.arm();
        armed.as_mut().enable();
        // The first page is also what says the execution exists, and in which namespace: one
        // read, not two (or three).
        let first = read_page(self, id, after_seq, PAGE_CHUNKS, include_superseded)
            .await?
            .filter(|page| admits(&page.namespace))
            .ok_or_else(|| EngineError::execution_not_found(id))?;
        let (tx, rx) = mpsc::channel(1);
        let follower = Follower {
            engine: self.clone(),
            id,
            after: after_seq,
            include_superseded,
            changes,
            tx,
            shutdown,
            waited_at: None,
            known: None,
            first: Some((first, armed)),
        };
        tokio::spawn(follower.run());
        Ok(rx)
    }
}

struct Follower {
    engine: Arc<Engine>,
    id: Uuid,
    after: u64,
    /// Whether superseded chunks are sent too (raw readers); by default they are skipped.
    include_superseded: bool,
    /// The page `follow_output` read to learn the execution exists, with the wake-up it armed
    /// before that read. (Before `changes`: fields drop in order, and a watch that drops while
    /// a wake-up still refers to it stays registered.)
    first: Option<(OutputPage, Pin<Box<OwnedNotified>>)>,
    changes: Watch,
    tx: mpsc::Sender<Result<OutputEvent, EngineError>>,
    shutdown: CancellationToken,
    /// The history length of the last `Waiting` sent, so each wait is announced once.
    waited_at: Option<u64>,
    /// The row's version and output length in the last page taken, once every chunk up to
    /// there was sent: a commit's tail that starts there continues it exactly.
    known: Option<(u64, u64)>,
}

/// One page of `id` after `after`, counted in the engine's reads.
async fn read_page(
    engine: &Engine,
    id: Uuid,
    after: u64,
    limit: u32,
    include_superseded: bool,
) -> Result<Option<OutputPage>, EngineError> {
    engine
        .reads
        .output_pages
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(engine
        .store
        .output_page(id, after, limit, PAGE_BYTES, include_superseded)
        .await?)
}

impl Follower {
    /// The page the last commit on this server made, if it continues exactly what this follower
    /// saw last and fits a page of `limit` chunks (a report's chunks are within a page's bytes).
    fn tail_page(&self, limit: u32) -> Option<OutputPage> {
        let tail = self.changes.tail_from(self.known?)?;
        (tail.page.chunks.len() <= limit as usize).then(|| tail.page.clone())
    }

    async fn run(mut self) {
        // The count asked for adapts to the chunks' sizes: after a page cut short by bytes, ask
        // for about twice what fitted, so the store sizes few chunks it will not return.
        let mut limit = PAGE_CHUNKS;
        loop {
            // Armed before the read, so a change between the read and the wait is not lost.
            let (first, mut changed) = match self.first.take() {
                Some((page, armed)) => (Some(page), armed),
                None => {
                    let mut armed = self.changes.arm();
                    armed.as_mut().enable();
                    (None, armed)
                }
            };
            // Back-pressure: wait until the reader has taken the previous page.
            let permit = tokio::select! {
                permit = self.tx.reserve() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return, // the reader went away
                },
                // The reader is not taking pages; it resumes elsewhere from what it got.
                _ = self.shutdown.cancelled() => return,
            };
            let read = match first {
                Some(page) => Ok(Some(page)),
                None => match self.tail_page(limit) {
                    Some(page) => Ok(Some(page)),
                    None => {
                        read_page(
                            &self.engine,
                            self.id,
                            self.after,
                            limit,
                            self.include_superseded,
                        )
                        .await
                    }
                },
            };
            let page = match read {
                Ok(Some(page)) => page,
                Ok(None) => {
                    let e = EngineError::execution_not_found(self.id);
                    permit.send(Err(e));
                    return;
                }
                Err(e) => {
                    permit.send(Err(e));
                    return;
                }
            };
            let seen = (page.next_seq, page.output_seq);
            let caught_up = match page.chunks.last() {
                Some(last) => {
                    let got = page.chunks.len() as u32;
                    limit = if got < limit && last.seq < page.output_seq {
                        got.saturating_mul(2).clamp(1, PAGE_CHUNKS)
                    } else {
                        limit.saturating_mul(2).min(PAGE_CHUNKS)
                    };
                    self.after = last.seq;
                    permit.send(Ok(OutputEvent::Chunks(page.chunks)));
                    self.after >= page.output_seq
                }
                None => {
                    drop(permit);
                    true
                }
            };
            // Only a follower that sent everything up to there is continued by a tail.
            self.known = caught_up.then_some(seen);
            if !caught_up {
                continue;
            }
            // The page and the status come from one snapshot: closed and caught up means done.
            // Such a page brings the execution's row with it (a read of its own only if not).
            if page.status.is_closed() {
                let closed = match page.execution {
                    Some(record) => Ok(*record),
                    None => self.engine.execution(self.id).await,
                };
                let event =
                    closed.map(|record| OutputEvent::Closed(Box::new(self.engine.summary(record))));
                let _ = self.tx.send(event).await;
                return;
            }
            let waiting = match page.execution {
                Some(record) => Some(*record),
                None if page.status == crate::domain::ExecutionStatus::Waiting => {
                    self.engine.execution(self.id).await.ok()
                }
                None => None,
            };
            if let Some(record) = waiting
                && record.status == crate::domain::ExecutionStatus::Waiting
                && self.waited_at != Some(record.next_seq)
            {
                self.waited_at = Some(record.next_seq);
                let view = self.engine.summary(record);
                if self
                    .tx
                    .send(Ok(OutputEvent::Waiting(Box::new(view))))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            // A commit through this server that continues this page may be kept already: its
            // wake-up came before this round armed, so take it now rather than wait.
            if self
                .known
                .is_some_and(|known| self.changes.tail_from(known).is_some())
            {
                continue;
            }
            // Wait for a change to this execution, committed through this server or (through
            // the store's change feed) any other. The timeout is only a safety net.
            tokio::select! {
                _ = changed.as_mut() => {}
                _ = tokio::time::sleep(SAFETY_NET) => {}
                _ = self.tx.closed() => return,
                _ = self.shutdown.cancelled() => {
                    let _ = self.tx.send(Ok(OutputEvent::Interrupted { after_seq: self.after })).await;
                    return;
                }
            }
        }
    }
}
