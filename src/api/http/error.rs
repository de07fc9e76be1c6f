//! gRPC status → HTTP response, in exactly one place: `{"error": {"code", "message"}}` with the
//! HTTP status that matches the code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tonic::{Code, Status};

/// An error of the HTTP API: the same status the gRPC call would have returned.
#[derive(Debug)]
pub struct ApiError(pub Status);

impl From<Status> for ApiError {
    fn from(status: Status) -> Self {
        ApiError(status)
    }
}

/// The body of every error response.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// An error's code and message.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// The gRPC status code's name: `INVALID_ARGUMENT`, `NOT_FOUND`, `UNAUTHENTICATED`, ...
    pub code: String,
    /// What to fix, word for word as the gRPC API says it.
    pub message: String,
}

impl ErrorBody {
    /// The body for `status`.
    pub fn of(status: &Status) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: code_name(status.code()).to_string(),
                message: status.message().to_string(),
            },
        }
    }
}

/// The HTTP status of a gRPC code: the mapping of Google's API design guide (`google.rpc.Code`),
/// which grpc-gateway uses too.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::from_u16(499).expect("499 is a valid status"),
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The code's name as the gRPC specification spells it.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            http_status(self.0.code()),
            axum::Json(ErrorBody::of(&self.0)),
        )
            .into_response();
        if self.0.code() == Code::Unauthenticated {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// Shorthand for a request the client must fix.
pub(super) fn invalid(message: impl Into<String>) -> ApiError {
    ApiError(Status::invalid_argument(message.into()))
}

/// Any path under the prefix that no route serves.
pub(super) async fn no_route(uri: axum::http::Uri) -> ApiError {
    ApiError(Status::not_found(format!(
        "no route {}; the routes are listed in {}/openapi.json",
        uri.path(),
        super::PREFIX
    )))
}

/// Rewrites the errors axum answers by itself (a method a route does not take, a body over the
/// limit, a path that does not decode) into the API's JSON shape, keeping their HTTP status:
/// every error of the API then reads the same way.
pub(super) async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let code = match status {
        StatusCode::METHOD_NOT_ALLOWED => Code::Unimplemented,
        StatusCode::PAYLOAD_TOO_LARGE => Code::ResourceExhausted,
        StatusCode::NOT_FOUND => Code::NotFound,
        s if s.is_client_error() => Code::InvalidArgument,
        _ => Code::Internal,
    };
    let text = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = match (status, text.is_empty()) {
        (StatusCode::METHOD_NOT_ALLOWED, _) => {
            "this route does not take that method; the routes and their methods are listed in \
             /api/v1/openapi.json"
                .to_string()
        }
        (StatusCode::PAYLOAD_TOO_LARGE, _) => format!(
            "the request body is over the limit of {} bytes",
            super::MAX_BODY_BYTES
        ),
        (_, true) => status.canonical_reason().unwrap_or("error").to_string(),
        (_, false) => text,
    };
    (
        status,
        axum::Json(ErrorBody::of(&Status::new(code, message))),
    )
        .into_response()
}
