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

use super::{WorkerOptions, attempt};
use crate::contract::{
    ActivityOutcome, Assignment, ChunkIn, Lease, MAX_BATCH_BYTES, MAX_REPORT_BYTES, PollRequest,
    Progress, ProgressReply, REPORT_REFUSED_CODE, Release, Report, TOO_LARGE_CODE, WorkerApi,
    WorkerApiError,
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
    report_replies: Mutex<VecDeque<Result<(), WorkerApiError>>>,
    /// Wakes runtimes that wait for the worker to have sent something.
    sent: tokio::sync::Notify,
}

impl FakeApi {
    fn answer_progress(&self, reply: Result<ProgressReply, WorkerApiError>) {
        self.progress_replies.lock().unwrap().push_back(reply);
    }

    fn answer_report(&self, reply: Result<(), WorkerApiError>) {
        self.report_replies.lock().unwrap().push_back(reply);
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
        }));
        self.record(Call::Progress(progress.clone()), reply.is_ok());
        reply
    }

    async fn report(&self, report: &Report) -> Result<(), WorkerApiError> {
        let reply = self.report_replies.lock().unwrap().pop_front();
        let reply = reply.unwrap_or(Ok(()));
        self.record(Call::Report(report.clone()), reply.is_ok());
        reply
    }

    async fn release(&self, release: &Release) -> Result<(), WorkerApiError> {
        self.record(Call::Release(release.clone()), true);
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
        },
        checkpoint: None,
        heartbeat_ms,
    }
}

async fn run(api: &Arc<FakeApi>, options: &WorkerOptions, release: CancellationToken) {
    let api: Arc<dyn WorkerApi> = api.clone();
    attempt::run(api, options, assignment(30_000), release).await;
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

#[tokio::test]
async fn batches_hold_at_most_max_batch_chunks_and_stay_gapless() {
    let api = Arc::new(FakeApi::default());
    let mut options = options(emitting(1_000, 0));
    options.max_batch = 64;
    run(&api, &options, CancellationToken::new()).await;
    let calls = api.calls();
    for (call, _) in &calls {
        let chunks = match call {
            Call::Progress(p) => p.chunks.len(),
            Call::Report(r) => r.chunks.len(),
            Call::Release(_) => panic!("nothing to release"),
        };
        assert!(chunks <= 64, "a message of {chunks} chunks");
    }
    let stored = api.stored();
    let expected: Vec<String> = (0..1_000).map(|i| i.to_string()).collect();
    assert_eq!(texts(&stored), expected);
    let reports = api.reports();
    assert_eq!(reports.len(), 1);
    assert!(matches!(
        outcome(&reports[0]),
        ActivityOutcome::Completed { .. }
    ));
}

#[tokio::test]
async fn batches_hold_at_most_max_batch_bytes_and_the_report_carries_only_what_fits() {
    let api = Arc::new(FakeApi::default());
    // 40 chunks of ~100 KiB: 4 MiB in all, more than one report may carry.
    let options = options(emitting(40, 100 << 10));
    run(&api, &options, CancellationToken::new()).await;
    for (call, _) in api.calls() {
        let (chunks, kind) = match &call {
            Call::Progress(p) => (&p.chunks, "progress"),
            Call::Report(r) => (&r.chunks, "report"),
            Call::Release(_) => panic!("nothing to release"),
        };
        let bytes: usize = chunks.iter().map(ChunkIn::encoded_len).sum();
        assert!(
            bytes <= MAX_BATCH_BYTES,
            "a {kind} of {bytes} bytes in {} chunks",
            chunks.len()
        );
    }
    assert_eq!(api.stored().len(), 40);
    assert!(
        api.calls().len() >= 4,
        "4 MiB cannot go in fewer than four 1 MiB batches"
    );
}

#[tokio::test]
async fn an_idle_attempt_sends_heartbeats() {
    let api = Arc::new(FakeApi::default());
    let seen = api.clone();
    // Waits, sending nothing, until the worker has sent three heartbeats on its own.
    let script: Script = Arc::new(move |_io: TurnIo| {
        let api = seen.clone();
        async move {
            while api.heartbeats() < 3 {
                let sent = api.sent.notified();
                if api.heartbeats() >= 3 {
                    break;
                }
                sent.await;
            }
            Ok(TurnOutput::default())
        }
        .boxed()
    });
    let options = options(script);
    let api_dyn: Arc<dyn WorkerApi> = api.clone();
    // A 30 ms lease: a heartbeat every 10 ms.
    attempt::run(api_dyn, &options, assignment(30), CancellationToken::new()).await;
    assert!(api.heartbeats() >= 3);
    assert_eq!(api.reports().len(), 1);
}

#[tokio::test]
async fn a_cancel_in_a_progress_reply_fires_the_token_and_ends_canceled() {
    let api = Arc::new(FakeApi::default());
    api.answer_progress(Ok(ProgressReply {
        cancel_requested: true,
    }));
    let options = options(until_cancelled(api.clone()));
    let api_dyn: Arc<dyn WorkerApi> = api.clone();
    attempt::run(api_dyn, &options, assignment(30), CancellationToken::new()).await;
    let reports = api.reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(
        outcome(&reports[0]),
        &ActivityOutcome::Canceled { abandoned: false }
    );
    assert_eq!(
        texts(&api.stored()),
        ["0"],
        "output after the cancel is kept"
    );
}

#[tokio::test]
async fn a_runtime_that_ignores_its_token_is_abandoned_after_the_grace() {
    let api = Arc::new(FakeApi::default());
    api.answer_progress(Ok(ProgressReply {
        cancel_requested: true,
    }));
    let options = options(stubborn());
    let api_dyn: Arc<dyn WorkerApi> = api.clone();
    attempt::run(api_dyn, &options, assignment(30), CancellationToken::new()).await;
    let reports = api.reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(
        outcome(&reports[0]),
        &ActivityOutcome::Canceled { abandoned: true }
    );
}

#[tokio::test]
async fn a_drain_releases_the_attempt_with_its_output_and_checkpoint() {
    let api = Arc::new(FakeApi::default());
    let options = options(until_cancelled(api.clone()));
    let release = CancellationToken::new();
    release.cancel();
    run(&api, &options, release).await;
    assert!(
        api.reports().is_empty(),
        "a released attempt is not reported"
    );
    let releases = api.releases();
    assert_eq!(releases.len(), 1);
    let stored = api.stored();
    assert_eq!(texts(&stored), ["0"]);
    let checkpoint = api.calls().into_iter().find_map(|(c, _)| match c {
        Call::Progress(p) => p.checkpoint,
        Call::Release(r) => r.checkpoint,
        Call::Report(_) => None,
    });
    assert_eq!(checkpoint, Some(json!({"resume": 1})));
}

#[tokio::test]
async fn a_stubborn_runtime_is_still_released_on_drain() {
    let api = Arc::new(FakeApi::default());
    let options = options(stubborn());
    let release = CancellationToken::new();
    release.cancel();
    run(&api, &options, release).await;
    assert!(api.reports().is_empty());
    assert_eq!(api.releases().len(), 1);
}

#[tokio::test]
async fn a_lost_lease_stops_the_runtime_and_reports_nothing() {
    let api = Arc::new(FakeApi::default());
    api.answer_progress(Err(WorkerApiError::LeaseLost("taken".into())));
    let fired = Arc::new(Mutex::new(None::<CancellationToken>));
    let token = fired.clone();
    let script: Script = Arc::new(move |io: TurnIo| {
        *token.lock().unwrap() = Some(io.cancel.clone());
        async move {
            futures::future::pending::<()>().await;
            unreachable!()
        }
        .boxed()
    });
    let options = options(script);
    let api_dyn: Arc<dyn WorkerApi> = api.clone();
    attempt::run(api_dyn, &options, assignment(30), CancellationToken::new()).await;
    assert_eq!(
        api.calls().len(),
        1,
        "one heartbeat, refused as stale, then nothing"
    );
    assert!(api.reports().is_empty() && api.releases().is_empty());
    let token = fired.lock().unwrap().clone().unwrap();
    assert!(token.is_cancelled());
}

#[tokio::test]
async fn a_report_the_server_could_not_take_is_sent_again_unchanged() {
    let api = Arc::new(FakeApi::default());
    api.answer_report(Err(WorkerApiError::Unavailable("restarting".into())));
    api.answer_report(Err(WorkerApiError::Unavailable("restarting".into())));
    let options = options(emitting(3, 0));
    run(&api, &options, CancellationToken::new()).await;
    let reports = api.reports();
    assert_eq!(reports.len(), 3);
    assert_eq!(
        reports[0], reports[2],
        "the same report, chunks and index included"
    );
    assert_eq!(api.stored().len(), 3);
}

#[tokio::test]
async fn a_progress_report_the_server_could_not_take_is_sent_again() {
    let api = Arc::new(FakeApi::default());
    api.answer_progress(Err(WorkerApiError::Unavailable("restarting".into())));
    let seen = api.clone();
    let script: Script = Arc::new(move |io: TurnIo| {
        let api = seen.clone();
        async move {
            io.emit("text", json!({"i": 0}));
            // Waits until the batch was accepted after the failed try.
            while api.calls().iter().filter(|(_, ok)| *ok).count() == 0 {
                let sent = api.sent.notified();
                if api.calls().iter().any(|(_, ok)| *ok) {
                    break;
                }
                sent.await;
            }
            Ok(TurnOutput::default())
        }
        .boxed()
    });
    let options = options(script);
    let api_dyn: Arc<dyn WorkerApi> = api.clone();
    attempt::run(api_dyn, &options, assignment(30), CancellationToken::new()).await;
    let calls = api.calls();
    let Call::Progress(first) = &calls[0].0 else {
        panic!("first a progress report");
    };
    let Call::Progress(second) = &calls[1].0 else {
        panic!("then the same progress report");
    };
    assert_eq!(first, second);
    assert_eq!(texts(&api.stored()), ["0"]);
}

#[tokio::test]
async fn a_refused_report_ends_the_attempt_as_a_non_retryable_failure() {
    let api = Arc::new(FakeApi::default());
    api.answer_report(Err(WorkerApiError::Refused(
        "chunk 0 data_json is not valid JSON (InvalidArgument)".into(),
    )));
    let options = options(emitting(2, 0));
    run(&api, &options, CancellationToken::new()).await;
    let reports = api.reports();
    assert_eq!(
        reports.len(),
        2,
        "the refused report, then a failure; no retries"
    );
    let ActivityOutcome::Failed { failure, .. } = outcome(&reports[1]) else {
        panic!("a failure, got {:?}", reports[1]);
    };
    assert_eq!(failure.code, REPORT_REFUSED_CODE);
    assert!(!failure.retryable);
    assert!(
        failure.message.contains("not valid JSON"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn a_refused_progress_report_stops_the_runtime_and_fails_the_attempt() {
    let api = Arc::new(FakeApi::default());
    api.answer_progress(Err(WorkerApiError::Refused("bad (InvalidArgument)".into())));
    let options = options(until_cancelled(api.clone()));
    let api_dyn: Arc<dyn WorkerApi> = api.clone();
    attempt::run(api_dyn, &options, assignment(30), CancellationToken::new()).await;
    let reports = api.reports();
    assert_eq!(reports.len(), 1);
    let ActivityOutcome::Failed { failure, .. } = outcome(&reports[0]) else {
        panic!("a failure, got {:?}", reports[0]);
    };
    assert_eq!(failure.code, REPORT_REFUSED_CODE);
    assert!(!failure.retryable);
}

#[tokio::test]
async fn a_chunk_too_large_for_any_report_fails_the_attempt_naming_the_limit() {
    let api = Arc::new(FakeApi::default());
    let script: Script = Arc::new(|io: TurnIo| {
        async move {
            io.emit("text", json!({"i": 0}));
            io.emit("text", json!({"i": 1, "pad": "x".repeat(MAX_REPORT_BYTES)}));
            io.cancel.cancelled().await;
            Err(RuntimeError::canceled())
        }
        .boxed()
    });
    let options = options(script);
    run(&api, &options, CancellationToken::new()).await;
    let reports = api.reports();
    assert_eq!(reports.len(), 1);
    let ActivityOutcome::Failed { failure, .. } = outcome(&reports[0]) else {
        panic!("a failure, got {:?}", reports[0]);
    };
    assert_eq!(failure.code, TOO_LARGE_CODE);
    assert!(!failure.retryable);
    assert!(failure.message.contains(&MAX_REPORT_BYTES.to_string()));
    assert_eq!(texts(&api.stored()), ["0"], "the output before it is kept");
}

#[tokio::test]
async fn a_checkpoint_or_result_too_large_fails_the_attempt() {
    let api = Arc::new(FakeApi::default());
    let script: Script = Arc::new(|io: TurnIo| {
        async move {
            io.save_checkpoint(json!("x".repeat(MAX_REPORT_BYTES)));
            io.cancel.cancelled().await;
            Err(RuntimeError::canceled())
        }
        .boxed()
    });
    run(&api, &options(script), CancellationToken::new()).await;
    let reports = api.reports();
    let ActivityOutcome::Failed { failure, .. } = outcome(&reports[0]) else {
        panic!("a failure, got {:?}", reports[0]);
    };
    assert_eq!(failure.code, TOO_LARGE_CODE);
    assert!(
        failure.message.contains("checkpoint"),
        "{}",
        failure.message
    );

    let api = Arc::new(FakeApi::default());
    let script: Script = Arc::new(|_io: TurnIo| {
        async move {
            Ok(TurnOutput {
                output: json!("x".repeat(MAX_REPORT_BYTES)),
                ..TurnOutput::default()
            })
        }
        .boxed()
    });
    run(&api, &options(script), CancellationToken::new()).await;
    let reports = api.reports();
    assert_eq!(reports.len(), 1);
    let ActivityOutcome::Failed { failure, .. } = outcome(&reports[0]) else {
        panic!("a failure, got {:?}", reports[0]);
    };
    assert_eq!(failure.code, TOO_LARGE_CODE);
    assert!(failure.message.contains("result"), "{}", failure.message);
}
