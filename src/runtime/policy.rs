//! The worker's side of its policy: the pure check of [`WorkerPolicy::admits`] plus what only
//! the worker can see, a `cwd` with its symbolic links resolved; and the environment the
//! processes a runtime starts get from the worker.

use serde_json::Value;

use crate::domain::{AgentSpec, Refusal, WorkerPolicy};

/// Whether this worker's `policy` admits a turn of `agent` on `runtime`: the same check the
/// server made before routing the task here, and then the `cwd` canonicalised, so a symbolic
/// link under a root that points outside it is refused as `..` is. A `cwd` that does not exist
/// is left to the runtime, which says so.
pub fn admits_here(policy: &WorkerPolicy, runtime: &str, agent: &AgentSpec) -> Result<(), Refusal> {
    let config = agent
        .configuration
        .get("runtime_config")
        .cloned()
        .unwrap_or(Value::Null);
    policy.admits(runtime, &config)?;
    if policy.unrestricted || runtime != "claude_code" {
        return Ok(());
    }
    let Some(cwd) = config.get("cwd").and_then(Value::as_str) else {
        return Ok(());
    };
    let Ok(real) = std::fs::canonicalize(cwd) else {
        return Ok(());
    };
    let roots = policy
        .cwd_roots
        .iter()
        .map(|root| {
            std::fs::canonicalize(root)
                .map(|r| r.display().to_string())
                .unwrap_or_else(|_| root.clone())
        })
        .collect();
    let resolved = WorkerPolicy {
        cwd_roots: roots,
        ..policy.clone()
    };
    resolved.admits_cwd(&real).map_err(|refusal| Refusal {
        message: format!(
            "{} (`{cwd}` resolves to `{}` on this worker)",
            refusal.message,
            real.display()
        ),
        ..refusal
    })
}

/// The variables of the worker's own environment that every process a runtime starts (an MCP
/// server, the Claude Code CLI) gets: where programs are, the home directory, locale, time zone
/// and temporary directory. Nothing else of the worker's environment, its credentials above
/// all, reaches them unless the runtime passes it on purpose.
pub fn base_env() -> Vec<(String, String)> {
    const PASSED: [&str; 8] = [
        "PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR", "TERM",
    ];
    PASSED
        .iter()
        .filter_map(|name| std::env::var(name).ok().map(|v| ((*name).to_owned(), v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn agent(cwd: &str) -> AgentSpec {
        AgentSpec {
            id: uuid::Uuid::nil(),
            name: "a".into(),
            runtime: "claude_code".into(),
            model_id: String::new(),
            configuration: json!({"runtime_config": {"cwd": cwd}}),
        }
    }

    #[test]
    fn a_symlink_under_a_root_that_leads_outside_it_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let inside = root.path().join("project");
        std::fs::create_dir(&inside).unwrap();
        let link = root.path().join("escape");
        std::os::unix::fs::symlink(outside.path(), &link).unwrap();
        let policy = WorkerPolicy {
            cwd_roots: vec![root.path().display().to_string()],
            ..WorkerPolicy::default()
        };
        admits_here(
            &policy,
            "claude_code",
            &agent(&inside.display().to_string()),
        )
        .unwrap();
        // Lexically under the root, so the server's check passes; the worker's does not.
        let link = link.display().to_string();
        policy
            .admits("claude_code", &json!({"cwd": link}))
            .expect("lexically under the root");
        let refusal = admits_here(&policy, "claude_code", &agent(&link)).unwrap_err();
        assert_eq!(refusal.rule, "cwd_roots");
        assert!(refusal.message.contains("resolves to"), "{refusal}");
        let dotdot = format!("{}/project/../../", root.path().display());
        let refusal = admits_here(&policy, "claude_code", &agent(&dotdot)).unwrap_err();
        assert_eq!(refusal.rule, "cwd_roots");
    }
}
