//! An event stream broken by a server that stops (SIGTERM) ends with an `error` event saying
//! UNAVAILABLE; resumed on the restarted server with `Last-Event-ID`, it carries every later
//! chunk once, so the chunks read across both streams are the whole output, none missing or
//! repeated.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::curl::call;
use crate::common::Db;
use crate::common::fleet::Proc;

/// `cairn dev` on `db`, and its URL.
fn dev(db: &Db) -> (Proc, String) {
    let args: Vec<String> = ["dev", "--listen", "127.0.0.1:0", "--database-url", &db.url]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let proc = Proc::spawn("dev", &args, &[]);
    let line = proc.wait_for_log("cairn listening on ", Duration::from_secs(60));
    let url = line.split("cairn listening on ").nth(1).unwrap().trim();
    (proc, url.to_string())
}

/// One event: its name, id and JSON data.
type Event = (String, Option<u64>, Value);

/// Reads the events of `curl -N` as they arrive, calling `seen` with those so far after each.
fn follow(url: &str, last_event_id: Option<u64>, mut seen: impl FnMut(&[Event])) -> Vec<Event> {
    let mut command = Command::new("curl");
    command.args(["-sS", "-N", url]);
    if let Some(id) = last_event_id {
        command.args(["-H", &format!("Last-Event-ID: {id}")]);
    }
    let mut child = command.stdout(Stdio::piped()).spawn().expect("run curl");
    let mut events = Vec::new();
    let (mut name, mut id, mut data) = (String::new(), None, String::new());
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line.is_empty() {
            if !name.is_empty() {
                events.push((
                    std::mem::take(&mut name),
                    id.take(),
                    serde_json::from_str(&std::mem::take(&mut data)).unwrap(),
                ));
                seen(&events);
            }
            continue;
        }
        if let Some(v) = line.strip_prefix("event:") {
            name = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("id:") {
            id = Some(v.trim().parse().unwrap());
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.trim_start());
        }
    }
    child.wait().unwrap();
    events
}

fn outputs(events: &[Event]) -> Vec<(u64, String)> {
    events
        .iter()
        .filter(|(name, _, _)| name == "output")
        .map(|(_, id, data)| {
            let chunk: Value = serde_json::from_str(data["data_json"].as_str().unwrap()).unwrap();
            (id.unwrap(), chunk["text"].as_str().unwrap().to_string())
        })
        .collect()
}

async fn events_resume_on_a_restarted_server(db: Db) {
    let (mut server, url) = dev(&db);
    let chunks = ["c1 ", "c2 ", "c3 ", "c4 ", "c5 ", "c6"];
    let agent = json!({"name": "steady", "runtime": "echo",
        "configuration": {"runtime_config": {"chunks": chunks, "delay_ms": 400}}});
    let created = call(
        &url,
        "POST",
        "/api/v1/agents",
        Some(&agent.to_string()),
        None,
    );
    assert_eq!(created.status, 200, "{}", created.body);
    let started = call(
        &url,
        "POST",
        "/api/v1/executions",
        Some(r#"{"agent": "steady", "prompt": "x"}"#),
        None,
    )
    .json();
    let id = started["execution_id"].as_str().unwrap().to_string();

    // Stop the server once two chunks have arrived.
    let mut stopped = false;
    let before = follow(
        &format!("{url}/api/v1/executions/{id}/events"),
        None,
        |events| {
            if !stopped && outputs(events).len() == 2 {
                stopped = true;
                server.signal(nix::sys::signal::Signal::SIGTERM);
            }
        },
    );
    server.terminate(Duration::from_secs(60));
    let (name, _, data) = before.last().unwrap();
    match name.as_str() {
        "error" => assert_eq!(data["error"]["code"], "UNAVAILABLE", "{data}"),
        // The execution may have closed while the server drained its worker.
        "closed" => {}
        other => panic!("the stream ended with {other}: {before:?}"),
    }

    let (_server, url) = dev(&db);
    let read = outputs(&before);
    let last = read.last().map(|(seq, _)| *seq);
    let after = follow(
        &format!("{url}/api/v1/executions/{id}/events"),
        last,
        |_| {},
    );
    let (name, _, data) = after.last().unwrap();
    assert_eq!(
        (name.as_str(), &data["status"]),
        ("closed", &json!("COMPLETED"))
    );
    let all: Vec<(u64, String)> = read.into_iter().chain(outputs(&after)).collect();
    let seqs: Vec<u64> = all.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(
        seqs,
        (1..=chunks.len() as u64).collect::<Vec<_>>(),
        "no gap, no repeat"
    );
    let text: String = all.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(text, chunks.concat());
}

crate::on_both_stores!(events_resume_on_a_restarted_server);
