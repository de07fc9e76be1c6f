//! One streamed Chat Completions call: POST, read the server-sent events as they arrive, hand
//! each text delta on at once, and return the assembled completion.
//!
//! Cancellation drops the response, which closes the connection: that is how an
//! OpenAI-compatible server learns to stop generating (and stop billing).

use std::time::Duration;

use eventsource_stream::{EventStreamError, Eventsource};
use futures::StreamExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::completion::{Completion, CompletionBuilder};
use super::errors::CallSite;
use super::settings::OpenAiSettings;
use crate::runtime::RuntimeError;

/// A client for one model at one endpoint, with the key already read.
#[derive(Debug, Clone)]
pub(super) struct ChatClient {
    http: reqwest::Client,
    site: CallSite,
    api_key: Option<String>,
    timeout: Duration,
}

impl ChatClient {
    /// Reads the API key from the environment variable the settings name. A missing variable is
    /// a configuration fault of the worker: retrying on the same worker cannot fix it.
    pub fn new(
        http: reqwest::Client,
        settings: &OpenAiSettings,
        model: &str,
    ) -> Result<Self, RuntimeError> {
        let site = CallSite {
            model: model.to_owned(),
            url: settings.chat_completions_url(),
        };
        let api_key = match &settings.api_key_env {
            None => None,
            Some(var) => match std::env::var(var) {
                Ok(key) if !key.is_empty() => Some(key),
                _ => {
                    return Err(RuntimeError::fatal(
                        "missing_api_key",
                        format!(
                            "the environment variable `{var}` that should hold the API key for {} \
                             is not set (or empty) on this worker",
                            site.url
                        ),
                    )
                    .with_details(serde_json::json!({ "env": var, "endpoint": site.url })));
                }
            },
        };
        Ok(ChatClient {
            http,
            site,
            api_key,
            timeout: settings.request_timeout,
        })
    }

    /// Makes one streamed model call with `body` (which must ask for `stream: true`), calling
    /// `on_text` with each text delta as it arrives.
    pub async fn complete(
        &self,
        body: &Value,
        cancel: &CancellationToken,
        mut on_text: impl FnMut(&str),
    ) -> Result<Completion, RuntimeError> {
        let mut request = self
            .http
            .post(&self.site.url)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = tokio::select! {
            _ = cancel.cancelled() => return Err(RuntimeError::canceled()),
            sent = tokio::time::timeout(self.timeout, request.send()) => match sent {
                Err(_) => return Err(self.site.timeout("response headers", self.timeout)),
                Ok(Err(e)) if e.is_timeout() => {
                    return Err(self.site.timeout("response headers", self.timeout));
                }
                Ok(Err(e)) => return Err(self.site.transport_error(&e)),
                Ok(Ok(response)) => response,
            },
        };
        let status = response.status();
        if !status.is_success() {
            let headers = response.headers().clone();
            let body = tokio::select! {
                _ = cancel.cancelled() => return Err(RuntimeError::canceled()),
                body = tokio::time::timeout(self.timeout, response.text()) => {
                    body.ok().and_then(Result::ok).unwrap_or_default()
                }
            };
            return Err(self.site.http_error(status, &headers, &body));
        }
        let cost_usd = response
            .headers()
            .get("x-litellm-response-cost")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);

        let mut events = response.bytes_stream().eventsource();
        let mut builder = CompletionBuilder::default();
        loop {
            let next = tokio::select! {
                // Returning drops `events` and with it the connection.
                _ = cancel.cancelled() => return Err(RuntimeError::canceled()),
                next = tokio::time::timeout(self.timeout, events.next()) => next,
            };
            let event = match next {
                Err(_) => return Err(self.site.timeout("stream data", self.timeout)),
                Ok(None) => {
                    return Err(self
                        .site
                        .stream_error("the stream ended without `data: [DONE]`"));
                }
                Ok(Some(Err(EventStreamError::Transport(e)))) => {
                    return Err(self.site.stream_error(&format!("the stream broke: {e}")));
                }
                Ok(Some(Err(e))) => {
                    return Err(self.site.stream_error(&format!("unreadable stream: {e}")));
                }
                Ok(Some(Ok(event))) => event,
            };
            let data = event.data.trim();
            if data == "[DONE]" {
                return Ok(builder.finish(cost_usd));
            }
            if event.event == "error" {
                return Err(self.site.stream_error(&format!("error event: {data}")));
            }
            if data.is_empty() {
                continue;
            }
            let chunk: Value =
                serde_json::from_str(data).map_err(|_| self.site.invalid_response(data))?;
            if let Some(error) = chunk.get("error").filter(|e| !e.is_null()) {
                let message = error["message"]
                    .as_str()
                    .map_or_else(|| error.to_string(), str::to_owned);
                return Err(self
                    .site
                    .stream_error(&format!("error in the stream: {message}")));
            }
            if let Some(text) = builder.push(&chunk) {
                on_text(&text);
            }
        }
    }
}
