//! Group commit: transitions of many executions share one database transaction.
//!
//! Each transition still commits atomically (invariant 2), and each gets its own outcome: the
//! store checks row versions and fences per transition inside the shared transaction. What is
//! shared is the commit itself — one fsync for every transition that was waiting — which is what
//! bounds throughput with durable commits.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::EngineError;
use crate::store::{CommitOutcome, RowAfter, Store, Transition};

/// The most transitions one commit takes.
const MAX_BATCH: usize = 256;

/// What a committed transition's caller learns: its outcome and, for an update, what it made of
/// the row (see [`RowAfter`]).
pub(crate) type Outcome = (CommitOutcome, Option<RowAfter>);

struct Request {
    transition: Transition,
    /// Whether the commit hands its page to followers on this server (with the whole row if the
    /// execution closes or waits): `apply.rs` asks for every transition that closes or waits,
    /// watched yet or not, and for the others of executions watched when submitted.
    for_followers: bool,
    reply: oneshot::Sender<Result<Outcome, EngineError>>,
}

/// A handle to the committer task.
#[derive(Clone)]
pub(crate) struct Committer {
    requests: mpsc::UnboundedSender<Request>,
}

impl Committer {
    /// Starts the committer task over `store`. It runs until every handle is dropped.
    pub(crate) fn start(store: Arc<dyn Store>) -> Committer {
        let (requests, rx) = mpsc::unbounded_channel();
        if store.commits_on_own_thread() {
            // It ends with the loop, when every handle is gone.
            std::thread::Builder::new()
                .name("cairn-commits".into())
                .spawn(move || {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a runtime for the commits' thread")
                        .block_on(run(store, rx));
                })
                .expect("a thread for the commits");
        } else {
            tokio::spawn(run(store, rx));
        }
        Committer { requests }
    }

    /// Commits one transition, possibly together with others, and records what it `observed`
    /// once it committed.
    pub(crate) async fn commit(
        &self,
        transition: Transition,
        observed: super::observe::Observed,
        for_followers: bool,
    ) -> Result<Outcome, EngineError> {
        let (reply, outcome) = oneshot::channel();
        self.requests
            .send(Request {
                transition,
                for_followers,
                reply,
            })
            .map_err(|_| EngineError::Internal("the committer has stopped".into()))?;
        let outcome = outcome
            .await
            .map_err(|_| EngineError::Internal("the committer dropped a transition".into()))?;
        if let Ok((CommitOutcome::Committed, _)) = &outcome {
            observed.record();
        }
        outcome
    }
}

async fn run(store: Arc<dyn Store>, mut rx: mpsc::UnboundedReceiver<Request>) {
    // SQLite has one writer, so one commit at a time; PostgreSQL takes several at once, and while
    // one batch commits the next one gathers.
    let slots = Arc::new(tokio::sync::Semaphore::new(
        store.concurrent_commits().max(1),
    ));
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let permit = slots.clone().acquire_owned().await.expect("never closed");
        if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        let requests = std::mem::take(&mut batch);
        let store = store.clone();
        tokio::spawn(async move {
            commit_batch(store.as_ref(), requests).await;
            drop(permit);
        });
    }
}

async fn commit_batch(store: &dyn Store, requests: Vec<Request>) {
    let started = std::time::Instant::now();
    let size = requests.len();
    {
        let mut transitions = Vec::with_capacity(size);
        let mut watched = Vec::with_capacity(size);
        let mut replies = Vec::with_capacity(size);
        for r in requests {
            transitions.push(r.transition);
            watched.push(r.for_followers);
            replies.push(r.reply);
        }
        match store.commit_watched(&transitions, &watched).await {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            // One bad transition must not fail the others: commit them one by one.
            Err(e) if transitions.len() > 1 => {
                tracing::warn!(error = %e, size = transitions.len(), "group commit failed; committing one by one");
                for ((transition, watched), reply) in transitions.iter().zip(watched).zip(replies) {
                    let outcome = store
                        .commit_watched(std::slice::from_ref(transition), &[watched])
                        .await;
                    let _ = reply.send(outcome.map_err(EngineError::from).and_then(|mut o| {
                        o.pop().ok_or_else(|| {
                            EngineError::Internal("the store returned no outcome".into())
                        })
                    }));
                }
            }
            Err(e) => {
                let message = e.to_string();
                let mut replies = replies.into_iter();
                if let Some(reply) = replies.next() {
                    let _ = reply.send(Err(e.into()));
                }
                for reply in replies {
                    let _ = reply.send(Err(EngineError::Internal(message.clone())));
                }
            }
        }
    }
    crate::telemetry::metrics::group_commit(size, started.elapsed().as_secs_f64());
}
