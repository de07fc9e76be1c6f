//! The `runtime_config` of a `default` agent, checked key by key.
//!
//! Each key is parsed on its own so that an error names the key (serde's own messages for a
//! whole struct say what type was expected but not where). The same parser serves `validate`
//! (at CreateAgent) and `run`, so an agent that validated runs with exactly what was checked.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::approval::ApprovalRules;
use crate::domain::AgentSpec;
use crate::runtime::{
    ConfigError, ConfigKeyInfo, RuntimeDescription, reject_unknown_keys, runtime_config,
};

/// How many tool calls one turn may make when the agent does not say.
pub(super) const DEFAULT_MAX_TOOL_CALLS: u32 = 25;

/// The agent-level options of the `default` runtime.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct AgentConfig {
    /// The model name sent to the endpoint (from `agent.model_id`).
    pub model: String,
    /// The system prompt, sent first in every request.
    pub instructions: Option<String>,
    /// Sampling temperature, passed through.
    pub temperature: Option<f64>,
    /// Completion token limit per model call, passed through.
    pub max_tokens: Option<u64>,
    /// Tool calls allowed per turn; later calls are answered with a refusal instead of running.
    pub max_tool_calls: u32,
    /// MCP servers by name; sorted so tool naming is deterministic.
    pub mcp_servers: BTreeMap<String, McpServerConfig>,
    /// Which tool calls wait for a person's decision.
    pub approvals: ApprovalRules,
}

/// How to reach one MCP server.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum McpServerConfig {
    /// A local process speaking MCP over stdin/stdout.
    Stdio {
        /// The program to run.
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Its environment besides what the worker passes to every process it starts
        /// (`runtime::policy::base_env`); nothing else of the worker's is inherited.
        env: BTreeMap<String, String>,
    },
    /// A remote server speaking streamable HTTP.
    Http {
        /// The server's MCP endpoint.
        url: String,
    },
}

/// The keys `describe()` lists and `validate` accepts.
pub(super) fn config_keys() -> Vec<ConfigKeyInfo> {
    let key = |name, ty, description| ConfigKeyInfo {
        name,
        ty,
        description,
    };
    vec![
        key("instructions", "string", "the system prompt"),
        key("temperature", "number", "sampling temperature, 0 to 2"),
        key(
            "max_tokens",
            "integer",
            "completion token limit per model call",
        ),
        key(
            "max_tool_calls",
            "integer",
            "tool calls allowed per turn (default 25); later calls are refused",
        ),
        key(
            "mcp_servers",
            "object",
            "MCP servers by name: {command, args, env} for stdio or {url} for streamable HTTP",
        ),
        key(
            "require_approval",
            "array<string>",
            "MCP tools (`server__tool`, `*` for any run of characters) whose calls wait for a person's approval",
        ),
        key(
            "auto_approve",
            "array<string>",
            "MCP tool patterns approved without asking, even when require_approval matches",
        ),
    ]
}

impl AgentConfig {
    /// Parses and checks an agent's model and `runtime_config`.
    pub fn parse(agent: &AgentSpec, runtime: &RuntimeDescription) -> Result<Self, ConfigError> {
        if agent.model_id.trim().is_empty() {
            return Err(ConfigError::new(
                "the `default` runtime needs a model: set the agent's model_id \
                 (a model name the OpenAI-compatible endpoint knows, e.g. `gpt-4o`)",
            ));
        }
        let map = runtime_config(agent)?;
        reject_unknown_keys(runtime, &map)?;
        let temperature = optional(&map, "temperature", "a number", Value::as_f64)?;
        if let Some(t) = temperature
            && !(0.0..=2.0).contains(&t)
        {
            return Err(ConfigError::new(format!(
                "runtime_config.temperature must be between 0 and 2, got {t}"
            )));
        }
        let max_tokens = optional(&map, "max_tokens", "a positive integer", |v| {
            v.as_u64().filter(|n| *n > 0)
        })?;
        let max_tool_calls = optional(&map, "max_tool_calls", "an integer >= 0", |v| {
            v.as_u64().and_then(|n| u32::try_from(n).ok())
        })?;
        let mcp_servers = match map.get("mcp_servers") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(Value::Object(servers)) => servers
                .iter()
                .map(|(name, server)| Ok((name.clone(), parse_server(name, server)?)))
                .collect::<Result<_, ConfigError>>()?,
            Some(other) => return Err(wrong_type("mcp_servers", "an object", other)),
        };
        Ok(AgentConfig {
            model: agent.model_id.trim().to_owned(),
            instructions: optional(&map, "instructions", "a string", |v| {
                v.as_str().map(str::to_owned)
            })?,
            temperature,
            max_tokens,
            max_tool_calls: max_tool_calls.unwrap_or(DEFAULT_MAX_TOOL_CALLS),
            mcp_servers,
            approvals: ApprovalRules::parse(&map)?,
        })
    }
}

/// Reads an optional key with `read`; a present value it rejects is an error naming the key.
fn optional<T>(
    map: &Map<String, Value>,
    key: &str,
    expected: &str,
    read: impl Fn(&Value) -> Option<T>,
) -> Result<Option<T>, ConfigError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => read(value)
            .map(Some)
            .ok_or_else(|| wrong_type(key, expected, value)),
    }
}

fn wrong_type(key: &str, expected: &str, got: &Value) -> ConfigError {
    ConfigError::new(format!(
        "runtime_config.{key} must be {expected}, got {got}"
    ))
}

fn parse_server(name: &str, server: &Value) -> Result<McpServerConfig, ConfigError> {
    let path = format!("mcp_servers.{name}");
    if name.is_empty() {
        return Err(ConfigError::new(
            "runtime_config.mcp_servers has a server with an empty name",
        ));
    }
    let Value::Object(fields) = server else {
        return Err(wrong_type(&path, "an object", server));
    };
    let allowed: &[&str] = if fields.contains_key("url") {
        &["url"]
    } else {
        &["command", "args", "env"]
    };
    if let Some(unknown) = fields.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ConfigError::new(format!(
            "runtime_config.{path}.{unknown} is not known; a server is {{command, args, env}} \
             (stdio) or {{url}} (streamable HTTP)"
        )));
    }
    if let Some(url) = fields.get("url") {
        let url = url
            .as_str()
            .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
            .ok_or_else(|| wrong_type(&format!("{path}.url"), "an http(s) URL string", url))?;
        return Ok(McpServerConfig::Http {
            url: url.to_owned(),
        });
    }
    let command = match fields.get("command") {
        Some(Value::String(c)) if !c.is_empty() => c.clone(),
        Some(other) => return Err(wrong_type(&format!("{path}.command"), "a string", other)),
        None => {
            return Err(ConfigError::new(format!(
                "runtime_config.{path} needs `command` (stdio) or `url` (streamable HTTP)"
            )));
        }
    };
    let args = match fields.get("args") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|a| a.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                wrong_type(
                    &format!("{path}.args"),
                    "an array of strings",
                    &fields["args"],
                )
            })?,
        Some(other) => {
            return Err(wrong_type(
                &format!("{path}.args"),
                "an array of strings",
                other,
            ));
        }
    };
    let env = match fields.get("env") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(vars)) => vars
            .iter()
            .map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                wrong_type(
                    &format!("{path}.env"),
                    "an object of strings",
                    &fields["env"],
                )
            })?,
        Some(other) => {
            return Err(wrong_type(
                &format!("{path}.env"),
                "an object of strings",
                other,
            ));
        }
    };
    Ok(McpServerConfig::Stdio { command, args, env })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn agent(model: &str, runtime_config: Value) -> AgentSpec {
        AgentSpec {
            id: uuid::Uuid::nil(),
            name: "a".into(),
            runtime: "default".into(),
            model_id: model.into(),
            configuration: json!({ "runtime_config": runtime_config }),
        }
    }

    fn parse(model: &str, config: Value) -> Result<AgentConfig, String> {
        let description = RuntimeDescription {
            name: "default",
            description: "",
            config_keys: config_keys(),
        };
        AgentConfig::parse(&agent(model, config), &description).map_err(|e| e.message)
    }

    #[test]
    fn a_full_config_parses() {
        let config = parse(
            "gpt-4o",
            json!({
                "instructions": "Be terse.", "temperature": 0.2, "max_tokens": 100,
                "max_tool_calls": 3,
                "mcp_servers": {
                    "files": {"command": "node", "args": ["x.js"], "env": {"A": "1"}},
                    "remote": {"url": "http://127.0.0.1:9/mcp"}
                }
            }),
        )
        .unwrap();
        assert_eq!(config.model, "gpt-4o");
        assert_eq!(config.max_tool_calls, 3);
        assert_eq!(
            config.mcp_servers["remote"],
            McpServerConfig::Http {
                url: "http://127.0.0.1:9/mcp".into()
            }
        );
    }

    #[test]
    fn defaults_apply_when_keys_are_absent() {
        let config = parse("m", json!(null)).unwrap();
        assert_eq!(config.max_tool_calls, DEFAULT_MAX_TOOL_CALLS);
        assert!(config.mcp_servers.is_empty() && config.instructions.is_none());
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("", json!({}), "model_id"),
            ("m", json!({"temprature": 1}), "`temprature`"),
            (
                "m",
                json!({"temperature": "hot"}),
                "runtime_config.temperature",
            ),
            ("m", json!({"temperature": 3}), "between 0 and 2"),
            ("m", json!({"max_tokens": 0}), "runtime_config.max_tokens"),
            (
                "m",
                json!({"max_tool_calls": -1}),
                "runtime_config.max_tool_calls",
            ),
            (
                "m",
                json!({"mcp_servers": []}),
                "runtime_config.mcp_servers",
            ),
            (
                "m",
                json!({"mcp_servers": {"f": {}}}),
                "mcp_servers.f needs `command`",
            ),
            (
                "m",
                json!({"mcp_servers": {"f": {"command": "x", "args": [1]}}}),
                "mcp_servers.f.args",
            ),
            (
                "m",
                json!({"mcp_servers": {"f": {"command": "x", "cwd": "/"}}}),
                "mcp_servers.f.cwd",
            ),
            (
                "m",
                json!({"mcp_servers": {"f": {"url": "ftp://x"}}}),
                "mcp_servers.f.url",
            ),
        ];
        for (model, config, expected) in cases {
            let error = parse(model, config.clone()).unwrap_err();
            assert!(error.contains(expected), "{config}: {error}");
        }
    }
}
