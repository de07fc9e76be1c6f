//! What a running attempt sends: batches by count and bytes, heartbeats, and the same message
//! again after a server could not take it.

use std::sync::Arc;

use futures::FutureExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::*;

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
    attempt::run(
        api_dyn,
        &options,
        assignment(30),
        CancellationToken::new(),
        CancellationToken::new(),
        &WorkerStats::default(),
    )
    .await;
    assert!(api.heartbeats() >= 3);
    assert_eq!(api.reports().len(), 1);
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
    attempt::run(
        api_dyn,
        &options,
        assignment(30),
        CancellationToken::new(),
        CancellationToken::new(),
        &WorkerStats::default(),
    )
    .await;
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
