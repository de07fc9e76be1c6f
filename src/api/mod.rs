//! The gRPC edge: generated types, services, conversions, validation and the error mapping;
//! and the HTTP/JSON API (`http/`) over the same services, on the same port.
//!
//! Architecture invariant: nothing outside this module names a prost type; bad input is refused
//! here, before anything is written, with a message that says what to fix.

mod agents;
pub mod auth;
pub mod client;
mod convert;
mod error;
mod executions;
pub mod http;
mod retry;
mod serve;
mod stats;
mod teams;
mod tenancy;
mod tls;
pub mod trace;
mod validate;
mod worker_client;
mod workers;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::engine::Engine;
use crate::runtime::RuntimeRegistry;

pub use agents::Agents;
pub use auth::{AuthLayer, Caller, TokenKind, Tokens};
pub use client::{AuthChannel, ConnectError, ConnectOptions};
pub use executions::Executions;
pub use retry::replay_response;
pub use teams::Teams;
pub use tenancy::NAMESPACE_HEADER;
pub use tls::ServerTls;
pub use validate::Limits;
pub use worker_client::WorkerClient;
pub use workers::Workers;

/// Checks a namespace name as every request's namespace is checked (for settings that name one).
pub fn check_namespace(namespace: &str) -> Result<String, tonic::Status> {
    validate::namespace(namespace)
}

/// Types and services generated from `proto/cairn/v1/cairn.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic, reason = "generated code")]
pub mod pb {
    tonic::include_proto!("cairn.v1");

    /// The encoded file descriptor set, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("cairn_descriptor");
}

/// What every service shares.
pub struct ApiState {
    /// The engine every service calls into.
    pub engine: Arc<Engine>,
    /// Every runtime this build knows (for validation and `ListRuntimes`).
    pub runtimes: RuntimeRegistry,
    /// Request limits.
    pub limits: Limits,
    /// Fires when the server stops accepting calls (after its drain delay, see [`Drain`]):
    /// long-polls answer at once and output streams end (with `UNAVAILABLE`), so in-flight calls
    /// finish promptly. [`serve`] fires it.
    pub shutdown: CancellationToken,
}

/// How a server guards its port: TLS and bearer tokens (both off by default).
#[derive(Debug, Clone, Default)]
pub struct Security {
    /// The accepted tokens; none means no authentication.
    pub tokens: Tokens,
    /// The server's PEM certificate chain and private key, for TLS.
    pub tls: Option<ServerTls>,
}

/// When a server stops: at `shutdown` it reports `NOT_SERVING` on the health service (the
/// overall status and every service's), keeps answering for `delay` so that load balancers and
/// Kubernetes readiness probes see it and stop sending calls, then stops accepting.
#[derive(Debug, Clone)]
pub struct Drain {
    /// Fires when the server begins to stop.
    pub shutdown: CancellationToken,
    /// How long it answers `NOT_SERVING` before it stops accepting.
    pub delay: std::time::Duration,
}

/// Serves the API (with gRPC health and reflection) on `listener` until `drain.shutdown` fires,
/// reports `NOT_SERVING` for `drain.delay`, then finishes in-flight calls and returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<ApiState>,
    security: Security,
    drain: Drain,
) -> Result<(), tonic::transport::Error> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<pb::execution_service_server::ExecutionServiceServer<Executions>>()
        .await;
    health_reporter
        .set_serving::<pb::agent_service_server::AgentServiceServer<Agents>>()
        .await;
    health_reporter
        .set_serving::<pb::worker_service_server::WorkerServiceServer<Workers>>()
        .await;
    health_reporter
        .set_serving::<pb::team_service_server::TeamServiceServer<Teams>>()
        .await;
    let stopping = state.shutdown.clone();
    let stopped = async move {
        drain.shutdown.cancelled().await;
        health_reporter
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        health_reporter
            .set_not_serving::<pb::execution_service_server::ExecutionServiceServer<Executions>>()
            .await;
        health_reporter
            .set_not_serving::<pb::agent_service_server::AgentServiceServer<Agents>>()
            .await;
        health_reporter
            .set_not_serving::<pb::worker_service_server::WorkerServiceServer<Workers>>()
            .await;
        health_reporter
            .set_not_serving::<pb::team_service_server::TeamServiceServer<Teams>>()
            .await;
        tracing::info!(
            delay_ms = drain.delay.as_millis() as u64,
            "health NOT_SERVING; draining"
        );
        tokio::time::sleep(drain.delay).await;
        // Only now do long-polls answer and streams end: during the delay the server serves as
        // before, so workers polling it wait as usual instead of polling again at once.
        stopping.cancel();
    };
    // Reflection in both protocol versions: v1, and v1alpha, which older tools still speak
    // (grpcurl 1.8, for one).
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .expect("the descriptor sets are valid");
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .expect("the descriptor sets are valid");
    // The builder's `tcp_nodelay` only reaches listeners it binds itself; without it on accepted
    // sockets, Nagle's algorithm meets delayed ACKs and small replies wait ~40 ms.
    let incoming = tokio_stream::StreamExt::map(
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        |accepted| {
            accepted.inspect(|stream| {
                let _ = stream.set_nodelay(true);
            })
        },
    );
    let grpc = tonic::service::Routes::new(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(pb::agent_service_server::AgentServiceServer::new(
            Agents::new(state.clone()),
        ))
        .add_service(pb::execution_service_server::ExecutionServiceServer::new(
            Executions::new(state.clone()),
        ))
        .add_service(pb::team_service_server::TeamServiceServer::new(Teams::new(
            state.clone(),
        )))
        .add_service(pb::worker_service_server::WorkerServiceServer::new(
            Workers::new(state.clone()),
        ))
        .prepare();
    let grpc = {
        use tower::Layer;
        let worker_certs = security
            .tls
            .as_ref()
            .is_some_and(ServerTls::verifies_workers);
        let auth = AuthLayer::new(security.tokens.clone()).with_worker_certs(worker_certs);
        trace::TraceLayer.layer(auth.layer(grpc))
    };
    let service = serve::ByContentType {
        grpc,
        http: http_routes(state, security.tokens),
    };
    // HTTP/1.1 besides HTTP/2, for the HTTP/JSON API (gRPC needs HTTP/2 and gets it).
    let builder = tonic::transport::Server::builder().accept_http1(true);
    match &security.tls {
        Some(tls) => {
            builder
                .serve_with_incoming_shutdown(service, tls.accept(incoming), stopped)
                .await
        }
        None => {
            builder
                .serve_with_incoming_shutdown(service, incoming, stopped)
                .await
        }
    }
}

/// Everything the port serves over plain HTTP (whatever is not gRPC): the HTTP/JSON API under
/// `/api/v1`.
///
/// MERGE POINT for other HTTP routers on the same port: `.merge(...)` them here (the web
/// console, at `/`, is one line: `.merge(crate::console::router())`). Each router keeps its own
/// paths; the JSON API answers every path under `/api/v1`, so a router merged here must not
/// route there, and must not set a router-wide `fallback` on top of another's.
fn http_routes(state: Arc<ApiState>, tokens: Tokens) -> axum::Router {
    http::router(state, tokens).merge(crate::console::router())
}
