//! Crash safety: SIGKILL a `cairn dev` process mid-run and start it again on the same database.
//! Every accepted execution completes exactly once, output stays gapless, and `echo` resumes from
//! its checkpoint so no text is emitted twice.

mod common;

use cairn::api::pb;
use common::client::{assert_gapless, fast_retries, start_request};
use common::{Db, Server};
use serde_json::json;

fn words(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("w{i} ")).collect()
}

async fn sigkill_mid_run_loses_and_duplicates_nothing(db: Db) {
    let mut server = Server::dev(&db, &["--concurrency", "8"]);
    let mut c = server.client().await;
    c.create_agent(
        "steady",
        "echo",
        json!({ "chunks": words(30), "delay_ms": 20 }),
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..16 {
        let mut request = start_request("steady", &["one", "two"]);
        request.retry_policy = Some(fast_retries(10));
        request.timeouts = Some(pb::Timeouts {
            heartbeat_ms: 1_000,
            ..Default::default()
        });
        request.request_id = format!("crash-{i}");
        ids.push(c.start(request).await);
    }
    // Kill while some executions are mid-turn and others have not started.
    c.wait_until(&ids[0], "the first execution to be mid-turn", |e| {
        e.output_length >= 5
    })
    .await;
    server.kill();

    let server = Server::dev(&db, &["--concurrency", "8"]);
    let mut c = server.client().await;
    let mut interrupted = 0;
    for id in &ids {
        let watched = c.watch(id, 0).await;
        assert_eq!(watched.closed.status, "COMPLETED", "{id}");
        assert_gapless(&watched.chunks, 1);
        assert_eq!(
            watched.text(),
            words(30).concat().repeat(2),
            "{id}: every word once, per turn"
        );

        let history = c.history(id).await;
        let count = |kind: &str| history.iter().filter(|e| e.kind == kind).count();
        assert_eq!(count("ExecutionStarted"), 1, "{id}");
        assert_eq!(count("ExecutionCompleted"), 1, "{id}");
        assert_eq!(
            count("ActivityCompleted"),
            2,
            "{id}: each turn completed once"
        );
        for turn in ["turn-1", "turn-2"] {
            let completions = history
                .iter()
                .filter(|e| e.kind == "ActivityCompleted" && e.payload["activity_id"] == turn)
                .count();
            assert_eq!(completions, 1, "{id} {turn}");
        }
        let seqs: Vec<u64> = history.iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs,
            (1..=history.len() as u64).collect::<Vec<_>>(),
            "{id}: history is gapless"
        );

        let timed_out = history
            .iter()
            .filter(|e| e.kind == "ActivityTimedOut")
            .collect::<Vec<_>>();
        if !timed_out.is_empty() {
            interrupted += 1;
            assert!(timed_out.iter().all(|e| e.payload["kind"] == "heartbeat"));
            // The interrupted attempt's chunks stay, tagged with it; the retry added the rest.
            let activity = timed_out[0].payload["activity_id"].as_str().unwrap();
            let attempts: std::collections::BTreeSet<u32> = watched
                .chunks
                .iter()
                .filter(|ch| ch.activity_id == activity)
                .map(|ch| ch.attempt)
                .collect();
            assert!(
                attempts.contains(&2),
                "{id}: the retry is attempt 2 ({attempts:?})"
            );
        }
    }
    assert!(
        interrupted >= 1,
        "the kill interrupted at least one running attempt"
    );
    assert_eq!(
        db.store().await.count_rows("executions").await.unwrap(),
        16,
        "none started twice"
    );
}

on_both_stores!(sigkill_mid_run_loses_and_duplicates_nothing);
