//! The worker: claims tasks for the runtimes it has, runs them with a cancellation token,
//! streams their output and checkpoints back in batches, and reports how each attempt ended.
//! A report offers the attempt's slot for the execution's next turn; when the reply carries it
//! (eager dispatch), it runs at once on the same slot, without a poll.
//!
//! Graceful drain: when its shutdown token fires, a worker stops polling and gives running
//! attempts `drain_timeout` to finish. Then it stops the rest (through their cancellation
//! tokens) and *releases* them: their last output and checkpoint are saved and the same attempt
//! becomes claimable again at once, so another worker resumes it from the checkpoint instead of
//! waiting for the lease to expire. A release is not a failure: it consumes no retry, writes no
//! history event, and the attempt's `ActivityStarted` names the worker that finishes it.

mod approve;
mod attempt;
mod batch;
mod cadence;
mod finish;
mod grpc;
mod stop;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::BackoffBuilder;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::domain::WorkerPolicy;
use crate::runtime::RuntimeRegistry;

use crate::contract::Delivery;
pub use crate::contract::{PollRequest, WorkerApi, WorkerApiError};
pub use grpc::GrpcWorkerApi;

/// How long an attempt waits for an answer to a tool call before it is held, by default.
pub const DEFAULT_APPROVAL_HOLD: Duration = Duration::from_secs(30);

/// How a worker runs.
#[derive(Clone)]
pub struct WorkerOptions {
    /// Its identity, recorded as lease owner and in `ActivityStarted`.
    pub worker_id: String,
    /// The runtimes it has; it claims only their tasks.
    pub runtimes: RuntimeRegistry,
    /// The queue it serves.
    pub queue: String,
    /// How many attempts it runs at once.
    pub concurrency: usize,
    /// How many polls it keeps open at once (Temporal's pollers), each for its share of the
    /// free slots, so that while one is away with the tasks it got, another can sleep on the
    /// server for a start to hand its first task to.
    pub pollers: usize,
    /// How long one poll may wait on the server.
    pub poll_wait: Duration,
    /// How long a cancelled runtime gets to stop before it is abandoned.
    pub cancel_grace: Duration,
    /// How long an attempt waits for an answer to a tool call its runtime asked about before
    /// the runtime is told to hold: checkpoint, stop, and free the slot until the answer.
    pub approval_hold: Duration,
    /// How long output may sit in the buffer before it is sent.
    pub flush_interval: Duration,
    /// How many chunks make a batch that is sent at once, without waiting for
    /// `flush_interval`; at most [`crate::contract::MAX_BATCH_CHUNKS`].
    pub max_batch: usize,
    /// How many bytes of chunks make a batch that is sent at once; at most
    /// [`crate::contract::MAX_BATCH_BYTES`]. A single larger chunk goes in a batch of its own.
    pub max_batch_bytes: usize,
    /// On shutdown, how long running attempts may take to finish before they are stopped and
    /// released to other workers.
    pub drain_timeout: Duration,
    /// The largest chunk the server takes (its `--max-chunk-bytes`); a larger one fails the
    /// attempt for good. A remote worker learns it from the server's refusal instead.
    pub max_chunk_bytes: usize,
    /// The largest checkpoint the server takes (its `--max-checkpoint-bytes`), likewise.
    pub max_checkpoint_bytes: usize,
    /// What the operator lets agents do here. Advertised in every poll, so the server hands
    /// this worker only tasks it admits, and checked again before each turn runs.
    pub policy: WorkerPolicy,
}

impl WorkerOptions {
    /// Options with the usual defaults for a worker of `runtimes`.
    pub fn new(worker_id: impl Into<String>, runtimes: RuntimeRegistry) -> Self {
        WorkerOptions {
            worker_id: worker_id.into(),
            runtimes,
            queue: crate::domain::DEFAULT_QUEUE.into(),
            concurrency: 32,
            pollers: 1,
            poll_wait: Duration::from_secs(20),
            cancel_grace: Duration::from_secs(5),
            approval_hold: DEFAULT_APPROVAL_HOLD,
            flush_interval: Duration::from_millis(50),
            max_batch: 64,
            max_batch_bytes: crate::contract::MAX_BATCH_BYTES,
            drain_timeout: Duration::from_secs(10),
            max_chunk_bytes: crate::contract::MAX_REPORT_BYTES,
            max_checkpoint_bytes: crate::contract::MAX_DOCUMENT_BYTES,
            policy: WorkerPolicy::default(),
        }
    }
}

/// One of a worker's pollers, with what it shares with the others.
struct Poller {
    api: Arc<dyn WorkerApi>,
    options: Arc<WorkerOptions>,
    stats: Arc<WorkerStats>,
    slots: Arc<Semaphore>,
    /// The most slots one poll asks for.
    share: usize,
    runtimes: Vec<String>,
    shutdown: CancellationToken,
    got: tokio::sync::mpsc::UnboundedSender<Delivery>,
    /// Whether the engine also hands tasks to this worker's inbox: then a poll does not hold
    /// the free slots while it waits (starts take them), and a task it gets when no slot is
    /// left any more is handed back.
    inbox: bool,
}

/// Polls for as many tasks as it has free slots (at most its share), and hands each task it gets
/// on with a slot, until `shutdown`.
async fn poll_loop(p: Poller) {
    let mut backoff = poll_backoff();
    loop {
        let first = tokio::select! {
            _ = p.shutdown.cancelled() => return,
            permit = p.slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let mut permits = vec![first];
        while permits.len() < p.share
            && let Ok(permit) = p.slots.clone().try_acquire_owned()
        {
            permits.push(permit);
        }
        let asked = permits.len();
        if p.inbox {
            permits.clear();
        }
        let request = PollRequest {
            worker_id: p.options.worker_id.clone(),
            runtimes: p.runtimes.clone(),
            queue: p.options.queue.clone(),
            max_tasks: asked as u32,
            slots: p.options.concurrency.max(1) as u32,
            wait: p.options.poll_wait,
            policy: Some(p.options.policy.clone()),
        };
        p.stats.polls.fetch_add(1, Ordering::Relaxed);
        let polled = tokio::select! {
            _ = p.shutdown.cancelled() => return,
            polled = p.api.poll(&request) => polled,
        };
        match polled {
            Ok(assignments) => {
                backoff = poll_backoff();
                p.stats
                    .polled_tasks
                    .fetch_add(assignments.len() as u64, Ordering::Relaxed);
                for assignment in assignments {
                    let permit = match permits.pop() {
                        Some(permit) => Some(permit),
                        None => p.slots.clone().try_acquire_owned().ok(),
                    };
                    let Some(permit) = permit else {
                        attempt::hand_back(&*p.api, &assignment).await;
                        continue;
                    };
                    if p.got.send((assignment, permit)).is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                let delay = backoff.next().unwrap_or(Duration::from_secs(5));
                tracing::warn!(error = %e, ?delay, "poll failed; retrying");
                tokio::select! {
                    _ = p.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// How long a draining worker keeps trying to reach a server to release its attempts.
const RELEASE_PATIENCE: Duration = Duration::from_secs(10);

/// Back-off between failed polls (a server away, restarting, or overloaded), with jitter so a
/// fleet of workers does not reconnect in step.
fn poll_backoff() -> impl Iterator<Item = Duration> {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build()
}

/// What a worker has done so far, counted as it runs (read them through [`Worker::stats`]).
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Polls sent to the server.
    pub polls: AtomicU64,
    /// Tasks those polls returned.
    pub polled_tasks: AtomicU64,
    /// Tasks the server leased to the worker in reply to a report (eager dispatch), run
    /// without a poll.
    pub eager_tasks: AtomicU64,
    /// First tasks of new executions handed to the in-process worker's inbox, run without a
    /// poll.
    pub inbox_tasks: AtomicU64,
}

impl WorkerStats {
    /// (polls, polled tasks, eager tasks) as they are now.
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.polls.load(Ordering::Relaxed),
            self.polled_tasks.load(Ordering::Relaxed),
            self.eager_tasks.load(Ordering::Relaxed),
        )
    }
}

/// A worker over a [`WorkerApi`].
pub struct Worker {
    api: Arc<dyn WorkerApi>,
    options: WorkerOptions,
    stats: Arc<WorkerStats>,
}

impl Worker {
    /// A worker that talks to the engine through `api`.
    pub fn new(api: Arc<dyn WorkerApi>, options: WorkerOptions) -> Self {
        Worker {
            api,
            options,
            stats: Arc::default(),
        }
    }

    /// Its counters, readable while it runs and after.
    pub fn stats(&self) -> Arc<WorkerStats> {
        self.stats.clone()
    }

    /// Polls and runs attempts until `shutdown` fires, then waits for running attempts.
    pub async fn run(self, shutdown: CancellationToken) {
        let options = Arc::new(self.options);
        let slots = Arc::new(Semaphore::new(options.concurrency.max(1)));
        let mut running = JoinSet::new();
        let release = CancellationToken::new();
        let runtimes: Vec<String> = options
            .runtimes
            .names()
            .into_iter()
            .map(String::from)
            .collect();
        tracing::info!(worker = %options.worker_id, ?runtimes, concurrency = options.concurrency, policy = %options.policy.summary(), "worker started");
        // The pollers hand what they got here, each task with the slot it takes.
        let (got, mut assigned) = tokio::sync::mpsc::unbounded_channel();
        // In-process, new executions hand their first task straight to a free slot.
        let (deliver, mut inbox) = tokio::sync::mpsc::unbounded_channel();
        let mut attached = self.api.attach_inbox(crate::contract::Inbox {
            worker_id: options.worker_id.clone(),
            runtimes: runtimes.clone(),
            queue: options.queue.clone(),
            policy: options.policy.clone(),
            slots: slots.clone(),
            deliver,
        });
        let pollers = options.pollers.clamp(1, options.concurrency.max(1));
        let mut polling = JoinSet::new();
        for _ in 0..pollers {
            polling.spawn(poll_loop(Poller {
                api: self.api.clone(),
                options: options.clone(),
                stats: self.stats.clone(),
                slots: slots.clone(),
                share: options.concurrency.max(1).div_ceil(pollers),
                runtimes: runtimes.clone(),
                shutdown: shutdown.clone(),
                got: got.clone(),
                inbox: attached,
            }));
        }
        drop(got);
        let spawn = |running: &mut JoinSet<()>, (assignment, permit): Delivery| {
            let api = self.api.clone();
            let options = options.clone();
            let release = release.clone();
            let draining = shutdown.clone();
            let stats = self.stats.clone();
            running.spawn(async move {
                attempt::run(api, &options, assignment, release, draining, &stats).await;
                drop(permit);
            });
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                next = assigned.recv() => match next {
                    Some(next) => spawn(&mut running, next),
                    None => break,
                },
                next = inbox.recv(), if attached => match next {
                    Some(next) => {
                        self.stats.inbox_tasks.fetch_add(1, Ordering::Relaxed);
                        spawn(&mut running, next);
                    }
                    None => attached = false,
                },
            }
            // Reap finished attempts so the set does not grow.
            while running.try_join_next().is_some() {}
        }
        // Tasks a poller got, or a start handed over, just before the shutdown run too (they
        // drain like the others).
        self.api.detach_inbox(&options.worker_id);
        while polling.join_next().await.is_some() {}
        // A start that took a slot before the detach and hands its task over after this finds
        // the inbox closed, and releases the task to another worker.
        inbox.close();
        while let Ok(next) = assigned.try_recv() {
            spawn(&mut running, next);
        }
        while let Ok(next) = inbox.try_recv() {
            self.stats.inbox_tasks.fetch_add(1, Ordering::Relaxed);
            spawn(&mut running, next);
        }
        if !running.is_empty() {
            tracing::info!(running = running.len(), deadline = ?options.drain_timeout, "draining");
        }
        let drained = tokio::time::timeout(options.drain_timeout, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::info!(
                left = running.len(),
                "drain deadline passed; releasing running attempts"
            );
            release.cancel();
            // Each stops its runtime (abandoning it after `cancel_grace`) and releases it, which
            // retries a while when no server answers; the lease covers anything beyond that.
            let released = tokio::time::timeout(options.cancel_grace + RELEASE_PATIENCE, async {
                while running.join_next().await.is_some() {}
            })
            .await;
            if released.is_err() {
                tracing::warn!(
                    left = running.len(),
                    "could not release every attempt; their leases will expire"
                );
                running.abort_all();
                while running.join_next().await.is_some() {}
            }
        }
        // Every attempt was reported or released: leave the list of workers now rather than
        // when the servers stop hearing from this one.
        if let Err(error) = self.api.deregister(&options.worker_id).await {
            tracing::warn!(%error, "could not deregister; the worker leaves the list when it is no longer seen");
        }
        let (polls, polled, eager) = self.stats.snapshot();
        tracing::info!(worker = %options.worker_id, polls, polled_tasks = polled, eager_tasks = eager, "worker stopped");
    }
}
