//! How an attempt stops: cancelled, abandoned, drained, fenced, refused, or failed for output too
//! large to store.

use std::sync::{Arc, Mutex};

use futures::FutureExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::*;

#[tokio::test]
async fn a_cancel_in_a_progress_reply_fires_the_token_and_ends_canceled() {
    let api = Arc::new(FakeApi::default());
    api.answer_progress(Ok(ProgressReply {
        cancel_requested: true,
        ..Default::default()
    }));
    let options = options(until_cancelled(api.clone()));
    let api_dyn: Arc<dyn WorkerApi> = api.clone();
    attempt::run(
        api_dyn,
        &options,
        assignment(30),
        CancellationToken::new(),
        CancellationToken::new(),
        &WorkerStats::default(),
    )
    .await;
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
        ..Default::default()
    }));
    let options = options(stubborn());
    let api_dyn: Arc<dyn WorkerApi> = api.clone();
    attempt::run(
        api_dyn,
        &options,
        assignment(30),
        CancellationToken::new(),
        CancellationToken::new(),
        &WorkerStats::default(),
    )
    .await;
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
    attempt::run(
        api_dyn,
        &options,
        assignment(30),
        CancellationToken::new(),
        CancellationToken::new(),
        &WorkerStats::default(),
    )
    .await;
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
    attempt::run(
        api_dyn,
        &options,
        assignment(30),
        CancellationToken::new(),
        CancellationToken::new(),
        &WorkerStats::default(),
    )
    .await;
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
async fn a_chunk_over_the_document_limit_fails_the_attempt_though_a_report_could_carry_it() {
    // Under MAX_REPORT_BYTES, over MAX_DOCUMENT_BYTES: the server would refuse it, so the
    // worker does not send it.
    let api = Arc::new(FakeApi::default());
    let script: Script = Arc::new(|io: TurnIo| {
        async move {
            io.emit("text", json!("x".repeat(MAX_DOCUMENT_BYTES + 1)));
            io.cancel.cancelled().await;
            Err(RuntimeError::canceled())
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
    assert!(failure.message.contains(&MAX_DOCUMENT_BYTES.to_string()));
    assert!(api.stored().is_empty(), "nothing was sent");
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
