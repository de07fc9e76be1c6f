//! Real `cairn` processes.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use super::{Db, TestClient};

/// The `cairn` binary of this build.
pub fn cairn_bin() -> &'static str {
    env!("CARGO_BIN_EXE_cairn")
}

/// `cairn ARGS` as a client of the server at `url`, without colours; stdio left to the caller.
pub fn cairn_client(url: &str, args: &[&str]) -> Command {
    let mut command = Command::new(cairn_bin());
    command
        .args(args)
        .env("CAIRN_SERVER", url)
        .env("NO_COLOR", "1");
    command
}

/// A running `cairn` server process; killed when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `cairn <command> --listen 127.0.0.1:0 --database-url <db> <args...>` and waits until
    /// it listens.
    pub fn start(db: &Db, command: &str, args: &[&str]) -> Server {
        Server::start_with_env(db, command, args, &[])
    }

    /// Like `start`, with extra environment variables.
    pub fn start_with_env(
        db: &Db,
        command: &str,
        args: &[&str],
        env: &[(String, String)],
    ) -> Server {
        // The suite's own OTLP endpoint (if any) is removed first, so a test can give one.
        let mut child = Command::new(cairn_bin())
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .arg(command)
            .args(["--listen", "127.0.0.1:0", "--database-url", &db.url])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cairn");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let log_writer = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("cairn listening on ") {
                    let _ = tx.send(url.trim().to_string());
                }
                let mut log = log_writer.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "cairn {command} did not start; its log:\n{}",
                    log.lock().unwrap()
                );
            }
        };
        Server { child, url, log }
    }

    /// `cairn dev` (server and in-process worker) on `db`.
    pub fn dev(db: &Db, args: &[&str]) -> Server {
        Server::start(db, "dev", args)
    }

    /// `cairn dev` whose `default` runtime talks to the OpenAI-compatible server at `base_url`
    /// (a fake in the suite), without an API key.
    pub fn dev_with_model(db: &Db, base_url: &str) -> Server {
        Server::dev(
            db,
            &["--openai-base-url", base_url, "--openai-api-key-env", ""],
        )
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A client of this server.
    pub async fn client(&self) -> TestClient {
        TestClient::connect(&self.url).await
    }

    /// `cairn ARGS` as a client of this server (see [`cairn_client`]).
    pub fn cairn(&self, args: &[&str]) -> Command {
        cairn_client(&self.url, args)
    }

    /// What the process logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGKILL: no shutdown, no flush, no goodbye.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
