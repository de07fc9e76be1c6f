//! Tool approvals end to end, through `cairn dev` processes and the `cairn exec` CLI: the real
//! Claude Code CLI in `default` permission mode against the fake Messages API asks before a Bash
//! command that writes a file; `cairn exec approve` runs it once, `cairn exec deny` gives the model
//! the message; an ask held past `approval_hold` leaves no `claude` process, survives a restart of
//! server and worker, and approving it then resumes the same session without a repeated model
//! call. On both stores; `runtime_approvals/default.rs` shows the same for the `default` runtime's
//! `require_approval`.

mod common;
#[path = "runtime_approvals/default.rs"]
mod default;
mod fake_anthropic;
mod fake_openai;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::client::start_request;
use common::server::cairn_bin;
use common::{Db, Server, TestClient};
use fake_anthropic::{CliSandbox, FakeAnthropic, Reply};
use serde_json::{Value, json};

/// A fake model that asks to append a line to a file, then answers; a sandbox for the CLI.
async fn model_and_sandbox() -> (FakeAnthropic, CliSandbox) {
    let api = FakeAnthropic::start([
        Reply::bash("echo ran >> approved.txt && echo appended-a-line"),
        Reply::text("all done"),
    ])
    .await;
    (api, CliSandbox::new())
}

/// `cairn dev` running `claude_code` against `api`, holding asks after `hold_ms`.
fn dev(db: &Db, api: &FakeAnthropic, sandbox: &CliSandbox, hold_ms: &str) -> Server {
    let cli = fake_anthropic::claude_cli().display().to_string();
    let args = ["--claude-cli", &cli, "--approval-hold-ms", hold_ms];
    Server::start_with_env(db, "dev", &args, &sandbox.env(api))
}

/// Creates the agent and starts an execution of one turn; returns its id.
async fn start(c: &mut TestClient, sandbox: &CliSandbox) -> String {
    let config = json!({ "permission_mode": "default", "cwd": sandbox.cwd() });
    c.create_agent("coder", "claude_code", config).await;
    c.start(start_request("coder", &["append a line"])).await
}

/// `cairn exec ARGS...` against `server`; panics with its output if it fails.
fn cairn_exec(server: &Server, args: &[&str]) -> String {
    let output = Command::new(cairn_bin())
        .arg("exec")
        .args(args)
        .env("CAIRN_SERVER", &server.url)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run cairn exec");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "cairn exec {args:?}: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Waits until the execution waits for an approval; returns the pending approval's id, as
/// `cairn exec approvals ID --json` lists it.
async fn pending_approval(c: &mut TestClient, server: &Server, id: &str) -> String {
    wait_for_pending(c, server, id, "Bash").await
}

/// [`pending_approval`] for a call of `tool`.
async fn wait_for_pending(c: &mut TestClient, server: &Server, id: &str, tool: &str) -> String {
    c.wait_until(id, "a pending approval", |e| {
        e.approvals.iter().any(|a| a.state == "pending")
    })
    .await;
    let listed: Value = serde_json::from_str(&cairn_exec(server, &["approvals", id, "--json"]))
        .expect("JSON from cairn exec approvals");
    let approvals = listed.as_array().expect("a list");
    assert_eq!(approvals.len(), 1, "{listed}");
    assert_eq!(approvals[0]["approval"]["tool"], tool);
    approvals[0]["approval"]["approval_id"]
        .as_str()
        .expect("an approval id")
        .to_owned()
}

/// Live processes other than the server whose environment has the sandbox's `HOME`: the CLIs
/// (and their tools) of this test.
fn sandbox_processes(sandbox: &CliSandbox, server: &Server) -> Vec<String> {
    let home = format!("HOME={}", sandbox.home.path().display());
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if pid.parse::<u32>().is_err() || pid == server.pid().to_string() {
            continue;
        }
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| {
                stat.rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(true);
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        if !zombie && environ.split(|b| *b == 0).any(|var| var == home.as_bytes()) {
            found.push(pid);
        }
    }
    found
}

fn tool_runs(sandbox: &CliSandbox) -> usize {
    std::fs::read_to_string(sandbox.workdir.path().join("approved.txt"))
        .map(|text| text.lines().count())
        .unwrap_or(0)
}

async fn approving_runs_the_tool_once(db: Db) {
    let (api, sandbox) = model_and_sandbox().await;
    let server = dev(&db, &api, &sandbox, "600000");
    let mut c = server.client().await;
    let id = start(&mut c, &sandbox).await;
    let approval = pending_approval(&mut c, &server, &id).await;
    assert_eq!(c.get(&id).await.status, "WAITING");
    assert_eq!(tool_runs(&sandbox), 0, "nothing runs before the answer");

    cairn_exec(&server, &["approve", &id, &approval]);
    let watched = c.watch_within(&id, 0, Duration::from_secs(90)).await;
    assert_eq!(watched.closed.status, "COMPLETED", "{}", server.log());
    let result: Value = serde_json::from_str(&watched.closed.result_json).unwrap();
    assert_eq!(result["text"], "all done");
    assert_eq!(tool_runs(&sandbox), 1, "the tool ran once");
    assert_eq!(api.message_requests().len(), 2);
    assert!(
        api.message_requests()[1]
            .transcript()
            .contains("appended-a-line")
    );
    let kinds: Vec<String> = c.history(&id).await.into_iter().map(|e| e.kind).collect();
    assert!(kinds.iter().any(|k| k == "ApprovalRequested"), "{kinds:?}");
}

async fn denying_gives_the_model_the_message(db: Db) {
    let (api, sandbox) = model_and_sandbox().await;
    let server = dev(&db, &api, &sandbox, "600000");
    let mut c = server.client().await;
    let id = start(&mut c, &sandbox).await;
    let approval = pending_approval(&mut c, &server, &id).await;

    cairn_exec(
        &server,
        &[
            "deny",
            &id,
            &approval,
            "--message",
            "not on my disk, thanks",
        ],
    );
    let watched = c.watch_within(&id, 0, Duration::from_secs(90)).await;
    assert_eq!(watched.closed.status, "COMPLETED", "{}", server.log());
    assert_eq!(tool_runs(&sandbox), 0, "the tool did not run");
    let requests = api.message_requests();
    assert_eq!(requests.len(), 2);
    assert!(requests[1].transcript().contains("not on my disk, thanks"));
}

async fn a_held_ask_survives_a_restart_and_resumes_without_a_repeated_model_call(db: Db) {
    let (api, sandbox) = model_and_sandbox().await;
    let mut server = dev(&db, &api, &sandbox, "500");
    let mut c = server.client().await;
    let id = start(&mut c, &sandbox).await;
    pending_approval(&mut c, &server, &id).await;
    // Past approval_hold the attempt is held: its CLI is gone and the task has no lease.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let history = loop {
        let history = c.history(&id).await;
        if history.iter().any(|e| e.kind == "ActivityHeld") {
            break history;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the attempt was never held"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let left = sandbox_processes(&sandbox, &server);
    assert!(left.is_empty(), "the held attempt's CLI is gone: {left:?}");
    assert!(history.iter().all(|e| e.kind != "ActivityFailed"));
    assert_eq!(api.message_requests().len(), 1);
    assert_eq!(tool_runs(&sandbox), 0);

    // Server and worker go away; the approval is answered after they come back.
    server.kill();
    let server = dev(&db, &api, &sandbox, "500");
    let mut c = server.client().await;
    let approval = pending_approval(&mut c, &server, &id).await;
    cairn_exec(&server, &["approve", &id, &approval]);
    let watched = c.watch_within(&id, 0, Duration::from_secs(90)).await;
    assert_eq!(watched.closed.status, "COMPLETED", "{}", server.log());
    let result: Value = serde_json::from_str(&watched.closed.result_json).unwrap();
    assert_eq!(result["text"], "all done");
    assert_eq!(tool_runs(&sandbox), 1, "the held call ran once");
    assert_eq!(
        api.message_requests().len(),
        2,
        "no model call was made twice"
    );
    let kinds: Vec<String> = c.history(&id).await.into_iter().map(|e| e.kind).collect();
    assert!(kinds.iter().any(|k| k == "ActivityResumed"), "{kinds:?}");
}

on_both_stores!(
    approving_runs_the_tool_once,
    denying_gives_the_model_the_message,
    a_held_ask_survives_a_restart_and_resumes_without_a_repeated_model_call,
);
