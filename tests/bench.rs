//! `cairn bench` at a tiny scale, on both stores: it checks that every figure is there and what
//! it counts, never how fast (speed is what the command itself reports).

#[allow(
    unused_imports,
    reason = "these tests use only the databases of the shared test code"
)]
mod common;

use std::process::{Command, Output};

use common::Db;
use common::server::cairn_bin;
use serde_json::Value;

crate::on_both_stores!(
    bench_json_has_every_figure,
    bench_prints_a_table_of_every_workload
);

fn bench(db: &Db, extra: &[&str]) -> Output {
    Command::new(cairn_bin())
        .args(["bench", "--database-url", &db.url, "--scale", "0.02"])
        .args(extra)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "cairn bench failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn number(w: &Value, field: &str) -> f64 {
    w[field]
        .as_f64()
        .unwrap_or_else(|| panic!("`{field}` is a number in {w}"))
}

async fn bench_json_has_every_figure(db: Db) {
    let postgres = db.url.starts_with("postgres");
    let out = stdout(&bench(&db, &["--json"]));
    let doc: Value = serde_json::from_str(&out).expect("--json prints one JSON document");
    assert_eq!(doc["store"], if postgres { "postgres" } else { "sqlite" });
    assert_eq!(doc["cpu_known"], true);
    assert!(number(&doc, "server_peak_rss_mb") > 0.0, "{doc}");
    let workloads = doc["workloads"].as_array().expect("workloads");
    let names: Vec<_> = workloads
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["W1", "W2", "W3"]);
    for (w, (executions, turns)) in workloads.iter().zip([(20, 1), (4, 1), (2, 10)]) {
        assert_eq!(w["executions"], executions, "{w}");
        assert_eq!(w["turns"], turns, "{w}");
        assert!(number(w, "executions_per_s") > 0.0, "{w}");
        assert!(number(w, "activities_per_s") > 0.0, "{w}");
        // /proc counts CPU in clock ticks (10 ms): the 4 executions of W2 at this scale may
        // fit in none, the larger W1 and W3 cannot.
        let cpu = number(w, "server_cpu_ms_per_execution");
        assert!(cpu >= 0.0, "{w}");
        if w["name"] != "W2" {
            assert!(cpu > 0.0, "{w}");
        }
        assert!(number(w, "cpu_ms_per_activity") >= 0.0, "{w}");
        assert!(
            w["worker_cpu_ms_per_execution"].is_null(),
            "in-process: {w}"
        );
        assert!(number(w, "client_cpu_ms_per_execution") >= 0.0, "{w}");
        if postgres {
            // The suite's PostgreSQL runs on this machine.
            assert!(number(w, "database_cpu_ms_per_execution") >= 0.0, "{w}");
        } else {
            assert!(w["database_cpu_ms_per_execution"].is_null(), "{w}");
        }
        let busy = number(w, "machine_cpu_busy");
        assert!(busy > 0.0 && busy <= 1.0, "a share of the machine: {w}");
        // Every execution commits at least its start and its result, whatever shares them;
        // each W3 execution has ten results.
        let commits = number(w, "commits_per_execution");
        assert!(commits > 0.0, "{w}");
        let transitions = number(w, "transitions_per_commit");
        assert!(transitions >= 1.0, "{w}");
        let at_least = if w["name"] == "W3" { 11.0 } else { 2.0 };
        // commits × transitions/commit is transitions per execution, up to rounding (19 commits
        // of 40 transitions for 20 executions give 0.95 × 2.105... = 1.9999999999999998).
        assert!(
            commits * transitions >= at_least - 1e-9,
            "transitions per execution: {w}"
        );
        assert!(number(w, "ms_per_commit") > 0.0, "{w}");
        for field in [
            "transactions_per_execution",
            "wal_records_per_execution",
            "wal_bytes_per_execution",
        ] {
            if postgres {
                // Every execution commits at least its start and its result.
                assert!(number(w, field) >= 1.0, "`{field}` on PostgreSQL: {w}");
            } else {
                assert!(w[field].is_null(), "`{field}` is PostgreSQL's only: {w}");
            }
        }
    }
    let connections = &doc["postgres_connections"];
    if postgres {
        // sqlx's default sslmode=prefer takes TLS exactly where the server offers it.
        let total = number(connections, "total");
        assert!(total >= 1.0, "the server's pool is connected: {doc}");
        let expected = if offers_tls(&db.url).await {
            total
        } else {
            0.0
        };
        assert_eq!(number(connections, "tls"), expected, "{doc}");
    } else {
        assert!(connections.is_null(), "PostgreSQL's only: {doc}");
    }
    let w2 = &workloads[1];
    assert!(number(w2, "p99_ms") >= number(w2, "p50_ms"), "{w2}");
    assert!(number(w2, "p50_ms") > 0.0, "{w2}");
}

/// Whether the PostgreSQL server at `url` offers TLS.
async fn offers_tls(url: &str) -> bool {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let ssl: String = sqlx::query_scalar("SHOW ssl")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    ssl == "on"
}

async fn bench_prints_a_table_of_every_workload(mut db: Db) {
    let postgres = db.url.starts_with("postgres");
    if postgres {
        // Without TLS, which the table then says.
        let sep = if db.url.contains('?') { '&' } else { '?' };
        db.url = format!("{}{sep}sslmode=disable", db.url);
    }
    let out = stdout(&bench(&db, &["--workloads", "W1,W3"]));
    for figure in [
        "server CPU ms/exec",
        "W1 (20x1)",
        "exec/s",
        "W3 (2x10)",
        "activities/s",
        "ms/commit",
        "machine CPU busy",
        "server peak RSS",
    ] {
        assert!(out.contains(figure), "`{figure}` missing from:\n{out}");
    }
    assert!(!out.contains("W2"), "only the workloads asked for:\n{out}");
    assert_eq!(out.contains("WAL KB/exec"), postgres, "{out}");
    assert_eq!(
        out.contains("PostgreSQL: 0 of "),
        postgres,
        "connections without TLS:\n{out}"
    );
    assert!(!out.contains("sslmode=prefer"), "no TLS, no hint:\n{out}");
}
