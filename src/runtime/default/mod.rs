//! `default`: an agent loop over an OpenAI-compatible Chat Completions API (what LiteLLM and most
//! providers expose), with tools from MCP servers.
//!
//! A turn streams the model's answer as `text` chunks, runs the tool calls it asks for through
//! MCP (`tool_use` and `tool_result` chunks) and loops until the model answers without tool
//! calls. The checkpoint is the transcript (see [`transcript`]); it is saved after every model
//! call and tool result, so a retried attempt pays for no model call twice, and it is handed to
//! the next turn, so a multi-turn execution is one conversation.
//!
//! The endpoint and the key's environment variable are worker settings ([`OpenAiSettings`]);
//! agents choose only the model and the loop's options.

mod approval;
mod client;
mod completion;
mod config;
mod errors;
mod mcp;
mod settings;
mod tools;
mod transcript;
mod turn;

use async_trait::async_trait;
use serde_json::json;

use self::client::ChatClient;
use self::config::AgentConfig;
use self::tools::Toolbox;
use self::transcript::Transcript;
use super::{AgentRuntime, ConfigError, RuntimeDescription, RuntimeError, TurnIo, TurnOutput};
use crate::domain::{AgentSpec, Turn, Usage};

pub use settings::{
    DEFAULT_OPENAI_API_KEY_ENV, DEFAULT_OPENAI_BASE_URL, DEFAULT_OPENAI_REQUEST_TIMEOUT,
    OpenAiSettings,
};

/// The `default` runtime: an agent loop over an OpenAI-compatible Chat Completions endpoint,
/// with tools from MCP servers.
#[derive(Debug, Clone)]
pub struct DefaultRuntime {
    settings: OpenAiSettings,
    /// Shared by all turns, so connections to the endpoint are reused.
    http: reqwest::Client,
}

impl DefaultRuntime {
    /// A runtime that calls the endpoint `settings` names.
    pub fn new(settings: OpenAiSettings) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(settings.request_timeout)
            .build()
            // Building fails only if the TLS backend cannot initialise, which is a broken build,
            // not a condition to handle at run time.
            .expect("the HTTP client builds");
        DefaultRuntime { settings, http }
    }

    /// The worker settings this runtime uses.
    pub fn settings(&self) -> &OpenAiSettings {
        &self.settings
    }

    fn config(&self, agent: &AgentSpec) -> Result<AgentConfig, ConfigError> {
        AgentConfig::parse(agent, &self.describe())
    }
}

#[async_trait]
impl AgentRuntime for DefaultRuntime {
    fn name(&self) -> &'static str {
        "default"
    }

    fn describe(&self) -> RuntimeDescription {
        RuntimeDescription {
            name: "default",
            description: "An agent loop over an OpenAI-compatible Chat Completions endpoint \
                          (e.g. LiteLLM), with tools from MCP servers; the model is the agent's \
                          model_id.",
            config_keys: config::config_keys(),
        }
    }

    fn validate(&self, agent: &AgentSpec) -> Result<(), ConfigError> {
        self.config(agent).map(|_| ())
    }

    async fn run(&self, turn: Turn, io: TurnIo) -> Result<TurnOutput, RuntimeError> {
        let config = self
            .config(&turn.agent)
            .map_err(|e| RuntimeError::fatal("invalid_configuration", e.message))?;
        let mut transcript = Transcript::start(io.previous_checkpoint(), turn.index, &turn.prompt)?;
        let resumed_at = transcript.model_calls;
        // A turn whose answer is already in the checkpoint (its attempt died before reporting)
        // needs neither the endpoint nor the tools.
        if transcript.next_step() != transcript::Step::Finished {
            let client = ChatClient::new(self.http.clone(), &self.settings, &config.model)?;
            let toolbox = tokio::select! {
                _ = io.cancel.cancelled() => return Err(RuntimeError::canceled()),
                toolbox = Toolbox::start(&config.mcp_servers, self.settings.request_timeout) => toolbox?,
            };
            let result = turn::run_loop(&config, &client, &toolbox, &mut transcript, &io).await;
            if io.cancel.is_cancelled() {
                // Dropping the sessions kills the servers at once; a graceful close could wait.
                drop(toolbox);
            } else {
                toolbox.shutdown().await;
            }
            result?;
        }
        Ok(TurnOutput {
            output: json!({
                "text": transcript.answer(),
                "model": config.model,
                "finish_reason": transcript.finish_reason,
                "model_calls": transcript.model_calls,
                "tool_calls": transcript.tool_calls,
                "resumed_after_model_calls": resumed_at,
            }),
            usage: Usage {
                input_tokens: transcript.usage.input_tokens,
                output_tokens: transcript.usage.output_tokens,
                cost_usd: transcript.usage.cost_usd,
                tool_calls: u64::from(transcript.tool_calls),
            },
            checkpoint: Some(transcript.to_value()),
        })
    }
}
