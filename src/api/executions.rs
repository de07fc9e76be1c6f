//! `ExecutionService`: start, inspect, watch, cancel, replay and retry executions.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt, stream};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::agents::not_found;
use super::error::invalid;
use super::pb::execution_service_server::ExecutionService;
use super::tenancy::Scope;
use super::{ApiState, convert, pb, retry, validate};
use crate::domain::ExecutionStatus;
use crate::engine::{OutputEvent, OutputFollower, StartRequest};
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
        Ok(convert::execution(&self.state.engine.view(id).await?))
    }
}

/// The stream type of `StreamExecution`.
pub type OutputStream =
    Pin<Box<dyn Stream<Item = Result<pb::StreamExecutionResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ExecutionService for Executions {
    async fn start_execution(
        &self,
        request: Request<pb::StartExecutionRequest>,
    ) -> Result<Response<pb::StartExecutionResponse>, Status> {
        let traceparent = super::trace::traceparent(request.metadata());
        let scope = Scope::of(&request)?;
        let r = request.into_inner();
        let (agent, team) = match (r.agent.is_empty(), r.team.is_empty()) {
            (false, false) => return Err(invalid("give agent or team, not both")),
            (true, false) => (None, Some(validate::agent_key(&r.team)?)),
            _ => (Some(validate::agent_key(&r.agent)?), None),
        };
        let namespace = scope.namespace(&r.namespace)?;
        if !r.runtime.is_empty() {
            validate::plain("runtime", &r.runtime, validate::limits::MAX_RUNTIME_BYTES)?;
            let Some(key) = &agent else {
                return Err(invalid(
                    "runtime applies to agent executions; a team's members each run on their \
                     agent's runtime, so leave runtime out",
                ));
            };
            let stored = self.state.engine.agent(&namespace, key).await?;
            if stored.runtime != r.runtime {
                return Err(invalid(format!(
                    "runtime `{}` is not the runtime of agent `{}`, which runs on `{}`: \
                     leave runtime out, or start an agent whose runtime is `{}`",
                    r.runtime, stored.name, stored.runtime, r.runtime
                )));
            }
        }
        let conversation =
            validate::conversation(r.interactive, r.idle_timeout_ms, team.is_some())?;
        let start = StartRequest {
            namespace,
            agent,
            team,
            prompts: validate::start_prompts(
                &r.prompt,
                &r.prompts,
                r.interactive,
                &self.state.limits,
            )?,
            conversation,
            request_id: validate::request_id(&r.request_id)?,
            labels: validate::labels(&r.labels)?,
            retry_policy: validate::quota::retry_policy(
                &self.state.limits,
                r.retry_policy.map(TryInto::try_into).transpose()?,
            )?,
            timeouts: r.timeouts.map(TryInto::try_into).transpose()?,
            queue: validate::queue("queue", &r.queue)?,
            traceparent,
            execution_timeout_ms: match validate::duration_ms(
                "execution_timeout_ms",
                r.execution_timeout_ms,
            )? {
                0 => None,
                ms => Some(ms),
            },
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
        let scope = Scope::of(&request)?;
        let id = validate::id("id", &request.into_inner().id)?;
        let record = scope.execution(&self.state.engine, id).await?;
        let view = self.state.engine.view_of(record).await?;
        Ok(Response::new(convert::execution(&view)))
    }

    async fn list_executions(
        &self,
        request: Request<pb::ListExecutionsRequest>,
    ) -> Result<Response<pb::ListExecutionsResponse>, Status> {
        let scope = Scope::of(&request)?;
        let r = request.into_inner();
        let namespace = scope.namespace(&r.namespace)?;
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
        let engine = &self.state.engine;
        Ok(Response::new(pb::ListExecutionsResponse {
            next_page_token: validate::next_page_token(
                records.last().map(|e| e.id),
                records.len(),
                size,
            ),
            executions: records
                .into_iter()
                .map(|e| convert::execution(&engine.summary(e)))
                .collect(),
        }))
    }

    async fn cancel_execution(
        &self,
        request: Request<pb::CancelExecutionRequest>,
    ) -> Result<Response<pb::Execution>, Status> {
        let scope = Scope::of(&request)?;
        let r = request.into_inner();
        let id = validate::id("id", &r.id)?;
        validate::text("reason", &r.reason, validate::limits::MAX_REASON_BYTES)?;
        scope.admit(&self.state.engine, id).await?;
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
        let scope = Scope::of(&request)?;
        let r = request.into_inner();
        let id = validate::id("id", &r.id)?;
        let after_seq = validate::seq("after_seq", r.after_seq)?;
        let shutdown = self.state.shutdown.clone();
        // The follower's first page says which namespace the execution is in: no read of its own.
        let admits = |namespace: &str| scope.admits(namespace);
        let follower = self
            .state
            .engine
            .follow_output(id, after_seq, r.include_superseded, admits, shutdown)
            .await?;
        Ok(Response::new(Box::pin(output_stream(follower))))
    }

    async fn get_history(
        &self,
        request: Request<pb::GetHistoryRequest>,
    ) -> Result<Response<pb::GetHistoryResponse>, Status> {
        let scope = Scope::of(&request)?;
        let r = request.into_inner();
        let id = validate::id("id", &r.id)?;
        let after_seq = validate::seq("after_seq", r.after_seq)?;
        let engine = &self.state.engine;
        scope.admit(engine, id).await?;
        let events = engine.history_after(id, after_seq).await?;
        Ok(Response::new(pb::GetHistoryResponse {
            events: events.iter().map(pb::HistoryEvent::from).collect(),
        }))
    }

    async fn replay_execution(
        &self,
        request: Request<pb::ReplayExecutionRequest>,
    ) -> Result<Response<pb::ReplayExecutionResponse>, Status> {
        let scope = Scope::of(&request)?;
        let id = validate::id("id", &request.into_inner().id)?;
        scope.admit(&self.state.engine, id).await?;
        let report = self.state.engine.replay(id).await?;
        Ok(Response::new(retry::replay_response(report)?))
    }

    async fn retry_execution(
        &self,
        request: Request<pb::RetryExecutionRequest>,
    ) -> Result<Response<pb::RetryExecutionResponse>, Status> {
        let scope = Scope::of(&request)?;
        let retry = retry::retry_request(request.into_inner(), &self.state.limits)?;
        scope.admit(&self.state.engine, retry.id).await?;
        let retried = self.state.engine.retry(retry).await?;
        Ok(Response::new(pb::RetryExecutionResponse {
            execution_id: retried.id.to_string(),
            created: retried.created,
            reused_turns: retried.reused_turns,
        }))
    }

    async fn delete_execution(
        &self,
        request: Request<pb::DeleteExecutionRequest>,
    ) -> Result<Response<pb::DeleteExecutionResponse>, Status> {
        let scope = Scope::of(&request)?;
        let id = validate::id("id", &request.into_inner().id)?;
        scope.admit(&self.state.engine, id).await?;
        let deleted = self.state.engine.delete_execution(id).await?;
        Ok(Response::new(pb::DeleteExecutionResponse {
            executions: deleted.executions,
            objects: deleted.objects,
        }))
    }

    async fn send_message(
        &self,
        request: Request<pb::SendMessageRequest>,
    ) -> Result<Response<pb::SendMessageResponse>, Status> {
        let scope = Scope::of(&request)?;
        let r = request.into_inner();
        let id = validate::id("id", &r.id)?;
        let text = validate::message(&r.text, &self.state.limits)?;
        let request_id = validate::request_id_or_new(&r.request_id)?;
        scope.admit(&self.state.engine, id).await?;
        let sent = self.state.engine.send_message(id, text, request_id).await?;
        Ok(Response::new(pb::SendMessageResponse {
            turn: sent.turn + 1,
            created: sent.created,
            execution: Some(self.view(id).await?),
        }))
    }

    async fn close_execution(
        &self,
        request: Request<pb::CloseExecutionRequest>,
    ) -> Result<Response<pb::Execution>, Status> {
        let scope = Scope::of(&request)?;
        let id = validate::id("id", &request.into_inner().id)?;
        scope.admit(&self.state.engine, id).await?;
        self.state.engine.close(id).await?;
        Ok(Response::new(self.view(id).await?))
    }

    async fn resolve_approval(
        &self,
        request: Request<pb::ResolveApprovalRequest>,
    ) -> Result<Response<pb::Execution>, Status> {
        let scope = Scope::of(&request)?;
        let r = request.into_inner();
        let id = validate::id("id", &r.id)?;
        let approval_id = validate::approval_id(&r.approval_id)?;
        let decision = validate::decision(r.allow, &r.message, &r.updated_input_json)?;
        let request_id = validate::request_id_or_new(&r.request_id)?;
        scope.admit(&self.state.engine, id).await?;
        let answered = self
            .state
            .engine
            .resolve_approval(id, approval_id, decision, request_id)
            .await?;
        Ok(Response::new(self.view(answered.id).await?))
    }

    async fn get_stats(
        &self,
        request: Request<pb::GetStatsRequest>,
    ) -> Result<Response<pb::GetStatsResponse>, Status> {
        let scope = Scope::of(&request)?;
        let stats = super::stats::get_stats(&self.state, &scope, request.into_inner()).await?;
        Ok(Response::new(stats))
    }
}

/// The responses of a follower, converted one chunk at a time as the client takes them (so a
/// page is never held twice, once as domain chunks and once as protobuf). When the server shuts
/// down first, the stream ends with `UNAVAILABLE`, and the client resumes elsewhere after the
/// last seq it got.
fn output_stream(
    follower: OutputFollower,
) -> impl Stream<Item = Result<pb::StreamExecutionResponse, Status>> + Send {
    use pb::stream_execution_response::Event;
    let response = |event| pb::StreamExecutionResponse { event: Some(event) };
    // Counted while the stream lives: the guard goes with the closure that holds it.
    let subscribed = crate::telemetry::metrics::stream_subscriber();
    let follower = ReceiverStream::new(follower).inspect(move |_| {
        let _ = &subscribed;
    });
    follower.flat_map(move |item| match item {
        Ok(OutputEvent::Chunks(chunks)) => stream::iter(chunks)
            .map(move |chunk| Ok(response(Event::Chunk((&chunk).into()))))
            .boxed(),
        Ok(OutputEvent::Closed(view)) => {
            stream::once(async move { Ok(response(Event::Closed(convert::execution(&view)))) })
                .boxed()
        }
        Ok(OutputEvent::Waiting(view)) => {
            stream::once(async move { Ok(response(Event::Waiting(convert::execution(&view)))) })
                .boxed()
        }
        Ok(OutputEvent::Interrupted { after_seq }) => stream::once(async move {
            Err(Status::unavailable(format!(
                "the server is shutting down; resume the stream elsewhere with after_seq = {after_seq}"
            )))
        })
        .boxed(),
        Err(e) => stream::once(async move { Err(e.into()) }).boxed(),
    })
}
