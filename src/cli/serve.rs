//! `cairn dev`, `cairn server`, `cairn migrate`.

use std::net::SocketAddr;
use std::process::ExitCode;

use super::args::{DEFAULT_DATABASE, DEFAULT_LISTEN, ObservabilityArgs};
use super::host::{RuntimeArgs, signalled};
use super::secrets::SecurityArgs;
use crate::api::Limits;
use crate::domain::WorkerPolicy;
use crate::node::{Node, NodeOptions};
use crate::store::{self, Durability};

/// Options every server command shares.
#[derive(Debug, Clone, clap::Args)]
pub(super) struct StoreArgs {
    /// `sqlite://PATH` (created if missing) or `postgres://USER@HOST/DB`.
    #[arg(long, env = "CAIRN_DATABASE_URL", default_value = DEFAULT_DATABASE)]
    database_url: String,
    /// `full`: every acknowledged transition survives a power loss. `relaxed`: survives a crash
    /// of Cairn but may lose the last transitions on a power loss, for fewer fsyncs.
    #[arg(long, env = "CAIRN_DURABILITY", default_value = "full", value_parser = parse_durability)]
    durability: Durability,
}

fn parse_durability(s: &str) -> Result<Durability, String> {
    s.parse()
}

/// Options of `cairn dev`.
#[derive(Debug, clap::Args)]
pub(super) struct DevArgs {
    /// Where to serve gRPC.
    #[arg(long, env = "CAIRN_LISTEN", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    #[command(flatten)]
    store: StoreArgs,
    /// How many attempts the in-process worker runs at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// How long a cancelled runtime may take to stop before the worker abandons it.
    #[arg(long, default_value_t = 5_000)]
    cancel_grace_ms: u64,
    /// How long a running attempt waits for an answer to a tool call it asked about before it
    /// checkpoints, stops and frees its slot (it resumes once answered).
    #[arg(long, default_value_t = 30_000)]
    approval_hold_ms: u64,
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// The largest prompt accepted, in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    max_prompt_bytes: usize,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    security: SecurityArgs,
    #[command(flatten)]
    observability: ObservabilityArgs,
    /// On SIGTERM, how long the server keeps answering (health `NOT_SERVING`, so load balancers
    /// and Kubernetes stop sending to it) before it stops accepting calls.
    #[arg(long, env = "CAIRN_DRAIN_DELAY_MS", default_value_t = 0)]
    drain_delay_ms: u64,
}

/// Options of `cairn server`.
#[derive(Debug, clap::Args)]
pub(super) struct ServerArgs {
    /// Where to serve gRPC.
    #[arg(long, env = "CAIRN_LISTEN", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    #[command(flatten)]
    store: StoreArgs,
    /// Also run an in-process worker.
    #[arg(long)]
    worker: bool,
    /// The in-process worker's runtimes (comma-separated; default: all).
    #[arg(long, value_delimiter = ',')]
    runtimes: Vec<String>,
    /// How many attempts the in-process worker runs at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// How long a cancelled runtime may take to stop before the worker abandons it.
    #[arg(long, default_value_t = 5_000)]
    cancel_grace_ms: u64,
    /// How long a running attempt waits for an answer to a tool call it asked about before it
    /// checkpoints, stops and frees its slot (it resumes once answered).
    #[arg(long, default_value_t = 30_000)]
    approval_hold_ms: u64,
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// Do not apply migrations at start (apply them with `cairn migrate`).
    #[arg(long)]
    no_migrate: bool,
    /// How many executions the engine keeps at the version it last committed, so their next
    /// transition reads no row; 0 turns the cache off (to measure what it saves).
    #[arg(long, env = "CAIRN_EXECUTION_CACHE", default_value_t = 4096)]
    execution_cache: usize,
    /// The largest prompt accepted, in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    max_prompt_bytes: usize,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    security: SecurityArgs,
    #[command(flatten)]
    observability: ObservabilityArgs,
    /// On SIGTERM, how long the server keeps answering (health `NOT_SERVING`, so load balancers
    /// and Kubernetes stop sending to it) before it stops accepting calls.
    #[arg(long, env = "CAIRN_DRAIN_DELAY_MS", default_value_t = 0)]
    drain_delay_ms: u64,
    #[command(flatten)]
    retention: super::retention::RetentionArgs,
}

/// The limits on what clients and workers send, checked before anything is written.
#[derive(Debug, clap::Args)]
struct LimitArgs {
    /// The most turns (prompts) one execution may have (at most 1000).
    #[arg(long, default_value_t = 1_000)]
    max_turns: usize,
    /// The most attempts a retry policy may allow (at most 10000); a policy asking for no limit
    /// (0) gets this.
    #[arg(long, default_value_t = crate::domain::MAX_ATTEMPTS)]
    max_attempts: u32,
    /// The largest output chunk a worker may send, in bytes.
    #[arg(long, default_value_t = crate::contract::MAX_DOCUMENT_BYTES)]
    max_chunk_bytes: usize,
    /// The most bytes of chunks one worker message may carry.
    #[arg(long, default_value_t = crate::contract::MAX_REPORT_BYTES)]
    max_batch_bytes: usize,
    /// The largest checkpoint a worker may send, in bytes; an attempt whose checkpoint is larger
    /// fails once, for good, with this limit named.
    #[arg(long, default_value_t = crate::contract::MAX_DOCUMENT_BYTES)]
    max_checkpoint_bytes: usize,
    /// The most bytes of output one execution may store (its chunks' kinds and JSON data);
    /// output past it is refused and the attempt fails once, for good, naming this limit.
    #[arg(long, default_value_t = crate::engine::DEFAULT_MAX_OUTPUT_BYTES)]
    max_output_bytes: u64,
    /// The most events one execution's history may hold (at least 100): a client's message
    /// past it is refused, anything else fails the execution, naming this limit.
    #[arg(long, default_value_t = crate::engine::DEFAULT_MAX_HISTORY_EVENTS,
          value_parser = clap::value_parser!(u64).range(100..))]
    max_history_events: u64,
}

impl LimitArgs {
    fn limits(&self, max_prompt_bytes: usize) -> Limits {
        Limits {
            max_prompt_bytes,
            max_turns: self.max_turns,
            max_attempts: self.max_attempts.min(crate::domain::MAX_ATTEMPTS),
            max_chunk_bytes: self.max_chunk_bytes,
            max_batch_bytes: self.max_batch_bytes,
            max_checkpoint_bytes: self.max_checkpoint_bytes,
            ..Limits::default()
        }
    }

    /// Sets the limits the engine holds whole executions to (it alone knows their totals).
    fn apply_to_engine(&self, engine: &mut crate::engine::EngineOptions) {
        engine.max_output_bytes = Some(self.max_output_bytes);
        engine.max_history_events = Some(self.max_history_events);
    }
}

/// Options of `cairn migrate`.
#[derive(Debug, clap::Args)]
pub(super) struct MigrateArgs {
    #[command(flatten)]
    store: StoreArgs,
}

async fn serve(
    mut options: NodeOptions,
    observability: &ObservabilityArgs,
    drain_delay_ms: u64,
) -> anyhow::Result<ExitCode> {
    let _telemetry = observability.init();
    options.metrics_listen = observability.metrics_listen;
    options.drain_delay = std::time::Duration::from_millis(drain_delay_ms);
    let scheme = if options.security.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let node = Node::start(options).await?;
    eprintln!("cairn listening on {scheme}://{}", node.addr);
    if let Some(addr) = node.metrics_addr {
        eprintln!("cairn metrics on http://{addr}/metrics");
    }
    let shutdown = node.shutdown_token();
    tokio::spawn(async move {
        signalled().await;
        tracing::info!("shutting down");
        shutdown.cancel();
    });
    node.wait().await;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn dev(args: DevArgs) -> anyhow::Result<ExitCode> {
    let mut options = NodeOptions::new(args.listen, args.store.database_url);
    options.durability = args.store.durability;
    options.security = args.security.load_for(args.listen)?;
    options.worker_concurrency = args.concurrency.max(1);
    options.cancel_grace = std::time::Duration::from_millis(args.cancel_grace_ms);
    options.approval_hold = std::time::Duration::from_millis(args.approval_hold_ms);
    options.runtime_settings = args.runtime.settings();
    // On loopback the one user who can reach the server is the operator: the in-process worker
    // admits what that user configures. Elsewhere it is as restrictive as any worker's.
    let open = args.listen.ip().is_loopback();
    options.worker_policy = args.runtime.policy(if open {
        WorkerPolicy::unrestricted()
    } else {
        WorkerPolicy::default()
    })?;
    options.limits = args.limits.limits(args.max_prompt_bytes);
    args.limits.apply_to_engine(&mut options.engine);
    serve(options, &args.observability, args.drain_delay_ms).await
}

pub(super) async fn server(args: ServerArgs) -> anyhow::Result<ExitCode> {
    let mut options = NodeOptions::new(args.listen, args.store.database_url);
    options.durability = args.store.durability;
    options.migrate = !args.no_migrate;
    options.engine.execution_cache = Some(args.execution_cache);
    options.security = args.security.load_for(args.listen)?;
    options.worker_concurrency = if args.worker {
        args.concurrency.max(1)
    } else {
        0
    };
    options.worker_runtimes = args.runtimes;
    (options.retention, options.retention_every) = args.retention.policy();
    options.cancel_grace = std::time::Duration::from_millis(args.cancel_grace_ms);
    options.approval_hold = std::time::Duration::from_millis(args.approval_hold_ms);
    options.runtime_settings = args.runtime.settings();
    options.worker_policy = args.runtime.policy(WorkerPolicy::default())?;
    options.limits = args.limits.limits(args.max_prompt_bytes);
    args.limits.apply_to_engine(&mut options.engine);
    serve(options, &args.observability, args.drain_delay_ms).await
}

pub(super) async fn migrate(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let store = store::open(&args.store.database_url, args.store.durability).await?;
    store.migrate().await?;
    eprintln!(
        "migrations applied to {}",
        crate::node::redact(&args.store.database_url)
    );
    Ok(ExitCode::SUCCESS)
}
