//! What server and worker processes both take: the settings of the runtimes they host, and the
//! signal that stops them.

use crate::domain::WorkerPolicy;
use crate::runtime::{OpenAiSettings, RuntimeSettings};

/// Worker-side runtime settings. Secrets are never flags: the `default` runtime reads its API key
/// from the environment variable named here.
#[derive(Debug, Clone, clap::Args)]
pub(super) struct RuntimeArgs {
    /// The OpenAI-compatible endpoint of the `default` runtime (e.g. a LiteLLM proxy).
    #[arg(long, env = "CAIRN_OPENAI_BASE_URL", default_value = crate::runtime::DEFAULT_OPENAI_BASE_URL)]
    openai_base_url: String,
    /// The environment variable holding that endpoint's API key ("" for none).
    #[arg(long, env = "CAIRN_OPENAI_API_KEY_ENV", default_value = crate::runtime::DEFAULT_OPENAI_API_KEY_ENV)]
    openai_api_key_env: String,
    /// The longest wait for a response to start, or between two streamed pieces of it.
    #[arg(long, env = "CAIRN_OPENAI_TIMEOUT_SECS", default_value_t = 120)]
    openai_timeout_secs: u64,
    /// The Claude Code CLI binary of the `claude_code` runtime (default: `claude` on PATH).
    #[arg(long, env = "CAIRN_CLAUDE_CLI")]
    claude_cli: Option<std::path::PathBuf>,
    /// Where the CLI keeps its sessions (CLAUDE_CONFIG_DIR); share it between workers so any
    /// worker can resume any session.
    #[arg(long, env = "CAIRN_CLAUDE_CONFIG_DIR")]
    claude_config_dir: Option<std::path::PathBuf>,
    /// The worker policy, a JSON file: {"permission_modes": [...], "cwd_roots": [...],
    /// "mcp_commands": [...], "mcp_urls": [...], "env": [...]} (each optional). The worker takes
    /// only agents it admits. Default: no bypassPermissions, no cwd, no MCP server, no env
    /// (`cairn dev` on a loopback address: everything).
    #[arg(long, env = "CAIRN_WORKER_POLICY", value_name = "FILE")]
    policy: Option<std::path::PathBuf>,
}

impl RuntimeArgs {
    pub(super) fn settings(&self) -> RuntimeSettings {
        RuntimeSettings {
            openai: OpenAiSettings {
                base_url: self.openai_base_url.clone(),
                api_key_env: (!self.openai_api_key_env.is_empty())
                    .then(|| self.openai_api_key_env.clone()),
                request_timeout: std::time::Duration::from_secs(self.openai_timeout_secs),
            },
            claude_cli: self.claude_cli.clone(),
            claude_config_dir: self.claude_config_dir.clone(),
        }
    }
}

impl RuntimeArgs {
    /// The policy of `--policy FILE`, or `default` without one.
    pub(super) fn policy(&self, default: WorkerPolicy) -> anyhow::Result<WorkerPolicy> {
        let Some(path) = &self.policy else {
            return Ok(default);
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read the policy {}: {e}", path.display()))?;
        WorkerPolicy::from_json(&text)
            .map_err(|e| anyhow::anyhow!("the policy {} is invalid: {e}", path.display()))
    }
}

/// Resolves on SIGINT or SIGTERM.
pub(super) async fn signalled() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler can be installed");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
