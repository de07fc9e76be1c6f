//! The runtimes this build knows, by name.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::{
    AgentRuntime, ClaudeCodeRuntime, DefaultRuntime, EchoRuntime, OpenAiSettings,
    RuntimeDescription,
};

/// Worker-side settings of the runtimes: endpoints and where secrets are, never secrets
/// themselves (those stay in the worker's environment).
#[derive(Debug, Clone, Default)]
pub struct RuntimeSettings {
    /// The `default` runtime's endpoint (`base_url`, default `http://127.0.0.1:4000/v1`), the
    /// name of the environment variable holding its key (`api_key_env`, default
    /// `OPENAI_API_KEY`) and its request timeout (default 120 s).
    pub openai: OpenAiSettings,
    /// `claude_code`: the Claude Code CLI binary (`node_modules/.bin/claude` of an
    /// `npm install @anthropic-ai/claude-code`). Default: `claude` on the worker's PATH.
    pub claude_cli: Option<PathBuf>,
    /// `claude_code`: the CLI's config directory (`CLAUDE_CONFIG_DIR`), where it keeps the
    /// sessions that later turns and retries resume. Point it at storage every worker shares so
    /// that any worker can resume any session. Default: the CLI's own (`$HOME/.claude`).
    pub claude_config_dir: Option<PathBuf>,
}

/// Runtimes by name. Servers use it to validate agents and describe runtimes; workers use it to
/// run turns of the runtimes they offer.
#[derive(Clone, Default)]
pub struct RuntimeRegistry {
    runtimes: BTreeMap<&'static str, Arc<dyn AgentRuntime>>,
}

impl RuntimeRegistry {
    /// Every runtime built into Cairn. Adding a runtime adds one line here.
    pub fn builtin(settings: &RuntimeSettings) -> Self {
        let mut registry = RuntimeRegistry::default();
        registry.register(Arc::new(DefaultRuntime::new(settings.openai.clone())));
        registry.register(Arc::new(EchoRuntime));
        registry.register(Arc::new(ClaudeCodeRuntime::new(settings)));
        registry
    }

    /// Adds (or replaces) a runtime.
    pub fn register(&mut self, runtime: Arc<dyn AgentRuntime>) {
        self.runtimes.insert(runtime.name(), runtime);
    }

    /// The runtime called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn AgentRuntime>> {
        self.runtimes.get(name)
    }

    /// The names, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        self.runtimes.keys().copied().collect()
    }

    /// Descriptions of every runtime, sorted by name.
    pub fn describe(&self) -> Vec<RuntimeDescription> {
        self.runtimes.values().map(|r| r.describe()).collect()
    }

    /// Only the runtimes named in `names`; an unknown name is an error listing the known ones.
    pub fn select(&self, names: &[String]) -> Result<RuntimeRegistry, String> {
        let mut selected = RuntimeRegistry::default();
        for name in names {
            match self.runtimes.get(name.as_str()) {
                Some(runtime) => selected.register(runtime.clone()),
                None => {
                    return Err(format!(
                        "unknown runtime `{name}`; this build has: {}",
                        self.names().join(", ")
                    ));
                }
            }
        }
        Ok(selected)
    }
}
