//! `ExecutionService`: start, inspect, watch, cancel, replay and retry executions.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::agents::not_found;
use super::error::invalid;
use super::pb::execution_service_server::ExecutionService;
use super::{ApiState, convert, pb, retry, validate};
use crate::domain::ExecutionStatus;
use crate::engine::{CONNECTED_WITHIN_MS, Engine, StartRequest, Watch};
use crate::machine::AgentState;
use crate::store::{AgentKey, ExecutionFilter};

/// The execution service.
pub struct Executions {
    state: Arc<ApiState>,
}

impl Executions {
    /// A service over the shared API state.
    pub fn new(state: Arc<ApiState>) -> Self {
        Executions { state }
    }

    async fn view(&self, id: Uuid) -> Result<pb::Execution, Status> {
        let engine = &self.state.engine;
        let record = engine.execution(id).await?;
        let activity = serde_json::from_value::<AgentState>(record.state.clone())
            .ok()
            .and_then(|s| s.activity.map(|a| a.activity_id));
        let task = match activity {
            Some(activity_id) => engine.store().get_task(id, &activity_id).await?,
            None => None,
        };
        let mut view = convert::execution(&record, task.as_ref(), engine.now());
        if let (Some(task), Some(activity)) = (&task, view.activity.as_mut())
            && task.status == "ready"
        {
            // Say why it waits when nobody can take it: the fleet lacks the runtime or queue.
            let since = engine.now() - CONNECTED_WITHIN_MS;
            let workers = engine.store().list_workers(since).await?;
            let can_run = workers
                .iter()
                .any(|w| w.queue == task.queue && w.runtimes.contains(&task.runtime));
            if !can_run {
                activity.state.push_str(&format!(
                    ": no connected worker offers runtime `{}` on queue `{}`",
                    task.runtime, task.queue
                ));
            }
        }
        Ok(view)
    }
}

/// The stream type of `StreamExecution`.
pub type OutputStream =
    Pin<Box<dyn Stream<Item = Result<pb::StreamExecutionResponse, Status>> + Send>>;

/// How long an output stream waits without a wake-up before it looks again anyway.
const FOLLOW_SAFETY_NET: Duration = Duration::from_secs(10);

/// How many chunks one read of the output takes.
const OUTPUT_PAGE: u32 = 512;

#[tonic::async_trait]
impl ExecutionService for Executions {
    async fn start_execution(
        &self,
        request: Request<pb::StartExecutionRequest>,
    ) -> Result<Response<pb::StartExecutionResponse>, Status> {
        let r = request.into_inner();
        let (agent, team) = match (r.agent.is_empty(), r.team.is_empty()) {
            (false, false) => return Err(invalid("give agent or team, not both")),
            (true, false) => (None, Some(validate::agent_key(&r.team)?)),
            _ => (Some(validate::agent_key(&r.agent)?), None),
        };
        if team.is_some() && !r.queue.is_empty() {
            return Err(invalid(
                "queue applies to agent executions; a team's children run on the default queue",
            ));
        }
        let start = StartRequest {
            namespace: validate::namespace(&r.namespace)?,
            agent,
            team,
            prompts: validate::prompts(&r.prompt, &r.prompts, &self.state.limits)?,
            request_id: validate::request_id(&r.request_id)?,
            labels: validate::labels(&r.labels)?,
            retry_policy: r.retry_policy.map(TryInto::try_into).transpose()?,
            timeouts: r.timeouts.map(TryInto::try_into).transpose()?,
            queue: validate::queue("queue", &r.queue)?,
        };
        let (id, created) = self.state.engine.start(start).await?;
        Ok(Response::new(pb::StartExecutionResponse {
            execution_id: id.to_string(),
            created,
        }))
    }

    async fn get_execution(
        &self,
        request: Request<pb::GetExecutionRequest>,
    ) -> Result<Response<pb::Execution>, Status> {
        let id = validate::id("id", &request.into_inner().id)?;
        Ok(Response::new(self.view(id).await?))
    }

    async fn list_executions(
        &self,
        request: Request<pb::ListExecutionsRequest>,
    ) -> Result<Response<pb::ListExecutionsResponse>, Status> {
        let r = request.into_inner();
        let namespace = validate::namespace(&r.namespace)?;
        let statuses = r
            .status
            .iter()
            .map(|s| {
                ExecutionStatus::parse(s).ok_or_else(|| {
                    let known: Vec<&str> =
                        ExecutionStatus::ALL.iter().map(|s| s.as_str()).collect();
                    invalid(format!(
                        "status `{}` is unknown; use one of {}",
                        validate::quote(s),
                        known.join(", ")
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let agent_id = match r.agent.as_str() {
            "" => None,
            agent => match validate::agent_key(agent)? {
                AgentKey::Id(id) => Some(id),
                key @ AgentKey::Name(_) => Some(
                    self.state
                        .engine
                        .store()
                        .get_agent(&namespace, &key)
                        .await?
                        .ok_or_else(|| not_found(&namespace, &key))?
                        .id,
                ),
            },
        };
        if r.created_after_ms < 0 || r.created_before_ms < 0 {
            return Err(invalid(
                "created_after_ms and created_before_ms must not be negative",
            ));
        }
        validate::plain("runtime", &r.runtime, validate::limits::MAX_RUNTIME_BYTES)?;
        let filter = ExecutionFilter {
            namespace,
            statuses,
            agent_id,
            runtime: (!r.runtime.is_empty()).then_some(r.runtime),
            parent_id: validate::optional_id("parent_id", &r.parent_id)?,
            created_after: (r.created_after_ms > 0).then_some(r.created_after_ms),
            created_before: (r.created_before_ms > 0).then_some(r.created_before_ms),
            labels: validate::labels(&r.labels)?,
        };
        let size = validate::page_size(r.page_size, &self.state.limits)?;
        let before = validate::page_token(&r.page_token)?;
        let records = self
            .state
            .engine
            .store()
            .list_executions(&filter, before, size)
            .await?;
        let now = self.state.engine.now();
        Ok(Response::new(pb::ListExecutionsResponse {
            next_page_token: validate::next_page_token(
                records.last().map(|e| e.id),
                records.len(),
                size,
            ),
            executions: records
                .iter()
                .map(|e| convert::execution(e, None, now))
                .collect(),
        }))
    }

    async fn cancel_execution(
        &self,
        request: Request<pb::CancelExecutionRequest>,
    ) -> Result<Response<pb::Execution>, Status> {
        let r = request.into_inner();
        let id = validate::id("id", &r.id)?;
        validate::text("reason", &r.reason, validate::limits::MAX_REASON_BYTES)?;
        let reason = if r.reason.is_empty() {
            "cancelled by a client".to_string()
        } else {
            r.reason
        };
        self.state.engine.cancel(id, reason).await?;
        Ok(Response::new(self.view(id).await?))
    }

    type StreamExecutionStream = OutputStream;

    async fn stream_execution(
        &self,
        request: Request<pb::StreamExecutionRequest>,
    ) -> Result<Response<OutputStream>, Status> {
        let r = request.into_inner();
        let id = validate::id("id", &r.id)?;
        let after_seq = validate::seq("after_seq", r.after_seq)?;
        let engine = self.state.engine.clone();
        engine.execution(id).await?;
        let changes = engine.notifier().watch(id);
        let (tx, rx) = mpsc::channel(OUTPUT_PAGE as usize);
        let shutdown = self.state.shutdown.clone();
        tokio::spawn(follow(engine, id, after_seq, changes, tx, shutdown));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_history(
        &self,
        request: Request<pb::GetHistoryRequest>,
    ) -> Result<Response<pb::GetHistoryResponse>, Status> {
        let r = request.into_inner();
        let id = validate::id("id", &r.id)?;
        let after_seq = validate::seq("after_seq", r.after_seq)?;
        let engine = &self.state.engine;
        engine.execution(id).await?;
        let events = engine.history_after(id, after_seq).await?;
        Ok(Response::new(pb::GetHistoryResponse {
            events: events.iter().map(pb::HistoryEvent::from).collect(),
        }))
    }

    async fn replay_execution(
        &self,
        request: Request<pb::ReplayExecutionRequest>,
    ) -> Result<Response<pb::ReplayExecutionResponse>, Status> {
        let id = validate::id("id", &request.into_inner().id)?;
        let report = self.state.engine.replay(id).await?;
        Ok(Response::new(retry::replay_response(report)?))
    }

    async fn retry_execution(
        &self,
        request: Request<pb::RetryExecutionRequest>,
    ) -> Result<Response<pb::RetryExecutionResponse>, Status> {
        let retry = retry::retry_request(request.into_inner(), &self.state.limits)?;
        let retried = self.state.engine.retry(retry).await?;
        Ok(Response::new(pb::RetryExecutionResponse {
            execution_id: retried.id.to_string(),
            created: retried.created,
            reused_turns: retried.reused_turns,
        }))
    }
}

/// Sends an execution's output after `after` to `tx`, live, until the execution has closed and
/// every chunk was sent; then sends the closed execution. When the server shuts down first, the
/// stream ends with `UNAVAILABLE`, and the client resumes elsewhere after the last seq it got.
async fn follow(
    engine: Arc<Engine>,
    id: Uuid,
    mut after: u64,
    changes: Watch,
    tx: mpsc::Sender<Result<pb::StreamExecutionResponse, Status>>,
    shutdown: CancellationToken,
) {
    use pb::stream_execution_response::Event;
    loop {
        // Armed before the reads, so a change between a read and the wait is not lost.
        let changed = changes.notify().notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let chunks = match engine.store().output(id, after, OUTPUT_PAGE).await {
            Ok(chunks) => chunks,
            Err(e) => {
                let _ = tx.send(Err(e.into())).await;
                return;
            }
        };
        for chunk in &chunks {
            let event = Event::Chunk(chunk.into());
            if tx
                .send(Ok(pb::StreamExecutionResponse { event: Some(event) }))
                .await
                .is_err()
            {
                return; // the client went away
            }
            after = chunk.seq;
        }
        if chunks.len() == OUTPUT_PAGE as usize {
            continue;
        }
        let record = match engine.execution(id).await {
            Ok(record) => record,
            Err(e) => {
                let _ = tx.send(Err(e.into())).await;
                return;
            }
        };
        if record.output_seq > after {
            continue;
        }
        if record.status.is_closed() {
            let closed = convert::execution(&record, None, engine.now());
            let _ = tx
                .send(Ok(pb::StreamExecutionResponse {
                    event: Some(Event::Closed(closed)),
                }))
                .await;
            return;
        }
        // Wait for a change to this execution, committed through this server or (through the
        // store's change feed) any other. The timeout is only a safety net.
        tokio::select! {
            _ = changed => {}
            _ = tokio::time::sleep(FOLLOW_SAFETY_NET) => {}
            _ = tx.closed() => return,
            _ = shutdown.cancelled() => {
                let status = Status::unavailable(format!(
                    "the server is shutting down; resume the stream elsewhere with after_seq = {after}"
                ));
                let _ = tx.send(Err(status)).await;
                return;
            }
        }
    }
}
