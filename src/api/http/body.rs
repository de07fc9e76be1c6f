//! Request bodies and query strings, read into the handlers' types with errors in the API's
//! shape (`INVALID_ARGUMENT`, naming what to fix).
//!
//! Bodies are JSON whatever their `Content-Type` says, or whether they say it at all: `curl -d`
//! sends `application/x-www-form-urlencoded`, and our users' scripts post JSON that way.

use axum::body::Bytes;
use axum::http::Uri;
use serde::de::DeserializeOwned;

use super::error::{ApiError, invalid};

/// The JSON body `bytes` as a `T`; an empty body is `{}` (every field absent).
pub(super) fn json<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(text).map_err(|e| invalid(format!("the request body: {e}")))
}

/// The query string of `uri` as a `T`.
pub(super) fn query<T: DeserializeOwned>(uri: &Uri) -> Result<T, ApiError> {
    axum::extract::Query::<T>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| invalid(format!("the query string: {}", e.body_text())))
}

/// The query string of `uri` as its pairs, in order (for parameters that repeat).
pub(super) fn pairs(uri: &Uri) -> Result<Vec<(String, String)>, ApiError> {
    query(uri)
}

/// A number given as a query parameter.
pub(super) fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ApiError> {
    value.parse().map_err(|_| {
        invalid(format!(
            "query parameter {name} must be a whole number, not `{}`",
            crate::api::validate::quote(value)
        ))
    })
}
