//! Output streams, with real processes (`cairn server`, `cairn worker` and the CLI):
//!
//! - Clients that carry on: `cairn exec watch` and `cairn run` keep following an execution when
//!   its server is killed (SIGKILL), stopped (SIGTERM) or refuses connections while it restarts
//!   (on the same port and database), and print every chunk exactly once.
//! - Bounded memory: three watchers of an execution with 100 MiB of output keep the server's
//!   peak RSS under a stated bound, and each gets all of it.

mod common;

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::fleet::Proc;
use common::server::cairn_bin;
use common::{Db, Server, TestClient};
use serde_json::json;

/// How the test stops the server mid-stream.
#[derive(Clone, Copy, Debug)]
enum Stop {
    Kill,
    Term,
}

/// A free port on loopback, so a server can be restarted where clients expect it.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A CLI process whose stdout and stderr are collected as they come.
struct Cli {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Cli {
    fn spawn(args: &[&str]) -> Cli {
        let mut child = Command::new(cairn_bin())
            .args(args)
            .env("NO_COLOR", "1")
            .env_remove("CAIRN_SERVER")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cairn");
        let collect = |mut pipe: Box<dyn Read + Send>| {
            let text = Arc::new(Mutex::new(String::new()));
            let writer = text.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    writer
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
            text
        };
        let stdout = collect(Box::new(child.stdout.take().unwrap()));
        let stderr = collect(Box::new(child.stderr.take().unwrap()));
        Cli {
            child,
            stdout,
            stderr,
        }
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    fn wait_for_stdout(&self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.stdout().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "`{needle}` not printed within {limit:?}; stdout: {}; stderr: {}",
                self.stdout(),
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader threads take the last bytes.
                std::thread::sleep(Duration::from_millis(100));
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the client did not finish within {limit:?}; stdout: {}; stderr: {}",
                self.stdout(),
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// 30 numbered chunks, 100 ms apart: long enough to stop the server in the middle.
fn chunks() -> Vec<String> {
    (1..=30).map(|i| format!("c{i:02} ")).collect()
}

/// Which client follows the execution.
#[derive(Clone, Copy, Debug)]
enum Follower {
    /// `cairn exec watch ID`, of an execution the test started.
    Watch,
    /// `cairn run`, given a dead server URL first (it takes the next that answers).
    Run,
}

/// A server on a fixed port, a worker that outlives it, an agent, and the client; the server is
/// stopped once the client printed the fifth chunk and restarted on the same port and database.
/// Asserts the client printed every chunk once and exited 0.
async fn survives(db: Db, stop: Stop, follower: Follower) {
    let listen = format!("127.0.0.1:{}", free_port());
    let (mut server, url) = Proc::server(&db, &listen, &[], &[]);
    let _worker = Proc::worker("w-reconnect", &[&url], &["--runtimes", "echo"], &[]);
    let mut c = TestClient::connect(&url).await;
    c.create_agent(
        "steady",
        "echo",
        json!({ "chunks": chunks(), "delay_ms": 100 }),
    )
    .await;

    let mut cli = match follower {
        Follower::Watch => {
            let id = c.start_simple("steady", "go").await;
            Cli::spawn(&["exec", "watch", &id, "--server", &url])
        }
        Follower::Run => {
            let servers = format!("http://127.0.0.1:{},{url}", free_port());
            Cli::spawn(&["run", "steady", "go", "--server", &servers])
        }
    };
    cli.wait_for_stdout("c05 ", Duration::from_secs(60));
    match stop {
        Stop::Kill => server.kill(),
        Stop::Term => {
            let status = server.terminate(Duration::from_secs(30));
            assert!(status.success(), "a drained server exits 0: {status}");
        }
    }
    // Connections are refused for a while: the client must keep trying.
    std::thread::sleep(Duration::from_millis(700));
    let (_restarted, _) = Proc::server(&db, &listen, &[], &[]);

    let status = cli.wait(Duration::from_secs(120));
    let stderr = cli.stderr.lock().unwrap().clone();
    assert!(status.success(), "client exit {status}; stderr: {stderr}");
    assert_eq!(
        cli.stdout().trim_end(),
        chunks().concat().trim_end(),
        "every chunk printed once, in order; stderr: {stderr}"
    );
    assert!(
        stderr.contains("stream broke"),
        "the client said it reconnected: {stderr}"
    );
}

async fn exec_watch_survives_sigkill_and_restart(db: Db) {
    survives(db, Stop::Kill, Follower::Watch).await;
}

async fn exec_watch_survives_sigterm_and_restart(db: Db) {
    survives(db, Stop::Term, Follower::Watch).await;
}

async fn run_survives_sigkill_and_restart(db: Db) {
    survives(db, Stop::Kill, Follower::Run).await;
}

async fn run_survives_sigterm_and_restart(db: Db) {
    survives(db, Stop::Term, Follower::Run).await;
}

/// The follower's store read: pages bounded by count and by bytes (the first chunk always
/// comes), with the execution's status and output length from the same snapshot.
async fn output_pages_are_bounded_by_bytes(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    // Chunk data is `{"text":"..."}`: a few bytes of JSON around the text (how many depends on
    // how the store prints JSON), so the budgets below leave room for them.
    let texts = [
        "a".repeat(1000),
        "b".repeat(2000),
        "c".repeat(400),
        "d".repeat(10_000),
    ];
    c.create_agent("sized", "echo", json!({ "chunks": texts }))
        .await;
    let mut request = common::client::start_request("sized", &["go"]);
    request.labels = [("team".to_string(), "search".to_string())].into();
    let id = c.start(request).await;
    c.wait_until(&id, "completed", |e| e.status == "COMPLETED")
        .await;
    let id: uuid::Uuid = id.parse().unwrap();
    let store = db.store().await;
    let row = store.get_execution(id).await.unwrap().unwrap();
    assert_eq!(row.labels.get("team").map(String::as_str), Some("search"));
    let seqs =
        |page: &cairn::store::OutputPage| page.chunks.iter().map(|c| c.seq).collect::<Vec<_>>();

    let page = store
        .output_page(id, 0, 512, 3_050, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(page.status.as_str(), "COMPLETED");
    assert_eq!(page.output_seq, 4);
    assert_eq!(
        seqs(&page),
        [1, 2],
        "1,000 + 2,000 bytes fit in 3,050, the third does not"
    );
    assert_eq!(
        page.execution, None,
        "a page that leaves chunks to read does not bring the row"
    );
    let page = store
        .output_page(id, 0, 512, 2_990, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seqs(&page), [1]);
    // A first chunk over the budget still comes, alone.
    let page = store
        .output_page(id, 3, 512, 100, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seqs(&page), [4]);
    assert_eq!(page.chunks[0].data, json!({ "text": texts[3] }));
    // PostgreSQL's page brings the row at the end of a closed execution's output (a round trip
    // saved); SQLite's page never does (a read of the row is a call into the process).
    let at_the_end = (!db.url.starts_with("sqlite:")).then_some(&row);
    assert_eq!(
        page.execution.as_deref(),
        at_the_end,
        "the page that reaches the end of a closed execution brings its whole row, labels too"
    );
    let page = store
        .output_page(id, 0, 2, u64::MAX, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seqs(&page), [1, 2], "the count bounds too");
    // Past the end (even past i64): no chunks, but the status.
    for after in [4, u64::MAX] {
        let page = store
            .output_page(id, after, 512, 1 << 20, false)
            .await
            .unwrap()
            .unwrap();
        assert!(page.chunks.is_empty());
        assert_eq!(page.output_seq, 4);
        assert_eq!(page.execution.as_deref(), at_the_end);
    }
    assert!(
        store
            .output_page(uuid::Uuid::now_v7(), 0, 512, 1 << 20, false)
            .await
            .unwrap()
            .is_none()
    );
}

/// A state that cannot be decoded is reported by `GetExecution` (INTERNAL, naming the
/// execution), not hidden as a view without its activity; a list still shows the row.
async fn a_closed_execution_with_a_corrupt_state_reads_from_its_row(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    c.create_agent("plain", "echo", json!({})).await;
    let id = c.start_simple("plain", "hello").await;
    c.wait_until(&id, "completed", |e| e.status == "COMPLETED")
        .await;
    let uuid: uuid::Uuid = id.parse().unwrap();
    let corrupt = json!({ "not": "an agent state" });
    if db.url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        sqlx::query("UPDATE executions SET state = $1 WHERE id = $2")
            .bind(corrupt.to_string())
            .bind(uuid)
            .execute(&pool)
            .await
            .unwrap();
    } else {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        sqlx::query("UPDATE executions SET state = $1 WHERE id = $2")
            .bind(sqlx::types::Json(&corrupt))
            .bind(uuid)
            .execute(&pool)
            .await
            .unwrap();
    }
    // A closed execution is read from its row: the unreadable state no longer matters to it
    // (an open one is quarantined instead: tests/poisoned_rows.rs).
    let shown = c.get(&id).await;
    assert_eq!(shown.status, "COMPLETED", "{shown:?}");
    assert!(shown.activity.is_none());
    let listed = c
        .executions
        .list_executions(cairn::api::pb::ListExecutionsRequest::default())
        .await
        .expect("a list is not stopped by one bad row")
        .into_inner();
    assert!(listed.executions.iter().any(|e| e.id == id));
}

on_both_stores!(
    exec_watch_survives_sigkill_and_restart,
    exec_watch_survives_sigterm_and_restart,
    run_survives_sigkill_and_restart,
    run_survives_sigterm_and_restart,
    output_pages_are_bounded_by_bytes,
    a_closed_execution_with_a_corrupt_state_reads_from_its_row,
);

/// With no server to reach, `exec watch` gives up after `--reconnect-for` and exits 2, saying
/// where to resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_gives_up_after_reconnect_for() {
    let db = Db::sqlite().await;
    let listen = format!("127.0.0.1:{}", free_port());
    let (mut server, url) = Proc::server(&db, &listen, &[], &[]);
    let mut c = TestClient::connect(&url).await;
    c.create_agent("idle", "echo", json!({})).await;
    // No worker: the execution stays pending, so the stream stays open until the server dies.
    let id = c.start_simple("idle", "x").await;
    let mut cli = Cli::spawn(&[
        "exec",
        "watch",
        &id,
        "--server",
        &url,
        "--reconnect-for",
        "2",
    ]);
    std::thread::sleep(Duration::from_millis(500));
    server.kill();
    let status = cli.wait(Duration::from_secs(60));
    let stderr = cli.stderr.lock().unwrap().clone();
    assert_eq!(status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("gave up"), "stderr: {stderr}");
    assert!(stderr.contains("--after-seq 0"), "stderr: {stderr}");
}

/// The output of the big execution: 100 chunks of 1 MiB.
const BIG_CHUNKS: usize = 100;
const CHUNK_BYTES: usize = 1 << 20;

/// The bound on the server's peak RSS (VmHWM) with three watchers of 100 MiB of output. Reading a
/// whole execution's output per watcher, as an unbounded reader would, takes it past 600 MiB.
const PEAK_RSS_BOUND_KIB: u64 = 300 * 1024;

/// A process's peak resident set size, in KiB, from /proc.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Three `cairn exec watch` of one execution whose 100 MiB of output is all stored before they
/// start (so nothing but the paging bounds what the server reads at once): each prints all of
/// it, and the server's peak RSS stays under [`PEAK_RSS_BOUND_KIB`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_watchers_of_100_mib_keep_server_memory_bounded() {
    let db = Db::sqlite().await;
    // The output is written through `cairn dev` (its in-process worker), which then stops, so
    // the server measured below does nothing but serve the watchers. Its output is past the
    // default --max-output-bytes (64 MiB), so the writer allows more.
    let mut writer = Server::dev(&db, &["--max-output-bytes", "268435456"]);
    let mut c = writer.client().await;
    c.create_agent(
        "big",
        "echo",
        json!({ "chunks": ["x"], "chunk_bytes": CHUNK_BYTES, "repeat": BIG_CHUNKS }),
    )
    .await;
    let id = c.start_simple("big", "go").await;
    let closed = c
        .wait_until(&id, "closed", |e| {
            e.status != "RUNNING" && e.status != "PENDING"
        })
        .await;
    assert_eq!(closed.status, "COMPLETED", "{closed:?}");
    assert_eq!(closed.output_length, BIG_CHUNKS as u64);
    writer.kill();

    let server = Server::start(&db, "server", &[]);
    let before = peak_rss_kib(server.pid());

    let watchers: Vec<std::thread::JoinHandle<(ExitStatus, usize)>> = (0..3)
        .map(|_| {
            let mut child = Command::new(cairn_bin())
                .args(["exec", "watch", &id, "--server", &server.url])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn cairn exec watch");
            let mut stdout = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                // Count what arrives without keeping it.
                let mut buf = vec![0u8; 1 << 16];
                let mut x = 0;
                loop {
                    let n = stdout.read(&mut buf).expect("read the watcher's stdout");
                    if n == 0 {
                        break;
                    }
                    x += buf[..n].iter().filter(|&&b| b == b'x').count();
                }
                (child.wait().unwrap(), x)
            })
        })
        .collect();
    for watcher in watchers {
        let (status, x) = watcher.join().unwrap();
        assert!(status.success(), "watcher exit {status}");
        assert_eq!(x, BIG_CHUNKS * CHUNK_BYTES, "each watcher gets all output");
    }
    let peak = peak_rss_kib(server.pid());
    eprintln!(
        "server VmHWM: {} MiB at start, {} MiB after three watchers (bound {} MiB)",
        before / 1024,
        peak / 1024,
        PEAK_RSS_BOUND_KIB / 1024
    );
    assert!(
        peak < PEAK_RSS_BOUND_KIB,
        "server peak RSS {peak} KiB is over the bound {PEAK_RSS_BOUND_KIB} KiB"
    );
}

/// How many streams the client below opens and leaves early, over one connection: past h2's
/// default of 1024 "locally detected" stream errors per connection, after which a client closes
/// its own connection with `GOAWAY(ENHANCE_YOUR_CALM)` and fails every call in flight on it
/// (`RESOURCE_EXHAUSTED: h2 protocol error`).
const STREAMS_LEFT_EARLY: usize = 1500;

/// A client that stops reading a stream before its end (a watcher that has what it wanted, as
/// `cairn bench` did at each `Closed` event) keeps its connection however many streams it leaves
/// that way: the frames the server had already sent on a stream the client reset are not counted
/// against the connection (`ConnectOptions::endpoint`, used by the CLI, `cairn bench` and remote
/// workers). Here each stream is left after its first chunk, with the rest of a 64-chunk page on
/// its way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_streams_early_keeps_its_connection() {
    use cairn::api::pb::execution_service_client::ExecutionServiceClient;
    let db = Db::sqlite().await;
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    let texts: Vec<String> = (0..64)
        .map(|i| format!("{i:04} {}", "x".repeat(1000)))
        .collect();
    c.create_agent("chatty", "echo", json!({ "chunks": texts }))
        .await;
    let id = c.start_simple("chatty", "hello").await;
    c.wait_until(&id, "completed", |e| e.status == "COMPLETED")
        .await;
    let channel = cairn::api::ConnectOptions::default()
        .endpoint(&server.url)
        .unwrap()
        .connect()
        .await
        .expect("connect");
    let executions = ExecutionServiceClient::new(channel);
    let slots = Arc::new(tokio::sync::Semaphore::new(32));
    let mut watchers = tokio::task::JoinSet::new();
    for n in 0..STREAMS_LEFT_EARLY {
        let permit = slots.clone().acquire_owned().await.unwrap();
        let (mut executions, id) = (executions.clone(), id.clone());
        watchers.spawn(async move {
            let request = cairn::api::pb::StreamExecutionRequest {
                id,
                after_seq: 0,
                include_superseded: false,
            };
            let mut stream = executions
                .stream_execution(request)
                .await
                .unwrap_or_else(|e| panic!("stream {n}: {e}"))
                .into_inner();
            let first = stream
                .message()
                .await
                .unwrap_or_else(|e| panic!("stream {n}: {e}"));
            assert!(first.is_some(), "stream {n} ended at once");
            drop(permit); // and the stream, unread to its end
        });
    }
    while let Some(watched) = watchers.join_next().await {
        watched.expect("every stream gets its first chunk on the same connection");
    }
}
