//! Server spans for RPCs: a tower layer that opens a span per call of the client-facing services,
//! named after the method (`StartExecution`), and makes the W3C `traceparent` the call carries in
//! its metadata the span's parent, so a client's trace goes on in the server. The client side
//! is [`inject`], which the client interceptor calls for every request.
//!
//! Worker calls (polls, progress, reports) get no span of their own: they are not part of a
//! client's request, and the worker's `attempt` span joins the execution's trace from the
//! `traceparent` recorded with the execution instead.

use std::task::{Context, Poll};

use tonic::codegen::http;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tracing::Instrument;

use crate::telemetry::trace as otel;

/// The tower layer that opens the RPC spans.
#[derive(Clone, Debug, Default)]
pub struct TraceLayer;

impl<S> tower::Layer<S> for TraceLayer {
    type Service = Traced<S>;

    fn layer(&self, inner: S) -> Traced<S> {
        Traced { inner }
    }
}

/// The service [`TraceLayer`] wraps around the routes.
#[derive(Clone, Debug)]
pub struct Traced<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for Traced<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::Either<tracing::instrument::Instrumented<S::Future>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let Some((service, method)) = traced_method(request.uri().path()) else {
            return futures::future::Either::Right(self.inner.call(request));
        };
        let span = tracing::info_span!(
            "rpc",
            otel.name = method,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = service,
            rpc.method = method,
        );
        otel::set_parent_from(&span, &Headers(request.headers()));
        let future = span.in_scope(|| self.inner.call(request));
        futures::future::Either::Left(future.instrument(span))
    }
}

/// `(service, method)` of a call that gets a span: every Cairn service but the worker's.
fn traced_method(path: &str) -> Option<(String, String)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    if !service.starts_with("cairn.v1.") || service == "cairn.v1.WorkerService" {
        return None;
    }
    Some((service.to_string(), method.to_string()))
}

/// Request headers as a propagation carrier.
struct Headers<'a>(&'a http::HeaderMap);

impl opentelemetry::propagation::Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The `traceparent` to record with an execution a call starts: the server span's own, or
/// (when this server exports no spans) the one the client sent, if well-formed.
pub(super) fn traceparent(metadata: &MetadataMap) -> Option<String> {
    otel::traceparent_of(&tracing::Span::current()).or_else(|| {
        metadata
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .filter(|v| otel::is_traceparent(v))
            .map(str::to_string)
    })
}

/// The server span of an HTTP/JSON API request: named `METHOD route` (`POST /api/v1/executions`,
/// the route's template, never an id), with the request's `traceparent` as its parent, as an
/// RPC's span has the call's. A start made inside it records it, so the attempts join the
/// caller's trace over HTTP as over gRPC.
pub(super) fn http_span(method: &str, route: &str, headers: &http::HeaderMap) -> tracing::Span {
    let span = tracing::info_span!(
        "http",
        otel.name = format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = method,
        http.route = route,
    );
    otel::set_parent_from(&span, &Headers(headers));
    span
}

/// Adds the current span's trace context to a request's metadata (nothing when it has none).
pub fn inject(metadata: &mut MetadataMap) {
    for (key, value) in otel::headers_of(&tracing::Span::current()) {
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_str()),
        ) {
            metadata.insert(key, value);
        }
    }
}
