//! What `cairn bench` measures besides time: the CPU and peak memory of the processes it started
//! (from /proc), and on PostgreSQL the transactions and WAL the workloads cost (from the
//! cumulative statistics views, read over bench's own connection).

use std::collections::HashMap;
use std::time::Duration;

use sqlx::{Connection, PgConnection, Row};

/// CPU time (user + system) a process has used so far, in ms; `None` when /proc cannot say
/// (not Linux, or the process is gone).
fn cpu_ms(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 2..)?
        .split_whitespace()
        .collect();
    // Fields 14 (utime) and 15 (stime), counting from 1 with the state (field 3) at index 0.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&t| t > 0)
        .unwrap_or(100) as f64;
    Some(ticks * 1000.0 / per_second)
}

/// The CPU ms all of `pids` have used so far; `None` if any cannot be read.
fn total_cpu_ms(pids: &[u32]) -> Option<f64> {
    pids.iter().map(|&pid| cpu_ms(pid)).sum()
}

/// The CPU ms each process named `name` on this machine has used so far, by pid (the
/// `postgres` processes of a local PostgreSQL: its backends, WAL writer and checkpointer);
/// `None` off Linux.
fn processes_cpu_ms(name: &str) -> Option<HashMap<u32, f64>> {
    let mut used = HashMap::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let named = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|comm| comm.trim_end() == name);
        if let Some(ms) = cpu_ms(pid).filter(|_| named) {
            used.insert(pid, ms);
        }
    }
    Some(used)
}

/// The CPU ms the processes of `after` used since `before` (a process new since then counts
/// from 0; one that ended in between took its CPU with it).
fn processes_cpu_since(before: &HashMap<u32, f64>, after: &HashMap<u32, f64>) -> f64 {
    after
        .iter()
        .map(|(pid, ms)| (ms - before.get(pid).copied().unwrap_or(0.0)).max(0.0))
        .sum()
}

/// Peak resident memory of a process (VmHWM), from /proc (Linux).
pub(super) fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The CPU used so far by what bench watches: the server, the worker processes (`None` when
/// there are none), bench itself, a local PostgreSQL's processes (when the store is
/// PostgreSQL), and the whole machine.
pub(super) struct CpuReading {
    server: Option<f64>,
    workers: Option<f64>,
    client: Option<f64>,
    database: Option<HashMap<u32, f64>>,
    machine: Option<(u64, u64)>,
}

/// What each used between two readings, in CPU ms; the machine's as the share it was busy.
pub(super) struct CpuUsed {
    pub server: Option<f64>,
    pub workers: Option<f64>,
    pub client: Option<f64>,
    pub database: Option<f64>,
    pub machine_busy: Option<f64>,
}

impl CpuReading {
    /// Reads them now.
    pub(super) fn take(server: Option<u32>, workers: &[u32], postgres: bool) -> CpuReading {
        CpuReading {
            server: server.and_then(cpu_ms),
            workers: (!workers.is_empty())
                .then(|| total_cpu_ms(workers))
                .flatten(),
            client: cpu_ms(std::process::id()),
            database: postgres.then(|| processes_cpu_ms("postgres")).flatten(),
            machine: machine_cpu_ticks(),
        }
    }

    /// What was used between `self` and `later`.
    pub(super) fn until(&self, later: &CpuReading) -> CpuUsed {
        let since = |before: Option<f64>, after: Option<f64>| Some(after? - before?);
        CpuUsed {
            server: since(self.server, later.server),
            workers: since(self.workers, later.workers),
            client: since(self.client, later.client),
            database: self
                .database
                .as_ref()
                .zip(later.database.as_ref())
                .map(|(before, after)| processes_cpu_since(before, after)),
            machine_busy: self
                .machine
                .zip(later.machine)
                .and_then(|(before, after)| busy_share(before, after)),
        }
    }
}

/// The whole machine's CPU time so far, from the first line of /proc/stat: (busy, total) in
/// clock ticks, where busy is everything but idle and I/O wait. `None` off Linux.
fn machine_cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is counted in user already).
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// The share (0 to 1) of the machine's CPU that was busy between two readings.
fn busy_share(before: (u64, u64), after: (u64, u64)) -> Option<f64> {
    let total = after.1.checked_sub(before.1).filter(|&t| t > 0)?;
    Some(after.0.saturating_sub(before.0) as f64 / total as f64)
}

/// The started server's group-commit counters, from its Prometheus metrics.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct CommitCounters {
    /// Group commits (`cairn_commit_batch_size_count`).
    pub commits: f64,
    /// Transitions they carried (`cairn_commit_batch_size_sum`).
    pub transitions: f64,
    /// Seconds they took, summed (`cairn_commit_duration_seconds_sum`).
    pub seconds: f64,
}

impl CommitCounters {
    /// Reads them from `metrics_url` (the server's `/metrics`).
    pub(super) async fn read(metrics_url: &str) -> anyhow::Result<CommitCounters> {
        let text = reqwest::get(metrics_url)
            .await?
            .error_for_status()?
            .text()
            .await?;
        Ok(CommitCounters::parse(&text))
    }

    /// The three samples in Prometheus' text format (each has no labels); absent ones are 0.
    fn parse(text: &str) -> CommitCounters {
        let mut counters = CommitCounters::default();
        for line in text.lines() {
            let mut parts = line.split_whitespace();
            let (Some(name), Some(value)) = (parts.next(), parts.next()) else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            match name {
                "cairn_commit_batch_size_count" => counters.commits = value,
                "cairn_commit_batch_size_sum" => counters.transitions = value,
                "cairn_commit_duration_seconds_sum" => counters.seconds = value,
                _ => {}
            }
        }
        counters
    }

    /// What happened between `self` and `later`.
    pub(super) fn until(&self, later: &CommitCounters) -> CommitCounters {
        CommitCounters {
            commits: later.commits - self.commits,
            transitions: later.transitions - self.transitions,
            seconds: later.seconds - self.seconds,
        }
    }
}

/// PostgreSQL's counters at one moment.
#[derive(Debug, Clone, Copy)]
pub(super) struct PgCounters {
    /// `xact_commit + xact_rollback` of the bench's database.
    pub transactions: i64,
    /// `wal_records` of `pg_stat_wal` (the whole cluster).
    pub wal_records: i64,
    /// `wal_bytes` of `pg_stat_wal` (the whole cluster).
    pub wal_bytes: i64,
}

/// The connections to the bench's PostgreSQL database besides bench's own, and how many of
/// them use TLS.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub(super) struct PgConnections {
    pub tls: i64,
    pub total: i64,
}

/// How long a PostgreSQL backend may keep statistics before they reach the shared views: a
/// backend that went idle flushes them within `PGSTAT_IDLE_INTERVAL` (10 s), so the counters of
/// a workload are complete about that long after it ends.
const STATS_SETTLE: Duration = Duration::from_millis(10_500);

/// Bench's own connection to the server's PostgreSQL database, for its statistics.
pub(super) struct PgStats {
    conn: PgConnection,
}

impl PgStats {
    /// Connects to `url`; `None` for a database that is not PostgreSQL.
    pub(super) async fn connect(url: &str) -> anyhow::Result<Option<PgStats>> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Ok(None);
        }
        let conn = PgConnection::connect(url).await.map_err(|e| {
            anyhow::anyhow!(
                "bench reads PostgreSQL's statistics over its own connection, which failed \
                 (check --database-url): {e}"
            )
        })?;
        Ok(Some(PgStats { conn }))
    }

    /// Reads the counters, in one statement of the simple query protocol, so each reading is
    /// exactly one transaction of bench's own (see [`PgStats::OWN_TRANSACTIONS`]).
    pub(super) async fn read(&mut self) -> anyhow::Result<PgCounters> {
        let row = sqlx::raw_sql(
            "SELECT (SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database \
             WHERE datname = current_database()) AS transactions, \
             wal_records::bigint AS wal_records, wal_bytes::bigint AS wal_bytes FROM pg_stat_wal",
        )
        .fetch_one(&mut self.conn)
        .await?;
        Ok(PgCounters {
            transactions: row.try_get("transactions")?,
            wal_records: row.try_get("wal_records")?,
            wal_bytes: row.try_get("wal_bytes")?,
        })
    }

    /// How many of the other connections to this database (the server's pool, once it has
    /// run something) encrypt with TLS, of how many: sqlx's default `sslmode=prefer` takes TLS
    /// wherever the server offers it, loopback included, and TLS costs CPU on both ends.
    pub(super) async fn connections(&mut self) -> anyhow::Result<PgConnections> {
        let row = sqlx::raw_sql(
            "SELECT count(*) FILTER (WHERE s.ssl)::bigint AS tls, count(*)::bigint AS total \
             FROM pg_stat_activity a JOIN pg_stat_ssl s ON s.pid = a.pid \
             WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() \
             AND a.backend_type = 'client backend'",
        )
        .fetch_one(&mut self.conn)
        .await?;
        Ok(PgConnections {
            tls: row.try_get("tls")?,
            total: row.try_get("total")?,
        })
    }

    /// The transactions bench itself adds between two readings: the first reading's own.
    pub(super) const OWN_TRANSACTIONS: i64 = 1;

    /// Waits until the statistics of everything done so far have reached the views.
    pub(super) async fn settle(&self) {
        tokio::time::sleep(STATS_SETTLE).await;
    }
}

impl PgCounters {
    /// What happened between `self` and `later`, less bench's own reading.
    pub(super) fn until(&self, later: &PgCounters) -> PgCounters {
        PgCounters {
            transactions: later.transactions - self.transactions - PgStats::OWN_TRANSACTIONS,
            wal_records: later.wal_records - self.wal_records,
            wal_bytes: later.wal_bytes - self.wal_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_has_used_some_cpu_and_memory() {
        let pid = std::process::id();
        // Some work, so that even a coarse clock has counted a tick of it.
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        assert!(x != 1);
        assert!(super::cpu_ms(pid).unwrap() > 0.0);
        assert!(super::peak_rss_mb(pid).unwrap() > 0.0);
        assert_eq!(super::cpu_ms(u32::MAX), None, "no such process");
        let name = std::fs::read_to_string("/proc/self/comm").unwrap();
        let used = super::processes_cpu_ms(name.trim_end()).unwrap();
        assert!(used[&pid] > 0.0, "{used:?}");
        assert!(
            super::processes_cpu_ms("no-such-process-name")
                .unwrap()
                .is_empty()
        );
        let before = [(1, 10.0), (2, 5.0)].into();
        let after = [(1, 12.0), (3, 4.0)].into();
        assert_eq!(super::processes_cpu_since(&before, &after), 6.0);
        let (busy, total) = super::machine_cpu_ticks().unwrap();
        assert!(busy > 0 && total >= busy);
        assert_eq!(super::busy_share((10, 100), (40, 200)), Some(0.3));
        assert_eq!(
            super::busy_share((10, 100), (10, 100)),
            None,
            "no time passed"
        );
    }

    #[test]
    fn commit_counters_come_from_the_metrics_text() {
        let text = "# TYPE cairn_commit_batch_size histogram\n\
                    cairn_commit_batch_size_bucket{le=\"1\"} 3\n\
                    cairn_commit_batch_size_sum 40\n\
                    cairn_commit_batch_size_count 10\n\
                    cairn_commit_duration_seconds_sum 0.025\n\
                    cairn_commit_duration_seconds_count 10\n";
        let counters = super::CommitCounters::parse(text);
        assert_eq!(
            (counters.commits, counters.transitions, counters.seconds),
            (10.0, 40.0, 0.025)
        );
        let later = super::CommitCounters {
            commits: 15.0,
            transitions: 70.0,
            seconds: 0.035,
        };
        let delta = counters.until(&later);
        assert_eq!((delta.commits, delta.transitions), (5.0, 30.0));
    }
}
