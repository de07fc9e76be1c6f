//! A fake OpenAI-compatible Chat Completions server for tests: real HTTP, real server-sent events.
//!
//! Bind one with [`FakeOpenAi::start`], script its answers in order with [`FakeOpenAi::push`],
//! and point a runtime at [`FakeOpenAi::base_url`]. Each request takes the next scripted
//! [`Reply`]; when none is left it answers 500 with a message saying so. The fake records every
//! request (body and `Authorization`), counts them, and notices when a client hangs up before a
//! streamed reply has finished. Use it from any test crate with `mod fake_openai;`.

#![allow(
    dead_code,
    unused_imports,
    reason = "each test crate uses a different part of the fake"
)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

mod reply;

pub use reply::{Gate, Reply};
use reply::{ReplyBody, Step};

/// A running fake server; it stops when dropped.
pub struct FakeOpenAi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// The JSON body.
    pub body: Value,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
}

struct Shared {
    script: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<RecordedRequest>>,
    /// How many requests arrived, for waiting on.
    request_count: watch::Sender<usize>,
    /// How many streamed replies a client abandoned before their end, for waiting on.
    disconnects: watch::Sender<usize>,
}

impl FakeOpenAi {
    /// Binds 127.0.0.1 on a free port and serves `POST /v1/chat/completions`.
    pub async fn start() -> FakeOpenAi {
        let shared = Arc::new(Shared {
            script: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Vec::new()),
            request_count: watch::channel(0).0,
            disconnects: watch::channel(0).0,
        });
        let app = axum::Router::new()
            .route(
                "/v1/chat/completions",
                axum::routing::post(chat_completions),
            )
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("fake server runs");
        });
        FakeOpenAi {
            addr,
            shared,
            server,
        }
    }

    /// The API base to configure (`http://127.0.0.1:PORT/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Queues the answer to a future request.
    pub fn push(&self, reply: Reply) {
        self.shared.script.lock().unwrap().push_back(reply);
    }

    /// How many requests arrived so far.
    pub fn request_count(&self) -> usize {
        *self.shared.request_count.borrow()
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// How many streamed replies a client abandoned before their end.
    pub fn disconnects(&self) -> usize {
        *self.shared.disconnects.borrow()
    }

    /// Waits until at least `n` requests have arrived.
    pub async fn wait_for_requests(&self, n: usize) {
        let mut count = self.shared.request_count.subscribe();
        count.wait_for(|c| *c >= n).await.expect("the fake lives");
    }

    /// Waits until a client has hung up on a streamed reply before its end.
    pub async fn wait_for_disconnect(&self) {
        let mut count = self.shared.disconnects.subscribe();
        count.wait_for(|c| *c >= 1).await.expect("the fake lives");
    }
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn chat_completions(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let model = body["model"].clone();
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (number, reply) = {
        let mut requests = shared.requests.lock().unwrap();
        requests.push(RecordedRequest {
            body,
            authorization,
        });
        (requests.len(), shared.script.lock().unwrap().pop_front())
    };
    shared.request_count.send_replace(number);
    let reply = reply.unwrap_or_else(|| {
        Reply::error(
            500,
            &format!("fake_openai: no reply scripted for request {number}"),
        )
    });

    let mut response =
        Response::builder().status(StatusCode::from_u16(reply.status).expect("status"));
    for (name, value) in &reply.headers {
        response = response.header(name, value);
    }
    let body = match reply.body {
        ReplyBody::Json(json) => Body::from(json.to_string()),
        ReplyBody::Stream(steps) => {
            let (frames, rx) = mpsc::channel::<Result<Bytes, Infallible>>(4);
            let id = format!("chatcmpl-fake-{number}");
            tokio::spawn(play(steps, frames, id, model, shared.clone()));
            Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        }
    };
    response.body(body).expect("response")
}

/// Sends the steps of a streamed reply; a client that hangs up before the end is counted.
async fn play(
    steps: Vec<Step>,
    frames: mpsc::Sender<Result<Bytes, Infallible>>,
    id: String,
    model: Value,
    shared: Arc<Shared>,
) {
    let hung_up = || shared.disconnects.send_modify(|n| *n += 1);
    for step in steps {
        let data = match step {
            Step::Chunk(mut chunk) => {
                chunk["id"] = json!(id);
                chunk["object"] = json!("chat.completion.chunk");
                chunk["created"] = json!(1_700_000_000);
                chunk["model"] = model.clone();
                chunk.to_string()
            }
            Step::Raw(data) => data,
            Step::Gate(gate) => {
                tokio::select! {
                    _ = gate.0.notified() => continue,
                    _ = frames.closed() => return hung_up(),
                }
            }
            Step::Hang => {
                frames.closed().await;
                return hung_up();
            }
        };
        if frames
            .send(Ok(Bytes::from(format!("data: {data}\n\n"))))
            .await
            .is_err()
        {
            return hung_up();
        }
    }
}
