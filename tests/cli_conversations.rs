//! The command line of a person in the loop against a real server: `cairn chat` reading lines
//! from stdin and streaming each answer, `cairn run --interactive --detach` with `cairn exec
//! send` and `cairn exec close`, and `cairn exec approvals` / `approve` / `deny`.

mod common;

use std::io::Write;
use std::process::{Output, Stdio};

use common::{Db, Server};
use serde_json::json;

fn cairn(server: &Server, args: &[&str], stdin: &str) -> Output {
    let mut child = server
        .cairn(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cairn");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().expect("cairn ends")
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

async fn chat_send_close_and_approve(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    c.create_agent("talker", "echo", json!({})).await;
    c.create_agent("careful", "echo", json!({ "ask_tool": "Bash" }))
        .await;

    // A chat: each line a message, each answer on its own line, /close completes it.
    let chat = cairn(
        &server,
        &["chat", "talker"],
        "hello there\nsecond words\n/close\n",
    );
    let stdout = ok(&chat);
    assert_eq!(
        stdout, "hello there\nsecond words\n",
        "each answer once, in order"
    );
    assert!(
        String::from_utf8_lossy(&chat.stderr).contains("COMPLETED"),
        "{}",
        String::from_utf8_lossy(&chat.stderr)
    );

    // Detached, then a message and a close from other commands; the end of input leaves a
    // reattached chat's conversation open.
    let id = ok(&cairn(
        &server,
        &["run", "talker", "--interactive", "--detach", "first"],
        "",
    ))
    .trim()
    .to_string();
    c.wait_until(&id, "the first answer", |e| e.waiting_for == "input")
        .await;
    let sent = ok(&cairn(&server, &["exec", "send", &id, "more", "words"], ""));
    assert_eq!(sent.trim(), "turn 2");
    let reattached = ok(&cairn(&server, &["chat", "--execution", &id], ""));
    assert_eq!(reattached, "first\nmore words\n", "what was said so far");
    assert_eq!(c.get(&id).await.status, "WAITING", "left open");
    ok(&cairn(&server, &["exec", "close", &id], ""));
    assert_eq!(c.watch(&id, 0).await.closed.status, "COMPLETED");
    let refused = cairn(&server, &["exec", "send", &id, "late"], "");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is COMPLETED"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // Approvals: listed while pending, then approved (and a deny of another).
    let ask = ok(&cairn(&server, &["run", "careful", "--detach", "ls"], ""))
        .trim()
        .to_string();
    let waiting = c
        .wait_until(&ask, "the ask", |e| e.waiting_for == "approval")
        .await;
    let approval = waiting.approvals[0].approval_id.clone();
    let listed = ok(&cairn(&server, &["exec", "approvals"], ""));
    assert!(
        listed.contains(&ask) && listed.contains(&approval) && listed.contains("Bash"),
        "{listed}"
    );
    ok(&cairn(&server, &["exec", "approve", &ask, &approval], ""));
    assert_eq!(c.watch(&ask, 0).await.text(), "[Bash allowed] ls");

    let other = ok(&cairn(&server, &["run", "careful", "--detach", "rm"], ""))
        .trim()
        .to_string();
    let waiting = c
        .wait_until(&other, "the ask", |e| e.waiting_for == "approval")
        .await;
    let approval = waiting.approvals[0].approval_id.clone();
    ok(&cairn(
        &server,
        &["exec", "deny", &other, &approval, "--message", "not that"],
        "",
    ));
    assert_eq!(
        c.watch(&other, 0).await.text(),
        "[Bash denied: not that] rm"
    );
}

on_both_stores!(chat_send_close_and_approve);
