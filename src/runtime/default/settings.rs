//! Worker-side settings of the `default` runtime: which endpoint to call and where the key is.

use std::time::Duration;

/// Where the `default` runtime sends its Chat Completions requests. The endpoint belongs to the
/// worker, not to agents: an agent names a model, and the worker's gateway (LiteLLM, or any
/// OpenAI-compatible server) decides where it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAiSettings {
    /// The API base, without `/chat/completions` (default `http://127.0.0.1:4000/v1`, a local
    /// LiteLLM proxy).
    pub base_url: String,
    /// The NAME of the environment variable that holds the API key (default `OPENAI_API_KEY`).
    /// The key itself is read from the worker's environment at each turn and never stored.
    /// `None` sends no `Authorization` header, for gateways without authentication.
    pub api_key_env: Option<String>,
    /// How long to wait for the response headers, and the longest silence allowed between two
    /// pieces of a streamed response (default 120 s). A long answer that keeps streaming is never
    /// cut off; a stalled one is. It also bounds the start-up (handshake and tool listing) of
    /// each MCP server.
    pub request_timeout: Duration,
}

/// The base URL used when none is configured: LiteLLM's proxy on its default port.
pub const DEFAULT_OPENAI_BASE_URL: &str = "http://127.0.0.1:4000/v1";

/// The environment variable read for the API key when none is configured.
pub const DEFAULT_OPENAI_API_KEY_ENV: &str = "OPENAI_API_KEY";

/// The request timeout used when none is configured.
pub const DEFAULT_OPENAI_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

impl Default for OpenAiSettings {
    fn default() -> Self {
        OpenAiSettings {
            base_url: DEFAULT_OPENAI_BASE_URL.to_owned(),
            api_key_env: Some(DEFAULT_OPENAI_API_KEY_ENV.to_owned()),
            request_timeout: DEFAULT_OPENAI_REQUEST_TIMEOUT,
        }
    }
}

impl OpenAiSettings {
    /// The URL requests are POSTed to.
    pub fn chat_completions_url(&self) -> String {
        format!("{}/chat/completions", self.base_url.trim_end_matches('/'))
    }
}
