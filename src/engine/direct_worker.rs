//! The worker contract served in-process: a worker inside the server (`cairn dev`, `serve` with
//! local slots, `bench`, `demo`) calls the engine directly, with no network between them.

use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::{Engine, EngineError};
use crate::contract::{
    Assignment, PollRequest, Progress, ProgressReply, Release, Report, WorkerApi, WorkerApiError,
};

/// [`WorkerApi`] over an [`Engine`] in the same process.
pub struct DirectWorkerApi {
    engine: Arc<Engine>,
    /// Never fires: an in-process worker stops polling through its own shutdown token.
    never: CancellationToken,
}

impl DirectWorkerApi {
    /// A worker API that calls `engine`.
    pub fn new(engine: Arc<Engine>) -> Self {
        DirectWorkerApi {
            engine,
            never: CancellationToken::new(),
        }
    }
}

/// What an engine error means to the worker that made the call: the same three answers the
/// gRPC client gives for the status codes these errors become.
fn to_worker(e: EngineError) -> WorkerApiError {
    match e {
        EngineError::Stale(message) => WorkerApiError::LeaseLost(message),
        EngineError::Store(e) => WorkerApiError::Unavailable(e.to_string()),
        other => WorkerApiError::Refused(other.to_string()),
    }
}

#[async_trait]
impl WorkerApi for DirectWorkerApi {
    async fn poll(&self, request: &PollRequest) -> Result<Vec<Assignment>, WorkerApiError> {
        self.engine
            .poll(request, &self.never)
            .await
            .map_err(to_worker)
    }

    async fn progress(&self, progress: &Progress) -> Result<ProgressReply, WorkerApiError> {
        self.engine
            .progress(progress.clone())
            .await
            .map_err(to_worker)
    }

    async fn report(&self, report: &Report) -> Result<Option<Assignment>, WorkerApiError> {
        self.engine.report(report.clone()).await.map_err(to_worker)
    }

    async fn release(&self, release: &Release) -> Result<(), WorkerApiError> {
        self.engine
            .release(release.clone())
            .await
            .map_err(to_worker)
    }
    async fn deregister(&self, worker_id: &str) -> Result<(), WorkerApiError> {
        self.engine.deregister(worker_id).await.map_err(to_worker)
    }

    fn attach_inbox(&self, inbox: crate::contract::Inbox) -> bool {
        self.engine.attach_inbox(inbox);
        true
    }

    fn detach_inbox(&self, worker_id: &str) {
        self.engine.detach_inbox(worker_id);
    }
}
