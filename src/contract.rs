//! The worker contract: the messages a worker and the engine exchange, one struct per message,
//! the limits both sides hold them to, and [`WorkerApi`], the engine as a worker sees it.
//!
//! A worker polls ([`PollRequest`]) and is handed [`Assignment`]s. While an attempt runs it sends
//! [`Progress`] (output chunks and a checkpoint, which also extend the lease) and learns from the
//! [`ProgressReply`] whether to stop. It ends the attempt with a [`Report`] of its
//! [`ActivityOutcome`], or, when draining, hands it back with a [`Release`]. A report may offer
//! the worker's slot for the execution's next task, which the reply then carries as an
//! [`Assignment`] (eager dispatch: no poll, no claim). Every message after
//! the assignment carries the attempt's [`Lease`]: a message whose lease is no longer held
//! changes nothing.
//!
//! Architecture invariant: this module depends only on `domain`. The worker links it and the
//! API client, never the engine or the store; the engine and the gRPC service implement it.

use std::time::Duration;

use async_trait::async_trait;

use crate::domain::{Failure, Turn, Usage, WorkerPolicy};

pub use crate::domain::Lease;

/// The most chunks one progress batch or report carries. A worker sends more as several
/// batches, in order.
pub const MAX_BATCH_CHUNKS: usize = 256;

/// The most bytes of chunks (their kinds and encoded JSON data) a worker puts in one batch of
/// several chunks. A single chunk larger than this goes alone in its batch, up to
/// [`MAX_REPORT_BYTES`].
pub const MAX_BATCH_BYTES: usize = 1 << 20;

/// The most bytes of payload one worker message may carry: its chunks, checkpoint and output, as
/// encoded JSON. It stays under gRPC's default 4 MiB message limit, with room for the lease, the
/// failure and the framing of each field. A server refuses a larger report; a worker never sends
/// one, and ends an attempt whose single chunk, checkpoint or output exceeds it as a
/// non-retryable failure (the runtime produced more than can be stored in one piece).
pub const MAX_REPORT_BYTES: usize = (4 << 20) - (256 << 10);

/// The largest single JSON document a report may carry (one chunk's data, the checkpoint, the
/// output, a failure's details). A server refuses a report with a larger one (`INVALID_ARGUMENT`,
/// the limit named); a worker never sends one, and fails the attempt instead, as for
/// [`MAX_REPORT_BYTES`]. The `default` runtime's checkpoint is a whole transcript, hence the room.
pub const MAX_DOCUMENT_BYTES: usize = 3 << 20;

/// The failure code of an attempt whose runtime produced a chunk, checkpoint or output larger
/// than [`MAX_REPORT_BYTES`].
pub const TOO_LARGE_CODE: &str = "output_too_large";

/// The failure code of an attempt whose report the server refused for good (the request was
/// invalid); the attempt is ended rather than its report retried forever.
pub const REPORT_REFUSED_CODE: &str = "report_refused";

/// What a worker asks for when it polls.
#[derive(Debug, Clone, PartialEq)]
pub struct PollRequest {
    /// The worker's identity, recorded as lease owner and in `ActivityStarted`.
    pub worker_id: String,
    /// The runtimes it has; it is handed only their tasks.
    pub runtimes: Vec<String>,
    /// The queue it serves.
    pub queue: String,
    /// How many tasks it can start now (its free slots).
    pub max_tasks: u32,
    /// How many attempts it runs at once in all, shown by `ListWorkers`.
    pub slots: u32,
    /// How long the server may hold the call when there is nothing to do.
    pub wait: Duration,
    /// The worker's policy: it is handed only tasks whose agent the policy admits. `None` for
    /// a worker that advertises none (an older or external worker), which is handed any.
    pub policy: Option<WorkerPolicy>,
}

/// A claimed attempt, handed to a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// The fence every later message about this attempt must carry.
    pub lease: Lease,
    /// The runtime to run it with.
    pub runtime: String,
    /// The turn to run.
    pub turn: Turn,
    /// The checkpoint the previous attempt (or turn) saved, to resume from.
    pub checkpoint: Option<serde_json::Value>,
    /// The lease expires after this long without a message from the worker.
    pub heartbeat_ms: u64,
}

/// An output chunk as a worker sends it; the engine adds the activity and attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkIn {
    /// `text`, `tool_use`, `result`, ...
    pub kind: String,
    /// The chunk's payload, whose shape depends on `kind` (e.g. `{"text": ...}`).
    pub data: serde_json::Value,
}

impl ChunkIn {
    /// The bytes this chunk weighs against [`MAX_BATCH_BYTES`] and [`MAX_REPORT_BYTES`]: its kind
    /// and its data as encoded JSON, as it goes on the wire.
    pub fn encoded_len(&self) -> usize {
        self.kind.len() + encoded_len(&self.data)
    }
}

/// Output and a checkpoint of a running attempt; it also extends the lease (a heartbeat is a
/// progress message with neither).
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Which attempt this is and the lease token it was claimed with; a message whose lease is
    /// no longer held changes nothing.
    pub lease: Lease,
    /// The index of `chunks[0]` among the chunks this lease has sent, so that a batch sent again
    /// after a lost reply is stored once. `None` (an old worker) stores every chunk it gets.
    pub first_chunk: Option<u64>,
    /// New output, in order.
    pub chunks: Vec<ChunkIn>,
    /// A checkpoint that covers every chunk sent so far, including these.
    pub checkpoint: Option<serde_json::Value>,
    /// The directory the attempt works in, once its runtime named it: stored with the lease, so
    /// an attempt that never reports (its worker died) still records where it ran.
    pub workspace: Option<String>,
    /// Tool calls the runtime asks a person about, recorded as `ApprovalRequested` (an ask
    /// whose id the turn already has is recorded once).
    pub asks: Vec<Ask>,
    /// The runtime waits for answers: the reply carries every decision of this turn so far.
    pub awaiting: bool,
}

/// A tool call a runtime asks about (see `runtime::ToolAsk`).
#[derive(Debug, Clone, PartialEq)]
pub struct Ask {
    /// Stable across attempts: the approval's id.
    pub id: String,
    /// The tool.
    pub tool: String,
    /// The input it would run with.
    pub input: serde_json::Value,
}

/// The engine's answer to [`Progress`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProgressReply {
    /// Cancellation of the execution was requested: stop the runtime and report
    /// [`ActivityOutcome::Canceled`].
    pub cancel_requested: bool,
    /// When the progress was `awaiting` (or asked): the decisions made so far in this turn, by
    /// approval id.
    pub decisions: Vec<(String, crate::domain::ApprovalDecision)>,
}

/// How an attempt ended, with its last output.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Which attempt this is and the lease token it was claimed with; a message whose lease is
    /// no longer held changes nothing.
    pub lease: Lease,
    /// The index of `chunks[0]` among the chunks this lease has sent (see [`Progress`]).
    pub first_chunk: Option<u64>,
    /// The output not yet sent, in order.
    pub chunks: Vec<ChunkIn>,
    /// Completed, failed or canceled, with what goes with each.
    pub outcome: ActivityOutcome,
    /// The worker has a slot free for the execution's next task (it may be the slot of this
    /// attempt): when the report's transition schedules one, it is leased to this worker at once
    /// and comes back in the reply (eager dispatch), without a poll or a claim. `false` leaves
    /// the next task to the queue.
    pub accept_next: bool,
    /// The directory the attempt worked in on its worker (recorded in `ActivityStarted`).
    pub workspace: Option<String>,
}

/// How an attempt ended, as its worker reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum ActivityOutcome {
    /// The runtime returned a result.
    Completed {
        /// The turn's result.
        output: serde_json::Value,
        /// Tokens, cost and tool calls.
        usage: Usage,
        /// The state to hand to the next turn.
        checkpoint: Option<serde_json::Value>,
    },
    /// The runtime failed.
    Failed {
        /// Why, and whether a retry may help.
        failure: Failure,
        /// The earliest retry the runtime asked for.
        retry_after_ms: Option<u64>,
        /// The last checkpoint, for the retry to resume from.
        checkpoint: Option<serde_json::Value>,
    },
    /// The attempt stopped after cancellation was requested.
    Canceled {
        /// The runtime ignored its token and was abandoned.
        abandoned: bool,
    },
}

impl ActivityOutcome {
    /// The bytes of its largest JSON document, held to [`MAX_DOCUMENT_BYTES`].
    pub fn largest_document(&self) -> usize {
        match self {
            ActivityOutcome::Completed {
                output, checkpoint, ..
            } => encoded_len(output).max(checkpoint.as_ref().map_or(0, encoded_len)),
            ActivityOutcome::Failed {
                failure,
                checkpoint,
                ..
            } => encoded_len(&failure.details).max(checkpoint.as_ref().map_or(0, encoded_len)),
            ActivityOutcome::Canceled { .. } => 0,
        }
    }

    /// The bytes of payload this outcome adds to a [`Report`] (see [`MAX_REPORT_BYTES`]).
    pub fn encoded_len(&self) -> usize {
        match self {
            ActivityOutcome::Completed {
                output, checkpoint, ..
            } => encoded_len(output) + checkpoint.as_ref().map_or(0, encoded_len),
            ActivityOutcome::Failed {
                failure,
                checkpoint,
                ..
            } => {
                failure.code.len()
                    + failure.message.len()
                    + encoded_len(&failure.details)
                    + checkpoint.as_ref().map_or(0, encoded_len)
            }
            ActivityOutcome::Canceled { .. } => 0,
        }
    }
}

/// A running attempt handed back by a draining worker, with its last output and checkpoint, so
/// another worker resumes it at once.
#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    /// Which attempt this is and the lease token it was claimed with; a message whose lease is
    /// no longer held changes nothing.
    pub lease: Lease,
    /// The output not yet sent, in order.
    pub chunks: Vec<ChunkIn>,
    /// The newest checkpoint, covering every chunk sent.
    pub checkpoint: Option<serde_json::Value>,
}

impl Release {
    /// The release of an attempt that never ran (no output, no checkpoint): the task is given
    /// back as it was leased.
    pub fn unrun(lease: Lease) -> Release {
        Release {
            lease,
            chunks: Vec::new(),
            checkpoint: None,
        }
    }
}

/// A runtime a worker serves that is not built into Cairn (an *external* runtime, e.g. one
/// written with the Python SDK). The worker registers it before it polls for its tasks; the
/// server records it, so agents of that runtime can be created and checked against its schema
/// even while no worker of it is connected. Everything after registration (poll, progress,
/// report, release) is the same contract as for built-in runtimes.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeSpec {
    /// Its name, as agents name it in `runtime`. Never one of the built-in runtimes' names.
    pub name: String,
    /// One sentence for people (`cairn agent runtimes`).
    pub description: String,
    /// The JSON Schema an agent's `runtime_config` must satisfy (`{}` accepts anything).
    pub config_schema: serde_json::Value,
}

/// What a worker with external runtimes says once per connection, before it polls.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    /// The worker's identity, as its polls give it.
    pub worker_id: String,
    /// The external runtimes it serves.
    pub runtimes: Vec<RuntimeSpec>,
}

/// Why a worker's call failed, in the three ways a worker acts on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WorkerApiError {
    /// Fenced: the attempt's lease is gone (timed out, cancelled, or taken by another worker).
    /// Stop working on it and report nothing more.
    #[error("lease lost: {0}")]
    LeaseLost(String),
    /// Retryable: the server could not be reached or failed for now; send the same message
    /// again later.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Refused for good: the message is invalid (a bug, or output beyond a limit) or the
    /// credentials are. Sending it again cannot help.
    #[error("refused: {0}")]
    Refused(String),
}

/// The engine as a worker sees it. The same worker code runs in-process (over the engine
/// itself) and in `cairn worker` processes (over gRPC).
#[async_trait]
pub trait WorkerApi: Send + Sync + 'static {
    /// Claims tasks, waiting up to `request.wait` when there are none.
    async fn poll(&self, request: &PollRequest) -> Result<Vec<Assignment>, WorkerApiError>;
    /// Stores output and a checkpoint and extends the lease.
    async fn progress(&self, progress: &Progress) -> Result<ProgressReply, WorkerApiError>;
    /// Records how the attempt ended, with its last output. When the report accepted it
    /// ([`Report::accept_next`]), the reply may carry the execution's next task, leased to this
    /// worker: run it as if a poll had returned it.
    async fn report(&self, report: &Report) -> Result<Option<Assignment>, WorkerApiError>;
    /// Hands a running attempt back (graceful drain).
    async fn release(&self, release: &Release) -> Result<(), WorkerApiError>;
    /// Says the worker stopped cleanly (after its attempts were reported or released), so it
    /// leaves the list of workers at once.
    async fn deregister(&self, worker_id: &str) -> Result<(), WorkerApiError>;
    /// Gives the engine an inbox through which it hands this worker the first tasks of new
    /// executions while it has free slots (the in-process worker only); `false` where there is
    /// none (over gRPC).
    fn attach_inbox(&self, _inbox: Inbox) -> bool {
        false
    }
    /// Takes the inbox back (the worker is stopping).
    fn detach_inbox(&self, _worker_id: &str) {}
}

/// A task handed to a worker through its inbox, with the slot it takes.
pub type Delivery = (Assignment, tokio::sync::OwnedSemaphorePermit);

/// An in-process worker's inbox (see `engine/inbox.rs`): who it is, what it takes, its slots,
/// and where tasks go.
pub struct Inbox {
    /// The worker, recorded as the lease owner.
    pub worker_id: String,
    /// The runtimes it has.
    pub runtimes: Vec<String>,
    /// The queue it serves.
    pub queue: String,
    /// What it admits.
    pub policy: crate::domain::WorkerPolicy,
    /// Its slots: a task is handed over only with one of their permits.
    pub slots: std::sync::Arc<tokio::sync::Semaphore>,
    /// Where handed tasks go.
    pub deliver: tokio::sync::mpsc::UnboundedSender<Delivery>,
}

/// The length of `value` encoded as JSON, without building the string.
pub fn encoded_len(value: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a `Value` into a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_len_is_the_length_of_the_json_on_the_wire() {
        let value = serde_json::json!({"text": "héllo", "n": [1, 2.5, null]});
        assert_eq!(encoded_len(&value), value.to_string().len());
        let chunk = ChunkIn {
            kind: "text".into(),
            data: value.clone(),
        };
        assert_eq!(chunk.encoded_len(), 4 + value.to_string().len());
    }

    #[test]
    fn the_report_limit_leaves_room_under_the_grpc_message_limit() {
        const { assert!(MAX_REPORT_BYTES < 4 << 20) };
        const { assert!(MAX_BATCH_BYTES < MAX_REPORT_BYTES) };
    }
}
