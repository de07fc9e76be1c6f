//! Secure by default: a server reachable from other machines checks tokens unless its operator
//! says, with `--insecure-no-auth`, that it should not.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::fleet::Proc;
use common::server::cairn_bin;
use common::{Db, Server, TestClient};

/// `cairn <command> --listen 0.0.0.0:0` on a fresh SQLite file, with no tokens anywhere in its
/// environment: it must exit at once, say why and how to fix it, and touch no database.
fn refuses_without_tokens(command: &str) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cairn.db");
    let mut child = Command::new(cairn_bin())
        .args([command, "--listen", "0.0.0.0:0", "--database-url"])
        .arg(format!("sqlite://{}", db.display()))
        .env_remove("CAIRN_CLIENT_TOKENS")
        .env_remove("CAIRN_WORKER_TOKENS")
        .env_remove("CAIRN_INSECURE_NO_AUTH")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cairn");
    // A server that does start would run until killed: give it a while, then fail.
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("cairn {command} started on 0.0.0.0 with no tokens");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "cairn {command} exited 0: {stderr}");
    assert!(
        stderr.contains("refusing to serve 0.0.0.0:0 without authentication")
            && stderr.contains("--client-tokens-file")
            && stderr.contains("--insecure-no-auth"),
        "cairn {command} should say why it refused and what to give: {stderr}"
    );
    assert!(
        !db.exists(),
        "a refused start created its database at {}",
        db.display()
    );
}

#[test]
fn server_on_a_public_address_without_tokens_refuses_to_start() {
    refuses_without_tokens("server");
}

#[test]
fn dev_on_a_public_address_without_tokens_refuses_to_start() {
    refuses_without_tokens("dev");
}

/// The URL a client on this machine uses for a server that printed `http://0.0.0.0:PORT`.
fn loopback_url(proc: &Proc) -> String {
    let line = proc.wait_for_log("cairn listening on ", Duration::from_secs(60));
    let port = line.trim().rsplit(':').next().unwrap().to_string();
    format!("http://127.0.0.1:{port}")
}

#[tokio::test]
async fn insecure_no_auth_starts_and_warns() {
    let db = Db::sqlite().await;
    let args: Vec<String> = [
        "server",
        "--listen",
        "0.0.0.0:0",
        "--database-url",
        &db.url,
        "--insecure-no-auth",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let server = Proc::spawn("insecure server", &args, &[]);
    let url = loopback_url(&server);
    assert!(
        server
            .log()
            .contains("warning: serving 0.0.0.0:0 with authentication OFF"),
        "no warning: {}",
        server.log()
    );
    // Serving, and without tokens: a client with none is answered.
    let mut client = TestClient::connect(&url).await;
    client
        .create_agent("open", "echo", serde_json::json!({}))
        .await;
}

#[tokio::test]
async fn tokens_let_a_public_server_start_without_a_warning() {
    let db = Db::sqlite().await;
    let args: Vec<String> = ["server", "--listen", "0.0.0.0:0", "--database-url", &db.url]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let server = Proc::spawn(
        "server with tokens",
        &args,
        &[
            ("CAIRN_CLIENT_TOKENS", "client-secret"),
            ("CAIRN_WORKER_TOKENS", "worker-secret"),
        ],
    );
    let _url = loopback_url(&server);
    assert!(
        !server.log().contains("authentication OFF"),
        "a server with tokens warned: {}",
        server.log()
    );
}

#[tokio::test]
async fn loopback_needs_no_tokens() {
    // Every other test in the suite starts `cairn dev`/`server` on 127.0.0.1 with no tokens;
    // here the same once more, so this file shows the whole rule in one place.
    let db = Db::sqlite().await;
    let server = Server::start(&db, "server", &[]);
    assert!(server.url.starts_with("http://127.0.0.1:"));
    assert!(!server.log().contains("authentication OFF"));
}
