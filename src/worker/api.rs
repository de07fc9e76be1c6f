//! How a worker talks to the engine: directly in-process, or over gRPC. The worker code is the
//! same for both.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::domain::Lease;
use crate::engine::{ActivityOutcome, Assignment, ChunkIn, Engine, EngineError};
use crate::store::ClaimRequest;

/// Why a worker call failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkerApiError {
    /// The attempt's lease is gone (timed out, cancelled, or taken by another worker): stop
    /// working on it and report nothing more.
    #[error("lease lost: {0}")]
    LeaseLost(String),
    /// The server could not be reached or failed; try again later.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The server refused the call for good (a bug, or bad credentials).
    #[error("refused: {0}")]
    Refused(String),
}

/// What a worker asks for when it polls.
#[derive(Debug, Clone)]
pub struct PollRequest {
    /// The worker's identity.
    pub worker_id: String,
    /// The runtimes it has.
    pub runtimes: Vec<String>,
    /// The queue it serves.
    pub queue: String,
    /// Free slots.
    pub max_tasks: u32,
    /// All slots (its concurrency), for `ListWorkers`.
    pub slots: u32,
    /// How long the server may hold the call when there is nothing to do.
    pub wait: Duration,
}

/// The engine as a worker sees it.
#[async_trait]
pub trait WorkerApi: Send + Sync + 'static {
    /// Claims tasks, waiting up to `wait` when there are none.
    async fn poll(&self, request: &PollRequest) -> Result<Vec<Assignment>, WorkerApiError>;
    /// Reports output and a checkpoint; extends the lease. Returns whether to stop.
    async fn progress(
        &self,
        lease: &Lease,
        first_chunk: Option<u64>,
        chunks: Vec<ChunkIn>,
        checkpoint: Option<serde_json::Value>,
    ) -> Result<bool, WorkerApiError>;
    /// Reports how the attempt ended, with its last output.
    async fn report(
        &self,
        lease: &Lease,
        first_chunk: Option<u64>,
        chunks: Vec<ChunkIn>,
        outcome: ActivityOutcome,
    ) -> Result<(), WorkerApiError>;
    /// Hands a running attempt back with its last output and checkpoint (graceful drain), so
    /// another worker resumes it at once.
    async fn release(
        &self,
        lease: &Lease,
        chunks: Vec<ChunkIn>,
        checkpoint: Option<serde_json::Value>,
    ) -> Result<(), WorkerApiError>;
}

/// The in-process implementation: calls the engine directly.
pub struct DirectWorkerApi {
    engine: Arc<Engine>,
    /// Never fires: an in-process worker stops polling through its own shutdown token.
    never: CancellationToken,
}

impl DirectWorkerApi {
    /// Talks to `engine`.
    pub fn new(engine: Arc<Engine>) -> Self {
        DirectWorkerApi {
            engine,
            never: CancellationToken::new(),
        }
    }
}

fn from_engine(e: EngineError) -> WorkerApiError {
    match e {
        EngineError::Stale(message) => WorkerApiError::LeaseLost(message),
        EngineError::Store(e) => WorkerApiError::Unavailable(e.to_string()),
        other => WorkerApiError::Refused(other.to_string()),
    }
}

#[async_trait]
impl WorkerApi for DirectWorkerApi {
    async fn poll(&self, request: &PollRequest) -> Result<Vec<Assignment>, WorkerApiError> {
        let claim = ClaimRequest {
            worker_id: request.worker_id.clone(),
            runtimes: request.runtimes.clone(),
            queue: request.queue.clone(),
            max: request.max_tasks,
            now: 0,
        };
        self.engine
            .poll(claim, request.slots, request.wait, &self.never)
            .await
            .map_err(from_engine)
    }

    async fn progress(
        &self,
        lease: &Lease,
        first_chunk: Option<u64>,
        chunks: Vec<ChunkIn>,
        checkpoint: Option<serde_json::Value>,
    ) -> Result<bool, WorkerApiError> {
        self.engine
            .progress(lease, first_chunk, chunks, checkpoint)
            .await
            .map_err(from_engine)
    }

    async fn report(
        &self,
        lease: &Lease,
        first_chunk: Option<u64>,
        chunks: Vec<ChunkIn>,
        outcome: ActivityOutcome,
    ) -> Result<(), WorkerApiError> {
        self.engine
            .report(lease, first_chunk, chunks, outcome)
            .await
            .map_err(from_engine)
    }

    async fn release(
        &self,
        lease: &Lease,
        chunks: Vec<ChunkIn>,
        checkpoint: Option<serde_json::Value>,
    ) -> Result<(), WorkerApiError> {
        self.engine
            .release(lease, chunks, checkpoint)
            .await
            .map_err(from_engine)
    }
}
