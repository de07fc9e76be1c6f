//! Logging and tracing: `tracing` to stderr (`RUST_LOG`, default `info`), and OpenTelemetry
//! traces over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Without an endpoint no
//! exporter is installed, so nothing tries to reach a collector that is not there.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub mod trace;

/// Keeps the exporter alive; dropping it flushes pending spans.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Installs the global subscriber. `json` switches log lines to JSON (for log shippers);
/// `default_level` applies when `RUST_LOG` is unset.
pub fn init(json: bool, default_level: &str) -> Telemetry {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let fmt = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
            .boxed()
    };
    let provider = std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").and_then(|_| {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build();
        match exporter {
            Ok(exporter) => Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(
                        opentelemetry_sdk::Resource::builder()
                            .with_service_name("cairn")
                            .build(),
                    )
                    .build(),
            ),
            Err(e) => {
                eprintln!("OpenTelemetry exporter not started: {e}");
                None
            }
        }
    });
    trace::install_propagator();
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("cairn")));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init();
    Telemetry { provider }
}
