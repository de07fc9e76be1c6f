//! [`WorkerApi`] over gRPC, for `cairn worker` processes: one or more servers, used one at a
//! time, moving to the next when a call finds the current one unreachable (failover). Any
//! server accepts any report, since leases live in the shared database, so an attempt claimed
//! through one server can report through another.

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use tonic::{Code, Status};

use super::{PollRequest, WorkerApi, WorkerApiError};
use crate::api::{ConnectError, ConnectOptions, WorkerClient};
use crate::domain::Lease;
use crate::engine::{ActivityOutcome, Assignment, ChunkIn};

/// Remote servers, one of which is current.
pub struct GrpcWorkerApi {
    servers: Vec<WorkerClient>,
    current: AtomicUsize,
}

impl GrpcWorkerApi {
    /// A worker API over the servers at `urls` (at least one), starting with the first.
    pub fn new(urls: &[String], options: &ConnectOptions) -> Result<Self, ConnectError> {
        if urls.is_empty() {
            return Err(ConnectError::Url {
                url: String::new(),
                reason: "give at least one server".into(),
            });
        }
        let servers = urls
            .iter()
            .map(|url| WorkerClient::new(url, options))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(GrpcWorkerApi {
            servers,
            current: AtomicUsize::new(0),
        })
    }

    fn pick(&self) -> (usize, &WorkerClient) {
        let index = self.current.load(Ordering::Relaxed) % self.servers.len();
        (index, &self.servers[index])
    }

    /// Maps a failed call's status; when the server was unreachable, moves on to the next
    /// server (unless a concurrent call already did).
    fn failed(&self, index: usize, status: Status) -> WorkerApiError {
        let error = classify(status);
        if matches!(error, WorkerApiError::Unavailable(_)) && self.servers.len() > 1 {
            let next = (index + 1) % self.servers.len();
            if self
                .current
                .compare_exchange(index, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                tracing::warn!(from = %self.servers[index].url(), to = %self.servers[next].url(), %error, "switching server");
            }
        }
        error
    }
}

/// What a status means to a worker.
fn classify(status: Status) -> WorkerApiError {
    let message = format!("{} ({:?})", status.message(), status.code());
    match status.code() {
        // The lease is gone (stale report), or the execution moved past the attempt.
        Code::FailedPrecondition | Code::NotFound => WorkerApiError::LeaseLost(message),
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Unknown
        | Code::Cancelled
        | Code::Aborted
        | Code::ResourceExhausted => WorkerApiError::Unavailable(message),
        _ => WorkerApiError::Refused(message),
    }
}

#[async_trait]
impl WorkerApi for GrpcWorkerApi {
    async fn poll(&self, request: &PollRequest) -> Result<Vec<Assignment>, WorkerApiError> {
        let (index, server) = self.pick();
        server
            .poll(
                &request.worker_id,
                &request.runtimes,
                &request.queue,
                request.max_tasks,
                request.slots,
                request.wait,
            )
            .await
            .map_err(|s| self.failed(index, s))
    }

    async fn progress(
        &self,
        lease: &Lease,
        first_chunk: Option<u64>,
        chunks: Vec<ChunkIn>,
        checkpoint: Option<serde_json::Value>,
    ) -> Result<bool, WorkerApiError> {
        let (index, server) = self.pick();
        server
            .progress(lease, first_chunk, chunks, checkpoint)
            .await
            .map_err(|s| self.failed(index, s))
    }

    async fn report(
        &self,
        lease: &Lease,
        first_chunk: Option<u64>,
        chunks: Vec<ChunkIn>,
        outcome: ActivityOutcome,
    ) -> Result<(), WorkerApiError> {
        let (index, server) = self.pick();
        server
            .report(lease, first_chunk, chunks, outcome)
            .await
            .map_err(|s| self.failed(index, s))
    }

    async fn release(
        &self,
        lease: &Lease,
        chunks: Vec<ChunkIn>,
        checkpoint: Option<serde_json::Value>,
    ) -> Result<(), WorkerApiError> {
        let (index, server) = self.pick();
        server
            .release(lease, chunks, checkpoint)
            .await
            .map_err(|s| self.failed(index, s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_say_whether_to_stop_retry_or_give_up() {
        let kind = |code| match classify(Status::new(code, "x")) {
            WorkerApiError::LeaseLost(_) => "lost",
            WorkerApiError::Unavailable(_) => "retry",
            WorkerApiError::Refused(_) => "refused",
        };
        assert_eq!(kind(Code::FailedPrecondition), "lost");
        assert_eq!(kind(Code::Unavailable), "retry");
        assert_eq!(kind(Code::DeadlineExceeded), "retry");
        assert_eq!(kind(Code::Unauthenticated), "refused");
        assert_eq!(kind(Code::PermissionDenied), "refused");
    }

    #[tokio::test]
    async fn an_unreachable_server_hands_over_to_the_next() {
        let urls = vec![
            "http://127.0.0.1:1".to_string(),
            "http://127.0.0.1:2".to_string(),
        ];
        let api = GrpcWorkerApi::new(&urls, &ConnectOptions::default()).unwrap();
        assert_eq!(api.pick().0, 0);
        let error = api.failed(0, Status::unavailable("down"));
        assert!(matches!(error, WorkerApiError::Unavailable(_)));
        assert_eq!(api.pick().0, 1);
        // A second failure seen for the old server does not skip the new one.
        api.failed(0, Status::unavailable("down"));
        assert_eq!(api.pick().0, 1);
    }
}
