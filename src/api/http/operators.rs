//! `/api/v1/stats`, `/api/v1/workers` and the OpenAPI document: what operators read.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use serde::Deserialize;
use utoipa::IntoParams;

use super::Shared;
use super::body::query;
use super::error::{ApiError, ErrorBody};
use crate::api::pb;
use crate::api::pb::execution_service_server::ExecutionService;
use crate::api::pb::worker_service_server::WorkerService;

/// Which executions the stats count, and how they are grouped.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct StatsQuery {
    #[serde(default)]
    namespace: String,
    /// Executions created within this many milliseconds of now; 0 or absent counts every one.
    #[serde(default)]
    window_ms: u64,
    /// `runtime` (the default), `agent` or `model`.
    #[serde(default)]
    by: String,
}

const STATS: &str = "/cairn.v1.ExecutionService/GetStats";
const WORKERS: &str = "/cairn.v1.WorkerService/ListWorkers";

/// Agents by runtime, and executions grouped by runtime, agent or model (`GetStats`).
#[utoipa::path(get, operation_id = "GetStats", path = "/stats", tag = "operators", params(StatsQuery),
    responses((status = 200, description = "Done", body = pb::GetStatsResponse), (status = "4XX", description = "Refused: the gRPC code's name and message, with the matching HTTP status", body = ErrorBody)))]
pub(super) async fn stats(
    State(h): State<Shared>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<pb::GetStatsResponse>, ApiError> {
    let message = query::<StatsQuery>(&uri).map(|q| pb::GetStatsRequest {
        namespace: q.namespace,
        window_ms: q.window_ms,
        by: q.by,
    });
    let request = h.request(&headers, STATS, message)?;
    Ok(Json(h.executions.get_stats(request).await?.into_inner()))
}

/// The workers seen on any server recently (`ListWorkers`).
#[utoipa::path(get, operation_id = "ListWorkers", path = "/workers", tag = "operators",
    responses((status = 200, description = "Done", body = pb::ListWorkersResponse), (status = "4XX", description = "Refused: the gRPC code's name and message, with the matching HTTP status", body = ErrorBody)))]
pub(super) async fn workers(
    State(h): State<Shared>,
    headers: HeaderMap,
) -> Result<Json<pb::ListWorkersResponse>, ApiError> {
    let request = h.request(&headers, WORKERS, Ok(pb::ListWorkersRequest {}))?;
    Ok(Json(h.workers.list_workers(request).await?.into_inner()))
}

/// This document: the OpenAPI 3.1 description of every route, generated from their
/// definitions. It needs no token (it describes the API, it reads nothing).
#[utoipa::path(get, operation_id = "GetOpenApi", path = "/openapi.json", tag = "operators", security(()),
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
pub(super) async fn openapi(State(h): State<Shared>) -> Json<serde_json::Value> {
    Json(serde_json::to_value(h.openapi.get()).unwrap_or_default())
}
