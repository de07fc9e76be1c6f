//! `/api/v1/teams`: `TeamService` over HTTP.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use serde::Deserialize;
use utoipa::ToSchema;

use super::Shared;
use super::agents::{ArchiveQuery, InNamespace, ListQuery};
use super::body::{json, query};
use super::error::{ApiError, ErrorBody};
use crate::api::pb;
use crate::api::pb::team_service_server::TeamService;

/// A member of a team: an agent (by name or id) and its role.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Member {
    #[serde(default)]
    agent: String,
    #[serde(default)]
    role: String,
}

/// A new team.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateTeam {
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    name: String,
    /// `sequential`, `parallel` or `supervisor`.
    #[serde(default)]
    strategy: String,
    #[serde(default)]
    members: Vec<Member>,
    /// Parallel: the agent (name or id) that writes the answer from the members' results.
    #[serde(default)]
    aggregator: String,
    /// Supervisor: the agent (name or id) that picks the next member.
    #[serde(default)]
    leader: String,
    #[serde(default)]
    continue_on_failure: bool,
    /// 0 or absent: the default (8).
    #[serde(default)]
    max_rounds: u32,
    /// 0 or absent: the default (8).
    #[serde(default)]
    max_parallel: u32,
}

/// A team's new definition (it replaces the old one whole), as `UpdateTeam` takes it.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateTeam {
    #[serde(default)]
    namespace: String,
    /// The definition, in the shape of a new team's (its `name` and `namespace` are ignored).
    definition: Option<CreateTeam>,
    /// Change the team only if this is its stored version (otherwise `ABORTED`, 409).
    expected_version: Option<u64>,
}

impl From<CreateTeam> for pb::CreateTeamRequest {
    fn from(b: CreateTeam) -> Self {
        pb::CreateTeamRequest {
            namespace: b.namespace,
            name: b.name,
            strategy: b.strategy,
            members: b
                .members
                .into_iter()
                .map(|m| pb::TeamMember {
                    agent: m.agent,
                    role: m.role,
                    agent_id: String::new(),
                })
                .collect(),
            aggregator: b.aggregator,
            leader: b.leader,
            continue_on_failure: b.continue_on_failure,
            max_rounds: b.max_rounds,
            max_parallel: b.max_parallel,
        }
    }
}

const CREATE: &str = "/cairn.v1.TeamService/CreateTeam";
const GET: &str = "/cairn.v1.TeamService/GetTeam";
const LIST: &str = "/cairn.v1.TeamService/ListTeams";
const UPDATE: &str = "/cairn.v1.TeamService/UpdateTeam";
const ARCHIVE: &str = "/cairn.v1.TeamService/ArchiveTeam";

/// Create a team (`CreateTeam`).
#[utoipa::path(post, operation_id = "CreateTeam", path = "/teams", tag = "teams", request_body = CreateTeam,
    responses((status = 200, description = "Done", body = pb::Team), (status = "4XX", description = "Refused: the gRPC code's name and message, with the matching HTTP status", body = ErrorBody)))]
pub(super) async fn create(
    State(h): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<pb::Team>, ApiError> {
    let message = json::<CreateTeam>(&body).map(pb::CreateTeamRequest::from);
    let request = h.request(&headers, CREATE, message)?;
    Ok(Json(h.teams.create_team(request).await?.into_inner()))
}

/// List teams (`ListTeams`).
#[utoipa::path(get, operation_id = "ListTeams", path = "/teams", tag = "teams", params(ListQuery),
    responses((status = 200, description = "Done", body = pb::ListTeamsResponse), (status = "4XX", description = "Refused: the gRPC code's name and message, with the matching HTTP status", body = ErrorBody)))]
pub(super) async fn list(
    State(h): State<Shared>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<pb::ListTeamsResponse>, ApiError> {
    let message = query::<ListQuery>(&uri).map(|q| pb::ListTeamsRequest {
        namespace: q.namespace,
        include_archived: q.include_archived,
        page_size: q.page_size,
        page_token: q.page_token,
    });
    let request = h.request(&headers, LIST, message)?;
    Ok(Json(h.teams.list_teams(request).await?.into_inner()))
}

/// One team, by id or name (`GetTeam`).
#[utoipa::path(get, operation_id = "GetTeam", path = "/teams/{team}", tag = "teams",
    params(("team" = String, Path, description = "The team's id or name"), InNamespace),
    responses((status = 200, description = "Done", body = pb::Team), (status = "4XX", description = "Refused: the gRPC code's name and message, with the matching HTTP status", body = ErrorBody)))]
pub(super) async fn get(
    State(h): State<Shared>,
    Path(team): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<pb::Team>, ApiError> {
    let message = query::<InNamespace>(&uri).map(|q| pb::GetTeamRequest {
        namespace: q.namespace,
        team,
    });
    let request = h.request(&headers, GET, message)?;
    Ok(Json(h.teams.get_team(request).await?.into_inner()))
}

/// Replace a team's definition (`UpdateTeam`).
#[utoipa::path(patch, operation_id = "UpdateTeam", path = "/teams/{team}", tag = "teams", request_body = UpdateTeam,
    params(("team" = String, Path, description = "The team's id or name")),
    responses((status = 200, description = "Done", body = pb::Team), (status = "4XX", description = "Refused: the gRPC code's name and message, with the matching HTTP status", body = ErrorBody)))]
pub(super) async fn update(
    State(h): State<Shared>,
    Path(team): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<pb::Team>, ApiError> {
    let message = json::<UpdateTeam>(&body).map(|b| pb::UpdateTeamRequest {
        namespace: b.namespace,
        team,
        definition: b.definition.map(Into::into),
        expected_version: b.expected_version,
    });
    let request = h.request(&headers, UPDATE, message)?;
    Ok(Json(h.teams.update_team(request).await?.into_inner()))
}

/// Archive a team (`ArchiveTeam`).
#[utoipa::path(delete, operation_id = "ArchiveTeam", path = "/teams/{team}", tag = "teams",
    params(("team" = String, Path, description = "The team's id or name"), ArchiveQuery),
    responses((status = 200, description = "Done", body = pb::Team), (status = "4XX", description = "Refused: the gRPC code's name and message, with the matching HTTP status", body = ErrorBody)))]
pub(super) async fn archive(
    State(h): State<Shared>,
    Path(team): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<pb::Team>, ApiError> {
    let message = query::<ArchiveQuery>(&uri).map(|q| pb::ArchiveTeamRequest {
        namespace: q.namespace,
        team,
        expected_version: q.expected_version,
    });
    let request = h.request(&headers, ARCHIVE, message)?;
    Ok(Json(h.teams.archive_team(request).await?.into_inner()))
}
