//! More of the Python worker end to end: over TLS with a worker token (and a first server that
//! is down), refused with a wrong token; runtime errors as failure codes; the conversation
//! carried from turn to turn, by the SDK and by the Agno adapter.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::client::{fast_retries, kinds, start_request};
use crate::common::fleet::Proc;
use crate::common::{Db, TestClient};
use crate::fake_openai::{FakeOpenAi, Reply};
use crate::worker::PyWorker;
use crate::{cairn, stderr, stdout};

const CLIENT_TOKEN: &str = "client-token-for-the-python-tests";
const WORKER_TOKEN: &str = "worker-token-for-the-python-tests";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_worker_connects_over_tls_with_its_token_and_fails_over() {
    let db = Db::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key, ca) = (
        dir.path().join("server.pem"),
        dir.path().join("server.key"),
        dir.path().join("ca.pem"),
    );
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&ca, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    let (_server, url) = Proc::server(
        &db,
        "127.0.0.1:0",
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        &[
            ("CAIRN_WORKER_TOKENS", WORKER_TOKEN),
            ("CAIRN_CLIENT_TOKENS", CLIENT_TOKEN),
        ],
    );
    assert!(url.starts_with("https://"), "{url}");
    let ca = ca.to_str().unwrap();
    // The first server is down: the worker moves on to the second.
    let servers = format!("http://127.0.0.1:9,{url}");
    let tls = [("CAIRN_CA_CERT", ca), ("CAIRN_TLS_DOMAIN", "localhost")];

    let mut wrong = PyWorker::spawn(
        "py-wrong",
        &url,
        &[tls[0], tls[1], ("CAIRN_TOKEN", CLIENT_TOKEN)],
    );
    let status = wrong.wait_exit(Duration::from_secs(60));
    assert_eq!(status.code(), Some(2), "{}", wrong.log());
    assert!(
        wrong.log().contains("refused the worker") && wrong.log().contains("PERMISSION_DENIED"),
        "the worker says why it stops: {}",
        wrong.log()
    );

    let py = PyWorker::start(
        "py-tls",
        &servers,
        &[tls[0], tls[1], ("CAIRN_TOKEN", WORKER_TOKEN)],
    );
    assert!(
        py.log().contains("server http://127.0.0.1:9: "),
        "it tried the first server, then moved on: {}",
        py.log()
    );
    let cli = |args: &[&str]| {
        std::process::Command::new(crate::common::server::cairn_bin())
            .args(args)
            .args([
                "--server",
                &url,
                "--ca-cert",
                ca,
                "--tls-domain",
                "localhost",
            ])
            .env("CAIRN_TOKEN", CLIENT_TOKEN)
            .output()
            .unwrap()
    };
    let created = cli(&["agent", "create", "--name", "steps", "--runtime", "steps"]);
    assert!(created.status.success(), "{}", stderr(&created));
    let ran = cli(&["run", "steps", "go"]);
    assert!(ran.status.success(), "{}{}", stdout(&ran), stderr(&ran));
    assert_eq!(stdout(&ran), "step 1 on py-tls\nstep 2 on py-tls\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_errors_become_failure_codes_and_the_sdk_keeps_the_conversation() {
    let db = Db::sqlite().await;
    let (_server, url) = Proc::server(&db, "127.0.0.1:0", &[], &[]);
    let _py = PyWorker::start("py-e", &url, &[]);
    let mut c = TestClient::connect(&url).await;

    c.create_agent("broken", "steps", json!({"fail": true}))
        .await;
    let mut request = start_request("broken", &["go"]);
    request.retry_policy = Some(fast_retries(3));
    let id = c.start(request).await;
    let closed = c.watch(&id, 0).await.closed;
    assert_eq!(closed.status, "FAILED");
    let failure = closed.failure.unwrap();
    assert_eq!(
        (failure.code.as_str(), failure.retryable),
        ("asked_to_fail", false)
    );
    let history = c.history(&id).await;
    assert_eq!(
        kinds(&history)
            .iter()
            .filter(|k| **k == "ActivityFailed")
            .count(),
        1,
        "a non-retryable error is not retried"
    );

    c.create_agent("flaky", "steps", json!({"flaky": true}))
        .await;
    let mut request = start_request("flaky", &["first", "second"]);
    request.retry_policy = Some(fast_retries(3));
    let id = c.start(request).await;
    let closed = c.watch(&id, 0).await.closed;
    assert_eq!(closed.status, "COMPLETED", "{:?}", closed.failure);
    let failed: Vec<Value> = c
        .history(&id)
        .await
        .into_iter()
        .filter(|e| e.kind == "ActivityFailed")
        .map(|e| e.payload)
        .collect();
    assert_eq!(
        failed.len(),
        2,
        "each turn's first attempt failed: {failed:?}"
    );
    assert!(
        failed
            .iter()
            .all(|f| f["failure"]["code"] == "flaky" && f["failure"]["retryable"] == true)
    );
    let result: Value = serde_json::from_str(&closed.result_json).unwrap();
    assert_eq!(
        result["conversation"],
        json!([
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "finished on py-e"}
        ]),
        "the second turn got the first as the conversation so far"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_turn_of_an_agno_agent_continues_its_session() {
    let db = Db::sqlite().await;
    let model = FakeOpenAi::start().await;
    model.push(Reply::tool_call(
        "call_1",
        "lookup_weather",
        &["{\"city\": \"Oslo\"}"],
    ));
    model.push(Reply::text(&["Sunny in Oslo."]));
    model.push(Reply::text(&["Rainy in Bergen."]));
    let (_server, url) = Proc::server(&db, "127.0.0.1:0", &[], &[]);
    let base_url = model.base_url();
    let _a = PyWorker::start("py-t", &url, &[("OPENAI_BASE_URL", &base_url)]);
    let created = cairn(
        &url,
        &["agent", "create", "--name", "weather", "--runtime", "agno"],
    );
    assert!(created.status.success(), "{}", stderr(&created));
    let mut c = TestClient::connect(&url).await;
    let id = c
        .start(start_request(
            "weather",
            &["weather in Oslo?", "and in Bergen?"],
        ))
        .await;
    let watched = c.watch(&id, 0).await;
    assert_eq!(
        watched.closed.status, "COMPLETED",
        "{:?}",
        watched.closed.failure
    );
    assert_eq!(watched.text(), "Sunny in Oslo.Rainy in Bergen.");
    let requests = model.requests();
    assert_eq!(requests.len(), 3);
    let roles = |i: usize| -> Vec<(String, String)> {
        requests[i].body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] != "system")
            .map(|m| {
                (
                    m["role"].as_str().unwrap().to_string(),
                    m["content"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    let second_turn = roles(2);
    let expected: Vec<(String, String)> = [
        ("user", "weather in Oslo?"),
        ("assistant", ""),
        ("tool", "sunny, 21C in Oslo"),
        ("assistant", "Sunny in Oslo."),
        ("user", "and in Bergen?"),
    ]
    .iter()
    .map(|(r, c)| (r.to_string(), c.to_string()))
    .collect();
    assert_eq!(
        second_turn, expected,
        "the second turn's model call has the whole session"
    );
}
