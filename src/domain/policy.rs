//! The worker policy: what an operator lets agents do on the workers it runs, and
//! [`WorkerPolicy::admits`], the one check the worker (before it runs a turn) and the server
//! (before it routes a task, and at `CreateAgent`/`UpdateAgent`) both apply.
//!
//! The check is pure: it reads the agent's `runtime_config` and nothing else, so a server can
//! decide for a worker it only knows by the policy the worker advertised. A `cwd` is compared
//! after `.` and `..` are resolved lexically; the worker also compares it canonicalised (symlinks
//! resolved), which only it can do (`runtime::policy`).
//!
//! The file format is JSON: the same document a worker reads from `--policy FILE` is the one it
//! advertises in its polls and the one `cairn worker list` shows, with no second format (and no
//! new parser) to keep in step. Unknown keys are refused, so a misspelt rule never silently
//! leaves the default in place.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The `claude_code` permission modes a policy admits unless it says otherwise: every mode but
/// `bypassPermissions`, which lets the CLI run any tool without asking.
pub const DEFAULT_PERMISSION_MODES: [&str; 3] = ["default", "acceptEdits", "plan"];

/// An operator's worker policy. [`WorkerPolicy::default`] is the restrictive one `cairn worker`
/// and `cairn server --worker` run with: no `bypassPermissions`, no `cwd` (each execution works
/// in its own scratch directory), no MCP server and no `env`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerPolicy {
    /// Admits every configuration. Only `cairn dev` on a loopback address uses it by default: its
    /// one user is the operator.
    #[serde(default)]
    pub unrestricted: bool,
    /// The `claude_code` `permission_mode`s admitted (an agent without one is admitted).
    #[serde(default = "default_permission_modes")]
    pub permission_modes: Vec<String>,
    /// Absolute directories under which a `claude_code` `cwd` may be. Empty: no `cwd` at all.
    #[serde(default)]
    pub cwd_roots: Vec<String>,
    /// The programs an MCP server's `command` may name, exactly as the agent writes them.
    #[serde(default)]
    pub mcp_commands: Vec<String>,
    /// The URLs an MCP server's `url` may be: equal to an entry, or under an entry that ends
    /// with `/`.
    #[serde(default)]
    pub mcp_urls: Vec<String>,
    /// The environment variable names an agent may set (the CLI's `env` and MCP servers' `env`).
    /// Credentials and loader or interpreter variables are never admitted ([`env_never_allowed`]).
    #[serde(default)]
    pub env: Vec<String>,
}

fn default_permission_modes() -> Vec<String> {
    DEFAULT_PERMISSION_MODES.map(String::from).to_vec()
}

impl Default for WorkerPolicy {
    fn default() -> Self {
        WorkerPolicy {
            unrestricted: false,
            permission_modes: default_permission_modes(),
            cwd_roots: Vec::new(),
            mcp_commands: Vec::new(),
            mcp_urls: Vec::new(),
            env: Vec::new(),
        }
    }
}

/// Why a policy does not admit a configuration: the rule, and what about the configuration
/// broke it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("worker policy rule `{rule}` refuses this agent: {message}")]
pub struct Refusal {
    /// The policy key whose rule refused: `permission_modes`, `cwd_roots`, `mcp_commands`,
    /// `mcp_urls` or `env`.
    pub rule: &'static str,
    /// What the configuration asks for and what the policy admits.
    pub message: String,
}

impl Refusal {
    fn new(rule: &'static str, message: String) -> Self {
        Refusal { rule, message }
    }
}

/// Environment names no policy admits, whatever its `env` says: credentials (which would leave
/// the worker), and variables that make a loader, an interpreter, a shell or an HTTP client run
/// or reach something else than what was asked (`LD_PRELOAD`, `NODE_OPTIONS`, `PATH`,
/// `ANTHROPIC_BASE_URL`, proxies).
pub fn env_never_allowed(name: &str) -> bool {
    const EXACT: [&str; 24] = [
        "PATH",
        "HOME",
        "SHELL",
        "ENV",
        "BASH_ENV",
        "IFS",
        "CDPATH",
        "NODE_OPTIONS",
        "NODE_PATH",
        "NODE_EXTRA_CA_CERTS",
        "CLAUDE_CONFIG_DIR",
        "CLAUDECODE",
        "JAVA_TOOL_OPTIONS",
        "_JAVA_OPTIONS",
        "PERL5LIB",
        "PERL5OPT",
        "RUBYOPT",
        "RUBYLIB",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
    ];
    const PREFIXES: [&str; 12] = [
        "LD_",
        "DYLD_",
        "PYTHON",
        "ANTHROPIC_",
        "OPENAI_",
        "CLAUDE_CODE_",
        "AWS_",
        "GOOGLE_",
        "AZURE_",
        "NPM_CONFIG_",
        "GIT_",
        "CAIRN_",
    ];
    const SUFFIXES: [&str; 6] = [
        "_API_KEY",
        "_TOKEN",
        "_SECRET",
        "_PASSWORD",
        "_KEY",
        "_CREDENTIALS",
    ];
    let upper = name.to_ascii_uppercase();
    EXACT.contains(&upper.as_str())
        || PREFIXES.iter().any(|p| upper.starts_with(p))
        || SUFFIXES.iter().any(|s| upper.ends_with(s))
}

impl WorkerPolicy {
    /// The policy that admits everything (`cairn dev` on loopback).
    pub fn unrestricted() -> Self {
        WorkerPolicy {
            unrestricted: true,
            ..WorkerPolicy::default()
        }
    }

    /// Reads a policy document, refusing one that could never hold: an `env` entry no policy may
    /// admit, a relative `cwd` root, an unknown permission mode.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let policy: WorkerPolicy =
            serde_json::from_str(text).map_err(|e| format!("not a worker policy: {e}"))?;
        for name in &policy.env {
            if env_never_allowed(name) {
                return Err(format!(
                    "`env` lists {name}, which no policy may admit: credentials and loader or \
                     interpreter variables stay the worker's"
                ));
            }
        }
        for root in &policy.cwd_roots {
            if !root.starts_with('/') {
                return Err(format!(
                    "`cwd_roots` entry `{root}` must be an absolute path"
                ));
            }
        }
        const MODES: [&str; 4] = ["default", "acceptEdits", "plan", "bypassPermissions"];
        for mode in &policy.permission_modes {
            if !MODES.contains(&mode.as_str()) {
                return Err(format!(
                    "`permission_modes` entry `{mode}` is not a Claude Code permission mode; use \
                     some of: {}",
                    MODES.join(", ")
                ));
            }
        }
        Ok(policy)
    }

    /// The policy as one line of JSON, as polls advertise it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a policy always serializes")
    }

    /// A short stable name of this policy: equal policies have equal fingerprints, so the server
    /// remembers which policies refused a task without storing them whole.
    pub fn fingerprint(&self) -> String {
        format!("{:016x}", super::stable_hash(&self.to_json()))
    }

    /// Whether an agent of `runtime` with this `runtime_config` may run under this policy; the
    /// refusal names the rule. Runtimes other than the built-in ones are admitted: their workers
    /// check their own configurations.
    pub fn admits(&self, runtime: &str, runtime_config: &Value) -> Result<(), Refusal> {
        if self.unrestricted {
            return Ok(());
        }
        let empty = Map::new();
        let config = runtime_config.as_object().unwrap_or(&empty);
        match runtime {
            "claude_code" => {
                if let Some(mode) = config.get("permission_mode").and_then(Value::as_str)
                    && !self.permission_modes.iter().any(|m| m == mode)
                {
                    return Err(Refusal::new(
                        "permission_modes",
                        format!(
                            "permission_mode `{mode}` is not admitted (admitted: {})",
                            list(&self.permission_modes)
                        ),
                    ));
                }
                if let Some(cwd) = config.get("cwd").and_then(Value::as_str) {
                    self.admits_cwd(Path::new(cwd))?;
                }
                self.admits_env(config.get("env"), "env")?;
                self.admits_servers(config.get("mcp_servers"))
            }
            "default" => self.admits_servers(config.get("mcp_servers")),
            _ => Ok(()),
        }
    }

    /// Whether `cwd` (absolute, lexically normalised here) is under one of the roots.
    pub fn admits_cwd(&self, cwd: &Path) -> Result<(), Refusal> {
        let normal = normalise(cwd);
        if self
            .cwd_roots
            .iter()
            .any(|root| normal.starts_with(normalise(Path::new(root))))
        {
            return Ok(());
        }
        Err(Refusal::new(
            "cwd_roots",
            format!(
                "cwd `{}` is not under an admitted root (admitted: {})",
                cwd.display(),
                list(&self.cwd_roots)
            ),
        ))
    }

    fn admits_env(&self, env: Option<&Value>, path: &str) -> Result<(), Refusal> {
        let Some(vars) = env.and_then(Value::as_object) else {
            return Ok(());
        };
        for name in vars.keys() {
            if env_never_allowed(name) {
                return Err(Refusal::new(
                    "env",
                    format!(
                        "{path} sets {name}, which no worker admits: credentials and loader or \
                         interpreter variables are the worker's"
                    ),
                ));
            }
            if !self.env.iter().any(|n| n == name) {
                return Err(Refusal::new(
                    "env",
                    format!(
                        "{path} sets {name}, which is not admitted (admitted: {})",
                        list(&self.env)
                    ),
                ));
            }
        }
        Ok(())
    }

    fn admits_servers(&self, servers: Option<&Value>) -> Result<(), Refusal> {
        let Some(servers) = servers.and_then(Value::as_object) else {
            return Ok(());
        };
        for (name, server) in servers {
            if let Some(command) = server.get("command").and_then(Value::as_str)
                && !self.mcp_commands.iter().any(|c| c == command)
            {
                return Err(Refusal::new(
                    "mcp_commands",
                    format!(
                        "MCP server `{name}` runs `{command}`, which is not admitted (admitted: {})",
                        list(&self.mcp_commands)
                    ),
                ));
            }
            if let Some(url) = server.get("url").and_then(Value::as_str)
                && !self
                    .mcp_urls
                    .iter()
                    .any(|u| u == url || (u.ends_with('/') && url.starts_with(u.as_str())))
            {
                return Err(Refusal::new(
                    "mcp_urls",
                    format!(
                        "MCP server `{name}` is at {url}, which is not admitted (admitted: {})",
                        list(&self.mcp_urls)
                    ),
                ));
            }
            self.admits_env(server.get("env"), &format!("mcp_servers.{name}.env"))?;
        }
        Ok(())
    }

    /// One line for a worker's start: what it admits.
    pub fn summary(&self) -> String {
        if self.unrestricted {
            return "unrestricted: admits every agent configuration".into();
        }
        format!(
            "permission modes {}; cwd roots {}; MCP commands {}; MCP URLs {}; env {}",
            list(&self.permission_modes),
            list(&self.cwd_roots),
            list(&self.mcp_commands),
            list(&self.mcp_urls),
            list(&self.env)
        )
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// `path` with `.` removed and `..` applied to what precedes it, without touching the file
/// system: `/srv/a/../../etc` is `/etc`, so `..` cannot climb out of a root unseen.
pub fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(part) => out.push(part),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests;
