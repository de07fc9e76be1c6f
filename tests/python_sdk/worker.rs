//! Python worker processes (`tests/python_sdk/worker.py`), run as the suite's other processes
//! are ([`Proc`]: stderr collected, signals, killed when dropped).

use std::process::Command;
use std::time::Duration;

use super::common::fleet::Proc;
use super::venv;

/// Starts the suite's Python workers.
pub struct PyWorker;

impl PyWorker {
    /// Starts the suite's Python worker against `server` and waits until it registered its
    /// runtimes. `env` adds to (or overrides) its environment.
    pub fn start(id: &str, server: &str, env: &[(&str, &str)]) -> Proc {
        let worker = PyWorker::spawn(id, server, env);
        worker.wait_for_log("registered", Duration::from_secs(120));
        worker
    }

    /// Starts the suite's Python worker without waiting for anything.
    pub fn spawn(id: &str, server: &str, env: &[(&str, &str)]) -> Proc {
        let mut command = Command::new(venv::python());
        command
            .arg(venv::root().join("tests/python_sdk/worker.py"))
            .env("CAIRN_SERVER", server)
            .env("WORKER_ID", id)
            .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
            .env("PYTHONUNBUFFERED", "1")
            .env_remove("CAIRN_TOKEN")
            .envs(env.iter().copied());
        Proc::start(&format!("Python worker {id}"), command)
    }
}
