//! `GET /api/v1/executions/{id}/events`: an execution's output and status as Server-Sent Events,
//! over the same follower as `StreamExecution` (its stream, called as the gRPC server calls it).
//!
//! Events, each with JSON data:
//! - `status` (first, no id): the execution as it is when the stream opens;
//! - `output` (id = the chunk's seq): one output chunk, in seq order, none skipped or repeated;
//! - `waiting` (no id): the execution once it waits (a conversation for its next message, a
//!   turn for an approval) and every chunk was sent; again each time what it waits for changes;
//! - `closed` (last, no id): the execution once it has closed and every chunk was sent;
//! - `error` (last, no id): `{"error": {"code", "message"}}` when the stream breaks (the server
//!   stops); reconnect, and the stream resumes after the last chunk received.
//!
//! Resuming: `Last-Event-ID` (which `EventSource` sends by itself when it reconnects) or the
//! `after_seq` query parameter; chunks with a greater seq are sent. An event without an id leaves
//! the client's last event id as it was, so only output moves it. A browser's `EventSource`
//! reconnects whenever a stream ends, so a client closes it on `closed`.

use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt, stream};
use serde::Deserialize;
use utoipa::IntoParams;

use super::Shared;
use super::body::{number, query};
use super::error::{ApiError, ErrorBody};
use crate::api::pb;
use crate::api::pb::execution_service_server::ExecutionService;
use crate::api::pb::stream_execution_response::Event as Streamed;

/// Where the stream starts.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct EventsQuery {
    /// Chunks with seq > after_seq are sent; 0 or absent sends the whole output. The
    /// `Last-Event-ID` header, when present, takes its place.
    #[serde(default)]
    after_seq: u64,
    /// Also send the chunks an interrupted attempt emitted that its retry emitted again (marked
    /// `superseded`); by default each text is sent once, as the retry emitted it.
    #[serde(default)]
    include_superseded: bool,
}

const STREAM: &str = "/cairn.v1.ExecutionService/StreamExecution";
const GET: &str = "/cairn.v1.ExecutionService/GetExecution";

/// Where the stream starts and whether it includes superseded chunks.
fn start(headers: &HeaderMap, uri: &Uri) -> Result<(u64, bool), ApiError> {
    let query = query::<EventsQuery>(uri)?;
    let after_seq = match headers.get("last-event-id") {
        None => query.after_seq,
        Some(value) => {
            let value = value.to_str().unwrap_or("(not text)").trim();
            if value.is_empty() {
                query.after_seq
            } else {
                number("Last-Event-ID", value)?
            }
        }
    };
    Ok((after_seq, query.include_superseded))
}

fn json_event(name: &'static str, data: &impl serde::Serialize) -> Event {
    Event::default()
        .event(name)
        .json_data(data)
        .unwrap_or_else(|e| Event::default().event("error").data(e.to_string()))
}

/// The output and status of an execution, live (`StreamExecution` as Server-Sent Events).
#[utoipa::path(get, operation_id = "StreamExecution", path = "/executions/{id}/events", tag = "executions",
    params(
        ("id" = String, Path, description = "The execution's id"),
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this output seq"),
        EventsQuery
    ),
    responses(
        (status = 200, content_type = "text/event-stream",
         description = "Events `status` (an Execution), `output` (an OutputChunk, id = its seq), \
                        `waiting` (an Execution), `closed` (an Execution, last) and `error` (an ErrorBody, last)"),
        (status = "4XX", description = "Refused: the gRPC code's name and message, with the matching HTTP status", body = ErrorBody)))]
pub(super) async fn events(
    State(h): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let message =
        start(&headers, &uri).map(
            |(after_seq, include_superseded)| pb::StreamExecutionRequest {
                id: id.clone(),
                after_seq,
                include_superseded,
            },
        );
    let request = h.request(&headers, STREAM, message)?;
    let output = h.executions.stream_execution(request).await?.into_inner();
    let current = h.request(&headers, GET, Ok(pb::GetExecutionRequest { id }))?;
    let current = h.executions.get_execution(current).await?.into_inner();
    let first = stream::once(async move { json_event("status", &current) });
    // The stream ends after `closed` or `error`: the follower sends nothing after either.
    let rest = output.map(|item| match item {
        Ok(pb::StreamExecutionResponse {
            event: Some(Streamed::Chunk(chunk)),
        }) => json_event("output", &chunk).id(chunk.seq.to_string()),
        Ok(pb::StreamExecutionResponse {
            event: Some(Streamed::Closed(execution)),
        }) => json_event("closed", &execution),
        Ok(pb::StreamExecutionResponse {
            event: Some(Streamed::Waiting(execution)),
        }) => json_event("waiting", &execution),
        Ok(pb::StreamExecutionResponse { event: None }) => json_event(
            "error",
            &ErrorBody::of(&tonic::Status::internal("an empty event")),
        ),
        Err(status) => json_event("error", &ErrorBody::of(&status)),
    });
    Ok(Sse::new(first.chain(rest).map(Ok)).keep_alive(KeepAlive::default()))
}
