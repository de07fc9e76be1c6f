//! `runtime_config` parsing and the flags it maps to.

use serde_json::json;

use super::*;

fn agent(runtime_config: Value) -> AgentSpec {
    AgentSpec {
        id: uuid::Uuid::nil(),
        name: "coder".into(),
        runtime: "claude_code".into(),
        model_id: "claude-agent-model".into(),
        configuration: json!({ "runtime_config": runtime_config }),
    }
}

fn error(runtime_config: Value) -> String {
    ClaudeCodeConfig::from_agent(&agent(runtime_config))
        .expect_err("the configuration is invalid")
        .message
}

#[test]
fn every_key_maps_to_its_flag() {
    let agent = agent(json!({
        "permission_mode": "acceptEdits",
        "cwd": "/srv/work",
        "allowed_tools": ["Read", "Bash(git log:*)"],
        "disallowed_tools": ["WebFetch"],
        "max_turns": 7,
        "model": "claude-override",
        "system_prompt": "-be terse",
        "append_system_prompt": "Sign off.",
        "mcp_servers": {"files": {"command": "/bin/fake-mcp", "args": []}},
        "env": {"LOG_LEVEL": "debug"},
    }));
    let config = ClaudeCodeConfig::from_agent(&agent).expect("valid");
    assert_eq!(
        config.env.get("LOG_LEVEL").map(String::as_str),
        Some("debug")
    );
    assert_eq!(config.cwd.as_deref(), Some("/srv/work"));
    assert_eq!(
        config.flags(&agent),
        vec![
            "--system-prompt",
            "-be terse",
            "--append-system-prompt",
            "Sign off.",
            "--allowedTools",
            "Read,Bash(git log:*)",
            "--disallowedTools",
            "WebFetch",
            "--max-turns",
            "7",
            "--model",
            "claude-override",
            "--permission-mode",
            "acceptEdits",
            "--mcp-config",
            r#"{"mcpServers":{"files":{"args":[],"command":"/bin/fake-mcp"}}}"#,
        ]
    );
}

#[test]
fn the_agent_model_is_used_unless_overridden() {
    let config = ClaudeCodeConfig::from_agent(&agent(json!({}))).expect("valid");
    assert_eq!(
        config.flags(&agent(json!({}))),
        vec![
            "--model",
            "claude-agent-model",
            "--permission-prompt-tool",
            "stdio"
        ]
    );
    let mut unnamed = agent(json!({}));
    unnamed.model_id.clear();
    assert_eq!(
        config.flags(&unnamed),
        vec!["--permission-prompt-tool", "stdio"]
    );
}

#[test]
fn bad_keys_and_types_are_named() {
    assert!(error(json!({"permision_mode": "plan"})).contains("`permision_mode`"));
    assert!(error(json!({"permission_mode": "yolo"})).contains("permission_mode `yolo`"));
    assert!(error(json!({"max_turns": 0})).contains("max_turns must be an integer"));
    assert!(error(json!({"max_turns": "3"})).contains("max_turns must be an integer"));
    assert!(error(json!({"allowed_tools": "Read"})).contains("allowed_tools must be an array"));
    assert!(error(json!({"allowed_tools": ["Read,Write"]})).contains("comma"));
    assert!(error(json!({"cwd": "relative/dir"})).contains("absolute"));
    assert!(error(json!({"env": {"N": 1}})).contains("env.N must be a string"));
    assert!(error(json!({"env": {"ANTHROPIC_API_KEY": "k"}})).contains("worker's environment"));
    assert!(error(json!({"mcp_servers": {"x": {}}})).contains("mcp_servers.x needs"));
    assert!(error(json!({"mcp_servers": []})).contains("mcp_servers must be an object"));
}

#[test]
fn stdio_mcp_servers_start_through_env_with_only_what_they_are_given() {
    let config = ClaudeCodeConfig::from_agent(&agent(json!({"mcp_servers": {
        "files": {"command": "/bin/fake-mcp", "args": ["--root", "/srv"], "env": {"MY_FLAG": "1"}},
        "remote": {"type": "http", "url": "https://tools.internal/mcp"},
    }})))
    .unwrap();
    let base = [("PATH".to_string(), "/usr/bin".to_string())];
    let servers = config.with_isolated_servers(&base).mcp_servers.unwrap();
    assert_eq!(
        servers["files"],
        json!({"command": "env", "args": ["-i", "PATH=/usr/bin", "MY_FLAG=1", "/bin/fake-mcp", "--root", "/srv"]})
    );
    assert_eq!(
        servers["remote"],
        json!({"type": "http", "url": "https://tools.internal/mcp"})
    );
}
