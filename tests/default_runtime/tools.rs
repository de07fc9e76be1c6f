//! Tool calls: through a real MCP server, and the tool-call limit.

use serde_json::json;

use super::*;

#[tokio::test]
async fn tool_calls_run_through_a_real_mcp_server() {
    let server = filesystem_server();
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().canonicalize().unwrap();
    let notes = dir_path.join("notes.txt");
    std::fs::write(&notes, "buy milk\n").unwrap();
    let fake = FakeOpenAi::start().await;
    let path_json = serde_json::to_string(notes.to_str().unwrap()).unwrap();
    fake.push(Reply::tool_call(
        "call_1",
        "read_text_file",
        &["{\"path\":", &path_json, "}"],
    ));
    fake.push(Reply::text(&["You need ", "milk."]));
    let config = json!({"mcp_servers": {"files": {
        "command": "node", "args": [server.to_str().unwrap(), dir_path.to_str().unwrap()]
    }}});

    let (result, progress) =
        run(&runtime(&fake), turn(0, "What do I need?", config), 1, None).await;
    let output = result.expect("the turn succeeds");

    assert_eq!(output.output["text"], "You need milk.");
    assert_eq!(
        (
            output.usage.tool_calls,
            output.usage.input_tokens,
            output.usage.output_tokens
        ),
        (1, 30, 7)
    );
    let tool_use = chunks(&progress, "tool_use");
    assert_eq!(tool_use.len(), 1);
    assert_eq!(
        tool_use[0]["arguments"],
        json!({"path": notes.to_str().unwrap()})
    );
    assert_eq!(
        (tool_use[0]["server"].clone(), tool_use[0]["tool"].clone()),
        (json!("files"), json!("read_text_file"))
    );
    let tool_result = chunks(&progress, "tool_result");
    assert_eq!(tool_result[0]["is_error"], false);
    assert!(
        tool_result[0]["content"]
            .as_str()
            .unwrap()
            .contains("buy milk"),
        "{}",
        tool_result[0]
    );
    // A checkpoint after each model call and after the tool result.
    assert_eq!(
        progress
            .iter()
            .filter(|p| matches!(p, Progress::Checkpoint(_)))
            .count(),
        3
    );

    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    let tools = requests[0].body["tools"]
        .as_array()
        .expect("tools are offered");
    assert!(
        tools
            .iter()
            .any(|t| t["function"]["name"] == "read_text_file")
    );
    let messages = requests[1].body["messages"].as_array().unwrap();
    assert_eq!(
        messages[1]["tool_calls"][0]["function"]["arguments"],
        format!("{{\"path\":{path_json}}}")
    );
    assert_eq!(messages[2]["role"], "tool");
    assert_eq!(messages[2]["tool_call_id"], "call_1");
    assert!(
        messages[2]["content"]
            .as_str()
            .unwrap()
            .contains("buy milk")
    );
}

#[tokio::test]
async fn calls_over_the_limit_are_refused_not_run() {
    let fake = FakeOpenAi::start().await;
    fake.push(Reply::tool_call("call_1", "anything", &["{}"]));
    fake.push(Reply::text(&["Fine."]));
    let (result, progress) = run(
        &runtime(&fake),
        turn(0, "hi", json!({"max_tool_calls": 0})),
        1,
        None,
    )
    .await;
    let output = result.expect("the turn succeeds");
    assert_eq!(output.usage.tool_calls, 0);
    let refusal = &chunks(&progress, "tool_result")[0];
    assert_eq!(refusal["is_error"], true);
    assert!(
        refusal["content"]
            .as_str()
            .unwrap()
            .contains("Tool call limit reached")
    );
    assert_eq!(
        fake.requests()[1].body["messages"][2]["tool_call_id"],
        "call_1"
    );
}

#[tokio::test]
async fn an_unknown_tool_is_an_error_result_for_the_model() {
    let fake = FakeOpenAi::start().await;
    fake.push(Reply::tool_call(
        "call_1",
        "no_such_tool",
        &["{\"a\":", "1}"],
    ));
    fake.push(Reply::text(&["Sorry."]));
    let (result, progress) = run(&runtime(&fake), turn(0, "hi", json!({})), 1, None).await;
    assert_eq!(result.expect("the turn succeeds").usage.tool_calls, 1);
    let result = &chunks(&progress, "tool_result")[0];
    assert_eq!(result["is_error"], true);
    assert_eq!(result["content"], "there is no tool named `no_such_tool`");
}

#[tokio::test]
async fn cancellation_abandons_a_running_tool_call() {
    let server = filesystem_server();
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().canonicalize().unwrap();
    // Reading a FIFO that nobody writes to never finishes: a tool call that hangs.
    let pipe = dir_path.join("pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&pipe)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    let fake = FakeOpenAi::start().await;
    let path_json = serde_json::to_string(pipe.to_str().unwrap()).unwrap();
    fake.push(Reply::tool_call(
        "call_1",
        "read_text_file",
        &[&format!("{{\"path\":{path_json}}}")],
    ));
    let config = json!({"mcp_servers": {"files": {
        "command": "node", "args": [server.to_str().unwrap(), dir_path.to_str().unwrap()]
    }}});
    let runtime = runtime(&fake);
    let cancel = CancellationToken::new();
    let (io, mut progress) = io(1, None, cancel.clone());
    let running =
        tokio::spawn(async move { runtime.run(turn(0, "read the pipe", config), io).await });

    loop {
        let next = tokio::time::timeout(PATIENCE, progress.recv())
            .await
            .unwrap();
        match next.expect("the turn reports the tool call") {
            Progress::Chunk { kind, .. } if kind == "tool_use" => break,
            Progress::Chunk { kind, data, .. } if kind == "tool_result" => {
                panic!("the call ended: {data}")
            }
            _ => {}
        }
    }
    cancel.cancel();
    let result = tokio::time::timeout(PATIENCE, running)
        .await
        .expect("the turn stops")
        .unwrap();
    assert!(result.unwrap_err().is_canceled());
    assert_eq!(fake.request_count(), 1);
}

/// The MCP server records the environment it was started with before it starts serving, and the
/// model reads that record through the server's own tool: the server sees the worker's `PATH`
/// and what its configuration gives it, and none of the worker's environment besides (here
/// `CARGO_PKG_NAME`, the variable that holds the endpoint's key in these tests).
#[tokio::test]
async fn an_mcp_server_sees_none_of_the_workers_environment() {
    let server = filesystem_server();
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().canonicalize().unwrap();
    let record = dir_path.join("env.txt");
    assert!(std::env::var(KEY_ENV).is_ok(), "the worker holds a key");
    let fake = FakeOpenAi::start().await;
    let path_json = serde_json::to_string(record.to_str().unwrap()).unwrap();
    fake.push(Reply::tool_call(
        "call_1",
        "read_text_file",
        &["{\"path\":", &path_json, "}"],
    ));
    fake.push(Reply::text(&["Read."]));
    let script = format!(
        "env > '{}' && exec node '{}' '{}'",
        record.display(),
        server.display(),
        dir_path.display()
    );
    let config = json!({"mcp_servers": {"files": {
        "command": "sh", "args": ["-c", script], "env": {"MY_FLAG": "given"}
    }}});

    let (result, progress) = run(&runtime(&fake), turn(0, "env?", config), 1, None).await;
    result.expect("the turn succeeds");

    let tool_result = chunks(&progress, "tool_result");
    let seen = tool_result[0]["content"].as_str().unwrap();
    assert!(seen.contains("MY_FLAG=given"), "{seen}");
    assert!(seen.contains("PATH="), "{seen}");
    assert!(
        !seen.contains(KEY_ENV),
        "the server saw the key's variable: {seen}"
    );
    let names: Vec<&str> = seen.lines().filter_map(|l| l.split('=').next()).collect();
    for name in &names {
        assert!(
            [
                "PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR", "TERM", "MY_FLAG", "PWD",
                "SHLVL", "_"
            ]
            .contains(name),
            "the server saw `{name}` of the worker's environment: {seen}"
        );
    }
}
