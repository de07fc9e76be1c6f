//! The tools of one turn: the MCP servers of the agent, their tools under OpenAI function names,
//! and calling them.
//!
//! A tool's failure (bad arguments, an error result, a server that went away) is told to the
//! model as the tool's result instead of failing the turn, as OpenAI's and Agno's loops do: the
//! model can often recover, and the turn's checkpoints stay valid.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResult, ContentBlock};
use serde_json::{Value, json};

use super::config::McpServerConfig;
use super::mcp::{McpSession, connect};
use crate::runtime::RuntimeError;

/// How long a normal shutdown waits for a server to exit before leaving it to be killed.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest function name the Chat Completions API accepts.
const MAX_NAME_LEN: usize = 64;

/// Connected MCP servers and their tools.
pub(super) struct Toolbox {
    sessions: Vec<(String, McpSession)>,
    tools: Vec<ToolEntry>,
}

/// One tool, under the name the model sees.
struct ToolEntry {
    /// The OpenAI function name (`^[a-zA-Z0-9_-]{1,64}$`, unique in the turn).
    name: String,
    /// Index into `sessions`.
    session: usize,
    /// The name the MCP server knows it by.
    mcp_name: String,
    /// The OpenAI tool definition.
    definition: Value,
}

/// What a tool call produced, as text for the model.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ToolOutcome {
    /// The text handed back in the `tool` message.
    pub content: String,
    /// Whether the call failed.
    pub is_error: bool,
}

impl Toolbox {
    /// Connects to every server (concurrently) and lists its tools. If one fails, the others are
    /// dropped, which ends them.
    pub async fn start(
        servers: &BTreeMap<String, McpServerConfig>,
        timeout: Duration,
    ) -> Result<Toolbox, RuntimeError> {
        let sessions =
            futures::future::try_join_all(servers.iter().map(|(name, config)| async move {
                let session = connect(name, config, timeout).await?;
                let tools = tokio::time::timeout(timeout, session.list_all_tools())
                    .await
                    .map_err(|_| format!("did not list its tools within {} s", timeout.as_secs()))
                    .and_then(|listed| listed.map_err(|e| format!("could not list its tools: {e}")))
                    .map_err(|why| {
                        RuntimeError::retryable(
                            "mcp_server_failed",
                            format!("MCP server `{name}` {why}"),
                        )
                    })?;
                Ok::<_, RuntimeError>((name.clone(), session, tools))
            }))
            .await?;

        let mut toolbox = Toolbox {
            sessions: Vec::new(),
            tools: Vec::new(),
        };
        let mut taken = HashSet::new();
        for (index, (server, session, tools)) in sessions.into_iter().enumerate() {
            for tool in tools {
                let name = unique_name(&server, &tool.name, &mut taken);
                let definition = json!({
                    "type": "function",
                    "function": {
                        "name": name,
                        "description": tool.description.as_deref().unwrap_or_default(),
                        "parameters": Value::Object((*tool.input_schema).clone()),
                    },
                });
                toolbox.tools.push(ToolEntry {
                    name,
                    session: index,
                    mcp_name: tool.name.to_string(),
                    definition,
                });
            }
            toolbox.sessions.push((server, session));
        }
        Ok(toolbox)
    }

    /// The `tools` array of a request (empty when there are no tools).
    pub fn definitions(&self) -> Vec<Value> {
        self.tools.iter().map(|t| t.definition.clone()).collect()
    }

    /// The MCP server and tool name behind a function name, for output chunks.
    pub fn origin(&self, name: &str) -> Option<(&str, &str)> {
        let tool = self.tools.iter().find(|t| t.name == name)?;
        Some((
            self.sessions[tool.session].0.as_str(),
            tool.mcp_name.as_str(),
        ))
    }

    /// Calls the tool the model named. Dropping the future abandons the call (rmcp tells the
    /// server it was cancelled).
    pub async fn call(&self, name: &str, arguments: &str) -> ToolOutcome {
        let error = |content: String| ToolOutcome {
            content,
            is_error: true,
        };
        let Some(tool) = self.tools.iter().find(|t| t.name == name) else {
            return error(format!("there is no tool named `{name}`"));
        };
        let arguments = match serde_json::from_str::<Value>(arguments) {
            Ok(Value::Object(map)) => map,
            Ok(other) => return error(format!("the arguments must be a JSON object, got {other}")),
            Err(e) => {
                return error(format!(
                    "the arguments are not valid JSON ({e}): {arguments}"
                ));
            }
        };
        let (server, session) = &self.sessions[tool.session];
        let params = CallToolRequestParams::new(tool.mcp_name.clone()).with_arguments(arguments);
        let outcome = match session.call_tool(params).await {
            Ok(result) => ToolOutcome {
                content: result_text(&result),
                is_error: result.is_error.unwrap_or(false),
            },
            Err(e) => error(format!(
                "MCP server `{server}` failed to run `{}`: {e}",
                tool.mcp_name
            )),
        };
        // Only tools the servers offer are counted, so the label's values stay bounded.
        crate::telemetry::metrics::tool_executed("default", &tool.name, !outcome.is_error);
        outcome
    }

    /// Closes every session and waits (briefly) for the servers to exit.
    pub async fn shutdown(self) {
        futures::future::join_all(self.sessions.into_iter().map(|(_, session)| async move {
            // Past the timeout the session is dropped, which kills the process group.
            let _ = tokio::time::timeout(SHUTDOWN_TIMEOUT, session.cancel()).await;
        }))
        .await;
    }
}

/// A valid, unused function name: the tool's own name if it is free, else prefixed with the
/// server's, else numbered.
fn unique_name(server: &str, tool: &str, taken: &mut HashSet<String>) -> String {
    let mut candidates = vec![sanitize(tool), sanitize(&format!("{server}__{tool}"))];
    let base = candidates[1].clone();
    candidates.extend((2..).take(1000).map(|n| {
        let suffix = format!("_{n}");
        let keep = base.len().min(MAX_NAME_LEN - suffix.len());
        format!("{}{suffix}", &base[..keep])
    }));
    let name = candidates
        .into_iter()
        .find(|c| !taken.contains(c))
        .expect("one of 1000 numbered names is free");
    taken.insert(name.clone());
    name
}

/// Replaces characters the API refuses and cuts to 64 (all ASCII afterwards, so byte cuts are
/// safe).
fn sanitize(name: &str) -> String {
    let mut clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(MAX_NAME_LEN)
        .collect();
    if clean.is_empty() {
        clean.push_str("tool");
    }
    clean
}

/// The text of a tool result: text blocks as they are; binary content described, not inlined,
/// because base64 would only burn context.
fn result_text(result: &CallToolResult) -> String {
    let parts: Vec<String> = result
        .content
        .iter()
        .map(|block| match block {
            ContentBlock::Text(text) => text.text.clone(),
            ContentBlock::Image(image) => format!("[image omitted: {}]", image.mime_type),
            ContentBlock::Audio(_) => "[audio omitted]".to_owned(),
            other => serde_json::to_string(other).unwrap_or_default(),
        })
        .collect();
    if parts.is_empty()
        && let Some(structured) = &result.structured_content
    {
        return structured.to_string();
    }
    parts.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_and_unique() {
        let mut taken = HashSet::new();
        assert_eq!(unique_name("files", "read_file", &mut taken), "read_file");
        assert_eq!(
            unique_name("backup", "read_file", &mut taken),
            "backup__read_file"
        );
        assert_eq!(
            unique_name("backup", "read_file", &mut taken),
            "backup__read_file_2"
        );
        assert_eq!(
            unique_name("s", "get.weather now", &mut taken),
            "get_weather_now"
        );
        let long = unique_name("s", &"x".repeat(100), &mut taken);
        assert_eq!(long.len(), MAX_NAME_LEN);
        let again = unique_name("s", &"x".repeat(100), &mut taken);
        assert!(again.len() <= MAX_NAME_LEN && again != long, "{again}");
        assert_eq!(sanitize("ü"), "_");
        assert_eq!(sanitize(""), "tool");
    }
}
