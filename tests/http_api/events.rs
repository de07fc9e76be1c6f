//! The issue's curl lines verbatim against `cairn dev`; an echo execution started the same way
//! completes, its Server-Sent Events (read with `curl -N`) carry the output, and resuming with
//! `Last-Event-ID` (or `after_seq`) gives every later chunk once, none missing.

use serde_json::{Value, json};

use super::curl::{call, curl, shell};
use crate::common::{Db, Server};

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq)]
struct Sse {
    event: String,
    id: Option<u64>,
    data: Value,
}

/// The events of a whole stream as `curl -N` printed it (comments, the keep-alives, skipped).
fn parse_sse(text: &str) -> Vec<Sse> {
    let mut events = Vec::new();
    for block in text.split("\n\n") {
        let (mut event, mut id, mut data) = (String::new(), None, String::new());
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("id:") {
                id = Some(v.trim().parse().expect("ids are seqs"));
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
        if !event.is_empty() {
            let data = serde_json::from_str(&data).expect("every event carries JSON");
            events.push(Sse { event, id, data });
        }
    }
    events
}

/// Reads the events of execution `id` with `curl -N` until the server ends the stream.
fn read_events(api: &str, id: &str, extra: &[&str]) -> Vec<Sse> {
    let url = format!("{api}/api/v1/executions/{id}/events");
    let mut args = vec!["-N", url.as_str()];
    args.extend(extra);
    let reply = curl(&args);
    assert_eq!(reply.status, 200, "{}", reply.body);
    parse_sse(&reply.body)
}

fn outputs(events: &[Sse]) -> Vec<(u64, String)> {
    events
        .iter()
        .filter(|e| e.event == "output")
        .map(|e| {
            let data: Value = serde_json::from_str(e.data["data_json"].as_str().unwrap()).unwrap();
            assert_eq!(Some(e.data["seq"].as_u64().unwrap()), e.id, "id = seq");
            (
                e.id.unwrap(),
                data["text"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

async fn curl_lines_work_and_events_resume_without_gaps(db: Db) {
    let server = Server::dev(&db, &[]);
    let api = server.url.clone();

    // The issue's first line, verbatim (no Content-Type: curl -d sends a form type).
    let created = shell(
        &api,
        &[],
        r#"curl -X POST $API/api/v1/agents -d '{"name": "Code Reviewer", "runtime": "claude_code", "model_id": "claude-sonnet-4"}'"#,
    );
    let created: Value = serde_json::from_str(&created).expect(&created);
    assert_eq!(created["name"], "Code Reviewer");
    assert_eq!(created["runtime"], "claude_code");
    assert_eq!(created["model_id"], "claude-sonnet-4");
    let by_name = call(&api, "GET", "/api/v1/agents/Code%20Reviewer", None, None);
    assert_eq!(by_name.json()["id"], created["id"], "{}", by_name.body);

    // The second line's shape, on an agent of the `default` runtime.
    let default_agent = call(
        &api,
        "POST",
        "/api/v1/agents",
        Some(r#"{"name": "reviewer", "runtime": "default", "model_id": "gpt-4o-mini"}"#),
        None,
    )
    .json();
    let agent_id = default_agent["id"].as_str().unwrap();
    let started = shell(
        &api,
        &[("AGENT_ID", agent_id)],
        r#"curl -X POST $API/api/v1/executions -d '{"agent_id": "'"$AGENT_ID"'", "prompt": "Review this diff", "runtime": "default"}'"#,
    );
    let started: Value = serde_json::from_str(&started).expect(&started);
    assert_eq!(started["created"], true, "{started}");
    let execution = call(
        &api,
        "GET",
        &format!(
            "/api/v1/executions/{}",
            started["execution_id"].as_str().unwrap()
        ),
        None,
        None,
    )
    .json();
    assert_eq!(execution["agent_id"], agent_id);
    assert_eq!(execution["runtime"], "default");

    // The runtime is a check: another one is refused, naming both.
    let wrong = call(
        &api,
        "POST",
        "/api/v1/executions",
        Some(&json!({"agent_id": agent_id, "prompt": "x", "runtime": "claude_code"}).to_string()),
        None,
    );
    assert_eq!(wrong.status, 400);
    let message = wrong.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(wrong.json()["error"]["code"], "INVALID_ARGUMENT");
    assert!(
        message.contains("`claude_code`") && message.contains("`default`"),
        "{message}"
    );

    // An echo agent completes for real; its output arrives as events.
    let chunks = ["alpha ", "beta ", "gamma ", "delta ", "epsilon"];
    let echo = call(
        &api,
        "POST",
        "/api/v1/agents",
        Some(
            &json!({"name": "echo one", "runtime": "echo",
                    "configuration": {"runtime_config": {"chunks": chunks, "delay_ms": 20}}})
            .to_string(),
        ),
        None,
    )
    .json();
    let echo_id = echo["id"].as_str().unwrap();
    let started = shell(
        &api,
        &[("AGENT_ID", echo_id)],
        r#"curl -X POST $API/api/v1/executions -d '{"agent_id": "'"$AGENT_ID"'", "prompt": "hello", "runtime": "echo"}'"#,
    );
    let id = serde_json::from_str::<Value>(&started).unwrap()["execution_id"]
        .as_str()
        .unwrap()
        .to_string();

    let all = read_events(&api, &id, &[]);
    assert_eq!(all.first().unwrap().event, "status", "{all:?}");
    let last = all.last().unwrap();
    assert_eq!(
        last.event, "closed",
        "the stream ends with the closed execution"
    );
    assert_eq!(last.data["status"], "COMPLETED", "{last:?}");
    let output = outputs(&all);
    let seqs: Vec<u64> = output.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(
        seqs,
        (1..=chunks.len() as u64).collect::<Vec<_>>(),
        "gapless from 1"
    );
    let text: String = output.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(text, chunks.concat());

    // Resumed after seq 2 (as EventSource does): 3.., once each, the same chunks.
    let resumed = read_events(&api, &id, &["-H", "Last-Event-ID: 2"]);
    assert_eq!(outputs(&resumed), output[2..].to_vec());
    assert_eq!(resumed.last().unwrap().event, "closed");
    let by_query = read_events(&api, &id, &["-G", "-d", "after_seq=4"]);
    assert_eq!(outputs(&by_query), output[4..].to_vec());
    // The same chunks gRPC's StreamExecution sends.
    let mut grpc = server.client().await;
    let watched = grpc.watch(&id, 0).await;
    let grpc_seqs: Vec<u64> = watched.chunks.iter().map(|c| c.seq).collect();
    assert_eq!(grpc_seqs, seqs);
    assert_eq!(watched.text(), text);
    // A bad resume point is the gRPC error for a bad after_seq.
    let bad = curl(&[
        "-H",
        "Last-Event-ID: soon",
        &format!("{api}/api/v1/executions/{id}/events"),
    ]);
    assert_eq!(bad.status, 400, "{}", bad.body);

    // The completed execution, its history, and the list filtered as ListExecutions filters.
    let got = call(&api, "GET", &format!("/api/v1/executions/{id}"), None, None).json();
    assert_eq!(got["status"], "COMPLETED");
    let history = call(
        &api,
        "GET",
        &format!("/api/v1/executions/{id}/history"),
        None,
        None,
    );
    let types: Vec<String> = history.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        types.last().map(String::as_str),
        Some("ExecutionCompleted"),
        "{types:?}"
    );
    let listed = call(
        &api,
        "GET",
        "/api/v1/executions?status=COMPLETED&agent=echo%20one",
        None,
        None,
    )
    .json();
    let ids: Vec<&str> = listed["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str()]);
    let replayed = call(
        &api,
        "POST",
        &format!("/api/v1/executions/{id}/replay"),
        None,
        None,
    );
    assert_eq!(replayed.json()["ok"], true, "{}", replayed.body);
}

/// Cancel, retry and an idempotent start over HTTP, each watched to its end through the events.
async fn cancel_retry_and_request_ids_over_http(db: Db) {
    let server = Server::dev(&db, &[]);
    let api = server.url.clone();
    let post = |path: &str, body: Value| {
        let reply = call(&api, "POST", path, Some(&body.to_string()), None);
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        reply.json()
    };
    post(
        "/api/v1/agents",
        json!({"name": "slow", "runtime": "echo",
               "configuration": {"runtime_config": {"chunks": ["a", "b", "c", "d"], "delay_ms": 60000}}}),
    );
    post(
        "/api/v1/agents",
        json!({"name": "flaky", "runtime": "echo",
               "configuration": {"runtime_config": {"fail_attempts": [1], "fail_retryable": false}}}),
    );

    // The same request_id starts one execution.
    let start = json!({"agent": "slow", "prompt": "x", "request_id": "once", "labels": {"k": "v"}});
    let first = post("/api/v1/executions", start.clone());
    let again = post("/api/v1/executions", start);
    assert_eq!(first["created"], true);
    assert_eq!(again["created"], false);
    assert_eq!(again["execution_id"], first["execution_id"]);
    let id = first["execution_id"].as_str().unwrap();
    let cancelled = post(
        &format!("/api/v1/executions/{id}/cancel"),
        json!({"reason": "from curl"}),
    );
    assert_eq!(cancelled["id"], id);
    let events = read_events(&api, id, &[]);
    let closed = events.last().unwrap();
    assert_eq!(
        (closed.event.as_str(), &closed.data["status"]),
        ("closed", &json!("CANCELED"))
    );

    // A failed execution, retried: the retry runs to completion.
    let failed = post(
        "/api/v1/executions",
        json!({"agent": "flaky", "prompt": "once more"}),
    );
    let failed_id = failed["execution_id"].as_str().unwrap();
    let closed = read_events(&api, failed_id, &[]);
    assert_eq!(closed.last().unwrap().data["status"], "FAILED");
    // Retries run with the agent's current definition: mend it first (PATCH keeps what it
    // does not name).
    let mended = call(
        &api,
        "PATCH",
        "/api/v1/agents/flaky",
        Some(r#"{"configuration": {"runtime_config": {}}, "expected_version": 1}"#),
        None,
    );
    assert_eq!(mended.status, 200, "{}", mended.body);
    assert_eq!(mended.json()["version"], 2);
    assert_eq!(mended.json()["runtime"], "echo");
    let retried = post(&format!("/api/v1/executions/{failed_id}/retry"), json!({}));
    assert_eq!(retried["created"], true, "{retried}");
    let retry_id = retried["execution_id"].as_str().unwrap();
    let closed = read_events(&api, retry_id, &[]);
    assert_eq!(
        closed.last().unwrap().data["status"],
        "COMPLETED",
        "{closed:?}"
    );
    let got = call(
        &api,
        "GET",
        &format!("/api/v1/executions/{retry_id}"),
        None,
        None,
    )
    .json();
    assert_eq!(got["retry_of"], failed_id);
    // Labels filter the list as ListExecutions does.
    let labelled = call(&api, "GET", "/api/v1/executions?label=k=v", None, None).json();
    assert_eq!(
        labelled["executions"].as_array().unwrap().len(),
        1,
        "{labelled}"
    );
}

crate::on_both_stores!(
    curl_lines_work_and_events_resume_without_gaps,
    cancel_retry_and_request_ids_over_http
);
