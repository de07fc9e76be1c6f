//! Each rule of the worker policy, refusing with its name.

use serde_json::json;

use super::*;

fn refused(policy: &WorkerPolicy, runtime: &str, config: Value) -> &'static str {
    policy
        .admits(runtime, &config)
        .expect_err("the policy should refuse")
        .rule
}

#[test]
fn the_default_policy_admits_a_plain_agent() {
    let policy = WorkerPolicy::default();
    policy
        .admits("claude_code", &json!({"permission_mode": "acceptEdits"}))
        .unwrap();
    policy
        .admits("default", &json!({"instructions": "hi"}))
        .unwrap();
    policy.admits("echo", &Value::Null).unwrap();
}

#[test]
fn bypass_permissions_is_refused_by_default() {
    let policy = WorkerPolicy::default();
    let config = json!({"permission_mode": "bypassPermissions"});
    assert_eq!(
        refused(&policy, "claude_code", config.clone()),
        "permission_modes"
    );
    let open = WorkerPolicy {
        permission_modes: vec!["bypassPermissions".into()],
        ..WorkerPolicy::default()
    };
    open.admits("claude_code", &config).unwrap();
}

#[test]
fn a_cwd_outside_the_roots_is_refused_also_through_dot_dot() {
    let policy = WorkerPolicy {
        cwd_roots: vec!["/srv/agents".into()],
        ..WorkerPolicy::default()
    };
    policy
        .admits("claude_code", &json!({"cwd": "/srv/agents/a"}))
        .unwrap();
    policy
        .admits("claude_code", &json!({"cwd": "/srv/agents"}))
        .unwrap();
    assert_eq!(
        refused(&policy, "claude_code", json!({"cwd": "/etc"})),
        "cwd_roots"
    );
    assert_eq!(
        refused(
            &policy,
            "claude_code",
            json!({"cwd": "/srv/agents/../../etc"})
        ),
        "cwd_roots"
    );
    // A sibling whose name starts like the root is not under it.
    assert_eq!(
        refused(&policy, "claude_code", json!({"cwd": "/srv/agents-evil"})),
        "cwd_roots"
    );
    assert_eq!(
        refused(
            &WorkerPolicy::default(),
            "claude_code",
            json!({"cwd": "/tmp"})
        ),
        "cwd_roots"
    );
}

#[test]
fn mcp_commands_and_urls_need_the_allow_list() {
    let policy = WorkerPolicy {
        mcp_commands: vec!["/usr/bin/mcp-files".into()],
        mcp_urls: vec!["https://tools.internal/".into()],
        ..WorkerPolicy::default()
    };
    for runtime in ["default", "claude_code"] {
        let ok = json!({"mcp_servers": {
            "f": {"command": "/usr/bin/mcp-files"},
            "t": {"url": "https://tools.internal/mcp"},
        }});
        policy.admits(runtime, &ok).unwrap();
        let bad = json!({"mcp_servers": {"x": {"command": "bash", "args": ["-c", "curl evil"]}}});
        assert_eq!(refused(&policy, runtime, bad), "mcp_commands");
        let bad = json!({"mcp_servers": {"x": {"url": "https://tools.internal.evil.com/"}}});
        assert_eq!(refused(&policy, runtime, bad), "mcp_urls");
    }
}

#[test]
fn env_needs_the_allow_list_and_never_admits_credentials_or_loader_variables() {
    let policy = WorkerPolicy {
        env: vec!["MY_FLAG".into()],
        mcp_commands: vec!["srv".into()],
        ..WorkerPolicy::default()
    };
    policy
        .admits("claude_code", &json!({"env": {"MY_FLAG": "1"}}))
        .unwrap();
    for name in [
        "ANTHROPIC_BASE_URL",
        "LD_PRELOAD",
        "NODE_OPTIONS",
        "PATH",
        "PYTHONPATH",
        "X_API_KEY",
        "OTHER",
    ] {
        let config = json!({"env": {name: "x"}});
        let refusal = policy.admits("claude_code", &config).unwrap_err();
        assert_eq!(refusal.rule, "env");
        assert!(refusal.message.contains(name), "{refusal}");
        let server = json!({"mcp_servers": {"s": {"command": "srv", "env": {name: "x"}}}});
        assert_eq!(refused(&policy, "default", server), "env");
    }
}

#[test]
fn a_policy_file_cannot_admit_what_is_never_admitted() {
    let error = WorkerPolicy::from_json(r#"{"env": ["LD_PRELOAD"]}"#).unwrap_err();
    assert!(error.contains("LD_PRELOAD"), "{error}");
    let error = WorkerPolicy::from_json(r#"{"cwd_roots": ["srv"]}"#).unwrap_err();
    assert!(error.contains("absolute"), "{error}");
    let error = WorkerPolicy::from_json(r#"{"mcp_command": []}"#).unwrap_err();
    assert!(error.contains("mcp_command"), "{error}");
    let policy = WorkerPolicy::from_json(r#"{"mcp_commands": ["x"]}"#).unwrap();
    assert_eq!(policy.permission_modes, default_permission_modes());
    assert_eq!(WorkerPolicy::from_json(&policy.to_json()).unwrap(), policy);
}

#[test]
fn the_unrestricted_policy_admits_everything() {
    let config =
        json!({"permission_mode": "bypassPermissions", "cwd": "/", "env": {"LD_PRELOAD": "x"}});
    WorkerPolicy::unrestricted()
        .admits("claude_code", &config)
        .unwrap();
}
