//! What `cairn bench` measures besides time: the CPU and peak memory of the processes it started
//! (from /proc), and on PostgreSQL the transactions and WAL the workloads cost (from the
//! cumulative statistics views, read over bench's own connection).

use std::time::Duration;

use sqlx::{Connection, PgConnection, Row};

/// CPU time (user + system) a process has used so far, in ms; `None` when /proc cannot say
/// (not Linux, or the process is gone).
pub(super) fn cpu_ms(pid: u32) -> Option<f64> {
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
pub(super) fn total_cpu_ms(pids: &[u32]) -> Option<f64> {
    pids.iter().map(|&pid| cpu_ms(pid)).sum()
}

/// Peak resident memory of a process (VmHWM), from /proc (Linux).
pub(super) fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
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
    }
}
