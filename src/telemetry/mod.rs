//! Logs, traces and metrics. Logs: `tracing` to stderr (`RUST_LOG`, default `info`), as text or
//! as one JSON object a line. Traces: OpenTelemetry over OTLP/gRPC when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Metrics ([`metrics`]): the OpenTelemetry metrics SDK,
//! read by the Prometheus exporter when `--metrics-listen` is given and pushed over OTLP when the
//! endpoint is set. Without an endpoint no exporter is installed, so nothing tries to reach a
//! collector that is not there; without either, every instrument is a no-op.

mod exporter;
pub mod metrics;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// For people: one readable line per event.
    #[default]
    Text,
    /// For log shippers: every line one JSON object, with the fields of the spans it happened in
    /// (`execution_id`, `activity_id`, `attempt` where known) under `span` and `spans`.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log format `{other}`: use `text` or `json`"
            )),
        }
    }
}

/// What to install.
#[derive(Debug, Clone, Default)]
pub struct TelemetryOptions {
    /// How log lines are written.
    pub log_format: LogFormat,
    /// The level when `RUST_LOG` is unset (`info` when empty).
    pub default_level: String,
    /// Install a meter provider with a Prometheus reader (for `--metrics-listen`).
    pub prometheus: bool,
}

/// Keeps the exporters alive; dropping it flushes pending spans and metrics.
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.tracer.take() {
            let _ = provider.shutdown();
        }
        if let Some(provider) = self.meter.take() {
            let _ = provider.shutdown();
        }
    }
}

fn otlp_endpoint_set() -> bool {
    std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some_and(|v| !v.is_empty())
}

fn resource() -> opentelemetry_sdk::Resource {
    opentelemetry_sdk::Resource::builder()
        .with_service_name("cairn")
        .build()
}

/// Installs the global subscriber and, when asked or when an OTLP endpoint is set, the global
/// meter provider. Call it before anything records a metric: instruments bind to the provider
/// installed when they are first used.
pub fn init(options: &TelemetryOptions) -> Telemetry {
    let level = match options.default_level.as_str() {
        "" => "info",
        level => level,
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let fmt = match options.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
            .boxed(),
    };
    let tracer = otlp_endpoint_set().then(|| {
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
            .map_err(|e| eprintln!("OpenTelemetry span exporter not started: {e}"))
            .ok()
            .map(|exporter| {
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(resource())
                    .build()
            })
    });
    let tracer = tracer.flatten();
    let otel = tracer
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("cairn")));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init();
    let meter = exporter::install(options.prometheus, otlp_endpoint_set(), resource());
    Telemetry { tracer, meter }
}
