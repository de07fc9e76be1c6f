//! `cairn stats --json` after a mixed run on both stores: executions that completed, failed and
//! were canceled, on the `echo` runtime and on `default` against the suite's fake OpenAI server
//! (one of them calling a tool through a real MCP server). The stats must equal, exactly, the
//! counts and sums computed here from what the test started and what each execution recorded;
//! and the same after the server restarts, since they come from the database.

mod common;
mod fake_openai;

use std::collections::BTreeMap;
use std::process::Command;

use cairn::api::pb;
use common::client::{fast_retries, start_request};
use common::server::cairn_bin;
use common::{Db, Server, TestClient, filesystem_server};
use fake_openai::{FakeOpenAi, Reply};
use serde_json::{Value, json};

on_both_stores!(stats_match_what_ran, stats_by_agent_and_model);

/// `cairn stats --json <args>` against `server`.
fn stats(server: &Server, args: &[&str]) -> Value {
    let out = Command::new(cairn_bin())
        .args(["stats", "--json", "--server", &server.url])
        .args(args)
        .output()
        .expect("run cairn stats");
    assert!(
        out.status.success(),
        "cairn stats failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cairn stats --json prints JSON")
}

async fn closed(c: &mut TestClient, id: &str) -> pb::Execution {
    c.wait_until(id, "the execution to close", |e| {
        matches!(e.status.as_str(), "COMPLETED" | "FAILED" | "CANCELED")
    })
    .await
}

/// Starts `agent` with one attempt per turn and waits until it closes.
async fn run_once(c: &mut TestClient, agent: &str) -> pb::Execution {
    let mut request = start_request(agent, &["go"]);
    request.retry_policy = Some(fast_retries(1));
    let id = c.start(request).await;
    closed(c, &id).await
}

/// What the test ran: every execution as it closed, and the agents it archived.
struct Ran {
    executions: Vec<(String, pb::Execution)>,
}

/// The mixed run: on `echo`, two completed, one failed, one canceled; on `default`, one that
/// calls a tool and answers, one plain answer with a cost, and one failed model call. One echo
/// agent is archived afterwards.
async fn mixed_run(server: &Server, fake: &FakeOpenAi) -> Ran {
    let mut c = server.client().await;
    c.create_agent("hello", "echo", json!({})).await;
    c.create_agent(
        "broken",
        "echo",
        json!({"fail_attempts": [1], "fail_retryable": false}),
    )
    .await;
    c.create_agent("slow", "echo", json!({"delay_ms": 60_000}))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().canonicalize().unwrap();
    let notes = dir_path.join("notes.txt");
    std::fs::write(&notes, "buy milk\n").unwrap();
    let mcp = json!({"mcp_servers": {"files": {
        "command": "node", "args": [filesystem_server().to_str().unwrap(), dir_path.to_str().unwrap()]
    }}});
    c.create_model_agent("reader", "model-a", mcp).await;
    c.create_model_agent("writer", "model-b", json!({})).await;

    let mut executions = Vec::new();
    for agent in ["hello", "hello", "broken"] {
        executions.push((agent.to_string(), run_once(&mut c, agent).await));
    }
    let slow = c.start_simple("slow", "wait").await;
    c.wait_until(&slow, "the slow attempt to run", |e| e.status == "RUNNING")
        .await;
    c.executions
        .cancel_execution(pb::CancelExecutionRequest {
            id: slow.clone(),
            reason: "enough".into(),
        })
        .await
        .expect("cancel");
    executions.push(("slow".into(), closed(&mut c, &slow).await));

    // One model call asking for the tool (20 in, 5 out), one answering (10 in, 2 out).
    let path = serde_json::to_string(notes.to_str().unwrap()).unwrap();
    fake.push(Reply::tool_call(
        "call_1",
        "read_text_file",
        &["{\"path\":", &path, "}"],
    ));
    fake.push(Reply::text(&["You need ", "milk."]));
    executions.push(("reader".into(), run_once(&mut c, "reader").await));
    fake.push(Reply::text(&["done"]).header("x-litellm-response-cost", "0.25"));
    executions.push(("writer".into(), run_once(&mut c, "writer").await));
    fake.push(Reply::error(400, "bad request"));
    executions.push(("writer".into(), run_once(&mut c, "writer").await));

    c.agents
        .archive_agent(pb::ArchiveAgentRequest {
            agent: "slow".into(),
            ..Default::default()
        })
        .await
        .expect("archive");
    Ran { executions }
}

/// Linear interpolation at `(n - 1) * p` over sorted values, as `percentile_cont`.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let at = (sorted.len() - 1) as f64 * p;
    let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (at - lo as f64)
}

/// The stats of each group, computed from the executions themselves.
fn expected(ran: &Ran, key: impl Fn(&str, &pb::Execution) -> String) -> BTreeMap<String, Value> {
    let mut groups: BTreeMap<String, Vec<&pb::Execution>> = BTreeMap::new();
    for (agent, e) in &ran.executions {
        groups.entry(key(agent, e)).or_default().push(e);
    }
    groups
        .into_iter()
        .map(|(k, es)| {
            let count = |s: &str| es.iter().filter(|e| e.status == s).count() as u64;
            let usage = |f: fn(&pb::Usage) -> u64| -> u64 {
                es.iter().map(|e| e.usage.as_ref().map_or(0, f)).sum()
            };
            let mut durations: Vec<f64> = es.iter().map(|e| e.duration_ms as f64).collect();
            durations.sort_by(f64::total_cmp);
            let closed = count("COMPLETED") + count("FAILED") + count("CANCELED");
            let stats = json!({
                "total": es.len(),
                "completed": count("COMPLETED"),
                "failed": count("FAILED"),
                "canceled": count("CANCELED"),
                "pending": 0,
                "running": 0,
                "error_rate": count("FAILED") as f64 / closed as f64,
                "input_tokens": usage(|u| u.input_tokens),
                "output_tokens": usage(|u| u.output_tokens),
                "tool_calls": usage(|u| u.tool_calls),
                "cost_usd": es.iter().map(|e| e.usage.as_ref().map_or(0.0, |u| u.cost_usd)).sum::<f64>(),
                "duration_p50_ms": percentile(&durations, 0.5),
                "duration_p95_ms": percentile(&durations, 0.95),
                "duration_mean_ms": durations.iter().sum::<f64>() / durations.len() as f64,
            });
            (k, stats)
        })
        .collect()
}

/// The groups `cairn stats` printed, keyed, with the fields [`expected`] computes.
fn reported(stats: &Value) -> BTreeMap<String, Value> {
    stats["executions"]
        .as_array()
        .expect("executions")
        .iter()
        .map(|g| {
            let mut g = g.clone();
            let key = g["key"].as_str().unwrap().to_string();
            g.as_object_mut().unwrap().remove("key");
            (key, g)
        })
        .collect()
}

/// Equal, with floats compared to a relative 1e-9 (the database sums and interpolates in its
/// own order).
fn assert_same(reported: &BTreeMap<String, Value>, expected: &BTreeMap<String, Value>) {
    assert_eq!(
        reported.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "groups; reported {reported:#?}"
    );
    for (key, want) in expected {
        let got = &reported[key];
        for (field, want) in want.as_object().unwrap() {
            let got = &got[field];
            match (got.as_f64(), want.as_f64()) {
                (Some(g), Some(w)) if want.is_f64() || got.is_f64() => assert!(
                    (g - w).abs() <= 1e-9 * w.abs().max(1.0),
                    "{key}.{field}: reported {g}, expected {w}"
                ),
                _ => assert_eq!(got, want, "{key}.{field}"),
            }
        }
    }
}

async fn stats_match_what_ran(db: Db) {
    let fake = FakeOpenAi::start().await;
    let mut server = Server::dev_with_model(&db, &fake.base_url());
    let ran = mixed_run(&server, &fake).await;

    let by_runtime = expected(&ran, |_, e| e.runtime.clone());
    assert_eq!(by_runtime["echo"]["completed"], 2);
    assert_eq!(by_runtime["default"]["tool_calls"], 1);
    assert_eq!(by_runtime["default"]["input_tokens"], 20 + 10 + 10);
    let got = stats(&server, &["--since", "1h"]);
    assert_eq!(got["by"], "runtime");
    assert_same(&reported(&got), &by_runtime);
    assert_eq!(
        got["agents"],
        json!([
            {"runtime": "default", "active": 2, "archived": 0},
            {"runtime": "echo", "active": 2, "archived": 1},
        ])
    );

    // From the database: a restarted server reports the same.
    server.kill();
    let server = Server::dev_with_model(&db, &fake.base_url());
    let again = stats(&server, &["--since", "1h"]);
    assert_eq!(again["executions"], got["executions"]);
    assert_eq!(again["agents"], got["agents"]);

    // A window that ends before the run counts nothing; `all` counts everything.
    let since = got["since_ms"].as_i64().unwrap();
    assert!(since > 0);
    let everything = stats(&server, &["--since", "all"]);
    assert_eq!(everything["since_ms"], 0);
    assert_same(&reported(&everything), &by_runtime);
}

async fn stats_by_agent_and_model(db: Db) {
    let fake = FakeOpenAi::start().await;
    let server = Server::dev_with_model(&db, &fake.base_url());
    let ran = mixed_run(&server, &fake).await;
    let by_agent = expected(&ran, |agent, _| agent.to_string());
    assert_same(&reported(&stats(&server, &["--by", "agent"])), &by_agent);
    let by_model = expected(&ran, |agent, _| {
        match agent {
            "reader" => "model-a",
            "writer" => "model-b",
            _ => "",
        }
        .to_string()
    });
    assert_same(&reported(&stats(&server, &["--by", "model"])), &by_model);

    // Bad input: a clear message, exit code 2, nothing printed on stdout.
    for (args, says) in [
        (vec!["--by", "color"], "runtime"),
        (vec!["--since", "yesterday"], "90m"),
        (vec!["--since", "0s"], "all"),
    ] {
        let out = Command::new(cairn_bin())
            .args(["stats", "--server", &server.url])
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    let mut c = server.client().await;
    let refused = c
        .executions
        .get_stats(pb::GetStatsRequest {
            by: "colour".into(),
            ..Default::default()
        })
        .await
        .expect_err("an unknown grouping is refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains("runtime, agent or model"),
        "{refused}"
    );
}
