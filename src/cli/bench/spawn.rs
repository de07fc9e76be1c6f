//! The server (and, with `--workers remote`, the worker processes) `cairn bench` starts.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::Context;

use super::BenchArgs;

/// A server started for the benchmark.
pub(super) struct Spawned {
    pub(super) child: Child,
    pub(super) url: String,
    /// Its Prometheus metrics (`http://127.0.0.1:PORT/metrics`), for the group-commit figures.
    pub(super) metrics_url: Option<String>,
    /// The database it runs on.
    pub(super) database_url: String,
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

/// Starts `cairn server` (with its worker unless `--workers remote`) on `--database-url`, or on
/// a new SQLite file.
pub(super) fn spawn_server(args: &BenchArgs) -> anyhow::Result<Spawned> {
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
    let cache = args.execution_cache.to_string();
    let mut command = std::process::Command::new(std::env::current_exe()?);
    command.args([
        "server",
        "--listen",
        &args.listen,
        "--execution-cache",
        &cache,
    ]);
    if !remote {
        command.args(["--worker", "--concurrency", &concurrency]);
    }
    // A port free a moment ago: should another process take it first, the server still starts
    // (it only says its exporter did not) and the commit figures are left out.
    let metrics_addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .ok();
    if let Some(addr) = metrics_addr {
        command.args(["--metrics-listen", &addr.to_string()]);
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
        metrics_url: metrics_addr.map(|a| format!("http://{a}/metrics")),
        database_url,
        _dir: dir,
    })
}

/// Starts `cairn worker` processes that take `echo` tasks from `url`.
pub(super) fn spawn_workers(args: &BenchArgs, url: &str) -> anyhow::Result<Vec<Spawned>> {
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
                metrics_url: None,
                database_url: String::new(),
                _dir: None,
            })
        })
        .collect()
}
