//! `/api/v1/executions`: `ExecutionService` over HTTP (its output stream is in `events.rs`).

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::Shared;
use super::body::{json, number, pairs, query};
use super::error::{ApiError, ErrorBody, invalid};
use crate::api::pb;
use crate::api::pb::execution_service_server::ExecutionService;

/// A new execution of an agent (`agent_id` or `agent`) or of a team, with one `prompt` or
/// several `turns`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct StartExecution {
    #[serde(default)]
    namespace: String,
    /// The agent's id (or name).
    #[serde(default)]
    agent_id: String,
    /// The agent's name (or id).
    #[serde(default)]
    agent: String,
    /// The team's name or id, instead of an agent.
    #[serde(default)]
    team: String,
    /// One prompt: a one-turn execution.
    #[serde(default)]
    prompt: String,
    /// Several prompts, one turn each (instead of `prompt`).
    #[serde(default, alias = "prompts")]
    turns: Vec<String>,
    /// A check, not a choice: when given, it must be the agent's runtime, or the request is
    /// refused with a message that names both.
    #[serde(default)]
    runtime: String,
    #[serde(default)]
    labels: HashMap<String, String>,
    /// Starting twice with the same request_id starts one execution.
    #[serde(default)]
    request_id: String,
    retry_policy: Option<pb::RetryPolicy>,
    timeouts: Option<pb::Timeouts>,
    /// The task queue its activities wait in; empty means "default".
    #[serde(default)]
    queue: String,
    /// Start a conversation: WAITING for input after its turns (it may start with no prompt).
    #[serde(default)]
    interactive: bool,
    /// How long a conversation waits for a message; 0 or absent means 24 hours.
    #[serde(default)]
    idle_timeout_ms: u64,
    /// How long the whole execution may run before it fails with `execution_timeout`; 0 or
    /// absent means no limit.
    #[serde(default)]
    execution_timeout_ms: u64,
}

impl StartExecution {
    fn into_request(self) -> Result<pb::StartExecutionRequest, ApiError> {
        let agent = match (self.agent_id.is_empty(), self.agent.is_empty()) {
            (false, false) => {
                return Err(invalid(
                    "give agent_id or agent, not both: both name the agent",
                ));
            }
            (false, true) => self.agent_id,
            _ => self.agent,
        };
        Ok(pb::StartExecutionRequest {
            namespace: self.namespace,
            agent,
            prompt: self.prompt,
            prompts: self.turns,
            request_id: self.request_id,
            labels: self.labels,
            retry_policy: self.retry_policy,
            timeouts: self.timeouts,
            team: self.team,
            queue: self.queue,
            runtime: self.runtime,
            interactive: self.interactive,
            idle_timeout_ms: self.idle_timeout_ms,
            execution_timeout_ms: self.execution_timeout_ms,
        })
    }
}

/// The filters and page of a list of executions, as `ListExecutions` takes them.
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(
    dead_code,
    reason = "describes the query string, which `list` reads pair by pair"
)]
pub(super) struct ListExecutionsQuery {
    namespace: Option<String>,
    /// PENDING, RUNNING, WAITING, COMPLETED, FAILED or CANCELED; repeat it, or separate with commas.
    status: Option<Vec<String>>,
    /// The agent's name or id.
    agent: Option<String>,
    runtime: Option<String>,
    parent_id: Option<String>,
    /// Epoch milliseconds.
    created_after_ms: Option<i64>,
    /// Epoch milliseconds.
    created_before_ms: Option<i64>,
    /// `key=value`; repeat it for several labels (all must match).
    label: Option<Vec<String>>,
    page_size: Option<u32>,
    /// The previous page's `next_page_token`.
    page_token: Option<String>,
}

/// The query string of `GET /executions` as a `ListExecutionsRequest`.
fn list_request(uri: &Uri) -> Result<pb::ListExecutionsRequest, ApiError> {
    let mut r = pb::ListExecutionsRequest::default();
    for (key, value) in pairs(uri)? {
        match key.as_str() {
            "namespace" => r.namespace = value,
            "status" => r.status.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            ),
            "agent" => r.agent = value,
            "runtime" => r.runtime = value,
            "parent_id" => r.parent_id = value,
            "created_after_ms" => r.created_after_ms = number(&key, &value)?,
            "created_before_ms" => r.created_before_ms = number(&key, &value)?,
            "label" => {
                let (k, v) = value.split_once('=').ok_or_else(|| {
                    invalid(format!(
                        "query parameter label must be key=value, not `{}`",
                        crate::api::validate::quote(&value)
                    ))
                })?;
                r.labels.insert(k.to_string(), v.to_string());
            }
            "page_size" => r.page_size = number(&key, &value)?,
            "page_token" => r.page_token = value,
            other => {
                return Err(invalid(format!(
                    "unknown query parameter `{}`; use namespace, status, agent, runtime, \
                     parent_id, created_after_ms, created_before_ms, label, page_size or page_token",
                    crate::api::validate::quote(other)
                )));
            }
        }
    }
    Ok(r)
}

/// Where a history read starts.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct HistoryQuery {
    /// Events with seq > after_seq; 0 or absent reads from the start.
    #[serde(default)]
    after_seq: u64,
}

/// Why an execution is cancelled.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CancelExecution {
    /// Empty or absent: "cancelled by a client".
    #[serde(default)]
    reason: String,
}

/// How to retry a FAILED or CANCELED execution.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RetryExecution {
    /// Reuse only turns that completed before this seq of the history; 0 reuses every one.
    #[serde(default)]
    from_seq: u64,
    /// New prompts by turn number (from 1): that turn and every later one run again.
    #[serde(default)]
    prompts: HashMap<u32, String>,
    /// The retry's retry policy; absent keeps the retried execution's.
    retry_policy: Option<pb::RetryPolicy>,
    /// Retry even if the execution was retried before.
    #[serde(default)]
    force: bool,
}

pub(super) const START: &str = "/cairn.v1.ExecutionService/StartExecution";
const GET: &str = "/cairn.v1.ExecutionService/GetExecution";
const LIST: &str = "/cairn.v1.ExecutionService/ListExecutions";
const CANCEL: &str = "/cairn.v1.ExecutionService/CancelExecution";
const HISTORY: &str = "/cairn.v1.ExecutionService/GetHistory";
const REPLAY: &str = "/cairn.v1.ExecutionService/ReplayExecution";
const RETRY: &str = "/cairn.v1.ExecutionService/RetryExecution";
const DELETE: &str = "/cairn.v1.ExecutionService/DeleteExecution";

/// Start an execution (`StartExecution`).
#[utoipa::path(post, operation_id = "StartExecution", path = "/executions", tag = "executions", request_body = StartExecution,
    responses((status = 200, description = "Done", body = pb::StartExecutionResponse), (status = "4XX", description = "Refused: the gRPC code's name and message, with the matching HTTP status", body = ErrorBody)))]
pub(super) async fn start(
    State(h): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<pb::StartExecutionResponse>, ApiError> {
    let message = json::<StartExecution>(&body).and_then(StartExecution::into_request);
    let request = h.request(&headers, START, message)?;
    Ok(Json(
        h.executions.start_execution(request).await?.into_inner(),
    ))
}

/// List executions, newest first (`ListExecutions`).
#[utoipa::path(get, operation_id = "ListExecutions", path = "/executions", tag = "executions", params(ListExecutionsQuery),
    responses((status = 200, description = "Done", body = pb::ListExecutionsResponse), (status = "4XX", description = "Refused: the gRPC code's name and message, with the matching HTTP status", body = ErrorBody)))]
pub(super) async fn list(
    State(h): State<Shared>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<pb::ListExecutionsResponse>, ApiError> {
    let request = h.request(&headers, LIST, list_request(&uri))?;
    Ok(Json(
        h.executions.list_executions(request).await?.into_inner(),
    ))
}

/// One execution (`GetExecution`).
#[utoipa::path(get, operation_id = "GetExecution", path = "/executions/{id}", tag = "executions",
    params(("id" = String, Path, description = "The execution's id")),
    responses((status = 200, description = "Done", body = pb::Execution), (status = "4XX", description = "Refused: the gRPC code's name and message, with the matching HTTP status", body = ErrorBody)))]
pub(super) async fn get(
    State(h): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<pb::Execution>, ApiError> {
    let request = h.request(&headers, GET, Ok(pb::GetExecutionRequest { id }))?;
    Ok(Json(
        h.executions.get_execution(request).await?.into_inner(),
    ))
}

/// An execution's history (`GetHistory`).
#[utoipa::path(get, operation_id = "GetHistory", path = "/executions/{id}/history", tag = "executions",
    params(("id" = String, Path, description = "The execution's id"), HistoryQuery),
    responses((status = 200, description = "Done", body = pb::GetHistoryResponse), (status = "4XX", description = "Refused: the gRPC code's name and message, with the matching HTTP status", body = ErrorBody)))]
pub(super) async fn history(
    State(h): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<pb::GetHistoryResponse>, ApiError> {
    let message = query::<HistoryQuery>(&uri).map(|q| pb::GetHistoryRequest {
        id,
        after_seq: q.after_seq,
    });
    let request = h.request(&headers, HISTORY, message)?;
    Ok(Json(h.executions.get_history(request).await?.into_inner()))
}

/// Cancel an execution (`CancelExecution`); the body may be empty.
#[utoipa::path(post, operation_id = "CancelExecution", path = "/executions/{id}/cancel", tag = "executions",
    request_body = Option<CancelExecution>,
    params(("id" = String, Path, description = "The execution's id")),
    responses((status = 200, description = "Done", body = pb::Execution), (status = "4XX", description = "Refused: the gRPC code's name and message, with the matching HTTP status", body = ErrorBody)))]
pub(super) async fn cancel(
    State(h): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<pb::Execution>, ApiError> {
    let message = json::<CancelExecution>(&body).map(|b| pb::CancelExecutionRequest {
        id,
        reason: b.reason,
    });
    let request = h.request(&headers, CANCEL, message)?;
    Ok(Json(
        h.executions.cancel_execution(request).await?.into_inner(),
    ))
}

/// Retry a FAILED or CANCELED execution (`RetryExecution`); the body may be empty.
#[utoipa::path(post, operation_id = "RetryExecution", path = "/executions/{id}/retry", tag = "executions",
    request_body = Option<RetryExecution>,
    params(("id" = String, Path, description = "The execution's id")),
    responses((status = 200, description = "Done", body = pb::RetryExecutionResponse), (status = "4XX", description = "Refused: the gRPC code's name and message, with the matching HTTP status", body = ErrorBody)))]
pub(super) async fn retry(
    State(h): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<pb::RetryExecutionResponse>, ApiError> {
    let message = json::<RetryExecution>(&body).map(|b| pb::RetryExecutionRequest {
        id,
        from_seq: b.from_seq,
        prompts: b.prompts,
        retry_policy: b.retry_policy,
        force: b.force,
    });
    let request = h.request(&headers, RETRY, message)?;
    Ok(Json(
        h.executions.retry_execution(request).await?.into_inner(),
    ))
}

/// Fold an execution's history through this server's code (`ReplayExecution`).
#[utoipa::path(post, operation_id = "ReplayExecution", path = "/executions/{id}/replay", tag = "executions",
    params(("id" = String, Path, description = "The execution's id")),
    responses((status = 200, description = "Done", body = pb::ReplayExecutionResponse), (status = "4XX", description = "Refused: the gRPC code's name and message, with the matching HTTP status", body = ErrorBody)))]
pub(super) async fn replay(
    State(h): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<pb::ReplayExecutionResponse>, ApiError> {
    let request = h.request(&headers, REPLAY, Ok(pb::ReplayExecutionRequest { id }))?;
    Ok(Json(
        h.executions.replay_execution(request).await?.into_inner(),
    ))
}

/// Delete a closed execution, with its members and what only it refers to
/// (`DeleteExecution`; admin tokens only).
#[utoipa::path(delete, operation_id = "DeleteExecution", path = "/executions/{id}", tag = "executions",
    params(("id" = String, Path, description = "The execution's id")),
    responses((status = 200, description = "Done", body = pb::DeleteExecutionResponse), (status = "4XX", description = "Refused: the gRPC code's name and message, with the matching HTTP status", body = ErrorBody)))]
pub(super) async fn delete(
    State(h): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<pb::DeleteExecutionResponse>, ApiError> {
    let request = h.request(&headers, DELETE, Ok(pb::DeleteExecutionRequest { id }))?;
    Ok(Json(
        h.executions.delete_execution(request).await?.into_inner(),
    ))
}
