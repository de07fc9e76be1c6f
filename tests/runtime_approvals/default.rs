//! The `default` runtime's `require_approval` end to end: a fake OpenAI-compatible model asks to
//! write a file through the real filesystem MCP server; `cairn exec approve` writes it, `cairn
//! exec deny` gives the model the message, and a call held past `approval_hold` is written once
//! after a restart and an approval, with no model call repeated.

use serde_json::{Value, json};

use super::fake_openai::{FakeOpenAi, Reply};
use super::{cairn_exec, wait_for_pending};
use crate::common::client::start_request;
use crate::common::{Db, Server, TestClient};

/// A model that asks to write `out.txt` in a fresh directory, then answers.
struct Setup {
    model: FakeOpenAi,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().canonicalize().unwrap().join("out.txt");
        let model = FakeOpenAi::start().await;
        let arguments = json!({"path": path, "content": "from the model"});
        model.push(Reply::tool_call(
            "call_w",
            "write_file",
            &[&arguments.to_string()],
        ));
        model.push(Reply::text(&["Written."]));
        Setup { model, dir }
    }

    fn dev(&self, db: &Db, hold_ms: &str) -> Server {
        let url = self.model.base_url();
        let args = [
            "--openai-base-url",
            url.as_str(),
            "--openai-api-key-env",
            "",
            "--approval-hold-ms",
            hold_ms,
        ];
        Server::dev(db, &args)
    }

    async fn start(&self, c: &mut TestClient) -> String {
        let server = crate::common::filesystem_server();
        let dir = self.dir.path().canonicalize().unwrap();
        let config = json!({
            "mcp_servers": {"files": {
                "command": "node", "args": [server.to_str().unwrap(), dir.to_str().unwrap()]
            }},
            "require_approval": ["files__write*"],
        });
        c.create_model_agent("writer", "fake-model", config).await;
        c.start(start_request("writer", &["write the file"])).await
    }

    fn written(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.path().join("out.txt")).ok()
    }
}

async fn default_approving_writes_the_file(db: Db) {
    let setup = Setup::new().await;
    let server = setup.dev(&db, "600000");
    let mut c = server.client().await;
    let id = setup.start(&mut c).await;
    let approval = wait_for_pending(&mut c, &server, &id, "files__write_file").await;
    assert_eq!(setup.written(), None);
    cairn_exec(&server, &["approve", &id, &approval]);
    let watched = c
        .watch_within(&id, 0, std::time::Duration::from_secs(90))
        .await;
    assert_eq!(watched.closed.status, "COMPLETED", "{}", server.log());
    assert_eq!(setup.written().as_deref(), Some("from the model"));
    assert_eq!(setup.model.request_count(), 2);
}

async fn default_denying_tells_the_model(db: Db) {
    let setup = Setup::new().await;
    let server = setup.dev(&db, "600000");
    let mut c = server.client().await;
    let id = setup.start(&mut c).await;
    let approval = wait_for_pending(&mut c, &server, &id, "files__write_file").await;
    cairn_exec(
        &server,
        &["deny", &id, &approval, "--message", "read-only day"],
    );
    let watched = c
        .watch_within(&id, 0, std::time::Duration::from_secs(90))
        .await;
    assert_eq!(watched.closed.status, "COMPLETED", "{}", server.log());
    assert_eq!(setup.written(), None);
    let requests = setup.model.requests();
    assert_eq!(requests.len(), 2);
    let tool_message: &Value = &requests[1].body["messages"][2];
    assert_eq!(tool_message["content"], "read-only day");
}

async fn default_held_call_runs_after_a_restart_without_a_repeated_model_call(db: Db) {
    let setup = Setup::new().await;
    let mut server = setup.dev(&db, "500");
    let mut c = server.client().await;
    let id = setup.start(&mut c).await;
    wait_for_pending(&mut c, &server, &id, "files__write_file").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !c
        .history(&id)
        .await
        .iter()
        .any(|e| e.kind == "ActivityHeld")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the call was never held"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(setup.model.request_count(), 1);
    server.kill();

    let server = setup.dev(&db, "500");
    let mut c = server.client().await;
    let approval = wait_for_pending(&mut c, &server, &id, "files__write_file").await;
    cairn_exec(&server, &["approve", &id, &approval]);
    let watched = c
        .watch_within(&id, 0, std::time::Duration::from_secs(90))
        .await;
    assert_eq!(watched.closed.status, "COMPLETED", "{}", server.log());
    assert_eq!(setup.written().as_deref(), Some("from the model"));
    assert_eq!(
        setup.model.request_count(),
        2,
        "the model call that asked for the write was not made again"
    );
}

crate::on_both_stores!(
    default_approving_writes_the_file,
    default_denying_tells_the_model,
    default_held_call_runs_after_a_restart_without_a_repeated_model_call,
);
