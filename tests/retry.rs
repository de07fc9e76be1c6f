//! Replay and retry of executions through a real `cairn` process, on SQLite and PostgreSQL: a
//! retry reuses the completed turns (the runtime sees only the rest, with the checkpoint the
//! last reused turn ended with), its stream starts with the reused output, its options, what it
//! refuses, and replay reporting where a tampered history parts from the code.

mod common;

#[path = "retry/refusals.rs"]
mod refusals;
#[path = "retry/replay.rs"]
mod replay;

use cairn::api::pb;
use common::client::{TestClient, fast_retries, kinds, start_request, text_of};
use common::{Db, Server};
use serde_json::{Value, json};

/// Points `agent` at a new `runtime_config`, as a user fixing a misconfiguration would.
pub async fn reconfigure(c: &mut TestClient, agent: &str, runtime_config: Value) {
    c.agents
        .update_agent(pb::UpdateAgentRequest {
            agent: agent.into(),
            configuration_json: Some(json!({ "runtime_config": runtime_config }).to_string()),
            ..Default::default()
        })
        .await
        .expect("update agent");
}

/// Retries `id` with `request`'s options.
pub async fn retry(
    c: &mut TestClient,
    request: pb::RetryExecutionRequest,
) -> pb::RetryExecutionResponse {
    c.executions
        .retry_execution(request)
        .await
        .expect("retry")
        .into_inner()
}

/// A retry of `id` with no options.
pub fn plain(id: &str) -> pb::RetryExecutionRequest {
    pb::RetryExecutionRequest {
        id: id.into(),
        ..Default::default()
    }
}

/// The result JSON of a closed execution.
fn result_of(e: &pb::Execution) -> Value {
    serde_json::from_str(&e.result_json).expect("a result")
}

async fn a_retry_runs_only_the_failed_turn_from_the_last_checkpoint(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    // Turn 3 fails for good after sending one chunk, like a tool that is misconfigured.
    let broken = json!({ "fail_turns": [3], "fail_retryable": false, "fail_after_chunks": 1 });
    c.create_agent("three-step", "echo", broken).await;
    let mut request = start_request("three-step", &["one ", "two ", "three four"]);
    request.labels = [("user".to_string(), "ada".to_string())].into();
    let original = c.start(request).await;
    let failed = c.watch(&original, 0).await;
    assert_eq!(failed.closed.status, "FAILED");
    assert!(!failed.closed.failure.as_ref().unwrap().retryable);
    assert_eq!(failed.text(), "one two three ");

    reconfigure(&mut c, "three-step", json!({})).await;
    let retried = retry(&mut c, plain(&original)).await;
    assert!(retried.created);
    assert_eq!(retried.reused_turns, 2);
    let id = retried.execution_id;
    let watched = c.watch(&id, 0).await;
    assert_eq!(watched.closed.status, "COMPLETED");
    assert_eq!(watched.closed.retry_of, original);
    assert_eq!(watched.closed.labels["user"], "ada", "labels carry over");

    // What the runtime was called with: turn 3 only, first attempt, from turn 2's checkpoint.
    let result = result_of(&watched.closed);
    assert_eq!(result["turn"], 3);
    assert_eq!(result["attempt"], 1);
    assert_eq!(result["turns_completed_before"], 2);
    assert_eq!(result["resumed_from_chunk"], 0);
    let usage = watched.closed.usage.unwrap();
    assert_eq!(
        (usage.input_tokens, usage.output_tokens),
        (4, 4),
        "the reused turns' usage counts"
    );

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
    assert_eq!(history[1].payload["activity_id"], "turn-3");
    let start = &history[0].payload;
    assert_eq!(start["resume"]["retry_of"], original.as_str());
    assert_eq!(start["resume"]["turns"].as_array().unwrap().len(), 2);
    assert_eq!(
        start["agent"]["configuration"]["runtime_config"],
        json!({}),
        "the retry runs, and records, the agent as it is now"
    );

    // Its stream from seq 0: the reused turns' output (not the failed attempt's), marked with
    // where it came from, then its own.
    assert_eq!(watched.text(), "one two three four");
    let tagged: Vec<(&str, &str)> = watched
        .chunks
        .iter()
        .map(|ch| (ch.activity_id.as_str(), ch.reused_from.as_str()))
        .collect();
    let o = original.as_str();
    assert_eq!(
        tagged,
        [("turn-1", o), ("turn-2", o), ("turn-3", ""), ("turn-3", "")]
    );
    common::client::assert_gapless(&watched.chunks, 1);
    assert!(failed.chunks.iter().all(|ch| ch.reused_from.is_empty()));

    for (execution, status) in [(&original, "FAILED"), (&id, "COMPLETED")] {
        let replayed = c
            .executions
            .replay_execution(pb::ReplayExecutionRequest {
                id: execution.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(replayed.ok, "{replayed:?}");
        assert_eq!(replayed.status, status);
    }

    // Retrying again finds the first retry; --force makes another.
    let again = retry(&mut c, plain(&original)).await;
    assert!(!again.created);
    assert_eq!(
        (again.execution_id.as_str(), again.reused_turns),
        (id.as_str(), 2)
    );
    let mut forced = plain(&original);
    forced.force = true;
    let forced = retry(&mut c, forced).await;
    assert!(forced.created);
    assert_ne!(forced.execution_id, id);
    assert_eq!(
        c.watch(&forced.execution_id, 0).await.closed.status,
        "COMPLETED"
    );
    assert!(!retry(&mut c, plain(&original)).await.created);
}

async fn a_retry_can_start_earlier_change_a_prompt_or_change_the_retry_policy(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    c.create_agent(
        "late-fail",
        "echo",
        json!({ "fail_turns": [3], "fail_retryable": false }),
    )
    .await;
    let original = c
        .start(start_request("late-fail", &["one ", "two ", "three"]))
        .await;
    assert_eq!(c.watch(&original, 0).await.closed.status, "FAILED");
    reconfigure(&mut c, "late-fail", json!({})).await;
    let history = c.history(&original).await;
    let second_done = history
        .iter()
        .filter(|e| e.kind == "ActivityCompleted")
        .nth(1)
        .unwrap()
        .seq;

    // From the event where turn 2 completed: only turn 1 is reused.
    let mut from = plain(&original);
    from.from_seq = second_done;
    let from = retry(&mut c, from).await;
    assert_eq!(from.reused_turns, 1);
    let watched = c.watch(&from.execution_id, 0).await;
    assert_eq!(watched.text(), "one two three");
    let scheduled: Vec<Value> = c
        .history(&from.execution_id)
        .await
        .into_iter()
        .filter(|e| e.kind == "ActivityScheduled")
        .map(|e| e.payload["activity_id"].clone())
        .collect();
    assert_eq!(scheduled, [json!("turn-2"), json!("turn-3")]);

    // A new prompt for turn 2 runs turn 2 again with it, and everything after it.
    let mut edited = plain(&original);
    edited.prompts = [(2, "TWO ".to_string())].into();
    edited.force = true;
    let edited = retry(&mut c, edited).await;
    assert_eq!(edited.reused_turns, 1);
    let watched = c.watch(&edited.execution_id, 0).await;
    assert_eq!(watched.text(), "one TWO three");
    let got = c.get(&edited.execution_id).await;
    assert_eq!(
        serde_json::from_str::<Value>(&got.input_json).unwrap()["prompts"][1],
        "TWO "
    );

    // A first attempt that always fails, under a policy that allowed one attempt: a retry with
    // more attempts gets through without any change to the agent.
    c.create_agent("flaky-once", "echo", json!({ "fail_attempts": [1] }))
        .await;
    let mut once = start_request("flaky-once", &["a ", "b"]);
    once.retry_policy = Some(fast_retries(1));
    let once = c.start(once).await;
    assert_eq!(c.watch(&once, 0).await.closed.status, "FAILED");
    let mut patient = plain(&once);
    patient.retry_policy = Some(fast_retries(3));
    let patient = retry(&mut c, patient).await;
    let watched = c.watch(&patient.execution_id, 0).await;
    assert_eq!(watched.closed.status, "COMPLETED");
    assert_eq!(text_of(&watched.chunks), "a b");
    let start = &c.history(&patient.execution_id).await[0].payload;
    assert_eq!(start["retry_policy"]["maximum_attempts"], 3);
}

async fn a_cancelled_execution_is_retried_from_its_last_completed_turn(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    c.create_agent("slow", "echo", json!({ "delay_ms": 200 }))
        .await;
    let id = c
        .start(start_request("slow", &["one ", "two three four five six"]))
        .await;
    c.wait_until(&id, "turn 2 under way", |e| {
        e.output_length >= 2
            && e.activity
                .as_ref()
                .is_some_and(|a| a.activity_id == "turn-2")
    })
    .await;
    c.executions
        .cancel_execution(pb::CancelExecutionRequest {
            id: id.clone(),
            reason: "change of plan".into(),
        })
        .await
        .unwrap();
    assert_eq!(c.watch(&id, 0).await.closed.status, "CANCELED");

    reconfigure(&mut c, "slow", json!({})).await;
    let retried = retry(&mut c, plain(&id)).await;
    assert_eq!(retried.reused_turns, 1);
    let watched = c.watch(&retried.execution_id, 0).await;
    assert_eq!(watched.closed.status, "COMPLETED");
    assert_eq!(
        watched.text(),
        "one two three four five six",
        "turn 2 runs whole again; its cancelled attempt's output is not reused"
    );
    assert_eq!(result_of(&watched.closed)["turns_completed_before"], 1);
}

on_both_stores!(
    a_retry_runs_only_the_failed_turn_from_the_last_checkpoint,
    a_retry_can_start_earlier_change_a_prompt_or_change_the_retry_policy,
    a_cancelled_execution_is_retried_from_its_last_completed_turn,
);
