//! `WorkerService` as a remote worker calls it, in domain types: the gRPC half of
//! `worker::GrpcWorkerApi`, kept here so that prost types stay inside `api`.

use std::time::Duration;

use tonic::Status;

use super::client::{AuthChannel, ConnectError, ConnectOptions};
use super::pb;
use super::pb::worker_service_client::WorkerServiceClient;
use super::workers::task_id;
use crate::domain::{Lease, Turn};
use crate::engine::{ActivityOutcome, Assignment, ChunkIn};

/// How long a report may take before the worker gives up on that server and tries again.
const REPORT_TIMEOUT: Duration = Duration::from_secs(30);
/// How much longer than its wait a long-poll may take (network, a busy database).
const POLL_SLACK: Duration = Duration::from_secs(15);

/// A connection to one server's `WorkerService`. Connects lazily and reconnects by itself.
#[derive(Clone)]
pub struct WorkerClient {
    inner: WorkerServiceClient<AuthChannel>,
    url: String,
}

impl WorkerClient {
    /// A client of the server at `url`; nothing is dialled until the first call.
    pub fn new(url: &str, options: &ConnectOptions) -> Result<WorkerClient, ConnectError> {
        let channel = options.endpoint(url)?.connect_lazy();
        let inner = WorkerServiceClient::with_interceptor(channel, options.bearer()?)
            .max_decoding_message_size(64 << 20);
        Ok(WorkerClient {
            inner,
            url: url.to_string(),
        })
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Claims up to `max` tasks, waiting up to `wait` when there are none.
    pub async fn poll(
        &self,
        worker_id: &str,
        runtimes: &[String],
        queue: &str,
        max: u32,
        slots: u32,
        wait: Duration,
    ) -> Result<Vec<Assignment>, Status> {
        let mut request = tonic::Request::new(pb::PollTasksRequest {
            worker_id: worker_id.into(),
            runtimes: runtimes.to_vec(),
            queue: queue.into(),
            max_tasks: max,
            wait_ms: wait.as_millis() as u64,
        });
        request.set_timeout(wait + POLL_SLACK);
        request
            .metadata_mut()
            .insert(super::workers::SLOTS_HEADER, slots.into());
        let tasks = self
            .inner
            .clone()
            .poll_tasks(request)
            .await?
            .into_inner()
            .tasks;
        tasks.into_iter().map(assignment).collect()
    }

    /// Reports output and a checkpoint; returns whether cancellation was requested.
    pub async fn progress(
        &self,
        lease: &Lease,
        first_chunk: Option<u64>,
        chunks: Vec<ChunkIn>,
        checkpoint: Option<serde_json::Value>,
    ) -> Result<bool, Status> {
        let request = timed(pb::ReportProgressRequest {
            lease: Some(lease_of(lease)),
            chunks: chunks_of(chunks),
            checkpoint_json: json_or_empty(checkpoint.as_ref()),
            first_chunk_index: first_chunk,
        });
        let reply = self.inner.clone().report_progress(request).await?;
        Ok(reply.into_inner().cancel_requested)
    }

    /// Reports how the attempt ended.
    pub async fn report(
        &self,
        lease: &Lease,
        first_chunk: Option<u64>,
        chunks: Vec<ChunkIn>,
        outcome: ActivityOutcome,
    ) -> Result<(), Status> {
        let mut client = self.inner.clone();
        let lease = Some(lease_of(lease));
        let chunks = chunks_of(chunks);
        match outcome {
            ActivityOutcome::Completed {
                output,
                usage,
                checkpoint,
            } => {
                let request = timed(pb::CompleteTaskRequest {
                    lease,
                    chunks,
                    checkpoint_json: json_or_empty(checkpoint.as_ref()),
                    output_json: output.to_string(),
                    usage: Some(usage.into()),
                    first_chunk_index: first_chunk,
                });
                client.complete_task(request).await?;
            }
            ActivityOutcome::Failed {
                failure,
                retry_after_ms,
                checkpoint,
            } => {
                let request = timed(pb::FailTaskRequest {
                    lease,
                    chunks,
                    checkpoint_json: json_or_empty(checkpoint.as_ref()),
                    failure: Some((&failure).into()),
                    retry_after_ms: retry_after_ms.unwrap_or(0),
                    first_chunk_index: first_chunk,
                });
                client.fail_task(request).await?;
            }
            ActivityOutcome::Canceled { abandoned } => {
                let request = timed(pb::CancelTaskRequest {
                    lease,
                    chunks,
                    checkpoint_json: String::new(),
                    abandoned,
                    first_chunk_index: first_chunk,
                });
                client.cancel_task(request).await?;
            }
        }
        Ok(())
    }

    /// Hands the attempt back (graceful drain) with its last output and checkpoint.
    pub async fn release(
        &self,
        lease: &Lease,
        chunks: Vec<ChunkIn>,
        checkpoint: Option<serde_json::Value>,
    ) -> Result<(), Status> {
        let request = timed(pb::ReleaseTaskRequest {
            lease: Some(lease_of(lease)),
            chunks: chunks_of(chunks),
            checkpoint_json: json_or_empty(checkpoint.as_ref()),
        });
        self.inner.clone().release_task(request).await?;
        Ok(())
    }
}

fn timed<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(REPORT_TIMEOUT);
    request
}

fn lease_of(lease: &Lease) -> pb::Lease {
    pb::Lease {
        task_id: task_id(lease),
        attempt: lease.attempt,
        lease_token: lease.lease_token.clone(),
    }
}

fn chunks_of(chunks: Vec<ChunkIn>) -> Vec<pb::ChunkIn> {
    chunks
        .into_iter()
        .map(|c| pb::ChunkIn {
            kind: c.kind,
            data_json: c.data.to_string(),
        })
        .collect()
}

fn json_or_empty(value: Option<&serde_json::Value>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

/// A task as the server sent it; malformed fields are the server's bug.
fn assignment(task: pb::Task) -> Result<Assignment, Status> {
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        Status::internal(format!("the server sent a task with a bad {what}: {e}"))
    };
    let execution_id = task
        .execution_id
        .parse()
        .map_err(|e| bad("execution_id", &e))?;
    let turn: Turn = serde_json::from_str(&task.turn_json).map_err(|e| bad("turn_json", &e))?;
    let checkpoint = match task.checkpoint_json.as_str() {
        "" => None,
        json => Some(serde_json::from_str(json).map_err(|e| bad("checkpoint_json", &e))?),
    };
    Ok(Assignment {
        lease: Lease {
            execution_id,
            activity_id: task.activity_id,
            attempt: task.attempt,
            lease_token: task.lease_token,
        },
        runtime: task.runtime,
        turn,
        checkpoint,
        heartbeat_ms: task.heartbeat_timeout_ms,
    })
}
