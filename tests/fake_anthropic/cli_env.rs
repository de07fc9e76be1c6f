//! The environment that runs the real Claude Code CLI offline against the fake.

use std::path::PathBuf;

use super::FakeAnthropic;

/// The Claude Code CLI the tests run: `CAIRN_TEST_CLAUDE_CLI`, or the one that
/// `npm ci --prefix tests/npm` installs. Panics with the install command when it is missing,
/// because a skipped test would check nothing.
pub fn claude_cli() -> PathBuf {
    if let Some(path) = std::env::var_os("CAIRN_TEST_CLAUDE_CLI") {
        return PathBuf::from(path);
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/npm/node_modules/.bin/claude");
    assert!(
        path.exists(),
        "the Claude Code CLI is not installed at {}: run `npm ci --prefix tests/npm` in the \
         repository (or set CAIRN_TEST_CLAUDE_CLI to a `claude` binary)",
        path.display()
    );
    path
}

/// A throw-away home and working directory for one CLI run, outside any git repository (inside
/// one, the CLI files sessions under the repository root instead).
pub struct CliSandbox {
    /// `HOME` and, below it, `CLAUDE_CONFIG_DIR`: settings and sessions.
    pub home: tempfile::TempDir,
    /// The CLI's working directory.
    pub workdir: tempfile::TempDir,
}

impl CliSandbox {
    /// New empty directories under the system's temp directory.
    pub fn new() -> Self {
        CliSandbox {
            home: tempfile::Builder::new()
                .prefix("cairn-cc-home-")
                .tempdir()
                .expect("a temp home"),
            workdir: tempfile::Builder::new()
                .prefix("cairn-cc-cwd-")
                .tempdir()
                .expect("a temp cwd"),
        }
    }

    /// The CLI's config directory (sessions live below it).
    pub fn config_dir(&self) -> PathBuf {
        self.home.path().join(".claude")
    }

    /// The working directory as a string, for `runtime_config.cwd`.
    pub fn cwd(&self) -> String {
        self.workdir.path().display().to_string()
    }

    /// The variables that make the CLI talk only to `api`, quietly and quickly:
    /// `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC` alone stops every other connection;
    /// `IS_SANDBOX` lets bypassPermissions run as root; one retry keeps API failures fast
    /// (the default of 10 took over 3 minutes for an HTTP 500).
    pub fn env(&self, api: &FakeAnthropic) -> Vec<(String, String)> {
        let home = self.home.path().display().to_string();
        let config_dir = self.config_dir().display().to_string();
        [
            ("HOME", home.as_str()),
            ("CLAUDE_CONFIG_DIR", config_dir.as_str()),
            ("ANTHROPIC_BASE_URL", api.url()),
            ("ANTHROPIC_API_KEY", "test-key"),
            ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
            ("DISABLE_TELEMETRY", "1"),
            ("DISABLE_AUTOUPDATER", "1"),
            ("DISABLE_ERROR_REPORTING", "1"),
            ("IS_SANDBOX", "1"),
            ("CLAUDE_CODE_MAX_RETRIES", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }
}
