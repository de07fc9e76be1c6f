//! `/api/v1/agents` and `/api/v1/runtimes`: `AgentService` over HTTP.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::Shared;
use super::body::{json, query};
use super::error::{ApiError, ErrorBody};
use crate::api::pb;
use crate::api::pb::agent_service_server::AgentService;

/// A new agent. `configuration` is a JSON object (the runtime's settings; see
/// `GET /api/v1/runtimes` for each runtime's keys).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateAgent {
    /// Empty or absent means "default".
    #[serde(default)]
    namespace: String,
    name: Option<String>,
    /// Empty or absent means "default".
    #[serde(default)]
    runtime: String,
    #[serde(default)]
    model_id: String,
    /// A JSON object; absent means {}.
    #[schema(value_type = Option<Object>)]
    configuration: Option<serde_json::Value>,
}

/// A change to an agent: the fields given are changed, the others kept.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateAgent {
    #[serde(default)]
    namespace: String,
    runtime: Option<String>,
    model_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    configuration: Option<serde_json::Value>,
    /// Change the agent only if this is its stored version (otherwise `ABORTED`, 409).
    expected_version: Option<u64>,
}

/// The namespace an agent or team is looked up in.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct InNamespace {
    /// Empty or absent means "default".
    #[serde(default)]
    pub(super) namespace: String,
}

/// Archive only at this version.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ArchiveQuery {
    #[serde(default)]
    pub(super) namespace: String,
    /// Archive only if this is the stored version (otherwise `ABORTED`, 409).
    pub(super) expected_version: Option<u64>,
}

/// A page of a list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    #[serde(default)]
    pub(super) namespace: String,
    /// List archived ones too.
    #[serde(default)]
    pub(super) include_archived: bool,
    /// 0 or absent means the server's default page size.
    #[serde(default)]
    pub(super) page_size: u32,
    /// The previous page's `next_page_token`.
    #[serde(default)]
    pub(super) page_token: String,
}

/// A JSON configuration as the protobuf field carries it: text (absent stays absent).
pub(super) fn configuration_text(value: Option<serde_json::Value>) -> Option<String> {
    value.map(|v| v.to_string())
}

const CREATE: &str = "/cairn.v1.AgentService/CreateAgent";
const GET: &str = "/cairn.v1.AgentService/GetAgent";
const LIST: &str = "/cairn.v1.AgentService/ListAgents";
const UPDATE: &str = "/cairn.v1.AgentService/UpdateAgent";
const ARCHIVE: &str = "/cairn.v1.AgentService/ArchiveAgent";
const RUNTIMES: &str = "/cairn.v1.AgentService/ListRuntimes";

/// Create an agent (`CreateAgent`).
#[utoipa::path(post, operation_id = "CreateAgent", path = "/agents", tag = "agents", request_body = CreateAgent,
    responses((status = 200, description = "Done", body = pb::Agent), (status = "4XX", description = "Refused: the gRPC code's name and message, with the matching HTTP status", body = ErrorBody)))]
pub(super) async fn create(
    State(h): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<pb::Agent>, ApiError> {
    let message = json::<CreateAgent>(&body).map(|b| pb::CreateAgentRequest {
        namespace: b.namespace,
        name: b.name.unwrap_or_default(),
        runtime: b.runtime,
        model_id: b.model_id,
        configuration_json: configuration_text(b.configuration).unwrap_or_default(),
    });
    let request = h.request(&headers, CREATE, message)?;
    Ok(Json(h.agents.create_agent(request).await?.into_inner()))
}

/// List agents (`ListAgents`), newest first.
#[utoipa::path(get, operation_id = "ListAgents", path = "/agents", tag = "agents", params(ListQuery),
    responses((status = 200, description = "Done", body = pb::ListAgentsResponse), (status = "4XX", description = "Refused: the gRPC code's name and message, with the matching HTTP status", body = ErrorBody)))]
pub(super) async fn list(
    State(h): State<Shared>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<pb::ListAgentsResponse>, ApiError> {
    let message = query::<ListQuery>(&uri).map(|q| pb::ListAgentsRequest {
        namespace: q.namespace,
        include_archived: q.include_archived,
        page_size: q.page_size,
        page_token: q.page_token,
    });
    let request = h.request(&headers, LIST, message)?;
    Ok(Json(h.agents.list_agents(request).await?.into_inner()))
}

/// One agent, by id or name (`GetAgent`).
#[utoipa::path(get, operation_id = "GetAgent", path = "/agents/{agent}", tag = "agents",
    params(("agent" = String, Path, description = "The agent's id or name"), InNamespace),
    responses((status = 200, description = "Done", body = pb::Agent), (status = "4XX", description = "Refused: the gRPC code's name and message, with the matching HTTP status", body = ErrorBody)))]
pub(super) async fn get(
    State(h): State<Shared>,
    Path(agent): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<pb::Agent>, ApiError> {
    let message = query::<InNamespace>(&uri).map(|q| pb::GetAgentRequest {
        namespace: q.namespace,
        agent,
    });
    let request = h.request(&headers, GET, message)?;
    Ok(Json(h.agents.get_agent(request).await?.into_inner()))
}

/// Change an agent's runtime, model or configuration (`UpdateAgent`).
#[utoipa::path(patch, operation_id = "UpdateAgent", path = "/agents/{agent}", tag = "agents", request_body = UpdateAgent,
    params(("agent" = String, Path, description = "The agent's id or name")),
    responses((status = 200, description = "Done", body = pb::Agent), (status = "4XX", description = "Refused: the gRPC code's name and message, with the matching HTTP status", body = ErrorBody)))]
pub(super) async fn update(
    State(h): State<Shared>,
    Path(agent): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<pb::Agent>, ApiError> {
    let message = json::<UpdateAgent>(&body).map(|b| pb::UpdateAgentRequest {
        namespace: b.namespace,
        agent,
        runtime: b.runtime,
        model_id: b.model_id,
        configuration_json: configuration_text(b.configuration),
        expected_version: b.expected_version,
    });
    let request = h.request(&headers, UPDATE, message)?;
    Ok(Json(h.agents.update_agent(request).await?.into_inner()))
}

/// Archive an agent (`ArchiveAgent`): it starts no new executions; its name is free again.
#[utoipa::path(delete, operation_id = "ArchiveAgent", path = "/agents/{agent}", tag = "agents",
    params(("agent" = String, Path, description = "The agent's id or name"), ArchiveQuery),
    responses((status = 200, description = "Done", body = pb::Agent), (status = "4XX", description = "Refused: the gRPC code's name and message, with the matching HTTP status", body = ErrorBody)))]
pub(super) async fn archive(
    State(h): State<Shared>,
    Path(agent): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<pb::Agent>, ApiError> {
    let message = query::<ArchiveQuery>(&uri).map(|q| pb::ArchiveAgentRequest {
        namespace: q.namespace,
        agent,
        expected_version: q.expected_version,
    });
    let request = h.request(&headers, ARCHIVE, message)?;
    Ok(Json(h.agents.archive_agent(request).await?.into_inner()))
}

/// The runtimes this server knows, their configuration keys, and how many connected workers
/// offer each (`ListRuntimes`).
#[utoipa::path(get, operation_id = "ListRuntimes", path = "/runtimes", tag = "agents",
    responses((status = 200, description = "Done", body = pb::ListRuntimesResponse), (status = "4XX", description = "Refused: the gRPC code's name and message, with the matching HTTP status", body = ErrorBody)))]
pub(super) async fn runtimes(
    State(h): State<Shared>,
    headers: HeaderMap,
) -> Result<Json<pb::ListRuntimesResponse>, ApiError> {
    let request = h.request(&headers, RUNTIMES, Ok(pb::ListRuntimesRequest {}))?;
    Ok(Json(h.agents.list_runtimes(request).await?.into_inner()))
}
