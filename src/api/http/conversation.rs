//! `/api/v1/executions/{id}/messages`, `/close` and `/approvals/{approval}`: a person in the
//! loop of an execution (`SendMessage`, `CloseExecution`, `ResolveApproval`) over HTTP.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use utoipa::ToSchema;

use super::Shared;
use super::body::json;
use super::error::{ApiError, ErrorBody};
use crate::api::pb;
use crate::api::pb::execution_service_server::ExecutionService;

/// The next message of a conversation.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SendMessage {
    /// The message: the prompt of the next turn.
    text: String,
    /// Sending twice with one request_id appends once; absent means the server draws one.
    #[serde(default)]
    request_id: String,
}

/// An answer to a tool call a turn asked about.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ResolveApproval {
    /// True runs the tool; false denies it.
    allow: bool,
    /// With a denial: what the model receives instead of the tool's result.
    #[serde(default)]
    message: String,
    /// With allow: the input to run the tool with instead, as JSON text.
    #[serde(default)]
    updated_input_json: String,
    /// Answering twice with one request_id is one answer; absent means the server draws one.
    #[serde(default)]
    request_id: String,
}

const SEND: &str = "/cairn.v1.ExecutionService/SendMessage";
const CLOSE: &str = "/cairn.v1.ExecutionService/CloseExecution";
const RESOLVE: &str = "/cairn.v1.ExecutionService/ResolveApproval";

/// Send a conversation its next message (`SendMessage`).
#[utoipa::path(post, operation_id = "SendMessage", path = "/executions/{id}/messages", tag = "executions",
    request_body = SendMessage,
    params(("id" = String, Path, description = "The conversation's execution id")),
    responses((status = 200, description = "Done", body = pb::SendMessageResponse), (status = "4XX", description = "Refused: the gRPC code's name and message, with the matching HTTP status", body = ErrorBody)))]
pub(super) async fn send(
    State(h): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<pb::SendMessageResponse>, ApiError> {
    let message = json::<SendMessage>(&body).map(|b| pb::SendMessageRequest {
        id,
        text: b.text,
        request_id: b.request_id,
    });
    let request = h.request(&headers, SEND, message)?;
    Ok(Json(h.executions.send_message(request).await?.into_inner()))
}

/// Close a conversation (`CloseExecution`): it completes after the turns it has.
#[utoipa::path(post, operation_id = "CloseExecution", path = "/executions/{id}/close", tag = "executions",
    params(("id" = String, Path, description = "The conversation's execution id")),
    responses((status = 200, description = "Done", body = pb::Execution), (status = "4XX", description = "Refused: the gRPC code's name and message, with the matching HTTP status", body = ErrorBody)))]
pub(super) async fn close(
    State(h): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<pb::Execution>, ApiError> {
    let request = h.request(&headers, CLOSE, Ok(pb::CloseExecutionRequest { id }))?;
    Ok(Json(
        h.executions.close_execution(request).await?.into_inner(),
    ))
}

/// Answer an approval (`ResolveApproval`).
#[utoipa::path(post, operation_id = "ResolveApproval", path = "/executions/{id}/approvals/{approval_id}", tag = "executions",
    request_body = ResolveApproval,
    params(("id" = String, Path, description = "The execution's id"), ("approval_id" = String, Path, description = "The approval's id")),
    responses((status = 200, description = "Done", body = pb::Execution), (status = "4XX", description = "Refused: the gRPC code's name and message, with the matching HTTP status", body = ErrorBody)))]
pub(super) async fn resolve(
    State(h): State<Shared>,
    Path((id, approval_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<pb::Execution>, ApiError> {
    let message = json::<ResolveApproval>(&body).map(|b| pb::ResolveApprovalRequest {
        id,
        approval_id,
        allow: b.allow,
        message: b.message,
        updated_input_json: b.updated_input_json,
        request_id: b.request_id,
    });
    let request = h.request(&headers, RESOLVE, message)?;
    Ok(Json(
        h.executions.resolve_approval(request).await?.into_inner(),
    ))
}
