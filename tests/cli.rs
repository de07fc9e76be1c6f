//! The `cairn` command line against a real server: every client command, `--json`, exit codes,
//! and Ctrl-C during `cairn run`.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::server::cairn_bin;
use common::{Db, Server};
use serde_json::{Value, json};

fn cairn(server: &Server, args: &[&str]) -> Output {
    Command::new(cairn_bin())
        .args(args)
        .env("CAIRN_SERVER", &server.url)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run cairn")
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "cairn failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn json_of(output: &Output) -> Value {
    serde_json::from_str(&ok(output)).expect("--json prints JSON")
}

async fn agent_commands_manage_agents(db: Db) {
    let server = Server::dev(&db, &[]);
    let config = json!({ "runtime_config": { "chunks": ["a ", "b"] } }).to_string();
    let created = json_of(&cairn(
        &server,
        &[
            "--json",
            "agent",
            "create",
            "--name",
            "cli-agent",
            "--runtime",
            "echo",
            "--configuration",
            &config,
        ],
    ));
    assert_eq!(created["name"], "cli-agent");
    assert_eq!(created["runtime"], "echo");
    assert_eq!(created["configuration"]["runtime_config"]["chunks"][1], "b");

    let by_id = json_of(&cairn(
        &server,
        &["--json", "agent", "get", created["id"].as_str().unwrap()],
    ));
    assert_eq!(by_id["name"], "cli-agent");
    let table = ok(&cairn(&server, &["agent", "list"]));
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains("cli-agent") && table.contains("echo"),
        "{table}"
    );

    let updated = json_of(&cairn(
        &server,
        &[
            "--json",
            "agent",
            "update",
            "cli-agent",
            "--model-id",
            "m-2",
        ],
    ));
    assert_eq!(updated["model_id"], "m-2");

    let runtimes = json_of(&cairn(&server, &["--json", "agent", "runtimes"]));
    let names: Vec<&str> = runtimes
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["claude_code", "default", "echo"]);
    let echo = runtimes
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "echo")
        .unwrap();
    assert!(
        echo["config_keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["name"] == "delay_ms")
    );
    assert_eq!(echo["workers"], 1, "the in-process worker offers echo");

    let archived = json_of(&cairn(
        &server,
        &["--json", "agent", "archive", "cli-agent"],
    ));
    assert_eq!(archived["status"], "archived");
    assert!(!ok(&cairn(&server, &["agent", "list"])).contains("cli-agent"));
    assert!(ok(&cairn(&server, &["agent", "list", "--all"])).contains("cli-agent"));

    let refused = cairn(
        &server,
        &["agent", "create", "--name", "x", "--runtime", "nope"],
    );
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("supported runtimes: claude_code, default, echo"),
        "{stderr}"
    );
}

async fn run_and_exec_commands_follow_executions(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    c.create_agent("cli-echo", "echo", json!({})).await;
    c.create_agent(
        "cli-fails",
        "echo",
        json!({ "fail_attempts": [1], "fail_retryable": false }),
    )
    .await;

    let run = cairn(
        &server,
        &[
            "run", "cli-echo", "hello", "from", "the", "cli", "--label", "user=ada",
        ],
    );
    let printed = ok(&run);
    assert!(printed.contains("hello from the cli"), "{printed}");
    assert!(String::from_utf8_lossy(&run.stderr).contains("COMPLETED"));

    let failed = cairn(&server, &["run", "cli-fails", "x"]);
    assert_eq!(failed.status.code(), Some(1), "a failed execution exits 1");
    assert!(String::from_utf8_lossy(&failed.stderr).contains("echo_failure"));

    let listed = json_of(&cairn(
        &server,
        &["--json", "exec", "list", "--label", "user=ada"],
    ));
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1);
    let id = listed[0]["id"].as_str().unwrap().to_string();
    let failed_only = json_of(&cairn(
        &server,
        &[
            "--json", "exec", "list", "--status", "failed", "--since", "1h",
        ],
    ));
    assert_eq!(failed_only.as_array().unwrap().len(), 1);
    assert_eq!(failed_only[0]["status"], "FAILED");

    let got = json_of(&cairn(&server, &["--json", "exec", "get", &id]));
    assert_eq!(got["status"], "COMPLETED");
    assert_eq!(got["input"]["prompts"][0], "hello from the cli");
    assert_eq!(got["labels"]["user"], "ada");
    let shown = ok(&cairn(&server, &["exec", "get", &id]));
    assert!(
        shown.contains("COMPLETED") && shown.contains("user=ada"),
        "{shown}"
    );

    let history = json_of(&cairn(&server, &["--json", "exec", "history", &id]));
    let types: Vec<&str> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types.first(), Some(&"ExecutionStarted"));
    assert_eq!(types.last(), Some(&"ExecutionCompleted"));
    assert!(ok(&cairn(&server, &["exec", "history", &id])).contains("ActivityCompleted"));

    let watched = ok(&cairn(&server, &["exec", "watch", &id]));
    assert_eq!(watched.trim_end(), "hello from the cli");

    let refused = cairn(&server, &["exec", "cancel", &id]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("already COMPLETED"));
}

async fn exec_cancel_and_ctrl_c_stop_running_executions(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    let words: Vec<String> = (0..400).map(|i| format!("w{i} ")).collect();
    c.create_agent(
        "cli-slow",
        "echo",
        json!({ "chunks": words, "delay_ms": 50 }),
    )
    .await;

    let id = c.start_simple("cli-slow", "x").await;
    c.wait_until(&id, "output", |e| e.output_length > 0).await;
    let canceled = json_of(&cairn(
        &server,
        &["--json", "exec", "cancel", &id, "--reason", "enough"],
    ));
    assert_eq!(canceled["id"], id.as_str());
    assert_eq!(c.watch(&id, 0).await.closed.status, "CANCELED");

    // Ctrl-C during `cairn run` without a terminal cancels, and the exit code says so.
    let mut run = Command::new(cairn_bin())
        .args(["run", "cli-slow", "x"])
        .env("CAIRN_SERVER", &server.url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let running = loop {
        let list = c
            .executions
            .list_executions(cairn::api::pb::ListExecutionsRequest {
                status: vec!["RUNNING".into()],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .executions;
        if let Some(e) = list.into_iter().find(|e| e.output_length > 0) {
            break e;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "cairn run started nothing"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(run.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = tokio::task::spawn_blocking(move || run.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(130), "a cancelled execution exits 130");
    assert_eq!(c.get(&running.id).await.status, "CANCELED");
}

async fn migrate_prepares_a_fresh_database(db: Db) {
    let output = Command::new(cairn_bin())
        .args(["migrate", "--database-url", &db.url])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let store = cairn::store::open(&db.url, cairn::store::Durability::Full)
        .await
        .unwrap();
    assert_eq!(
        store.count_rows("executions").await.unwrap(),
        0,
        "the tables exist"
    );
}

async fn team_commands_manage_and_run_teams(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    c.create_agent("first", "echo", json!({ "chunks": ["one "] }))
        .await;
    c.create_agent("second", "echo", json!({ "chunks": ["two"] }))
        .await;
    let created = json_of(&cairn(
        &server,
        &[
            "--json",
            "team",
            "create",
            "--name",
            "pair",
            "--strategy",
            "sequential",
            "--member",
            "first:opens",
            "--member",
            "second",
        ],
    ));
    assert_eq!(created["strategy"], "sequential");
    assert_eq!(created["members"][0]["agent"], "first");
    assert_eq!(created["members"][0]["role"], "opens");
    assert!(ok(&cairn(&server, &["team", "list"])).contains("pair"));
    assert_eq!(
        json_of(&cairn(&server, &["--json", "team", "get", "pair"]))["name"],
        "pair"
    );
    let updated = json_of(&cairn(
        &server,
        &[
            "--json",
            "team",
            "update",
            "pair",
            "--strategy",
            "parallel",
            "--member",
            "first",
            "--member",
            "second",
            "--max-parallel",
            "2",
        ],
    ));
    assert_eq!(updated["strategy"], "parallel");
    assert_eq!(updated["configuration"]["max_parallel"], 2);

    let run = ok(&cairn(&server, &["run", "pair", "go"]));
    assert!(
        run.contains("── 1-first ──") && run.contains("── 2-second ──"),
        "{run}"
    );
    let listed = json_of(&cairn(
        &server,
        &["--json", "exec", "list", "--runtime", "team"],
    ));
    let id = listed[0]["id"].as_str().unwrap().to_string();
    let tree = ok(&cairn(&server, &["exec", "get", &id]));
    assert!(
        tree.contains("└─ 1-first") && tree.contains("└─ 2-second"),
        "{tree}"
    );
    let got = json_of(&cairn(&server, &["--json", "exec", "get", &id]));
    assert_eq!(got["children"].as_array().unwrap().len(), 2);

    assert_eq!(
        json_of(&cairn(&server, &["--json", "team", "archive", "pair"]))["status"],
        "archived"
    );
    let refused = cairn(
        &server,
        &[
            "team",
            "create",
            "--name",
            "bad",
            "--strategy",
            "sequential",
            "--member",
            "ghost",
        ],
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("`ghost` is not an agent"));
}

on_both_stores!(
    client_flags_go_before_or_after_the_subcommand,
    team_commands_manage_and_run_teams,
    agent_commands_manage_agents,
    run_and_exec_commands_follow_executions,
    exec_cancel_and_ctrl_c_stop_running_executions,
    migrate_prepares_a_fresh_database,
);

/// Client flags are global: before the subcommand or after it, for client commands and for
/// `cairn worker list` alike (given on the command line only: no CAIRN_SERVER).
async fn client_flags_go_before_or_after_the_subcommand(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    c.create_agent("flagged", "echo", json!({})).await;
    let url = server.url.as_str();
    let run = |args: &[&str]| {
        let output = Command::new(cairn_bin())
            .args(args)
            .env_remove("CAIRN_SERVER")
            .env_remove("CAIRN_NAMESPACE")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .expect("run cairn");
        ok(&output)
    };
    for args in [
        &["--server", url, "agent", "list"][..],
        &["agent", "list", "--server", url],
        &["agent", "--server", url, "list"],
        &[
            "--server",
            url,
            "--namespace",
            "default",
            "agent",
            "get",
            "flagged",
        ],
        &["agent", "get", "flagged", "-n", "default", "--server", url],
    ] {
        let out = run(args);
        assert!(out.contains("flagged"), "{args:?}: {out}");
    }
    for args in [
        &["--json", "--server", url, "worker", "list"][..],
        &["worker", "list", "--server", url, "--json"],
    ] {
        let workers: Value = serde_json::from_str(&run(args)).unwrap();
        assert!(
            workers.is_object() || workers.is_array(),
            "{args:?}: {workers}"
        );
    }
    // The namespace flag is honoured in either place: another namespace has no such agent.
    let elsewhere = Command::new(cairn_bin())
        .args([
            "-n",
            "elsewhere",
            "agent",
            "get",
            "flagged",
            "--server",
            url,
        ])
        .env_remove("CAIRN_SERVER")
        .output()
        .unwrap();
    assert!(!elsewhere.status.success());
    assert!(
        String::from_utf8_lossy(&elsewhere.stderr).contains("elsewhere"),
        "{}",
        String::from_utf8_lossy(&elsewhere.stderr)
    );
}

/// `cairn demo` runs an embedded engine end to end and shows the retried, resumed execution.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_an_execution_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("demo.db").display());
    let output = Command::new(cairn_bin())
        .args(["demo", "--database-url", &url])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = ok(&output);
    assert!(stdout.contains("execution closed: COMPLETED"), "{stdout}");
    assert!(
        stdout.contains("TimerFired") && stdout.contains("ExecutionCompleted"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "Durable executions survive crashes, deploys and flaky model APIs. A retry resumes"
        ),
        "the streamed text appears once, in order: {stdout}"
    );
}
