//! Tool approvals: `require_approval` calls of a real MCP server wait for the approver; allow runs
//! them (with the approver's input when given), deny gives the model the message, and a held ask
//! resumes in a new attempt that runs the call without calling the model again.

use std::sync::Arc;

use cairn::runtime::{Answer, Approver, Decision};
use serde_json::json;

use super::test_approver::TestApprover;
use super::*;

/// A filesystem MCP server on a temp directory, a fake model that asks to write a file there
/// and then answers, and an agent whose writes need approval (reads are pre-approved).
struct WriteSetup {
    fake: FakeOpenAi,
    dir: tempfile::TempDir,
    config: Value,
}

impl WriteSetup {
    async fn new() -> Self {
        let server = filesystem_server();
        let dir = tempfile::tempdir().unwrap();
        let dir_path = dir.path().canonicalize().unwrap();
        let fake = FakeOpenAi::start().await;
        let arguments = json!({"path": dir_path.join("out.txt"), "content": "from the model"});
        fake.push(Reply::tool_call(
            "call_w",
            "write_file",
            &[&arguments.to_string()],
        ));
        fake.push(Reply::text(&["Written."]));
        let config = json!({
            "mcp_servers": {"files": {
                "command": "node", "args": [server.to_str().unwrap(), dir_path.to_str().unwrap()]
            }},
            "require_approval": ["files__*"],
            "auto_approve": ["files__read*", "files__list*"],
        });
        WriteSetup { fake, dir, config }
    }

    fn written(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.path().join("out.txt")).ok()
    }

    async fn run(
        &self,
        attempt: u32,
        checkpoint: Option<Value>,
        approver: Arc<dyn Approver>,
    ) -> (Result<TurnOutput, RuntimeError>, Vec<Progress>) {
        let (io, mut progress) = io(attempt, checkpoint, CancellationToken::new());
        let io = io.with_approver(approver);
        let turn = turn(0, "write the file", self.config.clone());
        let result = tokio::time::timeout(PATIENCE, runtime(&self.fake).run(turn, io))
            .await
            .expect("the turn ends");
        let mut reported = Vec::new();
        while let Some(p) = progress.recv().await {
            reported.push(p);
        }
        (result, reported)
    }
}

#[tokio::test]
async fn an_approved_call_runs_with_the_approvers_input() {
    let setup = WriteSetup::new().await;
    let path = setup.dir.path().canonicalize().unwrap().join("out.txt");
    let approver = TestApprover::new([Answer::Decided(Decision::Allow {
        updated_input: Some(json!({"path": path, "content": "as approved"})),
    })]);
    let (result, _) = setup.run(1, None, approver.clone()).await;
    let output = result.expect("the turn succeeds");
    assert_eq!(output.output["text"], "Written.");
    assert_eq!(output.usage.tool_calls, 1);
    let asks = approver.asks();
    assert_eq!(asks.len(), 1);
    assert_eq!(
        (asks[0].id.as_str(), asks[0].tool.as_str()),
        ("call_w", "files__write_file")
    );
    assert_eq!(asks[0].input["content"], "from the model");
    assert_eq!(setup.written().as_deref(), Some("as approved"));
    assert_eq!(setup.fake.request_count(), 2);
}

#[tokio::test]
async fn a_denied_call_gives_the_model_the_message_and_the_loop_goes_on() {
    let setup = WriteSetup::new().await;
    let approver = TestApprover::denying("not in this folder, please");
    let (result, progress) = setup.run(1, None, approver.clone()).await;
    let output = result.expect("a denial is not a failure");
    assert_eq!(output.output["text"], "Written.");
    assert_eq!(output.usage.tool_calls, 0, "the denied call did not run");
    assert_eq!(setup.written(), None);
    let tool_result = &chunks(&progress, "tool_result")[0];
    assert_eq!(tool_result["is_error"], true);
    let requests = setup.fake.requests();
    assert_eq!(requests.len(), 2);
    let tool_message = &requests[1].body["messages"][2];
    assert_eq!(tool_message["tool_call_id"], "call_w");
    assert_eq!(tool_message["content"], "not in this folder, please");
}

#[tokio::test]
async fn a_held_call_resumes_in_a_new_attempt_without_calling_the_model_again() {
    let setup = WriteSetup::new().await;
    let holding = TestApprover::holding();
    let (held, progress) = setup.run(1, None, holding.clone()).await;
    let held = held.expect_err("a held ask ends the attempt");
    assert_eq!(held.is_held(), Some("call_w"), "{held:?}");
    assert!(!held.retryable);
    assert_eq!(setup.written(), None, "nothing ran while waiting");
    assert_eq!(setup.fake.request_count(), 1);
    let checkpoint = last_checkpoint(&progress);

    let allowing = TestApprover::allowing();
    let (result, _) = setup.run(2, Some(checkpoint), allowing.clone()).await;
    let output = result.expect("the resumed turn succeeds");
    assert_eq!(output.output["text"], "Written.");
    assert_eq!(output.output["resumed_after_model_calls"], 1);
    assert_eq!(allowing.asks().len(), 1);
    assert_eq!(
        allowing.asks()[0].id,
        "call_w",
        "asked again with the same id"
    );
    assert_eq!(setup.written().as_deref(), Some("from the model"));
    assert_eq!(
        setup.fake.request_count(),
        2,
        "the model call that asked for the tool was not made again"
    );
}

#[tokio::test]
async fn pre_approved_and_unlisted_tools_run_without_asking() {
    let setup = WriteSetup::new().await;
    let mut config = setup.config.clone();
    config["auto_approve"] = json!(["files__write_file"]);
    let approver = TestApprover::holding();
    let (io, mut progress) = io(1, None, CancellationToken::new());
    let io = io.with_approver(approver.clone());
    let result = runtime(&setup.fake)
        .run(turn(0, "write the file", config), io)
        .await;
    while progress.recv().await.is_some() {}
    result.expect("the turn succeeds without waiting");
    assert!(approver.asks().is_empty());
    assert_eq!(setup.written().as_deref(), Some("from the model"));
}

#[tokio::test]
async fn approval_keys_are_checked_naming_the_key() {
    let fake = FakeOpenAi::start().await;
    let runtime = runtime(&fake);
    for (config, key) in [
        (json!({"require_approval": "files__*"}), "require_approval"),
        (json!({"require_approval": [1]}), "require_approval"),
        (json!({"auto_approve": [""]}), "auto_approve"),
        (json!({"auto_aprove": ["x"]}), "auto_aprove"),
    ] {
        let error = runtime
            .validate(&turn(0, "x", config).agent)
            .expect_err("refused");
        assert!(error.message.contains(key), "{}", error.message);
    }
}
