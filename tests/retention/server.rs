//! The server's retention flags and `cairn exec delete`, end to end: a real server deletes a
//! namespace's closed executions on its own, the CLI deletes one, and a bad flag is refused
//! with what to write instead.

use std::process::Command;
use std::time::Duration;

use cairn::api::pb;
use tonic::Code;

use crate::common::server::cairn_bin;
use crate::common::{Db, Server};

async fn gone(c: &mut crate::common::TestClient, id: &str) -> bool {
    match c
        .executions
        .get_execution(pb::GetExecutionRequest { id: id.into() })
        .await
    {
        Err(status) => status.code() == Code::NotFound,
        Ok(_) => false,
    }
}

pub async fn the_server_deletes_on_its_own_and_the_cli_deletes_one(db: Db) {
    let server = Server::start(
        &db,
        "server",
        &[
            "--worker",
            "--retention-namespace",
            "scratch=0s",
            "--retention-every",
            "20ms",
        ],
    );
    let mut c = server.client().await;
    c.create_agent("e", "echo", serde_json::json!({})).await;
    c.agents
        .create_agent(pb::CreateAgentRequest {
            namespace: "scratch".into(),
            name: "e".into(),
            runtime: "echo".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let scratch = c
        .start(pb::StartExecutionRequest {
            namespace: "scratch".into(),
            agent: "e".into(),
            prompt: "soon gone".into(),
            ..Default::default()
        })
        .await;
    let kept = c.start_simple("e", "kept").await;
    c.wait_until(&kept, "the kept execution to close", |e| {
        e.status == "COMPLETED"
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !gone(&mut c, &scratch).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "retention never deleted {scratch}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        c.get(&kept).await.status,
        "COMPLETED",
        "default keeps forever"
    );

    let cli = |args: &[&str]| {
        Command::new(cairn_bin())
            .args(args)
            .args(["--server", &server.url])
            .output()
            .unwrap()
    };
    let deleted = cli(&["exec", "delete", &kept]);
    assert!(deleted.status.success(), "{deleted:?}");
    assert!(
        String::from_utf8_lossy(&deleted.stdout).contains(&format!("deleted execution {kept}")),
        "{deleted:?}"
    );
    assert!(gone(&mut c, &kept).await);
    let again = cli(&["exec", "delete", &kept]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("no execution with id"),
        "{again:?}"
    );
}

pub fn a_bad_retention_flag_is_refused() {
    for (flag, says) in [
        ("--retention-namespace=scratch", "is not NAMESPACE=DURATION"),
        ("--retention-namespace=Bad=1d", "namespace `Bad` is invalid"),
        ("--retention=soon", "`soon` is not a duration"),
    ] {
        let out = Command::new(cairn_bin())
            .args(["server", "--database-url", "sqlite::memory:", flag])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(says),
            "{flag}: {stderr}"
        );
    }
}
