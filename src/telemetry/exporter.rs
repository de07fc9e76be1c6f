//! Where the metrics go: the global meter provider with its readers (Prometheus, OTLP), the
//! `/metrics` endpoint, and the gauges only the database knows, refreshed before each scrape.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use opentelemetry_sdk::metrics::SdkMeterProvider;

/// The Prometheus registry `/metrics` encodes, once [`install`] made one.
static REGISTRY: OnceLock<prometheus::Registry> = OnceLock::new();
/// What the database said at the last refresh (see [`DbGauges`]).
pub(super) static DB_GAUGES: Mutex<DbGauges> = Mutex::new(DbGauges::new());
/// The hook that refreshes [`DB_GAUGES`] before a scrape.
static REFRESHER: Mutex<Option<Refresher>> = Mutex::new(None);

/// Reads the database gauges; registered by the node, awaited before each scrape.
pub type Refresher =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Option<DbGauges>> + Send>> + Send + Sync>;

/// The gauges only the database knows, as the last refresh read them.
#[derive(Debug, Clone, Default)]
pub struct DbGauges {
    /// Tasks ready and not claimed, by (queue, runtime). A pair once seen stays, at 0, so a
    /// drained queue reads 0 rather than disappearing.
    pub tasks_waiting: BTreeMap<(String, String), u64>,
    /// Workers heard from recently, on any server.
    pub workers_connected: u64,
    /// The slots those workers announced.
    pub worker_slots: u64,
    /// The leases those workers hold.
    pub worker_slots_in_use: u64,
}

impl DbGauges {
    const fn new() -> Self {
        DbGauges {
            tasks_waiting: BTreeMap::new(),
            workers_connected: 0,
            worker_slots: 0,
            worker_slots_in_use: 0,
        }
    }
}

/// Installs the global meter provider: a Prometheus reader when `prometheus`, an OTLP push
/// reader when `otlp`; none (every instrument a no-op) when neither.
pub(super) fn install(
    prometheus: bool,
    otlp: bool,
    resource: opentelemetry_sdk::Resource,
) -> Option<SdkMeterProvider> {
    if !prometheus && !otlp {
        return None;
    }
    let mut builder = SdkMeterProvider::builder().with_resource(resource);
    if prometheus {
        let registry = REGISTRY.get_or_init(prometheus::Registry::new).clone();
        match opentelemetry_prometheus::exporter()
            .with_registry(registry)
            .scope_info_enabled(false)
            .build()
        {
            Ok(exporter) => builder = builder.with_reader(exporter),
            Err(e) => eprintln!("Prometheus exporter not started: {e}"),
        }
    }
    if otlp {
        match opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .build()
        {
            Ok(exporter) => {
                builder = builder.with_reader(
                    opentelemetry_sdk::metrics::PeriodicReader::builder(exporter).build(),
                )
            }
            Err(e) => eprintln!("OpenTelemetry metric exporter not started: {e}"),
        }
    }
    let provider = builder.build();
    opentelemetry::global::set_meter_provider(provider.clone());
    Some(provider)
}

/// Registers the hook that reads the database gauges (the node's store).
pub fn set_refresher(refresher: Refresher) {
    *REFRESHER.lock().expect("not poisoned") = Some(refresher);
}

/// Reads the database gauges now (before a scrape, or on the OTLP push cadence).
pub async fn refresh() {
    let refresher = REFRESHER.lock().expect("not poisoned").clone();
    let Some(refresher) = refresher else { return };
    // A slow database must not hang the scrape: the last values stand.
    if let Ok(Some(mut fresh)) = tokio::time::timeout(Duration::from_secs(5), refresher()).await {
        let mut gauges = DB_GAUGES.lock().expect("not poisoned");
        for (key, _) in std::mem::take(&mut gauges.tasks_waiting) {
            fresh.tasks_waiting.entry(key).or_insert(0);
        }
        *gauges = fresh;
    }
}

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// No Prometheus reader was installed (telemetry was initialised without it).
    #[error("metrics are not enabled in this process")]
    NotEnabled,
    /// The address could not be bound.
    #[error("cannot listen on {addr} for metrics: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Binds `addr` for `/metrics`; returns the bound address and the server, which runs until
/// `shutdown` fires.
pub async fn serve(
    addr: SocketAddr,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(SocketAddr, impl Future<Output = ()> + Send), MetricsError> {
    let registry = REGISTRY.get().cloned().ok_or(MetricsError::NotEnabled)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Listen { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| MetricsError::Listen { addr, source })?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let registry = registry.clone();
            async move {
                refresh().await;
                let mut text = String::new();
                let encoded = prometheus::TextEncoder::new()
                    .encode_utf8(&registry.gather(), &mut text)
                    .map(|()| text);
                match encoded {
                    Ok(text) => (
                        axum::http::StatusCode::OK,
                        [(
                            axum::http::header::CONTENT_TYPE,
                            prometheus::TEXT_FORMAT.to_string(),
                        )],
                        text,
                    ),
                    Err(e) => (
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        [(axum::http::header::CONTENT_TYPE, "text/plain".to_string())],
                        format!("cannot encode metrics: {e}\n"),
                    ),
                }
            }
        }),
    );
    let server = async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "metrics server failed");
        }
    };
    Ok((bound, server))
}
