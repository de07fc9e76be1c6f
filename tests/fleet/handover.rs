//! Handing attempts between workers: a draining worker releases its attempt and another resumes
//! it from the checkpoint at once; a stale worker (paused past its lease) is fenced off.

use std::time::{Duration, Instant};

use cairn::api::pb;
use nix::sys::signal::Signal;
use serde_json::json;

use crate::common::client::{assert_gapless, fast_retries, kinds, start_request};
use crate::common::fleet::{Proc, wait_for_workers};
use crate::common::{Db, TestClient};

/// `n` distinct chunks, so a repeated chunk would show in the text.
fn chunks(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("c{i} ")).collect()
}

/// Waits until the execution has at least `n` output chunks.
async fn wait_for_output(c: &mut TestClient, id: &str, n: u64) {
    c.wait_until(id, &format!("{n} chunks"), |e| e.output_length >= n)
        .await;
}

async fn a_draining_worker_hands_its_attempt_to_another_at_once(db: Db) {
    let (_server, url) = Proc::server(&db, "127.0.0.1:0", &[], &[]);
    let mut c = TestClient::connect(&url).await;
    let expected = chunks(30);
    c.create_agent(
        "long",
        "echo",
        json!({ "chunks": expected, "delay_ms": 100 }),
    )
    .await;
    let mut first = Proc::worker(
        "first",
        &[&url],
        &["--runtimes", "echo", "--drain-timeout-ms", "200"],
        &[],
    );
    let mut request = start_request("long", &["x"]);
    // A lease that would take a minute to expire: the hand-over must not wait for it.
    request.timeouts = Some(pb::Timeouts {
        heartbeat_ms: 60_000,
        ..Default::default()
    });
    let id = c.start(request).await;
    wait_for_output(&mut c, &id, 3).await;
    let _second = Proc::worker("second", &[&url], &["--runtimes", "echo"], &[]);
    wait_for_workers(&mut c, &["second"]).await;

    let drained_at = Instant::now();
    let status = first.terminate(Duration::from_secs(30));
    assert!(status.success(), "the worker exits cleanly: {status:?}");
    first.wait_for_log("attempt released", Duration::from_secs(5));
    let watched = c.watch(&id, 0).await;
    let took = drained_at.elapsed();
    assert_eq!(watched.closed.status, "COMPLETED");
    assert!(
        took < Duration::from_secs(20),
        "resumed after {took:?}, well before the 60 s lease would expire"
    );
    assert_gapless(&watched.chunks, 1);
    assert_eq!(
        watched.text(),
        expected.concat(),
        "every chunk once, in order"
    );

    // The same attempt went on: no timeout, no retry, and the second worker finished it.
    let history = c.history(&id).await;
    assert_eq!(
        kinds(&history),
        [
            "ExecutionStarted",
            "ActivityScheduled",
            "ActivityStarted",
            "ActivityCompleted",
            "ExecutionCompleted"
        ]
    );
    assert_eq!(history[2].payload["worker"], "second");
    let completed = &history[3].payload;
    assert!(
        completed["output"]["resumed_from_chunk"].as_u64().unwrap() >= 3,
        "resumed from the checkpoint: {completed}"
    );
    assert!(watched.chunks.iter().all(|ch| ch.attempt == 1));
}

async fn a_stale_worker_can_neither_complete_nor_write_output(db: Db) {
    let (_server, url) = Proc::server(&db, "127.0.0.1:0", &[], &[]);
    let mut c = TestClient::connect(&url).await;
    let expected = chunks(20);
    c.create_agent(
        "paced",
        "echo",
        json!({ "chunks": expected, "delay_ms": 100 }),
    )
    .await;
    let stale = Proc::worker("stale", &[&url], &["--runtimes", "echo"], &[]);
    let mut request = start_request("paced", &["x"]);
    request.retry_policy = Some(fast_retries(3));
    request.timeouts = Some(pb::Timeouts {
        heartbeat_ms: 1_500,
        ..Default::default()
    });
    let id = c.start(request).await;
    wait_for_output(&mut c, &id, 2).await;

    // Paused past its lease: the attempt times out and the retry runs elsewhere.
    stale.signal(Signal::SIGSTOP);
    let _fresh = Proc::worker("fresh", &[&url], &["--runtimes", "echo"], &[]);
    let watched = c.watch(&id, 0).await;
    assert_eq!(watched.closed.status, "COMPLETED");

    // Woken up, the stale worker's progress and report are refused.
    stale.signal(Signal::SIGCONT);
    stale.wait_for_log("lease lost", Duration::from_secs(30));
    let after = c.watch(&id, 0).await;
    assert_eq!(
        after.chunks.len(),
        watched.chunks.len(),
        "no output after the lease was lost"
    );
    assert_gapless(&after.chunks, 1);
    assert_eq!(
        after.text(),
        expected.concat(),
        "the retry resumed from the checkpoint"
    );

    // Attempt 1 (the paused worker's) timed out on its heartbeat; one attempt completed, on
    // the fresh worker. (On a loaded machine the fresh worker may itself miss a heartbeat once,
    // so the attempt count is not fixed.)
    let history = c.history(&id).await;
    let timed_out = history
        .iter()
        .find(|e| e.kind == "ActivityTimedOut")
        .unwrap();
    assert_eq!(
        (
            timed_out.payload["attempt"].as_u64(),
            timed_out.payload["kind"].as_str()
        ),
        (Some(1), Some("heartbeat"))
    );
    let started: Vec<&str> = history
        .iter()
        .filter(|e| e.kind == "ActivityStarted")
        .map(|e| e.payload["worker"].as_str().unwrap())
        .collect();
    assert_eq!(started[0], "stale", "{:?}", kinds(&history));
    assert_eq!(started.last(), Some(&"fresh"));
    let completed: Vec<_> = history
        .iter()
        .filter(|e| e.kind == "ActivityCompleted")
        .collect();
    assert_eq!(completed.len(), 1, "{:?}", kinds(&history));
    assert!(completed[0].payload["attempt"].as_u64().unwrap() >= 2);
    assert!(after.chunks.iter().any(|ch| ch.attempt == 1));
}

crate::on_both_stores!(
    a_draining_worker_hands_its_attempt_to_another_at_once,
    a_stale_worker_can_neither_complete_nor_write_output,
);
