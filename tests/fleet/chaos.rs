//! Two servers over one PostgreSQL and three worker processes run 300 executions while one
//! worker is killed (SIGKILL) and one server is stopped and started again: every execution
//! completes, no activity completes twice, no timer fires twice, every output stream is gapless
//! and complete, and a subscriber on the restarted server's peer sees every chunk.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cairn::api::pb;
use serde_json::json;
use tokio::task::JoinSet;

use crate::common::client::{Event, Watched, assert_gapless, fast_retries, start_request};
use crate::common::fleet::{Proc, wait_for_workers};
use crate::common::{Db, TestClient};

/// The `echo` agents of the mix: name, config, turns, and the text one turn emits.
fn mix() -> Vec<(&'static str, serde_json::Value, usize, String)> {
    let chunks = |prefix: &str, n: usize| -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i} ")).collect()
    };
    let plain = chunks("p", 8);
    let slow = chunks("s", 12);
    let flaky = chunks("f", 8);
    let turns = chunks("t", 6);
    vec![
        (
            "plain",
            json!({ "chunks": plain, "delay_ms": 10 }),
            1,
            plain.concat(),
        ),
        (
            "slow",
            json!({ "chunks": slow, "delay_ms": 40 }),
            1,
            slow.concat(),
        ),
        (
            "flaky",
            json!({ "chunks": flaky, "delay_ms": 10, "fail_attempts": [1], "fail_after_chunks": 3 }),
            1,
            flaky.concat(),
        ),
        (
            "turns",
            json!({ "chunks": turns, "delay_ms": 10 }),
            2,
            turns.concat(),
        ),
    ]
}

/// Starts one execution of the mix through `starter` and follows it on `watcher`.
async fn launch(
    i: usize,
    starter: &mut TestClient,
    watcher: &TestClient,
    closed: &Arc<AtomicUsize>,
    running: &mut JoinSet<(String, String, Watched)>,
) {
    let mix = mix();
    let (agent, _, turns, text) = &mix[i % mix.len()];
    let prompts: Vec<String> = (0..*turns).map(|t| format!("{i}/{t}")).collect();
    let prompts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let mut request = start_request(agent, &prompts);
    request.retry_policy = Some(fast_retries(6));
    // Short leases, so attempts of the killed worker are retried within seconds.
    request.timeouts = Some(pb::Timeouts {
        heartbeat_ms: 2_000,
        ..Default::default()
    });
    let id = starter.start(request).await;
    let expected = text.repeat(*turns);
    let mut watcher = watcher.clone();
    let closed = closed.clone();
    running.spawn(async move {
        let watched = watcher.watch_within(&id, 0, Duration::from_secs(240)).await;
        closed.fetch_add(1, Ordering::Relaxed);
        (id, expected, watched)
    });
}

async fn wait_for(what: &str, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn twice<K>(counts: &HashMap<K, usize>) -> bool {
    counts.values().any(|n| *n > 1)
}

/// No activity completes twice, no attempt ends twice, no timer fires twice.
fn assert_exactly_once(id: &str, history: &[Event]) {
    let mut ends: HashMap<(String, u64), usize> = HashMap::new();
    let mut completed: HashMap<String, usize> = HashMap::new();
    let mut fired: HashMap<String, usize> = HashMap::new();
    for e in history {
        let activity = e.payload["activity_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let attempt = e.payload["attempt"].as_u64().unwrap_or_default();
        match e.kind.as_str() {
            "ActivityCompleted" => {
                *completed.entry(activity.clone()).or_default() += 1;
                *ends.entry((activity, attempt)).or_default() += 1;
            }
            "ActivityFailed" | "ActivityTimedOut" | "ActivityCanceled" => {
                *ends.entry((activity, attempt)).or_default() += 1;
            }
            "TimerFired" => {
                *fired
                    .entry(e.payload["timer_id"].as_str().unwrap().to_string())
                    .or_default() += 1;
            }
            _ => {}
        }
    }
    assert!(
        !twice(&completed) && !twice(&ends) && !twice(&fired),
        "{id}: something happened twice: completed {completed:?}, ends {ends:?}, timers {fired:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fleet_loses_nothing_when_a_worker_and_a_server_die() {
    let Some(db) = Db::postgres().await else {
        return;
    };
    let (mut s1, url1) = Proc::server(&db, "127.0.0.1:0", &[], &[]);
    let (_s2, url2) = Proc::server(&db, "127.0.0.1:0", &["--no-migrate"], &[]);
    let listen1 = url1.trim_start_matches("http://").to_string();
    let mut c1 = TestClient::connect(&url1).await;
    let mut c2 = TestClient::connect(&url2).await;
    for (name, config, _, _) in mix() {
        c1.create_agent(name, "echo", config).await;
    }
    let args = [
        "--runtimes",
        "echo",
        "--concurrency",
        "16",
        "--poll-wait-ms",
        "5000",
    ];
    let _w1 = Proc::worker("w1", &[&url1, &url2], &args, &[]);
    let mut w2 = Proc::worker("w2", &[&url2, &url1], &args, &[]);
    let _w3 = Proc::worker("w3", &[&url1, &url2], &args, &[]);
    // Listed through S2, although w1 and w3 poll S1: the table is shared.
    wait_for_workers(&mut c2, &["w1", "w2", "w3"]).await;

    // Subscribers on S2 (the server that stays up), on a few connections.
    let mut watchers = Vec::new();
    for _ in 0..3 {
        watchers.push(TestClient::connect(&url2).await);
    }
    let closed = Arc::new(AtomicUsize::new(0));
    let mut running = JoinSet::new();
    for i in 0..100 {
        let starter = if i % 2 == 0 { &mut c1 } else { &mut c2 };
        launch(i, starter, &watchers[i % 3], &closed, &mut running).await;
    }
    let done = closed.clone();
    wait_for("20 closed executions", move || {
        done.load(Ordering::Relaxed) >= 20
    })
    .await;
    // Kill w2 while it holds leases, so its attempts must time out and resume elsewhere.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let workers = wait_for_workers(&mut c2, &["w2"]).await;
        if workers
            .iter()
            .any(|w| w.worker_id == "w2" && w.slots_in_use > 0)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "w2 never held a lease"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    w2.kill();

    for i in 100..200 {
        let starter = if i % 2 == 0 { &mut c1 } else { &mut c2 };
        launch(i, starter, &watchers[i % 3], &closed, &mut running).await;
    }
    // Stop S1 gracefully with work in flight; its workers fail over to S2.
    let status = s1.terminate(Duration::from_secs(60));
    assert!(status.success(), "S1 exits cleanly on SIGTERM: {status:?}");
    for i in 200..250 {
        launch(i, &mut c2, &watchers[i % 3], &closed, &mut running).await;
    }
    let (_s1, _) = Proc::server(&db, &listen1, &["--no-migrate"], &[]);
    let mut c1 = TestClient::connect(&url1).await;
    for i in 250..300 {
        launch(i, &mut c1, &watchers[i % 3], &closed, &mut running).await;
    }

    let mut timed_out = 0;
    let mut finished = 0;
    while let Some(joined) = running.join_next().await {
        let (id, expected, watched) = joined.expect("a subscriber");
        assert_eq!(
            watched.closed.status, "COMPLETED",
            "{id}: {:?}",
            watched.closed
        );
        assert_gapless(&watched.chunks, 1);
        assert_eq!(
            watched.chunks.len() as u64,
            watched.closed.output_length,
            "{id}"
        );
        assert_eq!(watched.text(), expected, "{id}: every chunk exactly once");
        let history = c2.history(&id).await;
        assert_exactly_once(&id, &history);
        timed_out += history
            .iter()
            .filter(|e| e.kind == "ActivityTimedOut")
            .count();
        finished += 1;
    }
    assert_eq!(finished, 300);
    assert!(
        timed_out > 0,
        "the killed worker's attempts timed out and were retried"
    );
}
