//! `WorkerService` as a remote worker calls it, in contract types: the gRPC half of
//! `worker::GrpcWorkerApi`, kept here so that prost types and status codes stay inside `api`.
//! A failed call comes back as a [`WorkerApiError`] that says what the worker should do:
//! stop (fenced), try again (retryable), or give up (refused).

use std::time::Duration;

use tonic::{Code, Status};

use super::client::{AuthChannel, ConnectError, ConnectOptions};
use super::pb;
use super::pb::worker_service_client::WorkerServiceClient;
use super::workers::task_id;
use crate::contract::{
    ActivityOutcome, Assignment, ChunkIn, Lease, PollRequest, Progress, ProgressReply,
    Registration, Release, Report, WorkerApiError,
};
use crate::domain::Turn;

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

    /// Claims up to `request.max_tasks` tasks, waiting up to `request.wait` when there are none.
    pub async fn poll(&self, request: &PollRequest) -> Result<Vec<Assignment>, WorkerApiError> {
        let mut call = tonic::Request::new(pb::PollTasksRequest {
            worker_id: request.worker_id.clone(),
            runtimes: request.runtimes.clone(),
            queue: request.queue.clone(),
            max_tasks: request.max_tasks,
            wait_ms: request.wait.as_millis() as u64,
            policy_json: request
                .policy
                .as_ref()
                .map(|p| p.to_json())
                .unwrap_or_default(),
        });
        call.set_timeout(request.wait + POLL_SLACK);
        call.metadata_mut()
            .insert(super::workers::SLOTS_HEADER, request.slots.into());
        let tasks = self
            .inner
            .clone()
            .poll_tasks(call)
            .await
            .map_err(classify)?
            .into_inner()
            .tasks;
        tasks.into_iter().map(assignment).collect()
    }

    /// Stores output and a checkpoint; the reply says whether cancellation was requested.
    pub async fn progress(&self, progress: &Progress) -> Result<ProgressReply, WorkerApiError> {
        let request = timed(pb::ReportProgressRequest {
            lease: Some(lease_of(&progress.lease)),
            chunks: chunks_of(&progress.chunks),
            checkpoint_json: json_or_empty(progress.checkpoint.as_ref()),
            first_chunk_index: progress.first_chunk,
            workspace: progress.workspace.clone().unwrap_or_default(),
            asks: progress
                .asks
                .iter()
                .map(|a| pb::ToolAsk {
                    id: a.id.clone(),
                    tool: a.tool.clone(),
                    input_json: a.input.to_string(),
                })
                .collect(),
            awaiting_decisions: progress.awaiting,
        });
        let reply = self
            .inner
            .clone()
            .report_progress(request)
            .await
            .map_err(classify)?
            .into_inner();
        Ok(ProgressReply {
            cancel_requested: reply.cancel_requested,
            decisions: reply
                .decisions
                .into_iter()
                .map(super::convert::decision_of)
                .collect(),
        })
    }

    /// Records how the attempt ended; the reply may carry the execution's next task, leased to
    /// this worker (when the report accepted one).
    pub async fn report(&self, report: &Report) -> Result<Option<Assignment>, WorkerApiError> {
        let mut client = self.inner.clone();
        let lease = Some(lease_of(&report.lease));
        let chunks = chunks_of(&report.chunks);
        let first_chunk_index = report.first_chunk;
        let sent = match &report.outcome {
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
                    usage: Some((*usage).into()),
                    first_chunk_index,
                    accept_next_task: report.accept_next,
                    workspace: report.workspace.clone().unwrap_or_default(),
                });
                client.complete_task(request).await
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
                    failure: Some(failure.into()),
                    retry_after_ms: retry_after_ms.unwrap_or(0),
                    first_chunk_index,
                    workspace: report.workspace.clone().unwrap_or_default(),
                });
                client.fail_task(request).await
            }
            ActivityOutcome::Canceled { abandoned } => {
                let request = timed(pb::CancelTaskRequest {
                    lease,
                    chunks,
                    checkpoint_json: String::new(),
                    abandoned: *abandoned,
                    first_chunk_index,
                    workspace: report.workspace.clone().unwrap_or_default(),
                });
                client.cancel_task(request).await
            }
        };
        sent.map_err(classify)?
            .into_inner()
            .next_task
            .map(assignment)
            .transpose()
    }

    /// Hands the attempt back (graceful drain) with its last output and checkpoint.
    pub async fn release(&self, release: &Release) -> Result<(), WorkerApiError> {
        let request = timed(pb::ReleaseTaskRequest {
            lease: Some(lease_of(&release.lease)),
            chunks: chunks_of(&release.chunks),
            checkpoint_json: json_or_empty(release.checkpoint.as_ref()),
        });
        self.inner
            .clone()
            .release_task(request)
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// Says the worker stopped cleanly, so it leaves `ListWorkers` at once.
    pub async fn deregister(&self, worker_id: &str) -> Result<(), WorkerApiError> {
        let request = timed(pb::DeregisterWorkerRequest {
            worker_id: worker_id.to_owned(),
        });
        self.inner
            .clone()
            .deregister_worker(request)
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// Registers the external runtimes this worker serves (once per connection, before it
    /// polls for them). A built-in name or an invalid schema is refused for good.
    pub async fn register(&self, registration: &Registration) -> Result<(), WorkerApiError> {
        let request = timed(pb::RegisterRuntimesRequest {
            worker_id: registration.worker_id.clone(),
            runtimes: registration
                .runtimes
                .iter()
                .map(|r| pb::RuntimeSpec {
                    name: r.name.clone(),
                    description: r.description.clone(),
                    config_schema_json: r.config_schema.to_string(),
                })
                .collect(),
        });
        self.inner
            .clone()
            .register_runtimes(request)
            .await
            .map_err(classify)?;
        Ok(())
    }
}

/// What a status means to a worker.
pub(crate) fn classify(status: Status) -> WorkerApiError {
    let message = format!("{} ({:?})", status.message(), status.code());
    match status.code() {
        // The lease is gone (stale report), or the execution moved past the attempt.
        Code::FailedPrecondition | Code::NotFound => WorkerApiError::LeaseLost(message),
        // `Internal` too: a server that dies mid-call reaches tonic as an HTTP/2 protocol
        // error, which it reports as `Internal`; refusing for good would fail an attempt that
        // the next server takes gladly. A server that keeps failing is bounded by the lease.
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Unknown
        | Code::Internal
        | Code::Cancelled
        | Code::Aborted
        | Code::ResourceExhausted => WorkerApiError::Unavailable(message),
        _ => WorkerApiError::Refused(message),
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

fn chunks_of(chunks: &[ChunkIn]) -> Vec<pb::ChunkIn> {
    chunks
        .iter()
        .map(|c| pb::ChunkIn {
            kind: c.kind.clone(),
            data_json: c.data.to_string(),
        })
        .collect()
}

fn json_or_empty(value: Option<&serde_json::Value>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

/// A task as the server sent it; malformed fields are the server's bug.
fn assignment(task: pb::Task) -> Result<Assignment, WorkerApiError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        WorkerApiError::Refused(format!("the server sent a task with a bad {what}: {e}"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_say_whether_to_stop_retry_or_give_up() {
        let kind = |code| match classify(Status::new(code, "x")) {
            WorkerApiError::LeaseLost(_) => "fenced",
            WorkerApiError::Unavailable(_) => "retry",
            WorkerApiError::Refused(_) => "refused",
        };
        assert_eq!(kind(Code::FailedPrecondition), "fenced");
        assert_eq!(kind(Code::NotFound), "fenced");
        assert_eq!(kind(Code::Unavailable), "retry");
        assert_eq!(kind(Code::DeadlineExceeded), "retry");
        assert_eq!(kind(Code::Internal), "retry");
        assert_eq!(kind(Code::InvalidArgument), "refused");
        assert_eq!(kind(Code::OutOfRange), "refused");
        assert_eq!(kind(Code::Unauthenticated), "refused");
        assert_eq!(kind(Code::PermissionDenied), "refused");
    }
}
