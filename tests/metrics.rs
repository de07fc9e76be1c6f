//! Observability, end to end: a real Prometheus (Debian's `prometheus` package) scrapes a
//! `cairn dev` while `echo` and `default` executions run, and PromQL over its HTTP API counts them
//! by runtime; `--log-format json` lines parse and carry the execution id; a draining server
//! answers health `NOT_SERVING` before it stops.

mod common;
mod fake_openai;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use common::client::{fast_retries, start_request};
use common::{Db, Server, TestClient, filesystem_server};
use fake_openai::{FakeOpenAi, Reply};

/// The bound on any one wait here, so a broken pipeline fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(60);

/// The filesystem MCP server installed by `npm ci --prefix tests/npm`.
/// Waits until the server's log has a line starting with `prefix`; returns the rest of it.
async fn logged(server: &Server, prefix: &str) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(rest) = server.log().lines().find_map(|l| l.strip_prefix(prefix)) {
            return rest.trim().to_string();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no `{prefix}` line; the log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A free port on the loopback interface (bound and released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Prometheus server scraping one target every second; killed when dropped.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    async fn start(target: &str) -> Prometheus {
        let found = Command::new("prometheus")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        assert!(
            found.is_ok_and(|s| s.success()),
            "the `prometheus` binary is not on PATH: install it (`apt-get install -y prometheus`, \
             as .ci/run does) to run the metrics test"
        );
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: cairn\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let listen = format!("127.0.0.1:{}", free_port());
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={listen}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn prometheus");
        let prometheus = Prometheus {
            child,
            url: format!("http://{listen}"),
            _dir: dir,
        };
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let ready = reqwest::get(format!("{}/-/ready", prometheus.url)).await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return prometheus;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "prometheus did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `query` through `/api/v1/query`: each series' labels and value.
    async fn query(&self, query: &str) -> Vec<(Value, f64)> {
        let encoded: String = query
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let body: Value = reqwest::get(format!("{}/api/v1/query?query={encoded}", self.url))
            .await
            .expect("query prometheus")
            .json()
            .await
            .expect("a JSON answer");
        assert_eq!(body["status"], "success", "{query}: {body}");
        body["data"]["result"]
            .as_array()
            .expect("a vector")
            .iter()
            .map(|series| {
                let value = series["value"][1].as_str().unwrap().parse().unwrap();
                (series["metric"].clone(), value)
            })
            .collect()
    }

    /// Polls `query` (a PromQL expression summed by runtime) until it gives `expected` per
    /// runtime, as the scrapes catch up; returns what it gave last, for the assertion.
    async fn by_runtime(&self, query: &str, expected: &[(&str, f64)]) -> Vec<(String, f64)> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let mut got: Vec<(String, f64)> = self
                .query(&format!("sum by (runtime) ({query})"))
                .await
                .into_iter()
                .map(|(m, v)| (m["runtime"].as_str().unwrap_or_default().to_string(), v))
                .collect();
            got.sort_by(|a, b| a.0.cmp(&b.0));
            let want: Vec<(String, f64)> =
                expected.iter().map(|(r, v)| (r.to_string(), *v)).collect();
            if got == want || tokio::time::Instant::now() >= deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pairs(expected: &[(&str, f64)]) -> Vec<(String, f64)> {
    expected.iter().map(|(r, v)| (r.to_string(), *v)).collect()
}

async fn closed(c: &mut TestClient, id: &str) -> common::client::Watched {
    c.watch(id, 0).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_counts_executions_tokens_and_tools_by_runtime() {
    let db = Db::sqlite().await;
    let model = FakeOpenAi::start().await;
    let server = Server::dev(
        &db,
        &[
            "--openai-base-url",
            &model.base_url(),
            "--openai-api-key-env",
            "",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    let metrics = logged(&server, "cairn metrics on http://").await;
    let target = metrics.trim_end_matches("/metrics").to_string();
    let prometheus = Prometheus::start(&target).await;
    let mut c = server.client().await;

    // echo: three executions, each completed.
    c.create_agent("parrot", "echo", json!({})).await;
    let mut echo_input = 0;
    let mut echo_output = 0;
    for prompt in ["one", "two words", "three small words"] {
        let id = c.start_simple("parrot", prompt).await;
        let watched = closed(&mut c, &id).await;
        assert_eq!(watched.closed.status, "COMPLETED");
        let usage = c.get(&id).await.usage.expect("usage");
        echo_input += usage.input_tokens;
        echo_output += usage.output_tokens;
    }

    // default: one with a tool call through a real MCP server, one plain, one that fails.
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().canonicalize().unwrap();
    let notes = dir_path.join("notes.txt");
    std::fs::write(&notes, "buy milk\n").unwrap();
    let path_json = serde_json::to_string(notes.to_str().unwrap()).unwrap();
    let config = json!({"mcp_servers": {"files": {
        "command": "node",
        "args": [filesystem_server().to_str().unwrap(), dir_path.to_str().unwrap()]
    }}});
    c.create_model_agent("reader", "gpt-test", config).await;
    c.create_model_agent("talker", "gpt-test", json!({})).await;
    model.push(Reply::tool_call(
        "call_1",
        "read_text_file",
        &["{\"path\":", &path_json, "}"],
    ));
    model.push(Reply::text(&["You need ", "milk."]));
    let id = c.start_simple("reader", "What do I need?").await;
    assert_eq!(closed(&mut c, &id).await.closed.status, "COMPLETED");
    model.push(Reply::text(&["Hello"]));
    let id = c.start_simple("talker", "hi").await;
    assert_eq!(closed(&mut c, &id).await.closed.status, "COMPLETED");
    model.push(Reply::error(401, "bad key"));
    let mut request = start_request("talker", &["hi again"]);
    request.retry_policy = Some(fast_retries(1));
    let id = c.start(request).await;
    assert_eq!(closed(&mut c, &id).await.closed.status, "FAILED");

    // Tool call (20 in, 5 out) + answer (10 in, 2 out) + "Hello" (10 in, 1 out).
    let (default_input, default_output) = (40.0, 8.0);
    let expect = [
        (
            "cairn_executions_started_total",
            pairs(&[("default", 3.0), ("echo", 3.0)]),
        ),
        (
            "cairn_executions_completed_total",
            pairs(&[("default", 2.0), ("echo", 3.0)]),
        ),
        ("cairn_executions_failed_total", pairs(&[("default", 1.0)])),
        (
            "cairn_input_tokens_total",
            pairs(&[("default", default_input), ("echo", echo_input as f64)]),
        ),
        (
            "cairn_output_tokens_total",
            pairs(&[("default", default_output), ("echo", echo_output as f64)]),
        ),
        ("cairn_tool_executions_total", pairs(&[("default", 1.0)])),
        (
            "cairn_execution_duration_seconds_count",
            pairs(&[("default", 3.0), ("echo", 3.0)]),
        ),
        // One attempt each.
        (
            "cairn_attempt_duration_seconds_count",
            pairs(&[("default", 3.0), ("echo", 3.0)]),
        ),
        (
            "cairn_schedule_to_start_seconds_count",
            pairs(&[("default", 3.0), ("echo", 3.0)]),
        ),
        ("cairn_activity_failures_total", pairs(&[("default", 1.0)])),
    ];
    for (metric, want) in expect {
        let want_ref: Vec<(&str, f64)> = want.iter().map(|(r, v)| (r.as_str(), *v)).collect();
        let got = prometheus.by_runtime(metric, &want_ref).await;
        assert_eq!(got, want, "{metric} by runtime");
    }
    let tools = prometheus
        .query("sum by (runtime, tool) (cairn_tool_executions_total)")
        .await;
    assert_eq!(tools.len(), 1, "{tools:?}");
    assert_eq!(tools[0].0["tool"], "read_text_file");
    // The gauges read from the database at scrape time are there too (nothing waits now).
    let waiting = prometheus.query("cairn_tasks_waiting").await;
    assert!(waiting.iter().all(|(_, v)| *v == 0.0), "{waiting:?}");
    let workers = prometheus.query("cairn_workers_connected").await;
    assert_eq!(workers.len(), 1, "{workers:?}");
    assert_eq!(workers[0].1, 1.0, "the in-process worker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_parse_and_carry_the_execution_id() {
    let db = Db::sqlite().await;
    let server = Server::dev(&db, &["--log-format", "json"]);
    let mut c = server.client().await;
    c.create_agent("parrot", "echo", json!({})).await;
    let id = c.start_simple("parrot", "hello there").await;
    assert_eq!(closed(&mut c, &id).await.closed.status, "COMPLETED");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !server.log().contains("execution closed") {
        assert!(tokio::time::Instant::now() < deadline, "{}", server.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = server.log();
    let mut carrying = 0;
    for line in log.lines() {
        // The two start-up lines tests and scripts read ("cairn listening on", "cairn metrics
        // on") are plain; every log line is JSON.
        if line.starts_with("cairn listening on ") || line.starts_with("cairn metrics on ") {
            continue;
        }
        let parsed: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
        assert!(parsed["level"].is_string(), "{line}");
        if line.contains(&id) {
            carrying += 1;
            let direct = parsed["fields"]["execution_id"].as_str() == Some(&id);
            let in_span = parsed["spans"]
                .as_array()
                .is_some_and(|spans| spans.iter().any(|s| s["execution_id"] == id.as_str()));
            assert!(
                direct || in_span,
                "the id as a field, not only in text: {line}"
            );
        }
    }
    assert!(carrying >= 1, "no log line carries {id}:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_server_reports_not_serving_before_it_stops() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let db = Db::sqlite().await;
    let server = Server::start(&db, "server", &["--drain-delay-ms", "3000"]);
    let channel = tonic::transport::Endpoint::from_shared(server.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let status = |service: &str| HealthCheckRequest {
        service: service.into(),
    };
    let serving = health.check(status("")).await.unwrap().into_inner().status;
    assert_eq!(serving, ServingStatus::Serving as i32);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let answer = health
            .check(status(""))
            .await
            .expect("the draining server still answers health checks during its drain delay");
        if answer.into_inner().status == ServingStatus::NotServing as i32 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never NOT_SERVING");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every service says so too, not only the overall status.
    let service = health
        .check(status("cairn.v1.ExecutionService"))
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(service, ServingStatus::NotServing as i32);
    // After the delay it stops.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !server.log().contains("health NOT_SERVING") {
        assert!(tokio::time::Instant::now() < deadline, "{}", server.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    loop {
        let fresh = tonic::transport::Endpoint::from_shared(server.url.clone())
            .unwrap()
            .connect()
            .await;
        if fresh.is_err() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server never stopped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `/metrics` read directly (no Prometheus): the lines of `metric`, without `# ` comments.
async fn scrape(url: &str, metric: &str) -> Vec<String> {
    let text = reqwest::get(url)
        .await
        .expect("scrape")
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) || l.starts_with(&format!("{metric} ")))
        .map(str::to_string)
        .collect()
}

/// Tasks waiting are read from the database at scrape time, by queue and runtime, on both
/// stores: a server without a worker leaves every started execution's task waiting.
async fn tasks_waiting_are_counted_by_queue_and_runtime(db: Db) {
    let server = Server::start(&db, "server", &["--metrics-listen", "127.0.0.1:0"]);
    let metrics = format!(
        "http://{}",
        logged(&server, "cairn metrics on http://").await
    );
    let mut c = server.client().await;
    c.create_agent("parrot", "echo", json!({})).await;
    for (prompt, queue) in [("a", ""), ("b", ""), ("c", "gpu")] {
        let mut request = start_request("parrot", &[prompt]);
        request.queue = queue.into();
        c.start(request).await;
    }
    let mut lines = scrape(&metrics, "cairn_tasks_waiting").await;
    lines.sort();
    assert_eq!(
        lines,
        [
            "cairn_tasks_waiting{queue=\"default\",runtime=\"echo\"} 2",
            "cairn_tasks_waiting{queue=\"gpu\",runtime=\"echo\"} 1",
        ],
        "{lines:?}"
    );
    let started = scrape(&metrics, "cairn_executions_started_total").await;
    assert_eq!(
        started,
        ["cairn_executions_started_total{runtime=\"echo\"} 3"],
        "{started:?}"
    );
}

on_both_stores!(tasks_waiting_are_counted_by_queue_and_runtime);
