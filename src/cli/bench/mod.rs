//! `cairn bench`: throughput and latency, measured over gRPC against a server it starts itself
//! (a `cairn server --worker` child process, so its memory can be measured alone) or an existing
//! one.
//!
//! - W1: 1000 one-turn `echo` executions, 32 at a time, each awaited: executions/s.
//! - W2: 200 executions one at a time: p50 and p99 start-to-result latency.
//! - W3: 100 ten-turn executions, 32 at a time: executions/s and activities/s.
//!
//! `--workers remote --worker-processes N` runs the server without its in-process worker and
//! starts N `cairn worker` processes that take tasks over gRPC instead.
//!
//! Next to each figure it says where the time went: the CPU the server (and the workers) used
//! per execution and, on PostgreSQL, the transactions and WAL per execution (`measure.rs`);
//! `--json` prints all of it as one document (`report.rs` lists the fields).

mod measure;
mod report;
mod spawn;
mod workload;

use std::process::ExitCode;
use std::time::Instant;

use super::client::{Client, status_error};
use crate::api::pb;
use measure::{CommitCounters, CpuReading, PgStats, peak_rss_mb};
use report::{BenchReport, WorkloadReport};
use spawn::{spawn_server, spawn_workers};
use workload::{percentile, run_many, run_one};

#[derive(Debug, clap::Args)]
pub(super) struct BenchArgs {
    /// The database of the server bench starts (default: a new SQLite file in a temp directory).
    #[arg(long, env = "CAIRN_DATABASE_URL")]
    database_url: Option<String>,
    /// Benchmark an existing server instead of starting one (also: `cairn --server URL bench`,
    /// or CAIRN_SERVER, as for client commands).
    #[arg(long)]
    server: Option<String>,
    /// Where the started server listens.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Commit durability of the started server: full or relaxed.
    #[arg(long, default_value = "full")]
    durability: String,
    /// Which workloads to run.
    #[arg(long, value_delimiter = ',', default_value = "W1,W2,W3")]
    workloads: Vec<String>,
    /// Scale every workload's execution count by this factor (for quick runs).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Where activities run: `inprocess` (the server's own worker) or `remote` (worker
    /// processes over gRPC). Only for a server bench starts.
    #[arg(long, default_value = "inprocess", value_parser = ["inprocess", "remote"])]
    workers: String,
    /// How many worker processes `--workers remote` starts.
    #[arg(long, default_value_t = 1)]
    worker_processes: usize,
    /// How many attempts each worker (in-process or remote) runs at once.
    #[arg(long, default_value_t = 64)]
    worker_concurrency: usize,
    /// The started server's `--execution-cache` (0 turns the engine's execution cache off, to
    /// measure what it saves).
    #[arg(long, default_value_t = 4096)]
    execution_cache: usize,
    /// Executions run before the first workload and not measured (scaled as the workloads
    /// are): a tenth of them ten-turn, a tenth one after another, the rest 32 at a time. Each
    /// of the server's database connections plans a statement the first times it runs it
    /// (PostgreSQL: the first five uses of a statement on a connection, ~1 ms each for the
    /// larger ones), which a server that has been running has long done. Restate's harness
    /// likewise runs 55 calls first.
    #[arg(long, default_value_t = 256)]
    warmup: usize,
    /// Print every figure as one JSON document instead of a table.
    #[arg(long)]
    json: bool,
}

/// What one workload did, before it is put per execution.
struct Ran {
    executions: usize,
    turns: usize,
    concurrency: usize,
    elapsed_s: f64,
    latencies_ms: Option<(f64, f64)>,
}

async fn run_workload(
    client: &mut Client,
    agent: &str,
    name: &str,
    scale: f64,
) -> anyhow::Result<Ran> {
    let scaled = |n: usize| ((n as f64 * scale).round() as usize).max(1);
    Ok(match name {
        "W1" => {
            let n = scaled(1000);
            let elapsed = run_many(client, agent, n, 1, 32).await?;
            Ran {
                executions: n,
                turns: 1,
                concurrency: 32,
                elapsed_s: elapsed.as_secs_f64(),
                latencies_ms: None,
            }
        }
        "W2" => {
            let n = scaled(200);
            let mut latencies = Vec::with_capacity(n);
            let started = Instant::now();
            for i in 0..n {
                let one = Instant::now();
                let status = run_one(client, agent, vec![format!("latency {i}")]).await?;
                anyhow::ensure!(status == "COMPLETED", "an execution ended {status}");
                latencies.push(one.elapsed().as_secs_f64() * 1000.0);
            }
            let elapsed_s = started.elapsed().as_secs_f64();
            latencies.sort_by(f64::total_cmp);
            Ran {
                executions: n,
                turns: 1,
                concurrency: 1,
                elapsed_s,
                latencies_ms: Some((percentile(&latencies, 0.5), percentile(&latencies, 0.99))),
            }
        }
        "W3" => {
            let n = scaled(100);
            let elapsed = run_many(client, agent, n, 10, 32).await?;
            Ran {
                executions: n,
                turns: 10,
                concurrency: 32,
                elapsed_s: elapsed.as_secs_f64(),
                latencies_ms: None,
            }
        }
        other => anyhow::bail!("unknown workload `{other}`: use W1, W2 or W3"),
    })
}

/// The started server's group-commit counters; `None` without a server bench started or when
/// its metrics cannot be read (the figures are then left out, the run goes on).
async fn commit_counters(metrics_url: Option<&str>) -> Option<CommitCounters> {
    CommitCounters::read(metrics_url?).await.ok()
}

/// `postgres`, `sqlite` or `unknown`, from a database URL.
fn store_of(url: Option<&str>) -> &'static str {
    match url {
        Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => "postgres",
        Some(u) if u.starts_with("sqlite:") => "sqlite",
        _ => "unknown",
    }
}

pub(super) async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let workloads = args
        .workloads
        .iter()
        .map(|w| match w.to_ascii_uppercase().as_str() {
            "W1" => Ok("W1"),
            "W2" => Ok("W2"),
            "W3" => Ok("W3"),
            other => anyhow::bail!("unknown workload `{other}`: use W1, W2 or W3"),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if args.server.is_some() && args.workers == "remote" {
        anyhow::bail!("--workers remote needs a server bench starts (no --server)");
    }
    let spawned = match &args.server {
        Some(_) => None,
        None => Some(spawn_server(&args)?),
    };
    let url = args
        .server
        .clone()
        .or_else(|| spawned.as_ref().map(|s| s.url.clone()))
        .expect("a server");
    let database_url = match &spawned {
        Some(s) => Some(s.database_url.clone()),
        None => args.database_url.clone(),
    };
    let workers = match (&spawned, args.workers.as_str()) {
        (Some(_), "remote") => spawn_workers(&args, &url)?,
        _ => Vec::new(),
    };
    if !workers.is_empty() {
        eprintln!(
            "bench: {} worker process(es), {} slots each",
            workers.len(),
            args.worker_concurrency
        );
    }
    let mut pg = match &database_url {
        Some(u) => PgStats::connect(u).await?,
        None => None,
    };
    let server_pid = spawned.as_ref().map(|s| s.child.id());
    let worker_pids: Vec<u32> = workers.iter().map(|w| w.child.id()).collect();
    let metrics_url = spawned.as_ref().and_then(|s| s.metrics_url.clone());
    let mut client = Client::connect(&url).await?;
    let agent = format!(
        "bench-echo-{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    );
    client
        .agents
        .create_agent(pb::CreateAgentRequest {
            name: agent.clone(),
            runtime: "echo".into(),
            ..Default::default()
        })
        .await
        .map_err(status_error)?;
    // Warm up connections and caches in the three workloads' shapes; not measured.
    let warmup = (args.warmup as f64 * args.scale).round() as usize;
    let (ten_turns, one_by_one) = (warmup / 10, warmup / 10);
    run_many(&client, &agent, warmup - ten_turns - one_by_one, 1, 32).await?;
    run_many(&client, &agent, ten_turns, 10, 32).await?;
    for i in 0..one_by_one {
        run_one(&mut client, &agent, vec![format!("warm-up {i}")]).await?;
    }
    // Read before the first workload's counters, so it is none of their transactions.
    let postgres_connections = match &mut pg {
        Some(pg) => Some(pg.connections().await?),
        None => None,
    };
    if let Some(pg) = &pg {
        eprintln!("bench: waiting for PostgreSQL's statistics after each workload (~10 s)");
        pg.settle().await;
    }

    let mut reports = Vec::new();
    for name in workloads {
        let pg_before = match &mut pg {
            Some(pg) => Some(pg.read().await?),
            None => None,
        };
        let commits_before = commit_counters(metrics_url.as_deref()).await;
        let cpu_before = CpuReading::take(server_pid, &worker_pids, pg.is_some());
        let ran = run_workload(&mut client, &agent, name, args.scale).await?;
        let cpu = cpu_before.until(&CpuReading::take(server_pid, &worker_pids, pg.is_some()));
        let commits = commits_before
            .zip(commit_counters(metrics_url.as_deref()).await)
            .map(|(before, after)| before.until(&after))
            .filter(|c| c.commits > 0.0);
        let pg_delta = match (&mut pg, pg_before) {
            (Some(pg), Some(before)) => {
                pg.settle().await;
                Some(before.until(&pg.read().await?))
            }
            _ => None,
        };
        let n = ran.executions as f64;
        let activities = (ran.executions * ran.turns) as f64;
        let per = |v: f64| v / n;
        reports.push(WorkloadReport {
            name,
            executions: ran.executions,
            turns: ran.turns,
            concurrency: ran.concurrency,
            elapsed_s: ran.elapsed_s,
            executions_per_s: n / ran.elapsed_s,
            activities_per_s: activities / ran.elapsed_s,
            p50_ms: ran.latencies_ms.map(|l| l.0),
            p99_ms: ran.latencies_ms.map(|l| l.1),
            server_cpu_ms_per_execution: cpu.server.map(per),
            worker_cpu_ms_per_execution: cpu.workers.map(per),
            cpu_ms_per_activity: cpu
                .server
                .map(|s| (s + cpu.workers.unwrap_or(0.0)) / activities),
            transactions_per_execution: pg_delta.map(|d| per(d.transactions as f64)),
            wal_records_per_execution: pg_delta.map(|d| per(d.wal_records as f64)),
            wal_bytes_per_execution: pg_delta.map(|d| per(d.wal_bytes as f64)),
            client_cpu_ms_per_execution: cpu.client.map(per),
            database_cpu_ms_per_execution: cpu.database.map(per),
            machine_cpu_busy: cpu.machine_busy,
            commits_per_execution: commits.map(|c| per(c.commits)),
            transitions_per_commit: commits.map(|c| c.transitions / c.commits),
            ms_per_commit: commits.map(|c| c.seconds * 1000.0 / c.commits),
        });
        if !args.json {
            eprintln!("bench: {name} done in {:.1} s", ran.elapsed_s);
        }
    }
    let report = BenchReport {
        store: store_of(database_url.as_deref()),
        durability: args.durability.clone(),
        workers: args.workers.clone(),
        worker_processes: worker_pids.len(),
        cpu_known: server_pid.is_some(),
        workloads: reports,
        server_peak_rss_mb: server_pid.and_then(peak_rss_mb),
        worker_peak_rss_mb: worker_pids.iter().filter_map(|&p| peak_rss_mb(p)).collect(),
        postgres_connections,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(ExitCode::SUCCESS)
}
