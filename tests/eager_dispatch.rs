//! Eager dispatch and wake-one, on both stores: a worker that reports a turn with a slot to spare
//! gets the next turn leased in the same transition (in-process and as a `cairn worker` process
//! over gRPC), a report without a free slot leaves it to the queue, a killed worker's eager task
//! is retried after its lease like any other, a start hands its first task to a sleeping poll
//! (or, with every poll away, to a free slot of the in-process worker's inbox, never to a full
//! one), and a ready task wakes exactly one of many idle long-polls.

#[allow(
    unused_imports,
    reason = "these tests use only part of the shared test code"
)]
mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cairn::api::pb;
use cairn::clock::{Clock, SystemClock};
use cairn::contract::{ActivityOutcome, Assignment, Inbox, PollRequest, Report};
use cairn::domain::{ExecutionStatus, HistoryEvent, Usage, WorkerPolicy};
use cairn::engine::{DirectWorkerApi, Engine, EngineOptions};
use cairn::runtime::{RuntimeRegistry, RuntimeSettings};
use cairn::worker::{Worker, WorkerOptions};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use common::client::{fast_retries, kinds, lease_of, poll_one, start_request};
use common::engine::start_echo;
use common::fleet::{Proc, wait_for_workers};
use common::{Db, TestClient};

crate::on_both_stores!(
    a_ten_turn_execution_runs_turns_two_to_ten_without_a_poll_in_process,
    a_ten_turn_execution_runs_turns_two_to_ten_without_a_poll_on_a_remote_worker,
    a_report_without_a_free_slot_leaves_the_next_task_to_the_queue,
    a_killed_worker_loses_its_eager_task_to_lease_expiry_and_it_is_retried,
    a_ready_task_wakes_one_of_many_idle_polls_and_a_start_hands_its_task_to_one,
    a_start_hands_its_first_task_to_a_free_slot_of_the_in_process_worker,
);

const PROMPTS: [&str; 10] = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"];

/// An engine on `db`'s store (on the wall clock, with no sweeper and no change feed), with an
/// `echo` agent `e`.
async fn engine(db: &Db) -> Arc<Engine> {
    let store = db.store().await;
    let now = SystemClock.now_ms();
    common::db::insert_echo_agent(&*store, "e", now).await;
    Engine::new(store, Arc::new(SystemClock), EngineOptions::default())
}

/// Waits (at most 60 s) until `check` holds; for states that other tasks reach.
async fn wait_for(what: &str, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until the execution has closed; returns its status.
async fn closed(engine: &Engine, id: Uuid) -> ExecutionStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = engine.execution(id).await.unwrap().status;
        if status.is_closed() {
            return status;
        }
        assert!(tokio::time::Instant::now() < deadline, "still {status:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The workers named by the execution's `ActivityStarted` events, in order.
async fn started_by(engine: &Engine, id: Uuid) -> Vec<String> {
    engine
        .full_history(id)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match e {
            HistoryEvent::ActivityStarted { worker, .. } => Some(worker),
            _ => None,
        })
        .collect()
}

fn poll_request(worker: &str, wait: Duration) -> PollRequest {
    PollRequest {
        worker_id: worker.into(),
        runtimes: vec!["echo".into()],
        queue: "default".into(),
        max_tasks: 1,
        slots: 1,
        wait,
        policy: None,
    }
}

fn completed(assignment: &Assignment, accept_next: bool) -> Report {
    Report {
        lease: assignment.lease.clone(),
        first_chunk: Some(0),
        chunks: Vec::new(),
        outcome: ActivityOutcome::Completed {
            output: json!({ "text": "done" }),
            usage: Usage::default(),
            checkpoint: None,
        },
        accept_next,
        workspace: None,
    }
}

async fn a_ten_turn_execution_runs_turns_two_to_ten_without_a_poll_in_process(db: Db) {
    let engine = engine(&db).await;
    let mut options = WorkerOptions::new(
        "inproc",
        RuntimeRegistry::builtin(&RuntimeSettings::default()),
    );
    options.concurrency = 4;
    // One poller, so the polls are counted one at a time.
    options.pollers = 1;
    options.poll_wait = Duration::from_secs(60);
    let worker = Worker::new(Arc::new(DirectWorkerApi::new(engine.clone())), options);
    let stats = worker.stats();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(worker.run(shutdown.clone()));
    let notifier = engine.notifier().clone();
    wait_for("the worker's poll to sleep", || {
        notifier.sleeping_polls() == 1
    })
    .await;

    let id = start_echo(&engine, &PROMPTS).await;
    assert_eq!(closed(&engine, id).await, ExecutionStatus::Completed);
    // Turn 1 went to the worker's inbox (a free slot), turns 2-10 came with reports, and the
    // one poll sleeps on.
    assert_eq!(notifier.sleeping_polls(), 1);
    let (polls, polled, eager) = stats.snapshot();
    assert_eq!(
        (
            polls,
            polled,
            eager,
            stats.inbox_tasks.load(Ordering::Relaxed)
        ),
        (1, 0, 9, 1),
        "turn 1 came through the inbox, turns 2-10 with reports"
    );
    assert_eq!(
        notifier.claim_attempts(),
        1,
        "the poll's one claim, before anything was ready; none for the start"
    );
    assert_eq!(started_by(&engine, id).await, vec!["inproc"; 10]);
    let row = engine.execution(id).await.unwrap();
    assert!(
        row.started_at.is_some(),
        "a start with its task leased is running"
    );

    shutdown.cancel();
    running.await.unwrap();
}

/// The log without ANSI colour codes.
fn plain(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

async fn a_ten_turn_execution_runs_turns_two_to_ten_without_a_poll_on_a_remote_worker(db: Db) {
    let (_server, url) = Proc::server(&db, "127.0.0.1:0", &[], &[]);
    let mut c = TestClient::connect(&url).await;
    c.create_agent("e", "echo", json!({})).await;
    let mut worker = Proc::worker(
        "remote",
        &[&url],
        &["--runtimes", "echo", "--poll-wait-ms", "60000"],
        &[],
    );
    wait_for_workers(&mut c, &["remote"]).await;
    let id = c.start(start_request("e", &PROMPTS)).await;
    let watched = c.watch(&id, 0).await;
    assert_eq!(watched.closed.status, "COMPLETED");
    let history = c.history(&id).await;
    let workers: Vec<_> = history
        .iter()
        .filter(|e| e.kind == "ActivityStarted")
        .map(|e| e.payload["worker"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(workers, vec!["remote"; 10]);

    let status = worker.terminate(Duration::from_secs(30));
    assert!(status.success(), "the worker exits cleanly: {status:?}");
    let stopped = plain(&worker.wait_for_log("worker stopped", Duration::from_secs(5)));
    assert!(
        stopped.contains("polled_tasks=1") && stopped.contains("eager_tasks=9"),
        "turn 1 came with a poll, turns 2-10 with reports: {stopped}"
    );
    assert!(
        stopped.contains("polls=2"),
        "the poll that took turn 1 and the next, still waiting: {stopped}"
    );
}

async fn a_report_without_a_free_slot_leaves_the_next_task_to_the_queue(db: Db) {
    let server = common::Server::start(&db, "server", &[]);
    let mut c = server.client().await;
    c.create_agent("e", "echo", json!({})).await;
    let id = c.start(start_request("e", &["1", "2", "3"])).await;

    let first = poll_one(&mut c).await;
    let done = |task: &pb::Task, accept_next_task| pb::CompleteTaskRequest {
        lease: Some(lease_of(task)),
        output_json: json!({ "text": "ok" }).to_string(),
        accept_next_task,
        ..Default::default()
    };
    let reply = c
        .workers
        .complete_task(done(&first, false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.next_task, None, "no slot offered, no task leased");
    // Turn 2 waits in the queue, for any worker.
    let second = poll_one(&mut c).await;
    assert_eq!(second.activity_id, "turn-2");

    let reply = c
        .workers
        .complete_task(done(&second, true))
        .await
        .unwrap()
        .into_inner();
    let third = reply
        .next_task
        .expect("turn 3, leased to the reporting worker");
    assert_eq!((third.activity_id.as_str(), third.attempt), ("turn-3", 1));
    assert_eq!(third.execution_id, id);
    assert_ne!(third.lease_token, second.lease_token);
    // Nobody else can claim it.
    let other = c
        .workers
        .poll_tasks(pb::PollTasksRequest {
            worker_id: "other".into(),
            runtimes: vec!["echo".into()],
            max_tasks: 1,
            wait_ms: 0,
            policy_json: String::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(other.tasks.is_empty(), "turn 3 is leased: {other:?}");
    let running = c.get(&id).await;
    let activity = running.activity.expect("turn 3 is open");
    assert_eq!(
        (activity.activity_id.as_str(), activity.worker.as_str()),
        ("turn-3", "test-worker")
    );
    // Fenced like any lease: a wrong token is refused, the right one completes.
    let mut forged = done(&third, true);
    forged.lease.as_mut().unwrap().lease_token = "forged".into();
    let refused = c.workers.complete_task(forged).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    let reply = c
        .workers
        .complete_task(done(&third, true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.next_task, None, "the execution is done");

    let watched = c.watch(&id, 0).await;
    assert_eq!(watched.closed.status, "COMPLETED");
    let history = c.history(&id).await;
    let started: Vec<_> = history
        .iter()
        .filter(|e| e.kind == "ActivityStarted")
        .map(|e| e.payload["worker"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(started, ["test-worker"; 3]);
}

async fn a_killed_worker_loses_its_eager_task_to_lease_expiry_and_it_is_retried(db: Db) {
    let (_server, url) = Proc::server(&db, "127.0.0.1:0", &[], &[]);
    let mut c = TestClient::connect(&url).await;
    let chunks: Vec<String> = (0..8).map(|i| format!("c{i} ")).collect();
    c.create_agent("slow", "echo", json!({ "chunks": chunks, "delay_ms": 250 }))
        .await;
    let mut doomed = Proc::worker("doomed", &[&url], &["--runtimes", "echo"], &[]);
    wait_for_workers(&mut c, &["doomed"]).await;
    let mut request = start_request("slow", &["1", "2"]);
    request.retry_policy = Some(fast_retries(3));
    request.timeouts = Some(pb::Timeouts {
        heartbeat_ms: 2_000,
        ..Default::default()
    });
    let id = c.start(request).await;
    // Turn 2 is leased to the doomed worker the moment it reports turn 1.
    c.wait_until(&id, "turn 2 running on the doomed worker", |e| {
        e.activity
            .as_ref()
            .is_some_and(|a| a.activity_id == "turn-2" && a.worker == "doomed")
    })
    .await;
    doomed.kill();
    let _rescuer = Proc::worker("rescuer", &[&url], &["--runtimes", "echo"], &[]);

    let watched = c.watch(&id, 0).await;
    assert_eq!(watched.closed.status, "COMPLETED");
    let history = c.history(&id).await;
    let kinds = kinds(&history);
    assert_eq!(
        kinds.iter().filter(|k| **k == "ExecutionCompleted").count(),
        1
    );
    let timed_out: Vec<_> = history
        .iter()
        .filter(|e| e.kind == "ActivityTimedOut")
        .map(|e| {
            (
                e.payload["activity_id"].clone(),
                e.payload["attempt"].clone(),
            )
        })
        .collect();
    assert_eq!(timed_out, [(json!("turn-2"), json!(1))]);
    let started: Vec<_> = history
        .iter()
        .filter(|e| e.kind == "ActivityStarted")
        .map(|e| {
            (
                e.payload["activity_id"].as_str().unwrap().to_string(),
                e.payload["worker"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        started.last().unwrap(),
        &("turn-2".to_string(), "rescuer".to_string())
    );
    assert_eq!(started[0], ("turn-1".to_string(), "doomed".to_string()));
}

async fn a_ready_task_wakes_one_of_many_idle_polls_and_a_start_hands_its_task_to_one(db: Db) {
    const K: usize = 5;
    let engine = engine(&db).await;
    let notifier = engine.notifier().clone();
    // Turn 1 is claimed by a worker that will not take turn 2.
    let id = start_echo(&engine, &["1", "2"]).await;
    let mut first = engine
        .poll(
            &poll_request("first", Duration::ZERO),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    let first = first.remove(0);

    let stop = CancellationToken::new();
    let spawn_polls = |n: usize, from: usize| {
        (from..from + n)
            .map(|i| {
                let engine = engine.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let request = poll_request(&format!("idle-{i}"), Duration::from_secs(60));
                    engine.poll(&request, &stop).await.unwrap()
                })
            })
            .collect::<Vec<_>>()
    };
    let mut polls = spawn_polls(K, 0);
    wait_for("K polls to sleep", || notifier.sleeping_polls() == K).await;
    let claims = notifier.claim_attempts();

    // No free slot offered: turn 2 goes to the queue and wakes one poll.
    assert_eq!(engine.report(completed(&first, false)).await.unwrap(), None);
    let (got, index, rest) = futures::future::select_all(polls).await;
    let got = got.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].lease.activity_id, "turn-2");
    assert_eq!(
        notifier.claim_attempts(),
        claims + 1,
        "one claim, by the woken poll"
    );
    assert_eq!(notifier.sleeping_polls(), K - 1, "the others sleep on");
    polls = rest;
    assert!(index < K);

    // A start with polls sleeping leases its first task to one of them: no claim at all.
    let claims = notifier.claim_attempts();
    let second = start_echo(&engine, &["1"]).await;
    let (got, _, rest) = futures::future::select_all(polls).await;
    let got = got.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].lease.execution_id, second);
    assert_eq!(
        notifier.claim_attempts(),
        claims,
        "handed over, not claimed"
    );
    assert_eq!(notifier.sleeping_polls(), K - 2);
    assert_eq!(
        engine.execution(second).await.unwrap().status,
        ExecutionStatus::Running
    );

    stop.cancel();
    for poll in rest {
        assert!(poll.await.unwrap().is_empty());
    }
    assert_eq!(
        notifier.claim_attempts(),
        claims,
        "stopped, not woken to claim"
    );
    engine.report(completed(&got[0], false)).await.unwrap();
    assert_eq!(closed(&engine, second).await, ExecutionStatus::Completed);
    let _ = id;
}

async fn a_start_hands_its_first_task_to_a_free_slot_of_the_in_process_worker(db: Db) {
    let clock = common::engine::echo_agent_at_t0(&db).await;
    let engine = common::engine::engine_on(&db, &clock).await;
    let slots = Arc::new(tokio::sync::Semaphore::new(1));
    let (deliver, mut inbox) = tokio::sync::mpsc::unbounded_channel();
    engine.attach_inbox(Inbox {
        worker_id: "inproc".into(),
        runtimes: vec!["echo".into()],
        queue: "default".into(),
        policy: WorkerPolicy::default(),
        slots: slots.clone(),
        deliver,
    });
    let claims = engine.notifier().claim_attempts();

    // No poll sleeps, the worker has a free slot: the first task is leased in the start's own
    // transaction and handed over with the slot.
    let first = start_echo(&engine, &["1"]).await;
    let (handed, slot) = inbox.try_recv().expect("handed to the inbox");
    assert_eq!(handed.lease.execution_id, first);
    assert_eq!(slots.available_permits(), 0, "it took the free slot");
    assert_eq!(
        engine.execution(first).await.unwrap().status,
        ExecutionStatus::Running
    );

    // No free slot: the next start's task goes to the queue, where a poll claims it.
    let second = start_echo(&engine, &["2"]).await;
    assert!(inbox.try_recv().is_err(), "a full worker gets nothing");
    assert_eq!(
        engine.execution(second).await.unwrap().status,
        ExecutionStatus::Pending
    );
    assert_eq!(
        engine.notifier().claim_attempts(),
        claims,
        "the handed task was not claimed"
    );
    let claimed = common::engine::claim_one(&engine).await;
    assert_eq!(claimed.lease.execution_id, second);

    // The worker dies with the handed task: it is retried after its lease, like any other.
    drop(slot);
    drop(inbox);
    clock.advance(30_000);
    engine.sweep(64).await.unwrap();
    let events = engine.full_history(first).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, HistoryEvent::ActivityTimedOut { attempt: 1, .. })),
        "{events:?}"
    );
    clock.advance(60_000);
    engine.sweep(64).await.unwrap();
    // A start while the worker no longer listens: its task is released at once, not lost.
    let third = start_echo(&engine, &["3"]).await;
    let mut ready: Vec<Uuid> = common::engine::claim(&engine)
        .await
        .into_iter()
        .map(|a| {
            if a.lease.execution_id != third {
                assert_eq!(a.lease.attempt, 2, "the retry of a lost attempt");
            }
            a.lease.execution_id
        })
        .collect();
    ready.sort();
    // The first (lost with the worker) and the second (claimed by `w`, which never reported)
    // are retried; the third was released.
    let mut expected = vec![first, second, third];
    expected.sort();
    assert_eq!(ready, expected);
}
