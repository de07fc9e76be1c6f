//! Output after a crash reads once: a `cairn worker` killed in the middle of a streamed
//! `default` answer leaves the answer's first pieces in the output; the retry, on another worker,
//! streams the whole answer again from the last checkpoint. `cairn exec watch` prints the answer
//! once; `--raw` (and a stream that asks for superseded chunks) still shows every chunk.

#[allow(
    unused_imports,
    reason = "these tests start processes their own way, not through common::Server"
)]
mod common;
mod fake_openai;

use std::process::{Command, Stdio};

use cairn::api::pb;
use common::client::{fast_retries, start_request};
use common::fleet::Proc;
use common::server::cairn_bin;
use common::{Db, TestClient};
use fake_openai::{FakeOpenAi, Reply};
use serde_json::json;

fn worker(id: &str, url: &str, model: &FakeOpenAi) -> Proc {
    let base = model.base_url();
    Proc::worker(
        id,
        &[url],
        &["--openai-base-url", &base, "--openai-api-key-env", ""],
        &[],
    )
}

fn cairn_watch(url: &str, id: &str, extra: &[&str]) -> String {
    let output = Command::new(cairn_bin())
        .args(["exec", "watch", id])
        .args(extra)
        .env("CAIRN_SERVER", url)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run cairn exec watch");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A model whose first answer streams half, then stalls until its worker dies; the second
/// streams the whole answer.
async fn answer_after_a_stall() -> FakeOpenAi {
    let model = FakeOpenAi::start().await;
    model.push(
        Reply::stream()
            .role()
            .content("The answer ")
            .content("is forty")
            .hang(),
    );
    model.push(Reply::text(&["The answer ", "is forty", "-two."]));
    model
}

/// Runs execution `id` on worker-a until half its answer is out, kills worker-a, and lets
/// worker-b retry it to completion; returns worker-b.
async fn crash_mid_answer(c: &mut TestClient, url: &str, model: &FakeOpenAi, id: &str) -> Proc {
    let mut worker_a = worker("worker-a", url, model);
    c.wait_until(id, "the first half of the answer", |e| e.output_length >= 2)
        .await;
    worker_a.kill();
    let worker_b = worker("worker-b", url, model);
    let closed = c.watch(id, 0).await.closed;
    assert_eq!(closed.status, "COMPLETED");
    worker_b
}

async fn a_retried_answer_reads_once_after_its_worker_was_killed_mid_stream(db: Db) {
    let model = answer_after_a_stall().await;
    let (_server, url) = Proc::server(&db, "127.0.0.1:0", &[], &[]);
    let mut c = TestClient::connect(&url).await;
    c.create_model_agent("answerer", "gpt-test", json!({}))
        .await;
    let mut request = start_request("answerer", &["what is the answer?"]);
    request.retry_policy = Some(fast_retries(3));
    request.timeouts = Some(pb::Timeouts {
        heartbeat_ms: 1_000,
        ..Default::default()
    });
    let id = c.start(request).await;

    // After the retry (a reader following live has seen attempt 1's pieces as they came).
    let _worker_b = crash_mid_answer(&mut c, &url, &model, &id).await;
    let watched = cairn_watch(&url, &id, &[]);
    assert_eq!(
        watched.trim_end(),
        "The answer is forty-two.",
        "the answer once, as the retry streamed it"
    );
    let raw = cairn_watch(&url, &id, &["--raw"]);
    assert_eq!(
        raw.trim_end(),
        "The answer is fortyThe answer is forty-two.",
        "a raw reader sees every chunk"
    );

    let stream = |include_superseded| pb::StreamExecutionRequest {
        id: id.clone(),
        after_seq: 0,
        include_superseded,
    };
    let mut all = Vec::new();
    let mut response = c
        .executions
        .stream_execution(stream(true))
        .await
        .unwrap()
        .into_inner();
    while let Some(message) = response.message().await.unwrap() {
        if let Some(pb::stream_execution_response::Event::Chunk(chunk)) = message.event {
            all.push(chunk);
        }
    }
    let superseded: Vec<(u32, bool)> = all
        .iter()
        .filter(|ch| ch.kind == "text")
        .map(|ch| (ch.attempt, ch.superseded))
        .collect();
    assert_eq!(
        superseded,
        [(1, true), (1, true), (2, false), (2, false), (2, false)],
        "attempt 1's pieces are marked, attempt 2's are not"
    );
    assert_eq!(model.requests().len(), 2);
}

/// The same crash inside a team: the team's stream, which carries a copy of each member's chunks,
/// reads the answer once too.
async fn a_team_reads_its_members_retried_answer_once(db: Db) {
    let model = answer_after_a_stall().await;
    let (_server, url) = Proc::server(&db, "127.0.0.1:0", &[], &[]);
    let mut c = TestClient::connect(&url).await;
    c.create_model_agent("answerer", "gpt-test", json!({}))
        .await;
    cairn::api::pb::team_service_client::TeamServiceClient::new(c.channel.clone())
        .create_team(pb::CreateTeamRequest {
            name: "solo".into(),
            strategy: "sequential".into(),
            members: vec![pb::TeamMember {
                agent: "answerer".into(),
                role: "answers".into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .expect("create team");
    let id = c
        .start(pb::StartExecutionRequest {
            team: "solo".into(),
            prompt: "what is the answer?".into(),
            retry_policy: Some(fast_retries(3)),
            timeouts: Some(pb::Timeouts {
                heartbeat_ms: 1_000,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;

    // After the retry (a reader following live has seen attempt 1's pieces as they came).
    let _worker_b = crash_mid_answer(&mut c, &url, &model, &id).await;
    let watched = cairn_watch(&url, &id, &[]);
    assert!(
        watched.contains("The answer is forty-two.") && !watched.contains("fortyThe"),
        "the team's stream shows the member's answer once: {watched:?}"
    );
    let raw = cairn_watch(&url, &id, &["--raw"]);
    assert!(
        raw.contains("The answer is fortyThe answer is forty-two."),
        "a raw reader of the team sees every chunk: {raw:?}"
    );
}

on_both_stores!(
    a_retried_answer_reads_once_after_its_worker_was_killed_mid_stream,
    a_team_reads_its_members_retried_answer_once
);
