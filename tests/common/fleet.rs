//! Fleets of real processes: servers on fixed ports (so they can be restarted where workers
//! expect them) and `cairn worker` processes, with signals (SIGKILL, SIGTERM, SIGSTOP, SIGCONT).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::server::cairn_bin;
use super::{Db, TestClient};

/// A `cairn` process whose stderr is collected; killed when dropped.
pub struct Proc {
    child: Child,
    log: Arc<Mutex<String>>,
    /// What it is, for messages.
    pub name: String,
}

impl Proc {
    /// Starts `cairn <args>` with extra environment variables.
    pub fn spawn(name: &str, args: &[String], env: &[(&str, &str)]) -> Proc {
        // The suite's own OTLP endpoint (if any) is removed first, so a test can give one.
        let mut command = Command::new(cairn_bin());
        command
            .args(args)
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("CAIRN_TOKEN")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied());
        Proc::start(name, command)
    }

    /// Starts any program (stdin closed, stdout dropped) and collects its stderr.
    pub fn start(name: &str, mut command: Command) -> Proc {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(String::new()));
        let writer = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = writer.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Proc {
            child,
            log,
            name: name.to_string(),
        }
    }

    /// `cairn server` (no in-process worker) on `db`, listening on `listen` (`127.0.0.1:0` for
    /// any port); returns it with its URL once it listens.
    pub fn server(db: &Db, listen: &str, extra: &[&str], env: &[(&str, &str)]) -> (Proc, String) {
        let mut args = vec![
            "server".to_string(),
            "--listen".into(),
            listen.into(),
            "--database-url".into(),
            db.url.clone(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let proc = Proc::spawn(&format!("server {listen}"), &args, env);
        let line = proc.wait_for_log("cairn listening on ", Duration::from_secs(60));
        let url = line
            .split("cairn listening on ")
            .nth(1)
            .unwrap()
            .trim()
            .to_string();
        (proc, url)
    }

    /// `cairn worker --server <servers> --worker-id <id> <extra>`, once it is up.
    pub fn worker(id: &str, servers: &[&str], extra: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut args = vec![
            "worker".to_string(),
            "--server".into(),
            servers.join(","),
            "--worker-id".into(),
            id.into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let proc = Proc::spawn(&format!("worker {id}"), &args, env);
        proc.wait_for_log("cairn worker ", Duration::from_secs(60));
        proc
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until a log line contains `needle`; returns that line.
    pub fn wait_for_log(&self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(line) = self.log().lines().find(|l| l.contains(needle)) {
                return line.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "{} did not log `{needle}` within {limit:?}; its log:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal.
    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).expect("signal the process");
    }

    /// SIGKILL, and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits (at most `limit`) for it to exit; returns its exit status.
    pub fn terminate(&mut self, limit: Duration) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        self.wait_exit(limit)
    }

    /// Waits (at most `limit`) for it to exit; returns its exit status.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the process") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {limit:?}; its log:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // A stopped process cannot act on SIGKILL until it runs again.
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGCONT);
        self.kill();
    }
}

/// A worker policy file that admits everything (`--policy`), for tests whose agents use what a
/// worker's default policy refuses (bypassPermissions, MCP servers) and whose subject is not
/// the policy.
pub fn open_policy() -> String {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("open-policy.json");
    std::fs::write(&path, r#"{"unrestricted": true}"#).expect("write the policy file");
    path.display().to_string()
}

/// Waits (polling `ListWorkers`, 60 s at most) until every worker in `ids` is listed.
pub async fn wait_for_workers(c: &mut TestClient, ids: &[&str]) -> Vec<cairn::api::pb::WorkerInfo> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let workers = c
            .workers
            .list_workers(cairn::api::pb::ListWorkersRequest {})
            .await
            .expect("list workers")
            .into_inner()
            .workers;
        if ids
            .iter()
            .all(|id| workers.iter().any(|w| w.worker_id == *id))
        {
            return workers;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "workers {ids:?} not listed; seen: {workers:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
