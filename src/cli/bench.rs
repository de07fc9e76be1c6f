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

use std::io::{BufRead, BufReader};
use std::process::{Child, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::Semaphore;

use super::client::{Client, status_error};
use crate::api::pb;

#[derive(Debug, clap::Args)]
pub(super) struct BenchArgs {
    /// The database of the server bench starts (default: a new SQLite file in a temp directory).
    #[arg(long, env = "CAIRN_DATABASE_URL")]
    database_url: Option<String>,
    /// Benchmark an existing server instead of starting one.
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
}

/// A server started for the benchmark.
struct Spawned {
    child: Child,
    url: String,
    _dir: Option<std::path::PathBuf>,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self._dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn spawn_server(args: &BenchArgs) -> anyhow::Result<Spawned> {
    let (database_url, dir) = match &args.database_url {
        Some(url) => (url.clone(), None),
        None => {
            let dir =
                std::env::temp_dir().join(format!("cairn-bench-{}", uuid::Uuid::now_v7().simple()));
            std::fs::create_dir_all(&dir)?;
            (
                format!("sqlite://{}", dir.join("bench.db").display()),
                Some(dir),
            )
        }
    };
    let remote = args.workers == "remote";
    let concurrency = args.worker_concurrency.to_string();
    let mut command = std::process::Command::new(std::env::current_exe()?);
    command.args(["server", "--listen", &args.listen]);
    if !remote {
        command.args(["--worker", "--concurrency", &concurrency]);
    }
    let mut child = command
        .args([
            "--database-url",
            &database_url,
            "--durability",
            &args.durability,
        ])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("start the benchmark server")?;
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("cairn listening on ") {
                let _ = tx.send(Ok(url.trim().to_string()));
            } else if line.starts_with("error") {
                let _ = tx.send(Err(line.clone()));
            }
            eprintln!("server: {line}");
        }
    });
    let url = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok(url)) => url,
        Ok(Err(line)) => anyhow::bail!("the benchmark server failed: {line}"),
        Err(_) => anyhow::bail!("the benchmark server did not start within 60 s"),
    };
    eprintln!(
        "bench: server pid {} on {url}, database {}",
        child.id(),
        crate::node::redact(&database_url)
    );
    Ok(Spawned {
        child,
        url,
        _dir: dir,
    })
}

/// Starts `cairn worker` processes that take `echo` tasks from `url`.
fn spawn_workers(args: &BenchArgs, url: &str) -> anyhow::Result<Vec<Spawned>> {
    let concurrency = args.worker_concurrency.to_string();
    (0..args.worker_processes.max(1))
        .map(|i| {
            let child = std::process::Command::new(std::env::current_exe()?)
                .args(["worker", "--server", url, "--runtimes", "echo"])
                .args(["--concurrency", &concurrency])
                .args(["--worker-id", &format!("bench-worker-{i}")])
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("start a benchmark worker")?;
            Ok(Spawned {
                child,
                url: url.to_string(),
                _dir: None,
            })
        })
        .collect()
}

/// Starts an execution and waits (streaming its output) until it closes; returns its status.
async fn run_one(client: &mut Client, agent: &str, prompts: Vec<String>) -> anyhow::Result<String> {
    use pb::stream_execution_response::Event;
    let request = pb::StartExecutionRequest {
        agent: agent.into(),
        prompts,
        ..Default::default()
    };
    let id = client
        .executions
        .start_execution(request)
        .await
        .map_err(status_error)?
        .into_inner()
        .execution_id;
    let mut stream = client
        .executions
        .stream_execution(pb::StreamExecutionRequest { id, after_seq: 0 })
        .await
        .map_err(status_error)?
        .into_inner();
    while let Some(message) = stream.message().await.map_err(status_error)? {
        if let Some(Event::Closed(execution)) = message.event {
            return Ok(execution.status);
        }
    }
    anyhow::bail!("the stream ended before the execution closed")
}

/// Runs `count` executions of `turns` turns, `concurrency` at a time; returns the elapsed time.
async fn run_many(
    client: &Client,
    agent: &str,
    count: usize,
    turns: usize,
    concurrency: usize,
) -> anyhow::Result<Duration> {
    let slots = Arc::new(Semaphore::new(concurrency));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        let permit = slots.clone().acquire_owned().await?;
        let mut client = client.clone();
        let agent = agent.to_string();
        let prompts = (0..turns)
            .map(|t| format!("execution {i} turn {t}"))
            .collect();
        tasks.spawn(async move {
            let status = run_one(&mut client, &agent, prompts).await;
            drop(permit);
            status
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let status = joined??;
        anyhow::ensure!(status == "COMPLETED", "an execution ended {status}");
    }
    Ok(started.elapsed())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Peak resident memory of a process, from /proc (Linux).
fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub(super) async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let spawned = match &args.server {
        Some(_) => None,
        None => Some(spawn_server(&args)?),
    };
    let url = args
        .server
        .clone()
        .or_else(|| spawned.as_ref().map(|s| s.url.clone()))
        .expect("a server");
    let workers = match (&spawned, args.workers.as_str()) {
        (Some(_), "remote") => spawn_workers(&args, &url)?,
        (None, "remote") => {
            anyhow::bail!("--workers remote needs a server bench starts (no --server)")
        }
        _ => Vec::new(),
    };
    if !workers.is_empty() {
        eprintln!(
            "bench: {} worker process(es), {} slots each",
            workers.len(),
            args.worker_concurrency
        );
    }
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
    // Warm up connections and caches; not measured.
    run_many(&client, &agent, 64, 1, 32).await?;

    let scaled = |n: usize| ((n as f64 * args.scale).round() as usize).max(1);
    for workload in &args.workloads {
        match workload.to_ascii_uppercase().as_str() {
            "W1" => {
                let n = scaled(1000);
                let elapsed = run_many(&client, &agent, n, 1, 32).await?;
                println!(
                    "W1 executions={n} concurrency=32 executions_per_s={:.0}",
                    n as f64 / elapsed.as_secs_f64()
                );
            }
            "W2" => {
                let n = scaled(200);
                let mut latencies = Vec::with_capacity(n);
                for i in 0..n {
                    let started = Instant::now();
                    let status = run_one(&mut client, &agent, vec![format!("latency {i}")]).await?;
                    anyhow::ensure!(status == "COMPLETED", "an execution ended {status}");
                    latencies.push(started.elapsed().as_secs_f64() * 1000.0);
                }
                latencies.sort_by(f64::total_cmp);
                println!(
                    "W2 executions={n} p50_ms={:.2} p99_ms={:.2}",
                    percentile(&latencies, 0.5),
                    percentile(&latencies, 0.99)
                );
            }
            "W3" => {
                let n = scaled(100);
                let elapsed = run_many(&client, &agent, n, 10, 32).await?;
                let seconds = elapsed.as_secs_f64();
                println!(
                    "W3 executions={n} turns=10 concurrency=32 executions_per_s={:.1} activities_per_s={:.0}",
                    n as f64 / seconds,
                    (n * 10) as f64 / seconds
                );
            }
            other => anyhow::bail!("unknown workload `{other}`: use W1, W2 or W3"),
        }
    }
    if let Some(spawned) = &spawned
        && let Some(mb) = peak_rss_mb(spawned.child.id())
    {
        println!("server peak_rss_mb={mb:.1}");
    }
    for (i, worker) in workers.iter().enumerate() {
        if let Some(mb) = peak_rss_mb(worker.child.id()) {
            println!("worker {i} peak_rss_mb={mb:.1}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
