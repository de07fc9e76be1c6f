//! Where the PostgreSQL half of the suite gets its server, so that `cargo test` checks both stores
//! on any machine with PostgreSQL installed, configured or not:
//!
//! 1. `CAIRN_TEST_POSTGRES_URL` set: that server (CI sets it to the machine's own cluster).
//! 2. `CAIRN_TEST_POSTGRES=skip`: no PostgreSQL; each PostgreSQL test says it skipped, with a
//!    running count, and passes.
//! 3. Otherwise: a throwaway cluster of this test process's own, started once from the server
//!    binaries on the machine through the `pgtemp` crate (`initdb` + `postgres` in a temporary
//!    directory, on a free port), and stopped with its directory removed when the process exits.
//!    With no binaries, the test fails and says what to install or how to opt out.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::OnceCell;

/// How many PostgreSQL tests this process skipped because of `CAIRN_TEST_POSTGRES=skip`.
static SKIPPED: AtomicUsize = AtomicUsize::new(0);

/// The cluster this process started, if it started one. Never dropped: a watchdog process stops
/// it when this process exits (a static's destructor never runs).
static CLUSTER: OnceCell<TempCluster> = OnceCell::const_new();

/// The admin URL of the PostgreSQL server the tests use (a database there is created per test),
/// or `None` when the run opted out.
pub async fn admin_url() -> Option<String> {
    if let Ok(url) = std::env::var("CAIRN_TEST_POSTGRES_URL") {
        return Some(url);
    }
    if std::env::var("CAIRN_TEST_POSTGRES").as_deref() == Ok("skip") {
        let n = SKIPPED.fetch_add(1, Ordering::SeqCst) + 1;
        say(&format!(
            "skipped: a PostgreSQL test (CAIRN_TEST_POSTGRES=skip); {n} skipped so far in this test binary"
        ));
        return None;
    }
    let cluster = CLUSTER.get_or_init(TempCluster::start).await;
    Some(cluster.url.clone())
}

/// A PostgreSQL cluster in a temporary directory, owned by this test process.
pub struct TempCluster {
    /// `postgres://postgres:password@127.0.0.1:PORT/postgres`.
    pub url: String,
    /// The data directory (its `postmaster.pid` names the server process).
    pub data_dir: PathBuf,
    _db: pgtemp::PgTempDB,
}

impl TempCluster {
    /// Starts a cluster from the machine's PostgreSQL server binaries, and a watchdog that stops
    /// it when this process exits. Panics, saying what to do, when there are no binaries.
    pub async fn start() -> TempCluster {
        let bin = server_binaries().unwrap_or_else(|| {
            panic!(
                "the PostgreSQL tests need a PostgreSQL server and found none: no \
                 CAIRN_TEST_POSTGRES_URL is set, and no `initdb` is under \
                 /usr/lib/postgresql/*/bin or on PATH. Either install the server binaries \
                 (Debian: `apt-get install -y postgresql`; as root also `sudo`, which starts \
                 them as the postgres user), or point the tests at a server with \
                 CAIRN_TEST_POSTGRES_URL=postgres://USER@HOST:PORT/DB, or skip the PostgreSQL \
                 half with CAIRN_TEST_POSTGRES=skip"
            )
        });
        if running_as_root() && which("sudo").is_none() {
            panic!(
                "the PostgreSQL tests start a throwaway cluster from {}, which refuses to run as \
                 root; `sudo` (to run it as the postgres user) is missing: `apt-get install -y \
                 sudo`, or set CAIRN_TEST_POSTGRES_URL, or CAIRN_TEST_POSTGRES=skip",
                bin.display()
            );
        }
        let db = pgtemp::PgTempDBBuilder::new()
            .with_bin_path(&bin)
            // Every test of a binary runs servers with pools of their own against this cluster.
            .with_config_param("max_connections", "400")
            .start_async()
            .await;
        let data_dir = db.data_dir();
        let url = format!(
            "postgres://{}:{}@127.0.0.1:{}/postgres",
            db.db_user(),
            db.db_pass(),
            db.db_port()
        );
        let cluster = TempCluster {
            url,
            data_dir,
            _db: db,
        };
        cluster.stop_when_this_process_exits();
        cluster.wait_until_accepting().await;
        say(&format!(
            "PostgreSQL tests use a throwaway cluster from {} at {} (set CAIRN_TEST_POSTGRES_URL to use another server)",
            bin.display(),
            cluster.url
        ));
        cluster
    }

    /// pgtemp returns once `postgres` is spawned; connections are refused until it has started.
    async fn wait_until_accepting(&self) {
        let mut last = None;
        for _ in 0..300 {
            match <sqlx::PgConnection as sqlx::Connection>::connect(&self.url).await {
                Ok(_) => return,
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!(
            "the throwaway PostgreSQL cluster in {} did not accept connections within 15 s: {last:?}",
            self.data_dir.display()
        );
    }

    /// A shell that waits for this process to exit, then stops the cluster (fast shutdown, the
    /// signal pgtemp's own drop sends) and removes its directory.
    fn stop_when_this_process_exits(&self) {
        let dir = self
            .data_dir
            .parent()
            .expect("the data directory is inside pgtemp's temporary directory");
        let script = format!(
            "while kill -0 {me} 2>/dev/null; do sleep 0.5; done; \
             pid=$(head -n 1 '{data}/postmaster.pid' 2>/dev/null); \
             [ -n \"$pid\" ] && kill -INT \"$pid\" 2>/dev/null; \
             for _ in $(seq 1 100); do kill -0 \"$pid\" 2>/dev/null || break; sleep 0.1; done; \
             rm -rf '{dir}'",
            me = std::process::id(),
            data = self.data_dir.display(),
            dir = dir.display(),
        );
        #[allow(
            clippy::zombie_processes,
            reason = "the watchdog outlives this process by design; init adopts and reaps it"
        )]
        std::process::Command::new("sh")
            .args(["-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the watchdog of the test cluster");
    }
}

/// Writes a line to the real stderr: the test harness captures `eprintln!` of passing tests, and
/// a skip or a self-started server must be visible in every run.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The directory of `initdb` and `postgres`: the newest Debian install first, then PATH.
fn server_binaries() -> Option<PathBuf> {
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    debian.sort();
    if let Some((_, bin)) = debian.pop() {
        return Some(bin);
    }
    which("initdb").and_then(|initdb| initdb.parent().map(PathBuf::from))
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    })
}

fn running_as_root() -> bool {
    // The owner of this process's /proc entry is its effective user.
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}
