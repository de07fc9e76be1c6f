//! Running the `claude_code` runtime in tests: a fake API, a sandbox and a runtime pointed at
//! both; a turn running in a task; and `/proc` checks for processes left behind.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn::domain::{AgentSpec, Turn};
use cairn::runtime::{
    AgentRuntime, Approver, AttemptInfo, ClaudeCodeRuntime, Progress, RuntimeError,
    RuntimeSettings, TurnIo, TurnOutput,
};
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::fake_anthropic::{CliSandbox, FakeAnthropic, Reply, claude_cli};

/// Generous: a cold start of the CLI on a loaded 2-core machine has taken 15 s.
pub const LIMIT: Duration = Duration::from_secs(90);

/// A fake API, a sandbox and a runtime pointed at both.
pub struct Setup {
    pub api: FakeAnthropic,
    pub sandbox: CliSandbox,
    pub runtime: ClaudeCodeRuntime,
}

impl Setup {
    pub async fn new(script: Vec<Reply>) -> Self {
        let api = FakeAnthropic::start(script).await;
        let sandbox = CliSandbox::new();
        let settings = RuntimeSettings {
            claude_cli: Some(claude_cli()),
            ..RuntimeSettings::default()
        };
        let runtime = sandbox
            .env(&api)
            .into_iter()
            .fold(ClaudeCodeRuntime::new(&settings), |r, (k, v)| {
                r.with_env(k, v)
            });
        Setup {
            api,
            sandbox,
            runtime,
        }
    }

    pub fn turn(&self, prompt: &str) -> Turn {
        self.turn_in_mode(prompt, "bypassPermissions")
    }

    /// A turn in permission mode `mode` (`default` asks before tools that change things).
    pub fn turn_in_mode(&self, prompt: &str, mode: &str) -> Turn {
        Turn {
            agent: AgentSpec {
                id: uuid::Uuid::nil(),
                name: "coder".into(),
                runtime: "claude_code".into(),
                model_id: "claude-sonnet-4-5".into(),
                configuration: json!({"runtime_config": {
                    "permission_mode": mode,
                    "cwd": self.sandbox.cwd(),
                }}),
            },
            index: 0,
            prompt: prompt.into(),
            traceparent: None,
        }
    }

    /// Starts a turn in a task; returns it with its progress and its cancel token.
    pub fn start(&self, prompt: &str, checkpoint: Option<Value>) -> Running {
        self.start_turn(self.turn(prompt), checkpoint, None)
    }

    /// Starts `turn` in a task, its tool asks answered by `approver` (none: denied at once).
    pub fn start_turn(
        &self,
        turn: Turn,
        checkpoint: Option<Value>,
        approver: Option<Arc<dyn Approver>>,
    ) -> Running {
        let cancel = CancellationToken::new();
        let attempt = AttemptInfo {
            execution_id: uuid::Uuid::now_v7(),
            activity_id: "turn-1".into(),
            attempt: 1,
        };
        let (mut io, progress) = TurnIo::new(attempt, cancel.clone(), checkpoint);
        if let Some(approver) = approver {
            io = io.with_approver(approver);
        }
        let runtime = self.runtime.clone();
        Running {
            task: tokio::spawn(async move { runtime.run(turn, io).await }),
            progress,
            seen: Vec::new(),
            cancel,
        }
    }
}

/// A turn running in a task.
pub struct Running {
    pub task: JoinHandle<Result<TurnOutput, RuntimeError>>,
    progress: UnboundedReceiver<Progress>,
    seen: Vec<Progress>,
    pub cancel: CancellationToken,
}

impl Running {
    /// Reads progress until a chunk of `kind` for which `matches` holds; returns its data.
    pub async fn chunk(&mut self, kind: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let found = tokio::time::timeout(LIMIT, async {
            loop {
                let progress = self.progress.recv().await.expect("the run ended first");
                self.seen.push(progress.clone());
                if let Progress::Chunk { kind: k, data, .. } = progress
                    && k == kind
                    && matches(&data)
                {
                    return data;
                }
            }
        });
        found
            .await
            .unwrap_or_else(|_| panic!("no `{kind}` chunk within {LIMIT:?}"))
    }

    /// The run's result, then every progress message it sent.
    pub async fn finish(mut self) -> (Result<TurnOutput, RuntimeError>, Vec<Progress>) {
        let result = tokio::time::timeout(LIMIT, self.task)
            .await
            .expect("the run ends in time")
            .expect("the run does not panic");
        while let Ok(progress) = self.progress.try_recv() {
            self.seen.push(progress);
        }
        (result, self.seen)
    }
}

pub fn chunks_of<'a>(seen: &'a [Progress], kind: &str) -> Vec<&'a Value> {
    seen.iter()
        .filter_map(|p| match p {
            Progress::Chunk { kind: k, data, .. } if k == kind => Some(data),
            _ => None,
        })
        .collect()
}

/// Live (not zombie) processes whose command line contains `needle`, or that are in `group`.
pub fn live_processes(needle: &str, group: Option<i32>) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        let (state, pgid) = (fields[0], fields[2].parse::<i32>().unwrap());
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if state != "Z" && (cmdline.contains(needle) || Some(pgid) == group) {
            found.push(format!("{pid} (group {pgid}): {cmdline}"));
        }
    }
    found
}

/// Waits at most `limit` until `check` holds, polling conditions (in `/proc`) that have no event
/// to wait on.
pub async fn until(what: &str, limit: Duration, check: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
