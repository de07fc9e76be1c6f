//! `cairn exec retry`, `cairn exec replay` and `cairn exec history --json` against a real
//! server: a bulk retry run twice at once retries every failed execution exactly once, a single
//! retry streams the reused output then its own, and an exported history replays from its file.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};

use cairn::api::pb;
use common::client::{TestClient, fast_retries, start_request};
use common::server::cairn_bin;
use common::{Db, Server};
use serde_json::{Value, json};

fn cairn(server: &Server, args: &[&str]) -> Output {
    Command::new(cairn_bin())
        .args(args)
        .env("CAIRN_SERVER", &server.url)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run cairn")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn succeeded(output: &Output) -> &Output {
    assert!(
        output.status.success(),
        "cairn failed ({}): {}{}",
        output.status,
        stdout(output),
        stderr(output)
    );
    output
}

async fn reconfigure(c: &mut TestClient, agent: &str, runtime_config: Value) {
    c.agents
        .update_agent(pb::UpdateAgentRequest {
            agent: agent.into(),
            configuration_json: Some(json!({ "runtime_config": runtime_config }).to_string()),
            ..Default::default()
        })
        .await
        .expect("update agent");
}

async fn every_execution(c: &mut TestClient) -> Vec<pb::Execution> {
    c.executions
        .list_executions(pb::ListExecutionsRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .executions
}

async fn a_bulk_retry_run_twice_at_once_retries_each_failed_execution_once(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    c.create_agent(
        "bulk",
        "echo",
        json!({ "fail_turns": [1], "fail_retryable": false }),
    )
    .await;
    c.create_agent("bystander", "echo", json!({})).await;
    let mut failed = Vec::new();
    for i in 0..50 {
        failed.push(c.start_simple("bulk", &format!("task {i}")).await);
    }
    let fine = c.start_simple("bystander", "fine").await;
    for id in &failed {
        c.wait_until(id, "the failure", |e| e.status == "FAILED")
            .await;
    }
    c.wait_until(&fine, "completion", |e| e.status == "COMPLETED")
        .await;
    reconfigure(&mut c, "bulk", json!({})).await;

    let bulk = [
        "--json", "exec", "retry", "--status", "failed", "--since", "1h",
    ];
    let spawn = || {
        Command::new(cairn_bin())
            .args(bulk)
            .env("CAIRN_SERVER", &server.url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cairn")
    };
    let (first, second) = (spawn(), spawn());
    let runs = [first, second].map(|run| run.wait_with_output().unwrap());
    let summaries: Vec<Value> = runs
        .iter()
        .map(|run| serde_json::from_str(&stdout(succeeded(run))).unwrap())
        .collect();
    let count = |key: &str| -> usize {
        summaries
            .iter()
            .map(|s| s[key].as_array().unwrap().len())
            .sum()
    };
    assert_eq!(count("retried"), 50, "{summaries:?}");
    assert_eq!(
        count("skipped"),
        50,
        "each run skips what the other retried"
    );
    assert_eq!(count("errors"), 0);
    assert!(
        stderr(&runs[0]).contains("[ 1/50]") || stderr(&runs[0]).contains("[1/50]"),
        "progress is shown: {}",
        stderr(&runs[0])
    );

    let mut retries: BTreeMap<String, usize> = BTreeMap::new();
    for e in every_execution(&mut c).await {
        if !e.retry_of.is_empty() {
            *retries.entry(e.retry_of).or_default() += 1;
        }
    }
    let mut expected: Vec<&String> = failed.iter().collect();
    expected.sort();
    assert_eq!(retries.keys().collect::<Vec<_>>(), expected);
    assert!(
        retries.values().all(|n| *n == 1),
        "each failed execution is retried exactly once: {retries:?}"
    );

    // A third run retries nothing; every retry completes.
    let third: Value = serde_json::from_str(&stdout(succeeded(&cairn(&server, &bulk)))).unwrap();
    assert_eq!(third["retried"], json!([]));
    for e in every_execution(&mut c).await {
        if !e.retry_of.is_empty() {
            c.wait_until(&e.id, "the retry", |e| e.status == "COMPLETED")
                .await;
        }
    }
    let refused = cairn(&server, &["exec", "retry", "--status", "completed"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("only failed or canceled"),
        "{}",
        stderr(&refused)
    );
}

async fn a_single_retry_streams_reused_output_then_its_own(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    c.create_agent(
        "second-fails",
        "echo",
        json!({ "fail_turns": [2], "fail_retryable": false }),
    )
    .await;
    let original = c
        .start(start_request("second-fails", &["first ", "second"]))
        .await;
    assert_eq!(c.watch(&original, 0).await.closed.status, "FAILED");
    let done = c.start_simple("second-fails", "x").await;
    assert_eq!(c.watch(&done, 0).await.closed.status, "COMPLETED");

    let refused = cairn(&server, &["exec", "retry", &done]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("only FAILED or CANCELED executions can be retried"),
        "{}",
        stderr(&refused)
    );

    reconfigure(&mut c, "second-fails", json!({})).await;
    let run = cairn(&server, &["exec", "retry", &original]);
    assert_eq!(stdout(succeeded(&run)).trim_end(), "first second");
    let said = stderr(&run);
    assert!(said.contains("reusing 1 completed turn"), "{said}");
    assert!(
        said.contains(&format!("[output reused from execution {original}]")),
        "{said}"
    );
    assert!(said.contains("COMPLETED"), "{said}");

    let again = cairn(&server, &["exec", "retry", &original, "--detach"]);
    let retry = stdout(succeeded(&again)).trim().to_string();
    assert_eq!(c.get(&retry).await.retry_of, original);
    let again = cairn(&server, &["exec", "retry", &original]);
    assert!(
        stderr(&again).contains("already retried"),
        "{}",
        stderr(&again)
    );
}

async fn an_exported_history_replays_from_its_file(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    c.create_agent("flaky", "echo", json!({ "fail_attempts": [1] }))
        .await;
    let mut request = start_request("flaky", &["one ", "two"]);
    request.retry_policy = Some(fast_retries(3));
    let id = c.start(request).await;
    assert_eq!(c.watch(&id, 0).await.closed.status, "COMPLETED");

    let exported = stdout(succeeded(&cairn(
        &server,
        &["--json", "exec", "history", &id],
    )));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("history.json");
    std::fs::write(&file, &exported).unwrap();
    let file = file.to_str().unwrap();
    // No server is needed to replay a file: point the client at nothing.
    let offline = |args: &[&str]| {
        Command::new(cairn_bin())
            .args(args)
            .env("CAIRN_SERVER", "http://127.0.0.1:1")
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let ok = offline(&["exec", "replay", "--file", file]);
    assert!(stdout(succeeded(&ok)).starts_with("OK"), "{}", stdout(&ok));
    let ok = cairn(&server, &["exec", "replay", &id]);
    assert!(
        stdout(succeeded(&ok)).contains("ends COMPLETED"),
        "{}",
        stdout(&ok)
    );

    // The export is what the recorded histories are: it names the execution (retry jitter is
    // derived from it) and round-trips exactly.
    let mut history: Value = serde_json::from_str(&exported).unwrap();
    assert_eq!(history["execution_id"], id.as_str());
    assert_eq!(history["kind"], "agent");
    let parsed: cairn::domain::RecordedHistory = serde_json::from_str(&exported).unwrap();
    assert_eq!(
        serde_json::to_string_pretty(&parsed).unwrap(),
        exported.trim_end()
    );

    let timer = history["events"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["type"] == "TimerStarted")
        .unwrap();
    let seq = timer["seq"].as_u64().unwrap();
    timer["jitter_ms"] = json!(timer["jitter_ms"].as_u64().unwrap() + 1);
    std::fs::write(dir.path().join("tampered.json"), history.to_string()).unwrap();
    let tampered = dir.path().join("tampered.json");
    let diverged = offline(&["exec", "replay", "--file", tampered.to_str().unwrap()]);
    assert_eq!(diverged.status.code(), Some(1), "{}", stderr(&diverged));
    assert!(
        stdout(&diverged).contains(&format!("DIVERGES {} at seq {seq}", tampered.display())),
        "{}",
        stdout(&diverged)
    );
    let verdict: Value = serde_json::from_slice(
        &offline(&[
            "--json",
            "exec",
            "replay",
            "--file",
            tampered.to_str().unwrap(),
        ])
        .stdout,
    )
    .unwrap();
    assert_eq!(verdict["divergence"]["seq"], seq);

    let golden = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/histories/agent/retried_after_a_failed_turn.json"
    );
    succeeded(&offline(&["exec", "replay", "--file", golden]));
    let not_a_history = offline(&[
        "exec",
        "replay",
        "--file",
        golden.replace(".json", ".nope").as_str(),
    ]);
    assert_eq!(not_a_history.status.code(), Some(2));
}

on_both_stores!(
    a_bulk_retry_run_twice_at_once_retries_each_failed_execution_once,
    a_single_retry_streams_reused_output_then_its_own,
    an_exported_history_replays_from_its_file,
);
