//! What `cairn bench` prints: a table for people, or with `--json` one JSON document.
//!
//! The document (every figure is `null` where it is not known):
//!
//! - `store`: `sqlite`, `postgres`, or `unknown` (an existing `--server` without
//!   `--database-url`); `durability`; `workers`: `inprocess` or `remote`; `worker_processes`.
//! - `cpu_known`: false when bench measures an existing `--server`, whose process it cannot see.
//! - `workloads`: one object per workload run, in order:
//!   - `name` (`W1`, `W2`, `W3`), `executions`, `turns` (activities per execution),
//!     `concurrency`, `elapsed_s`;
//!   - `executions_per_s`, `activities_per_s`; `p50_ms`, `p99_ms` (start to result, W2 only);
//!   - `server_cpu_ms_per_execution`: user + system CPU of the server process over the
//!     workload, per execution; `worker_cpu_ms_per_execution`: the same for all the worker
//!     processes together (`--workers remote` only); `cpu_ms_per_activity`: server and workers
//!     together, per activity;
//!   - `transactions_per_execution`, `wal_records_per_execution`, `wal_bytes_per_execution`
//!     (PostgreSQL only): the change of `xact_commit + xact_rollback` of the database in
//!     `pg_stat_database`, and of `wal_records` and `wal_bytes` in `pg_stat_wal`, over the
//!     workload, less bench's own reading. `pg_stat_wal` counts the whole cluster: other
//!     databases' writes on a shared cluster are counted too.
//!   - `client_cpu_ms_per_execution`: bench's own CPU (the client driving the workload, on the
//!     same machine), per execution; `database_cpu_ms_per_execution` (PostgreSQL only): the CPU
//!     of every `postgres` process on this machine, per execution (`null`, or 0, when the
//!     database runs elsewhere);
//!   - `machine_cpu_busy`: the share (0 to 1) of the whole machine's CPU that was busy during
//!     the workload (from /proc/stat; bench itself, the database and anything else included):
//!     near 1, the workload is bound by CPU; well below, by waiting (round trips, one writer).
//!   - `commits_per_execution`, `transitions_per_commit`, `ms_per_commit`: the started server's
//!     group commits over the workload (from its Prometheus metrics): how many per execution,
//!     how many transitions each carried, and how long each took on average, from asking the
//!     store to its answer (not counting the wait for a commit slot).
//! - `server_peak_rss_mb`: the server's peak resident memory (VmHWM) through all the
//!   workloads; `worker_peak_rss_mb`: one per worker process.

use comfy_table::{CellAlignment, Table, presets::ASCII_MARKDOWN};
use serde::Serialize;

/// The whole run.
#[derive(Debug, Serialize)]
pub(super) struct BenchReport {
    pub store: &'static str,
    pub durability: String,
    pub workers: String,
    pub worker_processes: usize,
    pub cpu_known: bool,
    pub workloads: Vec<WorkloadReport>,
    pub server_peak_rss_mb: Option<f64>,
    pub worker_peak_rss_mb: Vec<f64>,
    /// On PostgreSQL, the server's connections to the database and how many use TLS.
    pub postgres_connections: Option<super::measure::PgConnections>,
}

/// One workload's figures.
#[derive(Debug, Serialize)]
pub(super) struct WorkloadReport {
    pub name: &'static str,
    pub executions: usize,
    pub turns: usize,
    pub concurrency: usize,
    pub elapsed_s: f64,
    pub executions_per_s: f64,
    pub activities_per_s: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub server_cpu_ms_per_execution: Option<f64>,
    pub worker_cpu_ms_per_execution: Option<f64>,
    pub cpu_ms_per_activity: Option<f64>,
    pub transactions_per_execution: Option<f64>,
    pub wal_records_per_execution: Option<f64>,
    pub wal_bytes_per_execution: Option<f64>,
    pub client_cpu_ms_per_execution: Option<f64>,
    pub database_cpu_ms_per_execution: Option<f64>,
    pub machine_cpu_busy: Option<f64>,
    pub commits_per_execution: Option<f64>,
    pub transitions_per_commit: Option<f64>,
    pub ms_per_commit: Option<f64>,
}

fn figure(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(v) => format!("{v:.decimals$}"),
        None => "-".into(),
    }
}

impl BenchReport {
    /// The report as a table, with a line on memory and one on what is not known.
    pub(super) fn table(&self) -> String {
        let remote = self.workers == "remote";
        let postgres = self.store == "postgres";
        let mut header = vec!["workload", "result", "server CPU ms/exec"];
        if remote {
            header.push("worker CPU ms/exec");
        }
        header.push("CPU ms/activity");
        header.push("client CPU ms/exec");
        if postgres {
            header.extend([
                "db CPU ms/exec",
                "xacts/exec",
                "WAL records/exec",
                "WAL KB/exec",
            ]);
        }
        header.extend([
            "commits/exec",
            "transitions/commit",
            "ms/commit",
            "machine CPU busy",
        ]);
        let mut table = Table::new();
        table.load_style(ASCII_MARKDOWN).set_header(header);
        for w in &self.workloads {
            let result = match (w.p50_ms, w.p99_ms) {
                (Some(p50), Some(p99)) => format!("p50 {p50:.2} ms, p99 {p99:.2} ms"),
                _ if w.turns > 1 => format!(
                    "{:.0} activities/s ({:.1} exec/s)",
                    w.activities_per_s, w.executions_per_s
                ),
                _ => format!("{:.0} exec/s", w.executions_per_s),
            };
            let name = format!("{} ({}x{})", w.name, w.executions, w.turns);
            let mut row = vec![name, result, figure(w.server_cpu_ms_per_execution, 2)];
            if remote {
                row.push(figure(w.worker_cpu_ms_per_execution, 2));
            }
            row.push(figure(w.cpu_ms_per_activity, 2));
            row.push(figure(w.client_cpu_ms_per_execution, 2));
            if postgres {
                row.push(figure(w.database_cpu_ms_per_execution, 2));
                row.push(figure(w.transactions_per_execution, 1));
                row.push(figure(w.wal_records_per_execution, 1));
                row.push(figure(w.wal_bytes_per_execution.map(|b| b / 1024.0), 2));
            }
            row.push(figure(w.commits_per_execution, 1));
            row.push(figure(w.transitions_per_commit, 1));
            row.push(figure(w.ms_per_commit, 2));
            row.push(match w.machine_cpu_busy {
                Some(share) => format!("{:.0}%", share * 100.0),
                None => "-".into(),
            });
            table.add_row(row);
        }
        for column in table.column_iter_mut().skip(1) {
            column.set_cell_alignment(CellAlignment::Right);
        }
        let mut out = format!("{table}\n");
        if let Some(mb) = self.server_peak_rss_mb {
            out.push_str(&format!("server peak RSS {mb:.1} MB"));
            for (i, mb) in self.worker_peak_rss_mb.iter().enumerate() {
                out.push_str(&format!(", worker {i} {mb:.1} MB"));
            }
            out.push('\n');
        }
        if !self.cpu_known {
            out.push_str("server CPU and memory unknown: bench measures an existing --server\n");
        }
        if postgres {
            out.push_str("WAL counted over the whole PostgreSQL cluster (pg_stat_wal)\n");
        }
        if let Some(c) = self.postgres_connections {
            out.push_str(&format!(
                "PostgreSQL: {} of {} connections to the database use TLS",
                c.tls, c.total
            ));
            if c.tls > 0 {
                out.push_str(
                    " (sqlx's default sslmode=prefer takes it where the server offers it; on \
                     loopback or a trusted network, ?sslmode=disable or a Unix socket \
                     saves its CPU on both ends)",
                );
            }
            out.push('\n');
        }
        out
    }
}
