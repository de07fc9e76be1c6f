//! W3C trace context: the propagator, and moving a span's context in and out of the string
//! carriers that cross processes (gRPC metadata, the `traceparent` recorded with an execution).
//! Without an exporter spans carry no OpenTelemetry context, so these functions then find none
//! and set none.

use std::collections::HashMap;

use opentelemetry::propagation::Extractor;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Makes W3C Trace Context (`traceparent`, `tracestate`) the global propagator.
pub(super) fn install_propagator() {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
}

/// The W3C headers (`traceparent`, and `tracestate` when there is one) of `span`'s context;
/// empty when it has none.
pub fn headers_of(span: &tracing::Span) -> HashMap<String, String> {
    let cx = span.context();
    let mut headers = HashMap::new();
    if cx.span().span_context().is_valid() {
        opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut headers));
    }
    headers
}

/// The `traceparent` of `span`, if it belongs to a trace.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    headers_of(span).remove("traceparent")
}

/// Whether `value` is a well-formed W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`, ids not
/// all zeros). A malformed one is ignored, as the W3C recommendation says, never refused.
pub fn is_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
    parts.len() == 4
        && hex(parts[0], 2)
        && parts[0] != "ff"
        && hex(parts[1], 32)
        && nonzero(parts[1])
        && hex(parts[2], 16)
        && nonzero(parts[2])
        && hex(parts[3], 2)
}

/// Makes the remote context `carrier` holds the parent of `span` (before it is first entered).
/// A carrier without valid context leaves `span` a root.
pub fn set_parent_from(span: &tracing::Span, carrier: &dyn Extractor) {
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(carrier));
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// Makes the span `traceparent` names the parent of `span`.
pub fn set_parent(span: &tracing::Span, traceparent: &str) {
    let carrier = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    set_parent_from(span, &carrier);
}

/// Tracing for a client command (`cairn run`): its spans go to OTLP when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and nothing is logged (the command prints for itself).
/// `None` without an endpoint. Dropping it flushes the spans.
pub struct ClientTracing {
    provider: SdkTracerProvider,
}

impl Drop for ClientTracing {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// Installs [`ClientTracing`] when an OTLP endpoint is configured.
pub fn client() -> Option<ClientTracing> {
    std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT")?;
    install_propagator();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
        .inspect_err(|e| eprintln!("OpenTelemetry exporter not started: {e}"))
        .ok()?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("cairn-cli")
                .build(),
        )
        .build();
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("cairn"))
        .with_filter(EnvFilter::new("info"));
    let _ = tracing_subscriber::registry().with(otel).try_init();
    Some(ClientTracing { provider })
}
