//! `WorkerService`: what remote workers call.

use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};

use super::error::invalid;
use super::pb::worker_service_server::WorkerService;
use super::{ApiState, pb, validate};
use crate::contract::{
    ActivityOutcome, Assignment, ChunkIn, PollRequest, Progress, Release, Report,
};
use crate::domain::{Failure, Lease};
use crate::engine::CONNECTED_WITHIN_MS;

/// The worker service.
pub struct Workers {
    state: Arc<ApiState>,
}

impl Workers {
    /// A service over the shared API state.
    pub fn new(state: Arc<ApiState>) -> Self {
        Workers { state }
    }
}

/// The request header in which a polling worker says how many attempts it runs at once.
pub(crate) const SLOTS_HEADER: &str = "cairn-worker-slots";

/// The longest a poll may wait.
const MAX_POLL_WAIT: Duration = Duration::from_secs(60);

/// A task id is `<execution id>/<activity id>`.
pub(crate) fn task_id(lease: &Lease) -> String {
    format!("{}/{}", lease.execution_id, lease.activity_id)
}

fn lease(lease: Option<pb::Lease>) -> Result<Lease, Status> {
    let lease = lease.ok_or_else(|| invalid("lease is required"))?;
    let (execution, activity) = lease.task_id.split_once('/').ok_or_else(|| {
        invalid(format!(
            "task_id `{}` is not `<execution id>/<activity id>`",
            validate::quote(&lease.task_id)
        ))
    })?;
    if activity.is_empty() || lease.attempt == 0 || lease.lease_token.is_empty() {
        return Err(invalid(
            "lease needs a task_id, an attempt from 1 and the lease_token",
        ));
    }
    validate::lease_part("the activity id of task_id", activity)?;
    validate::lease_part("lease_token", &lease.lease_token)?;
    Ok(Lease {
        execution_id: validate::id("task_id", execution)?,
        activity_id: activity.into(),
        attempt: lease.attempt,
        lease_token: lease.lease_token,
    })
}

/// The checkpoint a report's outcome carries, held to the checkpoint limit.
fn outcome_checkpoint(report: &Report) -> Option<&serde_json::Value> {
    match &report.outcome {
        ActivityOutcome::Completed { checkpoint, .. }
        | ActivityOutcome::Failed { checkpoint, .. } => checkpoint.as_ref(),
        ActivityOutcome::Canceled { .. } => None,
    }
}

fn chunks(chunks: Vec<pb::ChunkIn>) -> Result<Vec<ChunkIn>, Status> {
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let data = validate::chunk(i, &c)?;
            Ok(ChunkIn { kind: c.kind, data })
        })
        .collect()
}

/// The index of a report's first chunk: chunk indexes are stored as BIGINT, so the index of the
/// report's last chunk must stay within i64.
fn first_chunk_index(first: Option<u64>, chunks: usize) -> Result<Option<u64>, Status> {
    match first {
        Some(i) if i.saturating_add(chunks as u64) > validate::limits::MAX_SEQ => {
            Err(invalid(format!(
                "first_chunk_index {i} with {chunks} chunks goes past the highest index, {}",
                validate::limits::MAX_SEQ
            )))
        }
        other => Ok(other),
    }
}

fn task(a: &Assignment) -> pb::Task {
    pb::Task {
        task_id: task_id(&a.lease),
        execution_id: a.lease.execution_id.to_string(),
        activity_id: a.lease.activity_id.clone(),
        attempt: a.lease.attempt,
        lease_token: a.lease.lease_token.clone(),
        runtime: a.runtime.clone(),
        turn_json: serde_json::to_string(&a.turn).unwrap_or_default(),
        checkpoint_json: a
            .checkpoint
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        heartbeat_timeout_ms: a.heartbeat_ms,
    }
}

#[tonic::async_trait]
impl WorkerService for Workers {
    async fn poll_tasks(
        &self,
        request: Request<pb::PollTasksRequest>,
    ) -> Result<Response<pb::PollTasksResponse>, Status> {
        let slots = request
            .metadata()
            .get(SLOTS_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let r = request.into_inner();
        validate::poller(&r.worker_id, &r.runtimes)?;
        let poll = PollRequest {
            worker_id: r.worker_id,
            runtimes: r.runtimes,
            queue: validate::queue("queue", &r.queue)?,
            max_tasks: r.max_tasks.clamp(1, 256),
            slots,
            wait: Duration::from_millis(r.wait_ms).min(MAX_POLL_WAIT),
            policy: validate::policy(&r.policy_json)?,
        };
        // A server that is shutting down answers polls at once (with nothing), so the graceful
        // stop does not wait out long-polls and the worker moves on to another server.
        let assignments = self.state.engine.poll(&poll, &self.state.shutdown).await?;
        Ok(Response::new(pb::PollTasksResponse {
            tasks: assignments.iter().map(task).collect(),
        }))
    }

    async fn report_progress(
        &self,
        request: Request<pb::ReportProgressRequest>,
    ) -> Result<Response<pb::ReportProgressResponse>, Status> {
        let r = request.into_inner();
        let lease = lease(r.lease)?;
        let checkpoint = validate::report_json("checkpoint_json", &r.checkpoint_json)?;
        let progress = Progress {
            lease,
            first_chunk: first_chunk_index(r.first_chunk_index, r.chunks.len())?,
            chunks: chunks(r.chunks)?,
            checkpoint,
            workspace: validate::workspace(&r.workspace)?,
            asks: validate::asks(r.asks)?,
            awaiting: r.awaiting_decisions,
        };
        let limits = &self.state.limits;
        validate::quota::report(limits, &progress.chunks, progress.checkpoint.as_ref())?;
        let reply = self.state.engine.progress(progress).await?;
        Ok(Response::new(pb::ReportProgressResponse {
            cancel_requested: reply.cancel_requested,
            decisions: reply
                .decisions
                .iter()
                .map(|(id, d)| super::convert::tool_decision(id, d))
                .collect(),
        }))
    }

    async fn complete_task(
        &self,
        request: Request<pb::CompleteTaskRequest>,
    ) -> Result<Response<pb::TaskReportResponse>, Status> {
        let r = request.into_inner();
        let lease = lease(r.lease)?;
        let outcome = ActivityOutcome::Completed {
            output: validate::report_json("output_json", &r.output_json)?.unwrap_or_default(),
            usage: validate::usage(r.usage)?,
            checkpoint: validate::report_json("checkpoint_json", &r.checkpoint_json)?,
        };
        let report = Report {
            lease,
            first_chunk: first_chunk_index(r.first_chunk_index, r.chunks.len())?,
            chunks: chunks(r.chunks)?,
            outcome,
            accept_next: r.accept_next_task,
            workspace: validate::workspace(&r.workspace)?,
        };
        validate::quota::report(
            &self.state.limits,
            &report.chunks,
            outcome_checkpoint(&report),
        )?;
        let next = self.state.engine.report(report).await?;
        Ok(Response::new(pb::TaskReportResponse {
            next_task: next.as_ref().map(task),
        }))
    }

    async fn fail_task(
        &self,
        request: Request<pb::FailTaskRequest>,
    ) -> Result<Response<pb::TaskReportResponse>, Status> {
        let r = request.into_inner();
        let lease = lease(r.lease)?;
        let failure: Failure = validate::failure(r.failure)?;
        let retry_after_ms = validate::duration_ms("retry_after_ms", r.retry_after_ms)?;
        let outcome = ActivityOutcome::Failed {
            failure,
            retry_after_ms: (retry_after_ms > 0).then_some(retry_after_ms),
            checkpoint: validate::report_json("checkpoint_json", &r.checkpoint_json)?,
        };
        let report = Report {
            lease,
            first_chunk: first_chunk_index(r.first_chunk_index, r.chunks.len())?,
            chunks: chunks(r.chunks)?,
            outcome,
            accept_next: false,
            workspace: validate::workspace(&r.workspace)?,
        };
        validate::quota::report(
            &self.state.limits,
            &report.chunks,
            outcome_checkpoint(&report),
        )?;
        self.state.engine.report(report).await?;
        Ok(Response::new(pb::TaskReportResponse::default()))
    }

    async fn release_task(
        &self,
        request: Request<pb::ReleaseTaskRequest>,
    ) -> Result<Response<pb::TaskReportResponse>, Status> {
        let r = request.into_inner();
        let lease = lease(r.lease)?;
        let checkpoint = validate::report_json("checkpoint_json", &r.checkpoint_json)?;
        let release = Release {
            lease,
            chunks: chunks(r.chunks)?,
            checkpoint,
        };
        let limits = &self.state.limits;
        validate::quota::report(limits, &release.chunks, release.checkpoint.as_ref())?;
        self.state.engine.release(release).await?;
        Ok(Response::new(pb::TaskReportResponse::default()))
    }

    async fn deregister_worker(
        &self,
        request: Request<pb::DeregisterWorkerRequest>,
    ) -> Result<Response<pb::DeregisterWorkerResponse>, Status> {
        let r = request.into_inner();
        validate::worker_id(&r.worker_id)?;
        self.state.engine.deregister(&r.worker_id).await?;
        Ok(Response::new(pb::DeregisterWorkerResponse {}))
    }

    async fn list_workers(
        &self,
        _request: Request<pb::ListWorkersRequest>,
    ) -> Result<Response<pb::ListWorkersResponse>, Status> {
        let engine = &self.state.engine;
        let since = engine.now() - CONNECTED_WITHIN_MS;
        let workers = engine.store().list_workers(since).await?;
        Ok(Response::new(pb::ListWorkersResponse {
            workers: workers
                .into_iter()
                .map(|w| pb::WorkerInfo {
                    worker_id: w.worker_id,
                    runtimes: w.runtimes,
                    queue: w.queue,
                    slots: w.slots,
                    slots_in_use: w.slots_in_use,
                    first_seen_ms: w.first_seen,
                    last_seen_ms: w.last_seen,
                    policy_json: w.policy.as_ref().map(|p| p.to_json()).unwrap_or_default(),
                })
                .collect(),
        }))
    }

    async fn register_runtimes(
        &self,
        request: Request<pb::RegisterRuntimesRequest>,
    ) -> Result<Response<pb::RegisterRuntimesResponse>, Status> {
        let registration = validate::registration(request.into_inner())?;
        let state = &self.state;
        state
            .engine
            .register_runtimes(&state.runtimes, &registration)
            .await?;
        Ok(Response::new(pb::RegisterRuntimesResponse {}))
    }

    async fn cancel_task(
        &self,
        request: Request<pb::CancelTaskRequest>,
    ) -> Result<Response<pb::TaskReportResponse>, Status> {
        let r = request.into_inner();
        let lease = lease(r.lease)?;
        let outcome = ActivityOutcome::Canceled {
            abandoned: r.abandoned,
        };
        // The checkpoint of a cancelled attempt is not kept, but it is checked like any other.
        validate::report_json("checkpoint_json", &r.checkpoint_json)?;
        let report = Report {
            lease,
            first_chunk: first_chunk_index(r.first_chunk_index, r.chunks.len())?,
            chunks: chunks(r.chunks)?,
            outcome,
            accept_next: false,
            workspace: validate::workspace(&r.workspace)?,
        };
        validate::quota::report(
            &self.state.limits,
            &report.chunks,
            outcome_checkpoint(&report),
        )?;
        self.state.engine.report(report).await?;
        Ok(Response::new(pb::TaskReportResponse::default()))
    }
}
