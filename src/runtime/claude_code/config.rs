//! The `runtime_config` of a `claude_code` agent, and the CLI flags it becomes.
//!
//! Parsing is by hand rather than through serde so that every message names the key at fault
//! and says what type it wants; serde's messages name neither.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::super::{ConfigError, ConfigKeyInfo, reject_unknown_keys, runtime_config};
use crate::domain::AgentSpec;

/// The permission modes the CLI accepts for `--permission-mode`.
const PERMISSION_MODES: [&str; 4] = ["default", "acceptEdits", "plan", "bypassPermissions"];

/// Environment variables that hold provider credentials. Agent configurations are stored in the
/// database, and secrets must stay in the worker's environment, so `env` may not set these.
const SECRET_ENV: [&str; 3] = [
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "CLAUDE_CODE_OAUTH_TOKEN",
];

/// The keys of `runtime_config` this runtime accepts, for `describe()`.
pub(super) fn config_keys() -> Vec<ConfigKeyInfo> {
    let key = |name, ty, description| ConfigKeyInfo {
        name,
        ty,
        description,
    };
    vec![
        key(
            "permission_mode",
            "string",
            "how tool use is approved: default (the CLI's asks become Cairn approvals; also when unset), acceptEdits, plan or bypassPermissions",
        ),
        key(
            "cwd",
            "string",
            "absolute working directory of the CLI on the worker, under a root the worker policy admits (default: a scratch directory of the execution, removed when each turn ends)",
        ),
        key(
            "allowed_tools",
            "array<string>",
            "tool rules allowed without asking, e.g. `Bash(git log:*)` or `mcp__srv__tool`",
        ),
        key(
            "disallowed_tools",
            "array<string>",
            "tool rules that are always denied",
        ),
        key(
            "max_turns",
            "integer",
            "the most model turns one agent turn may take (at least 1)",
        ),
        key(
            "model",
            "string",
            "the model; overrides the agent's model_id",
        ),
        key(
            "system_prompt",
            "string",
            "replaces Claude Code's system prompt",
        ),
        key(
            "append_system_prompt",
            "string",
            "appended to the system prompt",
        ),
        key(
            "mcp_servers",
            "object",
            "MCP servers by name, as in `{\"mcpServers\": {...}}` of Claude Code's --mcp-config",
        ),
        key(
            "env",
            "object<string,string>",
            "extra environment variables for the CLI (never credentials: those stay in the worker's environment)",
        ),
    ]
}

/// A validated `runtime_config` of a `claude_code` agent.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct ClaudeCodeConfig {
    /// `--permission-mode`, one of [`PERMISSION_MODES`].
    pub permission_mode: Option<String>,
    /// The CLI's working directory; sessions are filed under it.
    pub cwd: Option<String>,
    /// `--allowedTools`, comma-joined.
    pub allowed_tools: Vec<String>,
    /// `--disallowedTools`, comma-joined.
    pub disallowed_tools: Vec<String>,
    /// `--max-turns`: how many model turns one Cairn turn may take; `None` leaves the CLI's
    /// default.
    pub max_turns: Option<u32>,
    /// `--model`; wins over the agent's `model_id`.
    pub model: Option<String>,
    /// `--system-prompt`: replaces the CLI's own system prompt; `None` keeps it.
    pub system_prompt: Option<String>,
    /// `--append-system-prompt`: added after the system prompt; `None` adds nothing.
    pub append_system_prompt: Option<String>,
    /// The value of `mcpServers` in `--mcp-config`.
    pub mcp_servers: Option<Map<String, Value>>,
    /// Extra environment of the CLI process.
    pub env: BTreeMap<String, String>,
}

impl ClaudeCodeConfig {
    /// Reads and checks the agent's `runtime_config`.
    pub fn from_agent(agent: &AgentSpec) -> Result<Self, ConfigError> {
        let map = runtime_config(agent)?;
        let description = super::ClaudeCodeRuntime::description();
        reject_unknown_keys(&description, &map)?;
        let config = ClaudeCodeConfig {
            permission_mode: string(&map, "permission_mode")?,
            cwd: string(&map, "cwd")?,
            allowed_tools: string_list(&map, "allowed_tools")?,
            disallowed_tools: string_list(&map, "disallowed_tools")?,
            max_turns: positive_integer(&map, "max_turns")?,
            model: string(&map, "model")?,
            system_prompt: string(&map, "system_prompt")?,
            append_system_prompt: string(&map, "append_system_prompt")?,
            mcp_servers: mcp_servers(&map)?,
            env: env(&map)?,
        };
        if let Some(mode) = &config.permission_mode
            && !PERMISSION_MODES.contains(&mode.as_str())
        {
            return Err(ConfigError::new(format!(
                "runtime_config.permission_mode `{mode}` is not a Claude Code permission mode; use one of: {}",
                PERMISSION_MODES.join(", ")
            )));
        }
        if let Some(cwd) = &config.cwd
            && !cwd.starts_with('/')
        {
            return Err(ConfigError::new(format!(
                "runtime_config.cwd must be an absolute path on the worker, got `{cwd}`"
            )));
        }
        Ok(config)
    }

    /// The model to run: `model` if set, else the agent's `model_id`, else the CLI's default.
    pub fn effective_model<'a>(&'a self, agent: &'a AgentSpec) -> Option<&'a str> {
        self.model
            .as_deref()
            .or(Some(agent.model_id.as_str()))
            .filter(|m| !m.is_empty())
    }

    /// Whether the CLI asks before running a tool: in `default` permission mode (also the
    /// CLI's mode when none is given), and only then.
    pub fn asks_permission(&self) -> bool {
        self.permission_mode
            .as_deref()
            .is_none_or(|m| m == "default")
    }

    /// The CLI flags this configuration maps to, before `--resume` and the stream-json flags.
    pub fn flags(&self, agent: &AgentSpec) -> Vec<String> {
        let mut args = Vec::new();
        // Flags and values as separate arguments, as the Agent SDK passes them.
        let mut flag = |name: &str, value: String| {
            args.push(name.to_owned());
            args.push(value);
        };
        if let Some(prompt) = &self.system_prompt {
            flag("--system-prompt", prompt.clone());
        }
        if let Some(prompt) = &self.append_system_prompt {
            flag("--append-system-prompt", prompt.clone());
        }
        if !self.allowed_tools.is_empty() {
            flag("--allowedTools", self.allowed_tools.join(","));
        }
        if !self.disallowed_tools.is_empty() {
            flag("--disallowedTools", self.disallowed_tools.join(","));
        }
        if let Some(turns) = self.max_turns {
            flag("--max-turns", turns.to_string());
        }
        if let Some(model) = self.effective_model(agent) {
            flag("--model", model.to_owned());
        }
        if let Some(mode) = &self.permission_mode {
            flag("--permission-mode", mode.clone());
        }
        if self.asks_permission() {
            // The CLI's permission asks then arrive on stdout as `can_use_tool` control
            // requests, which the runtime turns into approvals (`approve.rs`).
            flag("--permission-prompt-tool", "stdio".to_owned());
        }
        if let Some(servers) = &self.mcp_servers {
            let config = serde_json::json!({ "mcpServers": servers });
            flag("--mcp-config", config.to_string());
        }
        args
    }
}

impl ClaudeCodeConfig {
    /// This configuration with every stdio MCP server started through `env -i`, with `base`
    /// and the server's own `env` as its whole environment: the CLI starts MCP servers with its
    /// own environment added, which holds the provider's credentials.
    pub fn with_isolated_servers(&self, base: &[(String, String)]) -> Self {
        let mut config = self.clone();
        let Some(servers) = &mut config.mcp_servers else {
            return config;
        };
        for server in servers.values_mut() {
            let Some(server) = server.as_object_mut() else {
                continue;
            };
            let Some(command) = server
                .get("command")
                .and_then(Value::as_str)
                .map(str::to_owned)
            else {
                continue;
            };
            let mut args = vec![Value::from("-i")];
            let own = server.remove("env");
            let own = own.as_ref().and_then(Value::as_object);
            for (name, value) in base {
                if !own.is_some_and(|o| o.contains_key(name)) {
                    args.push(Value::from(format!("{name}={value}")));
                }
            }
            for (name, value) in own.into_iter().flatten() {
                args.push(Value::from(format!(
                    "{name}={}",
                    value.as_str().unwrap_or_default()
                )));
            }
            args.push(Value::from(command));
            if let Some(Value::Array(given)) = server.get("args") {
                args.extend(given.iter().cloned());
            }
            server.insert("command".into(), Value::from("env"));
            server.insert("args".into(), Value::Array(args));
        }
        config
    }
}

/// An optional string key.
fn string(map: &Map<String, Value>, key: &str) -> Result<Option<String>, ConfigError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(wrong_type(key, "a string", other)),
    }
}

/// An optional array of strings (absent means empty).
fn string_list(map: &Map<String, Value>, key: &str) -> Result<Vec<String>, ConfigError> {
    let items = match map.get(key) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(wrong_type(key, "an array of strings", other)),
    };
    items
        .iter()
        .map(|item| match item {
            // The CLI takes the list comma-joined, so a comma inside a rule would split it.
            Value::String(s) if s.contains(',') => Err(ConfigError::new(format!(
                "runtime_config.{key} entry `{s}` contains a comma; give each tool rule as its own entry"
            ))),
            Value::String(s) => Ok(s.clone()),
            other => Err(wrong_type(key, "an array of strings", other)),
        })
        .collect()
}

/// An optional integer of at least 1 that fits in `u32`.
fn positive_integer(map: &Map<String, Value>, key: &str) -> Result<Option<u32>, ConfigError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n >= 1)
            .map(Some)
            .ok_or_else(|| wrong_type(key, "an integer of at least 1", value)),
    }
}

/// `mcp_servers`: an object whose values are objects (one server configuration each).
fn mcp_servers(map: &Map<String, Value>) -> Result<Option<Map<String, Value>>, ConfigError> {
    let servers = match map.get("mcp_servers") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(servers)) => servers,
        Some(other) => {
            return Err(wrong_type(
                "mcp_servers",
                "an object of servers by name",
                other,
            ));
        }
    };
    for (name, server) in servers {
        let Some(server) = server.as_object() else {
            return Err(ConfigError::new(format!(
                "runtime_config.mcp_servers.{name} must be an object such as {{\"command\": \"...\", \"args\": []}} or {{\"type\": \"http\", \"url\": \"...\"}}"
            )));
        };
        if !server.contains_key("command") && !server.contains_key("url") {
            return Err(ConfigError::new(format!(
                "runtime_config.mcp_servers.{name} needs a `command` (stdio server) or a `url` (http/sse server)"
            )));
        }
    }
    Ok(Some(servers.clone()))
}

/// `env`: an object of string values, without credentials.
fn env(map: &Map<String, Value>) -> Result<BTreeMap<String, String>, ConfigError> {
    let vars = match map.get("env") {
        None | Some(Value::Null) => return Ok(BTreeMap::new()),
        Some(Value::Object(vars)) => vars,
        Some(other) => return Err(wrong_type("env", "an object of strings", other)),
    };
    let mut env = BTreeMap::new();
    for (name, value) in vars {
        if SECRET_ENV.contains(&name.as_str()) {
            return Err(ConfigError::new(format!(
                "runtime_config.env may not set {name}: credentials stay in the worker's environment, never in the database"
            )));
        }
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return Err(ConfigError::new(format!(
                "runtime_config.env has an invalid variable name `{name}`"
            )));
        }
        match value {
            Value::String(s) => env.insert(name.clone(), s.clone()),
            other => return Err(wrong_type(&format!("env.{name}"), "a string", other)),
        };
    }
    Ok(env)
}

/// The message for a key whose value has the wrong type.
fn wrong_type(key: &str, wanted: &str, got: &Value) -> ConfigError {
    ConfigError::new(format!("runtime_config.{key} must be {wanted}, got {got}"))
}

#[cfg(test)]
mod tests;
