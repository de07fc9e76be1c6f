//! Python worker processes (`tests/python_sdk/worker.py`) with their stderr collected, and
//! signals to send them.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::venv;

/// A running Python worker; killed when dropped.
pub struct PyWorker {
    child: Child,
    log: Arc<Mutex<String>>,
    /// Its worker id.
    pub id: String,
}

impl PyWorker {
    /// Starts the suite's Python worker against `server` and waits until it registered its
    /// runtimes. `env` adds to (or overrides) its environment.
    pub fn start(id: &str, server: &str, env: &[(&str, &str)]) -> PyWorker {
        let worker = PyWorker::spawn(id, server, env);
        worker.wait_for_log("registered", Duration::from_secs(120));
        worker
    }

    /// Starts the suite's Python worker without waiting for anything.
    pub fn spawn(id: &str, server: &str, env: &[(&str, &str)]) -> PyWorker {
        let mut child = Command::new(venv::python())
            .arg(venv::root().join("tests/python_sdk/worker.py"))
            .env("CAIRN_SERVER", server)
            .env("WORKER_ID", id)
            .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
            .env("PYTHONUNBUFFERED", "1")
            .env_remove("CAIRN_TOKEN")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the Python worker");
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
        PyWorker {
            child,
            log,
            id: id.to_string(),
        }
    }

    /// Waits (at most `limit`) for it to exit by itself; returns its exit status.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "Python worker {} did not exit within {limit:?}; its log:\n{}",
                self.id,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until a log line contains `needle`.
    pub fn wait_for_log(&self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "Python worker {} did not log `{needle}` within {limit:?}; its log:\n{}",
                self.id,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits (at most `limit`) for it to exit.
    pub fn terminate(&mut self, limit: Duration) -> ExitStatus {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM).expect("SIGTERM");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "Python worker {} did not exit within {limit:?} of SIGTERM; its log:\n{}",
                self.id,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PyWorker {
    fn drop(&mut self) {
        self.kill();
    }
}
