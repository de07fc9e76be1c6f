//! A running Cairn node: store, engine, sweeper, gRPC server and (optionally) an in-process
//! worker, started together and stopped together. `cairn dev`, `cairn server`, `cairn bench` and
//! `cairn demo` are all built from it.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiState, Limits, Security};
use crate::clock::SystemClock;
use crate::engine::{DirectWorkerApi, Engine, EngineOptions, Sweeper, SweeperOptions};
use crate::runtime::{RuntimeRegistry, RuntimeSettings};
use crate::store::{self, Durability};
use crate::worker::{Worker, WorkerOptions};

/// How to run a node.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Where the gRPC server listens (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// `sqlite://PATH` or `postgres://...`.
    pub database_url: String,
    /// Commit durability.
    pub durability: Durability,
    /// Apply migrations at start.
    pub migrate: bool,
    /// Run an in-process worker with this many slots (0 = no worker).
    pub worker_concurrency: usize,
    /// The runtimes the in-process worker offers (empty = all).
    pub worker_runtimes: Vec<String>,
    /// Runtime settings for the in-process worker.
    pub runtime_settings: RuntimeSettings,
    /// How long the in-process worker gives a cancelled runtime before abandoning it.
    pub cancel_grace: std::time::Duration,
    /// What the in-process worker admits (restrictive unless the caller says otherwise).
    pub worker_policy: crate::domain::WorkerPolicy,
    /// How long the in-process worker's attempts wait for an answer to a tool call before
    /// they are held (checkpointed and stopped until the answer).
    pub approval_hold: std::time::Duration,
    /// Request limits.
    pub limits: Limits,
    /// Engine defaults.
    pub engine: EngineOptions,
    /// TLS and bearer tokens of the gRPC port (off by default).
    pub security: Security,
    /// Where to serve `/metrics` (off when `None`; needs telemetry initialised with metrics).
    pub metrics_listen: Option<SocketAddr>,
    /// How long a stopping node answers with health `NOT_SERVING` before it stops accepting.
    pub drain_delay: std::time::Duration,
    /// How long closed executions are kept (for good by default).
    pub retention: crate::engine::RetentionPolicy,
    /// How often retention looks for closed executions past their window.
    pub retention_every: std::time::Duration,
}

impl NodeOptions {
    /// Options for a node on `database_url` listening on `listen`, with an in-process worker.
    pub fn new(listen: SocketAddr, database_url: impl Into<String>) -> Self {
        NodeOptions {
            listen,
            database_url: database_url.into(),
            durability: Durability::Full,
            migrate: true,
            worker_concurrency: 32,
            worker_runtimes: Vec::new(),
            runtime_settings: RuntimeSettings::default(),
            cancel_grace: std::time::Duration::from_secs(5),
            worker_policy: crate::domain::WorkerPolicy::default(),
            approval_hold: crate::worker::DEFAULT_APPROVAL_HOLD,
            limits: Limits::default(),
            engine: EngineOptions::default(),
            security: Security::default(),
            metrics_listen: None,
            drain_delay: std::time::Duration::ZERO,
            retention: crate::engine::RetentionPolicy::default(),
            retention_every: std::time::Duration::from_secs(60),
        }
    }
}

/// A started node.
pub struct Node {
    /// Where the gRPC server listens.
    pub addr: SocketAddr,
    /// Where `/metrics` is served, when it is.
    pub metrics_addr: Option<SocketAddr>,
    /// The engine, for in-process callers.
    pub engine: Arc<Engine>,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Store(#[from] store::StoreError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A runtime name is unknown.
    #[error("{0}")]
    Runtime(String),
    /// The metrics endpoint could not start.
    #[error(transparent)]
    Metrics(#[from] crate::telemetry::metrics::MetricsError),
}

impl Node {
    /// Opens the store, migrates it if asked, and starts every part.
    pub async fn start(options: NodeOptions) -> Result<Node, NodeError> {
        let store = store::open(&options.database_url, options.durability).await?;
        if options.migrate {
            store.migrate().await?;
        }
        let engine = Engine::new(store, Arc::new(SystemClock), options.engine.clone());
        let runtimes = RuntimeRegistry::builtin(&options.runtime_settings);
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(|source| NodeError::Listen {
                addr: options.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| NodeError::Listen {
            addr: options.listen,
            source,
        })?;
        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();

        let state = Arc::new(ApiState {
            engine: engine.clone(),
            runtimes: runtimes.clone(),
            limits: options.limits.clone(),
            shutdown: CancellationToken::new(),
        });
        let server_shutdown = shutdown.clone();
        let security = options.security.clone();
        let drain_delay = options.drain_delay;
        tasks.spawn(async move {
            let drain = api::Drain {
                shutdown: server_shutdown,
                delay: drain_delay,
            };
            if let Err(e) = api::serve(listener, state, security, drain).await {
                tracing::error!(error = %e, "gRPC server failed");
            }
        });
        // Wake-ups for changes committed through other servers (PostgreSQL only).
        tasks.spawn(engine.clone().follow_changes(shutdown.clone()));
        tasks.spawn(Sweeper::new(engine.clone(), SweeperOptions::default()).run(shutdown.clone()));
        if options.retention.deletes() {
            tasks.spawn(engine.clone().run_retention(
                options.retention.clone(),
                options.retention_every,
                shutdown.clone(),
            ));
        }

        if options.worker_concurrency > 0 {
            let worker_runtimes = if options.worker_runtimes.is_empty() {
                runtimes.clone()
            } else {
                runtimes
                    .select(&options.worker_runtimes)
                    .map_err(NodeError::Runtime)?
            };
            let worker_id = format!("{}-{}-inproc", hostname(), std::process::id());
            let mut worker_options = WorkerOptions::new(worker_id, worker_runtimes);
            worker_options.concurrency = options.worker_concurrency;
            worker_options.cancel_grace = options.cancel_grace;
            worker_options.policy = options.worker_policy.clone();
            // The in-process worker reaches the engine without crossing the API's edge, so it
            // holds its runtimes' output to the server's limits itself.
            worker_options.max_chunk_bytes = options.limits.max_chunk_bytes;
            worker_options.max_checkpoint_bytes = options.limits.max_checkpoint_bytes;
            worker_options.max_batch_bytes = worker_options
                .max_batch_bytes
                .min(options.limits.max_batch_bytes);
            worker_options.approval_hold = options.approval_hold;
            let worker = Worker::new(
                Arc::new(DirectWorkerApi::new(engine.clone())),
                worker_options,
            );
            tasks.spawn(worker.run(shutdown.clone()));
        }
        // Pushed over OTLP, the database gauges are read on the push cadence instead of a scrape.
        if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some_and(|v| !v.is_empty()) {
            crate::telemetry::metrics::set_refresher(db_gauges(engine.clone()));
            tasks.spawn(refresh_gauges(shutdown.clone()));
        }
        let metrics_addr = match options.metrics_listen {
            Some(listen) => {
                crate::telemetry::metrics::set_refresher(db_gauges(engine.clone()));
                let (bound, server) =
                    crate::telemetry::metrics::serve(listen, shutdown.clone()).await?;
                tasks.spawn(server);
                Some(bound)
            }
            None => None,
        };
        tracing::info!(%addr, database = %redact(&options.database_url), "cairn node started");
        Ok(Node {
            addr,
            metrics_addr,
            engine,
            shutdown,
            tasks,
        })
    }

    /// A token that stops the node when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Runs until the shutdown token fires, then waits for every part to stop.
    pub async fn wait(mut self) {
        self.shutdown.cancelled().await;
        while self.tasks.join_next().await.is_some() {}
    }

    /// Stops the node and waits for it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.wait().await;
    }
}

/// Reads the gauges only the database knows, for a scrape: tasks waiting (one grouped count)
/// and the workers heard from recently (the `ListWorkers` read).
fn db_gauges(engine: Arc<Engine>) -> crate::telemetry::metrics::Refresher {
    Arc::new(move || {
        let engine = engine.clone();
        Box::pin(async move {
            let store = engine.store();
            let waiting = store
                .tasks_waiting()
                .await
                .map_err(|e| tracing::warn!(error = %e, "cannot count waiting tasks for metrics"))
                .ok()?;
            let since = engine.now() - crate::engine::CONNECTED_WITHIN_MS;
            let workers = store
                .list_workers(since)
                .await
                .map_err(|e| tracing::warn!(error = %e, "cannot list workers for metrics"))
                .ok()?;
            Some(crate::telemetry::metrics::DbGauges {
                tasks_waiting: waiting
                    .into_iter()
                    .map(|w| ((w.queue, w.runtime), w.count))
                    .collect(),
                workers_connected: workers.len() as u64,
                worker_slots: workers.iter().map(|w| u64::from(w.slots)).sum(),
                worker_slots_in_use: workers.iter().map(|w| u64::from(w.slots_in_use)).sum(),
            })
        })
    })
}

/// Reads the database gauges every 30 s (the OTLP exporter's default push interval is 60 s).
async fn refresh_gauges(shutdown: CancellationToken) {
    loop {
        crate::telemetry::metrics::refresh().await;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(30)) => {}
        }
    }
}

/// This machine's name, for worker ids.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The URL without a password, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
