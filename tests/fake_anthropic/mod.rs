//! A fake Anthropic Messages API for tests that drive real clients (the Claude Code CLI).
//!
//! It serves real HTTP with real SSE on `127.0.0.1:<random port>`, answers each
//! `POST /v1/messages` with the next scripted [`Reply`], and records every request. Use it from a
//! test file with `mod fake_anthropic;`. [`CliSandbox`] holds the environment recipe that runs
//! the CLI offline against it (see `shared/reference/claude-code-cli-offline.md`).
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the fake"
)]

mod cli_env;
mod sse;

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

pub use cli_env::{CliSandbox, claude_cli};
pub use sse::Reply;

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The HTTP method.
    pub method: String,
    /// Path and query, e.g. `/v1/messages?beta=true`.
    pub path: String,
    /// Headers, lower-case names.
    pub headers: BTreeMap<String, String>,
    /// The JSON body (`Null` if there was none or it was not JSON).
    pub body: Value,
}

impl Recorded {
    /// Whether this is a call of the Messages API.
    pub fn is_messages(&self) -> bool {
        self.method == "POST" && self.path.split('?').next() == Some("/v1/messages")
    }

    /// The `messages` of the body.
    pub fn messages(&self) -> Vec<Value> {
        self.body["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// All text of the conversation (text blocks and tool results), for `contains` checks.
    pub fn transcript(&self) -> String {
        self.messages()
            .iter()
            .map(|m| m["content"].to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// State shared between the server task and the test.
#[derive(Default)]
struct Shared {
    /// Replies still to give. The last one is repeated, so a client's retries see it again.
    script: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<Recorded>>,
    /// Bumped on every request, so tests can wait for one without polling.
    seen: watch::Sender<usize>,
    /// Streams whose client went away before the stream ended.
    disconnects: AtomicUsize,
    next_id: AtomicU64,
}

/// A running fake. The server stops when this is dropped.
pub struct FakeAnthropic {
    url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeAnthropic {
    /// Starts a fake that gives `script`'s replies in order, repeating the last.
    pub async fn start(script: impl IntoIterator<Item = Reply>) -> Self {
        let shared = Arc::new(Shared::default());
        shared.script.lock().unwrap().extend(script);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        let state = shared.clone();
        let app = Router::new().fallback(move |method, uri, headers, body| {
            handle(state.clone(), method, uri, headers, body)
        });
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the fake serves");
        });
        FakeAnthropic {
            url,
            shared,
            server,
        }
    }

    /// The base URL, for `ANTHROPIC_BASE_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Appends a reply to the script.
    pub fn push(&self, reply: Reply) {
        self.shared.script.lock().unwrap().push_back(reply);
    }

    /// Replaces what is left of the script.
    pub fn set_script(&self, script: impl IntoIterator<Item = Reply>) {
        let mut current = self.shared.script.lock().unwrap();
        current.clear();
        current.extend(script);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// The Messages API calls so far.
    pub fn message_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(Recorded::is_messages)
            .collect()
    }

    /// How many streams the client abandoned before their end (e.g. after an interrupt).
    pub fn disconnects(&self) -> usize {
        self.shared.disconnects.load(Ordering::SeqCst)
    }

    /// Waits until `done` holds for the requests, failing the test after `limit`.
    pub async fn wait_for(&self, limit: Duration, done: impl Fn(&[Recorded]) -> bool) {
        let mut seen = self.shared.seen.subscribe();
        let waited = tokio::time::timeout(limit, async {
            while !done(&self.requests()) {
                seen.changed().await.expect("the fake is running");
            }
        });
        waited
            .await
            .unwrap_or_else(|_| panic!("the fake did not see the expected requests in {limit:?}"));
    }
}

impl Drop for FakeAnthropic {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Answers any request: HEAD probes, token counts, and scripted Messages replies.
async fn handle(
    shared: Arc<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let recorded = Recorded {
        method: method.to_string(),
        path: uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let is_messages = recorded.is_messages();
    let path = uri.path().to_owned();
    let request_body = recorded.body.clone();
    shared.requests.lock().unwrap().push(recorded);
    shared.seen.send_modify(|n| *n += 1);

    if method == Method::HEAD {
        return StatusCode::OK.into_response();
    }
    if method == Method::POST && path == "/v1/messages/count_tokens" {
        return axum::Json(json!({"input_tokens": 12})).into_response();
    }
    if !is_messages {
        let body = json!({"type": "error", "error": {"type": "not_found_error", "message": format!("fake: no route {path}")}});
        return (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
    }
    let reply = next_reply(&shared);
    let n = shared.next_id.fetch_add(1, Ordering::SeqCst) + 1;
    let model = request_body["model"]
        .as_str()
        .unwrap_or("claude-fake")
        .to_owned();
    if let Reply::Error { status, message } = &reply {
        let status = StatusCode::from_u16(*status).expect("a valid scripted status");
        let body = json!({"type": "error", "error": {"type": sse::error_type(status.as_u16()), "message": message}});
        return (status, axum::Json(body)).into_response();
    }
    if request_body["stream"] != json!(true) {
        return axum::Json(sse::message(&reply, &model, n)).into_response();
    }
    stream(shared, sse::events(&reply, &model, n))
}

/// The next scripted reply; the last one stays, and an empty script answers with text.
fn next_reply(shared: &Shared) -> Reply {
    let mut script = shared.script.lock().unwrap();
    match script.len() {
        0 => Reply::text("ok from the fake model"),
        1 => script[0].clone(),
        _ => script.pop_front().expect("not empty"),
    }
}

/// Streams `events` as SSE, pausing as scripted, and counts a client that leaves early.
fn stream(shared: Arc<Shared>, events: Vec<(Duration, &'static str, Value)>) -> Response {
    let (sender, receiver) = mpsc::channel::<Result<Event, Infallible>>(1);
    tokio::spawn(async move {
        for (pause, name, data) in events {
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            let event = Event::default().event(name).data(data.to_string());
            if sender.send(Ok(event)).await.is_err() {
                shared.disconnects.fetch_add(1, Ordering::SeqCst);
                return;
            }
        }
    });
    let events = tokio_stream::wrappers::ReceiverStream::new(receiver);
    let mut response = Sse::new(events).into_response();
    response
        .headers_mut()
        .insert("request-id", "req_fake".parse().expect("a header value"));
    response
}
