//! Engine errors → gRPC status, in exactly one place.

use tonic::Status;

use crate::engine::EngineError;
use crate::store::StoreError;

impl From<EngineError> for Status {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::InvalidArgument(m) => Status::invalid_argument(m),
            EngineError::NotFound(m) => Status::not_found(m),
            EngineError::FailedPrecondition(m) => Status::failed_precondition(m),
            EngineError::Stale(m) => Status::failed_precondition(format!("stale report: {m}")),
            EngineError::AlreadyExists(m) => Status::already_exists(m),
            EngineError::Store(e) => e.into(),
            EngineError::Internal(m) => Status::internal(m),
        }
    }
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::AlreadyExists(m) => Status::already_exists(m),
            e @ (StoreError::ChunkGap { .. } | StoreError::OutputLimit { .. }) => {
                Status::invalid_argument(e.to_string())
            }
            e @ StoreError::VersionConflict { .. } => Status::aborted(e.to_string()),
            StoreError::Database(e) => {
                tracing::error!(error = %e, "database error");
                Status::unavailable(format!("database error: {e}"))
            }
            other => Status::internal(other.to_string()),
        }
    }
}

/// Shorthand for a request the client must fix.
pub(crate) fn invalid(message: impl Into<String>) -> Status {
    Status::invalid_argument(message.into())
}
