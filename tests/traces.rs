//! One trace per execution, received by an OTLP collector written here (a tonic
//! `TraceService`): `cairn run` of a `default` agent that calls one tool through a real MCP
//! server yields the client's root span, the server's `StartExecution` span, the worker's
//! `attempt` span, a `chat {model}` span and an `execute_tool {name}` span with the GenAI
//! attributes, all one trace, each the child of the one before — with the worker in the server
//! process, in a separate `cairn worker` process, and when the attempt is a retry on another
//! worker after the first was killed with SIGKILL.

mod common;
mod fake_openai;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn::api::pb;
use common::client::{fast_retries, start_request};
use common::fleet::Proc;
use common::server::cairn_bin;
use common::{Db, Server, TestClient, filesystem_server};
use fake_openai::{FakeOpenAi, Reply};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::json;

/// Spans as the collector received them, with the `service.name` of their resource.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    Any::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for scope in resource.scope_spans {
                spans.extend(scope.spans.into_iter().map(|s| (service.clone(), s)));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    /// Serves OTLP/gRPC on a free port; returns the collector and its endpoint URL.
    async fn start() -> (Collector, String) {
        let collector = Collector::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let service = TraceServiceServer::new(collector.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
        (collector, endpoint)
    }

    /// Waits (30 s at most) until `find` finds what it looks for among the spans received.
    async fn wait_for<T>(&self, what: &str, find: impl Fn(&[(String, Span)]) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(found) = find(&self.spans.lock().unwrap()) {
                return found;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the collector did not receive {what}; it has: {:#?}",
                self.names()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn names(&self) -> Vec<(String, String, String)> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .map(|(service, s)| (service.clone(), s.name.clone(), hex(&s.trace_id)))
            .collect()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A span's attribute as a string (ints printed).
fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            Any::StringValue(s) => Some(s.clone()),
            Any::IntValue(i) => Some(i.to_string()),
            Any::BoolValue(b) => Some(b.to_string()),
            other => Some(format!("{other:?}")),
        })
}

/// The environment that sends a process's spans to the collector, in batches of 100 ms.
fn otel_env(endpoint: &str) -> Vec<(String, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint.into()),
        ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
    ]
}

fn borrowed(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// A `default` agent `reader` (model `fake-model`) with the filesystem MCP server, and the
/// fake's two answers: a call of `read_text_file`, then the answer.
async fn reader(c: &mut TestClient, fake: &FakeOpenAi) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().canonicalize().unwrap();
    let notes = dir_path.join("notes.txt");
    std::fs::write(&notes, "buy milk\n").unwrap();
    let mcp = json!({"mcp_servers": {"files": {
        "command": "node", "args": [filesystem_server().to_str().unwrap(), dir_path.to_str().unwrap()]
    }}});
    c.create_model_agent("reader", "fake-model", mcp).await;
    let path = serde_json::to_string(notes.to_str().unwrap()).unwrap();
    fake.push(Reply::tool_call(
        "call_1",
        "read_text_file",
        &["{\"path\":", &path, "}"],
    ));
    fake.push(Reply::text(&["You need ", "milk."]));
    dir
}

/// `cairn run reader ...` against `url`, exporting its spans; it must succeed.
fn cairn_run(url: &str, endpoint: &str) {
    let out = Command::new(cairn_bin())
        .args(["run", "reader", "What do I need?", "--server", url])
        .envs(otel_env(endpoint))
        .output()
        .expect("run cairn run");
    assert!(
        out.status.success(),
        "cairn run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The spans of one `cairn run`: found by the client's root span, then each by name within its
/// trace, each the parent of the next.
async fn assert_one_trace(collector: &Collector) {
    let root = collector
        .wait_for("the client's root span", |spans| {
            spans
                .iter()
                .find(|(service, s)| service == "cairn-cli" && s.name == "cairn run")
                .map(|(_, s)| s.clone())
        })
        .await;
    assert_eq!(root.kind, SpanKind::Client as i32);
    assert!(
        root.parent_span_id.is_empty(),
        "the client's span is the root"
    );
    let trace = root.trace_id.clone();
    let in_trace = |name: &'static str| {
        let trace = trace.clone();
        move |spans: &[(String, Span)]| {
            spans
                .iter()
                .find(|(_, s)| s.trace_id == trace && s.name == name)
                .map(|(_, s)| s.clone())
        }
    };
    let start = collector
        .wait_for("StartExecution in the trace", in_trace("StartExecution"))
        .await;
    assert_eq!(start.kind, SpanKind::Server as i32);
    assert_eq!(
        start.parent_span_id, root.span_id,
        "StartExecution's parent"
    );
    assert_eq!(attr(&start, "rpc.system").as_deref(), Some("grpc"));
    let attempt = collector
        .wait_for("the attempt in the trace", in_trace("attempt"))
        .await;
    assert_eq!(
        attempt.parent_span_id, start.span_id,
        "the attempt's parent"
    );
    assert_eq!(attr(&attempt, "runtime").as_deref(), Some("default"));
    assert_model_call(collector, &trace, &attempt.span_id).await;
    let tool = collector
        .wait_for(
            "the tool call in the trace",
            in_trace("execute_tool read_text_file"),
        )
        .await;
    assert_eq!(
        tool.parent_span_id, attempt.span_id,
        "the tool call's parent"
    );
    assert_eq!(
        attr(&tool, "gen_ai.operation.name").as_deref(),
        Some("execute_tool")
    );
    assert_eq!(
        attr(&tool, "gen_ai.tool.name").as_deref(),
        Some("read_text_file")
    );
    assert_eq!(
        attr(&tool, "gen_ai.tool.call.id").as_deref(),
        Some("call_1")
    );
}

/// The first model call under `attempt`: a CLIENT span `chat fake-model` with the GenAI
/// attributes (the fake answers a tool call with 20 tokens in, 5 out).
async fn assert_model_call(collector: &Collector, trace: &[u8], attempt: &[u8]) {
    let chats = collector
        .wait_for("the model calls in the trace", |spans| {
            let chats: Vec<Span> = spans
                .iter()
                .filter(|(_, s)| s.trace_id == trace && s.name == "chat fake-model")
                .map(|(_, s)| s.clone())
                .collect();
            (!chats.is_empty()).then_some(chats)
        })
        .await;
    let chat = &chats[0];
    assert_eq!(chat.kind, SpanKind::Client as i32);
    assert_eq!(chat.parent_span_id, attempt, "the model call's parent");
    assert_eq!(attr(chat, "gen_ai.operation.name").as_deref(), Some("chat"));
    assert_eq!(
        attr(chat, "gen_ai.provider.name").as_deref(),
        Some("openai")
    );
    assert_eq!(
        attr(chat, "gen_ai.request.model").as_deref(),
        Some("fake-model")
    );
    assert!(
        attr(chat, "gen_ai.usage.input_tokens").is_some(),
        "{chat:?}"
    );
    assert!(
        attr(chat, "gen_ai.usage.output_tokens").is_some(),
        "{chat:?}"
    );
    let usage: Vec<(String, String)> = chats
        .iter()
        .map(|c| {
            (
                attr(c, "gen_ai.usage.input_tokens").unwrap(),
                attr(c, "gen_ai.usage.output_tokens").unwrap(),
            )
        })
        .collect();
    assert!(usage.contains(&("20".into(), "5".into())), "{usage:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_from_cairn_run_to_the_tool_call() {
    let (collector, endpoint) = Collector::start().await;
    let fake = FakeOpenAi::start().await;
    let db = Db::sqlite().await;
    let server = Server::start_with_env(
        &db,
        "dev",
        &[
            "--openai-base-url",
            &fake.base_url(),
            "--openai-api-key-env",
            "",
        ],
        &otel_env(&endpoint),
    );
    let mut c = server.client().await;
    let _dir = reader(&mut c, &fake).await;
    cairn_run(&server.url, &endpoint);
    assert_one_trace(&collector).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_with_a_separate_worker_process() {
    let (collector, endpoint) = Collector::start().await;
    let fake = FakeOpenAi::start().await;
    let db = Db::sqlite().await;
    let env = otel_env(&endpoint);
    let (_server, url) = Proc::server(&db, "127.0.0.1:0", &[], &borrowed(&env));
    let base_url = fake.base_url();
    let policy = common::fleet::open_policy();
    let model = [
        "--openai-base-url",
        &base_url,
        "--openai-api-key-env",
        "",
        "--policy",
        &policy,
    ];
    let _worker = Proc::worker("traced", &[&url], &model, &borrowed(&env));
    let mut c = TestClient::connect(&url).await;
    let _dir = reader(&mut c, &fake).await;
    cairn_run(&url, &endpoint);
    assert_one_trace(&collector).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_killed_worker_joins_the_trace() {
    let (collector, endpoint) = Collector::start().await;
    let fake = FakeOpenAi::start().await;
    // The first attempt's model call never ends; the retry's is answered.
    fake.push(Reply::stream().role().content("thinking").hang());
    fake.push(
        Reply::stream()
            .role()
            .content("done")
            .finish("stop")
            .usage(20, 5)
            .done(),
    );
    let db = Db::sqlite().await;
    let env = otel_env(&endpoint);
    let (_server, url) = Proc::server(&db, "127.0.0.1:0", &[], &borrowed(&env));
    let base_url = fake.base_url();
    let model = ["--openai-base-url", &base_url, "--openai-api-key-env", ""];
    let mut first = Proc::worker("first", &[&url], &model, &borrowed(&env));
    let mut c = TestClient::connect(&url).await;
    c.create_model_agent("plain", "fake-model", json!({})).await;

    // The test is the client here: its own span id, sent as `traceparent`.
    let (trace, parent) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let mut request = start_request("plain", &["go"]);
    request.retry_policy = Some(fast_retries(3));
    request.timeouts = Some(pb::Timeouts {
        heartbeat_ms: 1_000,
        ..Default::default()
    });
    let mut request = tonic::Request::new(request);
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace}-{parent}-01").parse().unwrap(),
    );
    let id = c
        .executions
        .start_execution(request)
        .await
        .expect("start")
        .into_inner()
        .execution_id;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while fake.request_count() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no model call");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill();
    let _second = Proc::worker("second", &[&url], &model, &borrowed(&env));
    c.wait_until(&id, "the retry to finish", |e| e.status == "COMPLETED")
        .await;
    let history = c.history(&id).await;
    assert!(
        common::client::kinds(&history).contains(&"ActivityTimedOut"),
        "the first attempt timed out: {:?}",
        common::client::kinds(&history)
    );

    let trace_id = (0..16)
        .map(|i| u8::from_str_radix(&trace[2 * i..2 * i + 2], 16).unwrap())
        .collect::<Vec<u8>>();
    let parent_id = (0..8)
        .map(|i| u8::from_str_radix(&parent[2 * i..2 * i + 2], 16).unwrap())
        .collect::<Vec<u8>>();
    let start = collector
        .wait_for("StartExecution in the client's trace", |spans| {
            spans
                .iter()
                .find(|(_, s)| s.trace_id == trace_id && s.name == "StartExecution")
                .map(|(_, s)| s.clone())
        })
        .await;
    assert_eq!(start.parent_span_id, parent_id);
    let retry = collector
        .wait_for("the second attempt in the trace", |spans| {
            spans
                .iter()
                .find(|(_, s)| {
                    s.trace_id == trace_id
                        && s.name == "attempt"
                        && attr(s, "attempt").as_deref() == Some("2")
                })
                .map(|(_, s)| s.clone())
        })
        .await;
    assert_eq!(retry.parent_span_id, start.span_id, "the retry's parent");
    assert_model_call(&collector, &trace_id, &retry.span_id).await;
}

/// A start over the HTTP/JSON API continues the caller's trace as a gRPC start does: the
/// request's `traceparent` is the parent of the server span `POST /api/v1/executions`, whose
/// child is the attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_start_joins_the_callers_trace() {
    let (collector, endpoint) = Collector::start().await;
    let db = Db::sqlite().await;
    let server = Server::start_with_env(&db, "dev", &[], &otel_env(&endpoint));
    let mut c = server.client().await;
    c.create_agent("traced", "echo", json!({})).await;
    let (trace, caller) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let output = Command::new("curl")
        .args(["-sS", "-X", "POST", "-H"])
        .arg(format!("traceparent: 00-{trace}-{caller}-01"))
        .arg("-d")
        .arg(r#"{"agent": "traced", "prompt": "hello"}"#)
        .arg(format!("{}/api/v1/executions", server.url))
        .output()
        .expect("run curl");
    let started: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(started["created"], true, "{started}");
    let in_trace = |name: &'static str| {
        move |spans: &[(String, Span)]| {
            spans
                .iter()
                .find(|(_, s)| hex(&s.trace_id) == trace && s.name == name)
                .map(|(_, s)| s.clone())
        }
    };
    let http = collector
        .wait_for(
            "the HTTP start in the trace",
            in_trace("POST /api/v1/executions"),
        )
        .await;
    assert_eq!(http.kind, SpanKind::Server as i32);
    assert_eq!(hex(&http.parent_span_id), caller, "the HTTP span's parent");
    assert_eq!(
        attr(&http, "http.route").as_deref(),
        Some("/api/v1/executions")
    );
    let attempt = collector
        .wait_for("the attempt in the trace", in_trace("attempt"))
        .await;
    assert_eq!(attempt.parent_span_id, http.span_id, "the attempt's parent");
}
