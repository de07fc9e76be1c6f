//! An attempt from start to end over a fake [`WorkerApi`] that records every call and answers
//! from a script, with runtimes written in each test. No server, no database: what is checked is
//! what the worker sends and when it stops.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{WorkerOptions, WorkerStats, attempt};

mod eager;
mod sending;
mod stopping;
use crate::contract::{
    ActivityOutcome, Assignment, ChunkIn, Lease, MAX_BATCH_BYTES, MAX_DOCUMENT_BYTES,
    MAX_REPORT_BYTES, PollRequest, Progress, ProgressReply, REPORT_REFUSED_CODE, Release, Report,
    TOO_LARGE_CODE, WorkerApi, WorkerApiError,
};
use crate::domain::{AgentSpec, Turn};
use crate::runtime::{
    AgentRuntime, ConfigError, RuntimeDescription, RuntimeError, RuntimeRegistry, TurnIo,
    TurnOutput,
};

/// One call the worker made, and whether the fake accepted it.
#[derive(Debug, Clone)]
enum Call {
    Progress(Progress),
    Report(Report),
    Release(Release),
}

#[derive(Default)]
struct FakeApi {
    calls: Mutex<Vec<(Call, bool)>>,
    progress_replies: Mutex<VecDeque<Result<ProgressReply, WorkerApiError>>>,
    report_replies: Mutex<VecDeque<Result<Option<Assignment>, WorkerApiError>>>,
    /// Wakes runtimes that wait for the worker to have sent something.
    sent: tokio::sync::Notify,
}

impl FakeApi {
    fn answer_progress(&self, reply: Result<ProgressReply, WorkerApiError>) {
        self.progress_replies.lock().unwrap().push_back(reply);
    }

    fn answer_report(&self, reply: Result<(), WorkerApiError>) {
        self.report_replies
            .lock()
            .unwrap()
            .push_back(reply.map(|()| None));
    }

    /// Answers the next report with `next`, leased to the worker (eager dispatch).
    fn answer_report_with_next(&self, next: Assignment) {
        self.report_replies
            .lock()
            .unwrap()
            .push_back(Ok(Some(next)));
    }

    fn record(&self, call: Call, ok: bool) {
        self.calls.lock().unwrap().push((call, ok));
        self.sent.notify_waiters();
    }

    fn calls(&self) -> Vec<(Call, bool)> {
        self.calls.lock().unwrap().clone()
    }

    fn heartbeats(&self) -> usize {
        self.calls()
            .iter()
            .filter(|(c, _)| {
                matches!(c, Call::Progress(p) if p.chunks.is_empty() && p.checkpoint.is_none())
            })
            .count()
    }

    fn reports(&self) -> Vec<Report> {
        self.calls()
            .into_iter()
            .filter_map(|(c, _)| match c {
                Call::Report(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    fn releases(&self) -> Vec<Release> {
        self.calls()
            .into_iter()
            .filter_map(|(c, _)| match c {
                Call::Release(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    /// The chunks the server would have stored, checking that every accepted message starts
    /// where the stored ones end (no gap, no overlap).
    fn stored(&self) -> Vec<ChunkIn> {
        let mut stored: Vec<ChunkIn> = Vec::new();
        for (call, ok) in self.calls() {
            let (first, chunks) = match &call {
                Call::Progress(p) => (p.first_chunk, &p.chunks),
                Call::Report(r) => (r.first_chunk, &r.chunks),
                Call::Release(r) => (None, &r.chunks),
            };
            if !ok {
                continue;
            }
            if let Some(first) = first {
                assert_eq!(first, stored.len() as u64, "gap or overlap at {call:?}");
            }
            stored.extend(chunks.iter().cloned());
        }
        stored
    }
}

#[async_trait]
impl WorkerApi for FakeApi {
    async fn poll(&self, _request: &PollRequest) -> Result<Vec<Assignment>, WorkerApiError> {
        Ok(Vec::new())
    }

    async fn progress(&self, progress: &Progress) -> Result<ProgressReply, WorkerApiError> {
        let reply = self.progress_replies.lock().unwrap().pop_front();
        let reply = reply.unwrap_or(Ok(ProgressReply {
            cancel_requested: false,
            ..Default::default()
        }));
        self.record(Call::Progress(progress.clone()), reply.is_ok());
        reply
    }

    async fn report(&self, report: &Report) -> Result<Option<Assignment>, WorkerApiError> {
        let reply = self.report_replies.lock().unwrap().pop_front();
        let reply = reply.unwrap_or(Ok(None));
        self.record(Call::Report(report.clone()), reply.is_ok());
        reply
    }

    async fn release(&self, release: &Release) -> Result<(), WorkerApiError> {
        self.record(Call::Release(release.clone()), true);
        Ok(())
    }
    async fn deregister(&self, _worker_id: &str) -> Result<(), WorkerApiError> {
        Ok(())
    }
}

type Script =
    Arc<dyn Fn(TurnIo) -> BoxFuture<'static, Result<TurnOutput, RuntimeError>> + Send + Sync>;

/// A runtime that runs the test's script.
struct ScriptRuntime(Script);

#[async_trait]
impl AgentRuntime for ScriptRuntime {
    fn name(&self) -> &'static str {
        "script"
    }

    fn describe(&self) -> RuntimeDescription {
        RuntimeDescription {
            name: "script",
            description: "runs a test's script",
            config_keys: Vec::new(),
        }
    }

    fn validate(&self, _agent: &AgentSpec) -> Result<(), ConfigError> {
        Ok(())
    }

    async fn run(&self, _turn: Turn, io: TurnIo) -> Result<TurnOutput, RuntimeError> {
        (self.0)(io).await
    }
}

fn options(script: Script) -> WorkerOptions {
    let mut runtimes = RuntimeRegistry::default();
    runtimes.register(Arc::new(ScriptRuntime(script)));
    let mut options = WorkerOptions::new("w1", runtimes);
    options.flush_interval = Duration::from_millis(5);
    options.cancel_grace = Duration::from_millis(50);
    options
}

fn assignment(heartbeat_ms: u64) -> Assignment {
    let agent = AgentSpec {
        id: uuid::Uuid::nil(),
        name: "a".into(),
        runtime: "script".into(),
        model_id: String::new(),
        configuration: json!({}),
    };
    Assignment {
        lease: Lease {
            execution_id: uuid::Uuid::nil(),
            activity_id: "turn-1".into(),
            attempt: 1,
            lease_token: "token".into(),
        },
        runtime: "script".into(),
        turn: Turn {
            agent,
            index: 0,
            prompt: "hi".into(),
            traceparent: None,
        },
        checkpoint: None,
        heartbeat_ms,
    }
}

async fn run(api: &Arc<FakeApi>, options: &WorkerOptions, release: CancellationToken) {
    let api: Arc<dyn WorkerApi> = api.clone();
    let stats = WorkerStats::default();
    attempt::run(
        api,
        options,
        assignment(30_000),
        release,
        CancellationToken::new(),
        &stats,
    )
    .await;
}

fn texts(chunks: &[ChunkIn]) -> Vec<String> {
    chunks
        .iter()
        .map(|c| c.data["i"].as_u64().unwrap().to_string())
        .collect()
}

/// A script that emits `count` chunks of about `pad` bytes each, then completes.
fn emitting(count: usize, pad: usize) -> Script {
    Arc::new(move |io: TurnIo| {
        async move {
            for i in 0..count {
                io.emit("text", json!({"i": i, "pad": "x".repeat(pad)}));
            }
            Ok(TurnOutput {
                output: json!({"text": "done"}),
                ..TurnOutput::default()
            })
        }
        .boxed()
    })
}

/// A script that waits for its token and stops, saving `checkpoint` with a last chunk.
fn until_cancelled(api: Arc<FakeApi>) -> Script {
    Arc::new(move |io: TurnIo| {
        let _api = api.clone();
        async move {
            io.cancel.cancelled().await;
            io.emit_checkpointed("text", json!({"i": 0}), json!({"resume": 1}));
            Err(RuntimeError::canceled())
        }
        .boxed()
    })
}

/// A script that ignores its token.
fn stubborn() -> Script {
    Arc::new(|_io: TurnIo| {
        async move {
            futures::future::pending::<()>().await;
            unreachable!()
        }
        .boxed()
    })
}

fn outcome(report: &Report) -> &ActivityOutcome {
    &report.outcome
}
