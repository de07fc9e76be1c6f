//! Turning what the endpoint answered into [`RuntimeError`]s that say who answered what, and
//! whether trying again can help.
//!
//! The retry rules follow OpenAI's own SDKs: connection errors, timeouts, 408, 409, 429 and 5xx
//! are worth another attempt; other 4xx are not (the request or the key is wrong), unless the
//! server says otherwise with `x-should-retry`. The engine does the waiting; we only say how long
//! (`retry_after`).

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::runtime::RuntimeError;

/// How much of a response body an error message quotes.
const BODY_EXCERPT_CHARS: usize = 500;

/// The longest `retry-after` we pass on; beyond it the header is more likely wrong than useful.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Names the model call an error belongs to, for messages and details.
#[derive(Debug, Clone)]
pub(super) struct CallSite {
    /// The model requested.
    pub model: String,
    /// The URL requested.
    pub url: String,
}

impl CallSite {
    fn details(&self, extra: Value) -> Value {
        let mut details = json!({ "model": self.model, "endpoint": self.url });
        if let (Value::Object(details), Value::Object(extra)) = (&mut details, extra) {
            details.extend(extra);
        }
        details
    }

    /// A non-2xx answer.
    pub fn http_error(&self, status: StatusCode, headers: &HeaderMap, body: &str) -> RuntimeError {
        let excerpt = excerpt(body);
        let message = format!(
            "model `{}` at {} answered HTTP {status}: {excerpt}",
            self.model, self.url
        );
        let error_code = serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|b| b["error"]["code"].as_str().map(str::to_owned));
        let should_retry = headers
            .get("x-should-retry")
            .and_then(|v| v.to_str().ok())
            .map(|v| v == "true");
        let retryable = should_retry.unwrap_or(match status.as_u16() {
            // Quota exhaustion is reported as 429 but does not heal by waiting.
            429 => error_code.as_deref() != Some("insufficient_quota"),
            408 | 409 => true,
            s => s >= 500,
        });
        let code = if status == StatusCode::TOO_MANY_REQUESTS {
            "rate_limited".to_owned()
        } else {
            format!("http_{}", status.as_u16())
        };
        let mut error = if retryable {
            RuntimeError::retryable(code, message)
        } else {
            RuntimeError::fatal(code, message)
        };
        if retryable && let Some(after) = retry_after(headers) {
            error = error.with_retry_after(after);
        }
        error.with_details(self.details(json!({ "status": status.as_u16(), "body": excerpt })))
    }

    /// The request could not be sent or its answer not read (connection refused, reset, ...).
    pub fn transport_error(&self, error: &reqwest::Error) -> RuntimeError {
        // reqwest's Display stops at the outermost error; the cause chain says what happened.
        let mut cause = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(inner) = source {
            cause.push_str(": ");
            cause.push_str(&inner.to_string());
            source = inner.source();
        }
        RuntimeError::retryable(
            "connection_error",
            format!(
                "model `{}` at {} could not be reached: {cause}",
                self.model, self.url
            ),
        )
        .with_details(self.details(json!({ "cause": cause })))
    }

    /// Nothing arrived for `timeout`, before the headers or between two pieces of the stream.
    pub fn timeout(&self, waiting_for: &str, timeout: Duration) -> RuntimeError {
        RuntimeError::retryable(
            "timeout",
            format!(
                "model `{}` at {} sent no {waiting_for} for {} s",
                self.model,
                self.url,
                timeout.as_secs_f64()
            ),
        )
        .with_details(self.details(json!({ "timeout_ms": timeout.as_millis() as u64 })))
    }

    /// The stream broke off or reported an error after it had started (status 200 already sent).
    pub fn stream_error(&self, what: &str) -> RuntimeError {
        RuntimeError::retryable(
            "stream_error",
            format!("model `{}` at {}: {}", self.model, self.url, excerpt(what)),
        )
        .with_details(self.details(json!({ "cause": excerpt(what) })))
    }

    /// A stream event that is not a chunk we can read; a different protocol, not a hiccup.
    pub fn invalid_response(&self, what: &str) -> RuntimeError {
        RuntimeError::fatal(
            "invalid_response",
            format!(
                "model `{}` at {} sent something that is not a chat completion chunk: {}",
                self.model,
                self.url,
                excerpt(what)
            ),
        )
        .with_details(self.details(json!({ "data": excerpt(what) })))
    }
}

/// The wait a server asks for: `retry-after-ms`, or `retry-after` in seconds or as an HTTP date.
pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let after = if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        Duration::try_from_secs_f64(ms / 1000.0).ok()?
    } else {
        let value = header("retry-after")?;
        match value.parse::<f64>() {
            Ok(seconds) => Duration::try_from_secs_f64(seconds).ok()?,
            Err(_) => {
                let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
                (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
                    .to_std()
                    .unwrap_or(Duration::ZERO)
            }
        }
    };
    Some(after.min(MAX_RETRY_AFTER))
}

/// The first characters of `text`, on one line.
fn excerpt(text: &str) -> String {
    let flat: String = text.trim().replace(['\n', '\r'], " ");
    match flat.char_indices().nth(BODY_EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn site() -> CallSite {
        CallSite {
            model: "gpt-x".into(),
            url: "http://h/v1/chat/completions".into(),
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn statuses_are_classified() {
        let retryable = |status: u16, body: &str, h: &[(&'static str, &str)]| {
            site()
                .http_error(StatusCode::from_u16(status).unwrap(), &headers(h), body)
                .retryable
        };
        assert!(retryable(429, "{}", &[]));
        assert!(retryable(500, "", &[]) && retryable(503, "", &[]) && retryable(408, "", &[]));
        assert!(!retryable(400, "", &[]) && !retryable(401, "", &[]) && !retryable(404, "", &[]));
        assert!(!retryable(
            429,
            r#"{"error":{"code":"insufficient_quota"}}"#,
            &[]
        ));
        assert!(!retryable(500, "", &[("x-should-retry", "false")]));
        assert!(retryable(400, "", &[("x-should-retry", "true")]));
    }

    #[test]
    fn messages_name_model_endpoint_status_and_body() {
        let error = site().http_error(StatusCode::UNAUTHORIZED, &HeaderMap::new(), "bad\nkey");
        assert_eq!(error.code, "http_401");
        assert_eq!(
            error.message,
            "model `gpt-x` at http://h/v1/chat/completions answered HTTP 401 Unauthorized: bad key"
        );
        assert_eq!(error.details["status"], 401);
    }

    #[test]
    fn retry_after_forms() {
        let after = |h: &[(&'static str, &str)]| retry_after(&headers(h));
        assert_eq!(after(&[("retry-after", "7")]), Some(Duration::from_secs(7)));
        assert_eq!(
            after(&[("retry-after-ms", "1500"), ("retry-after", "9")]),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            after(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]),
            Some(Duration::ZERO)
        );
        assert_eq!(after(&[("retry-after", "soon")]), None);
        assert_eq!(after(&[]), None);
    }

    #[test]
    fn excerpts_are_cut() {
        let long = "x".repeat(BODY_EXCERPT_CHARS + 10);
        assert_eq!(excerpt(&long).chars().count(), BODY_EXCERPT_CHARS + 1);
    }
}
