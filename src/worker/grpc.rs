//! [`WorkerApi`] over gRPC, for `cairn worker` processes: one or more servers, used one at a
//! time, moving to the next when a call finds the current one unreachable (failover). Any
//! server accepts any report, since leases live in the shared database, so an attempt claimed
//! through one server can report through another.

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;

use crate::api::{ConnectError, ConnectOptions, WorkerClient};
use crate::contract::{
    Assignment, PollRequest, Progress, ProgressReply, Release, Report, WorkerApi, WorkerApiError,
};

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

    /// Passes a failed call's error on; when the server was unreachable, moves on to the next
    /// server (unless a concurrent call already did).
    fn failed(&self, index: usize, error: WorkerApiError) -> WorkerApiError {
        if matches!(error, WorkerApiError::Unavailable(_)) && self.servers.len() > 1 {
            let next = (index + 1) % self.servers.len();
            if self
                .current
                .compare_exchange(index, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                tracing::warn!(from = %self.servers[index].url(), to = %self.servers[next].url(), %error, "switching server");
                crate::telemetry::metrics::reconnected();
            }
        }
        error
    }
}

#[async_trait]
impl WorkerApi for GrpcWorkerApi {
    async fn poll(&self, request: &PollRequest) -> Result<Vec<Assignment>, WorkerApiError> {
        let (index, server) = self.pick();
        server
            .poll(request)
            .await
            .map_err(|e| self.failed(index, e))
    }

    async fn progress(&self, progress: &Progress) -> Result<ProgressReply, WorkerApiError> {
        let (index, server) = self.pick();
        server
            .progress(progress)
            .await
            .map_err(|e| self.failed(index, e))
    }

    async fn report(&self, report: &Report) -> Result<Option<Assignment>, WorkerApiError> {
        let (index, server) = self.pick();
        server
            .report(report)
            .await
            .map_err(|e| self.failed(index, e))
    }

    async fn release(&self, release: &Release) -> Result<(), WorkerApiError> {
        let (index, server) = self.pick();
        server
            .release(release)
            .await
            .map_err(|e| self.failed(index, e))
    }
    async fn deregister(&self, worker_id: &str) -> Result<(), WorkerApiError> {
        let (index, server) = self.pick();
        server
            .deregister(worker_id)
            .await
            .map_err(|e| self.failed(index, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_server_hands_over_to_the_next() {
        let urls = vec![
            "http://127.0.0.1:1".to_string(),
            "http://127.0.0.1:2".to_string(),
        ];
        let api = GrpcWorkerApi::new(&urls, &ConnectOptions::default()).unwrap();
        assert_eq!(api.pick().0, 0);
        let error = api.failed(0, WorkerApiError::Unavailable("down".into()));
        assert!(matches!(error, WorkerApiError::Unavailable(_)));
        assert_eq!(api.pick().0, 1);
        // A second failure seen for the old server does not skip the new one.
        api.failed(0, WorkerApiError::Unavailable("down".into()));
        assert_eq!(api.pick().0, 1);
    }
}
