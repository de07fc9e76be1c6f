//! `cairn worker`: a worker process that takes tasks from servers over gRPC; and
//! `cairn worker list`: the fleet as the servers see it.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Subcommand;
use tokio_util::sync::CancellationToken;

use super::args::{ClientArgs, ObservabilityArgs};
use super::client::status_error;
use super::host::{RuntimeArgs, signalled};
use super::output::{Output, time};
use crate::api::pb;
use crate::domain::WorkerPolicy;
use crate::runtime::RuntimeRegistry;
use crate::worker::{GrpcWorkerApi, Worker, WorkerOptions};

/// Options of `cairn worker`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(super) struct WorkerArgs {
    #[command(subcommand)]
    command: Option<WorkerCommand>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum WorkerCommand {
    /// List the workers seen recently by any server: runtimes, queue, slots in use, last seen.
    List,
}

/// Options of a worker process.
#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The runtimes it offers (comma-separated; default: every runtime of this build).
    #[arg(long, value_delimiter = ',')]
    runtimes: Vec<String>,
    /// The task queue it serves.
    #[arg(long, env = "CAIRN_QUEUE", default_value = crate::engine::DEFAULT_QUEUE)]
    queue: String,
    /// How many attempts it runs at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// A PEM client certificate to present, for servers that verify workers' certificates
    /// (`cairn server --client-ca`); with --tls-key.
    #[arg(long, env = "CAIRN_WORKER_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "CAIRN_WORKER_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Its identity (default: host name, process id and a random suffix).
    #[arg(long, env = "CAIRN_WORKER_ID")]
    worker_id: Option<String>,
    /// On SIGTERM, how long running attempts may take to finish before they are stopped and
    /// released to other workers.
    #[arg(long, default_value_t = 10_000)]
    drain_timeout_ms: u64,
    /// How long a cancelled runtime may take to stop before the worker abandons it.
    #[arg(long, default_value_t = 5_000)]
    cancel_grace_ms: u64,
    /// How long a running attempt waits for an answer to a tool call it asked about before it
    /// checkpoints, stops and frees its slot (it resumes once answered).
    #[arg(long, default_value_t = 30_000)]
    approval_hold_ms: u64,
    /// How long one poll may wait on the server.
    #[arg(long, default_value_t = 20_000)]
    poll_wait_ms: u64,
    /// How many polls the worker keeps open at once, each for its share of the free slots
    /// (at most `--concurrency`): while one is away with the tasks it got, another can wait on
    /// the server for a new execution's first task, handed over without a claim.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pollers: u32,
    #[command(flatten)]
    runtime: RuntimeArgs,
    #[command(flatten)]
    observability: ObservabilityArgs,
}

/// A worker takes tasks from the servers of the client flags (`--server`, repeated or
/// comma-separated: one at a time, moving to the next when one is unreachable; one URL behind a
/// load balancer works too), with their token and TLS settings.
pub(super) async fn run(
    args: WorkerArgs,
    client: ClientArgs,
    out: &Output,
) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(WorkerCommand::List) => list(client, out).await,
        None => work(args.run, client).await,
    }
}

async fn work(args: RunArgs, client: ClientArgs) -> anyhow::Result<ExitCode> {
    let _telemetry = args.observability.init();
    let all = RuntimeRegistry::builtin(&args.runtime.settings());
    let runtimes = if args.runtimes.is_empty() {
        all
    } else {
        all.select(&args.runtimes).map_err(anyhow::Error::msg)?
    };
    let worker_id = args.worker_id.clone().unwrap_or_else(|| {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        format!(
            "{}-{}-{}",
            crate::node::hostname(),
            std::process::id(),
            &suffix[..6]
        )
    });
    let mut connect = client.connect.load()?;
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        connect.identity = Some(super::secrets::read_identity(cert, key)?);
    }
    let api = GrpcWorkerApi::new(&client.server_urls(), &connect)?;
    let mut options = WorkerOptions::new(worker_id.clone(), runtimes);
    options.queue = args.queue.clone();
    options.concurrency = args.concurrency.max(1);
    options.drain_timeout = Duration::from_millis(args.drain_timeout_ms);
    options.cancel_grace = Duration::from_millis(args.cancel_grace_ms);
    options.approval_hold = Duration::from_millis(args.approval_hold_ms);
    options.poll_wait = Duration::from_millis(args.poll_wait_ms);
    options.pollers = args.pollers as usize;
    options.policy = args.runtime.policy(WorkerPolicy::default())?;
    let shutdown = CancellationToken::new();
    if let Some(addr) = args.observability.metrics_listen {
        // Metrics stay up through the drain, until the process exits.
        let (bound, server) =
            crate::telemetry::metrics::serve(addr, CancellationToken::new()).await?;
        eprintln!("cairn metrics on http://{bound}/metrics");
        tokio::spawn(server);
    }
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        signalled().await;
        tracing::info!("draining");
        on_signal.cancel();
    });
    eprintln!(
        "cairn worker {worker_id} serving queue `{}` from {}; policy: {}",
        args.queue,
        client.server_urls().join(", "),
        options.policy.summary()
    );
    Worker::new(Arc::new(api), options).run(shutdown).await;
    Ok(ExitCode::SUCCESS)
}

async fn list(client: ClientArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let mut c = client.connect().await?;
    let workers = c
        .workers
        .list_workers(pb::ListWorkersRequest {})
        .await
        .map_err(status_error)?
        .into_inner()
        .workers;
    if out.json {
        out.print_json(&workers);
    } else {
        let rows: Vec<Vec<String>> = workers
            .iter()
            .map(|w| {
                vec![
                    w.worker_id.clone(),
                    w.runtimes.join(","),
                    w.queue.clone(),
                    format!("{}/{}", w.slots_in_use, w.slots),
                    time(w.last_seen_ms),
                ]
            })
            .collect();
        out.table(
            &["WORKER", "RUNTIMES", "QUEUE", "SLOTS", "LAST SEEN"],
            &rows,
        );
    }
    Ok(ExitCode::SUCCESS)
}
