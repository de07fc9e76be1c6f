//! `cairn run` and `cairn exec watch` on a terminal ask about the approvals of the execution
//! they stream, and answer them: the real binary under a pseudo-terminal against a real server,
//! typed at as a person would. Allowing runs the tool, denying hands the model the message
//! typed, a question nobody answers does not hold the output back, and without a terminal (or
//! with `--no-prompt`) nothing is asked: the ask is printed with the commands that answer it.

mod common;

use std::io::Read;
use std::process::Stdio;

use cairn::api::pb;
use common::fleet::Proc;
use common::server::cairn_client;
use common::{Db, Server, TestClient};
use rexpect::process::WaitStatus;
use rexpect::session::PtySession;
use serde_json::json;

/// What `cairn run` and `exec watch` ask on a terminal.
const QUESTION: &str = "[y]es / [n]o (deny) / [s]kip: ";

/// How long one expectation waits for its text (a bound on a wait, not a timing assertion).
const PATIENCE_MS: u64 = 60_000;

/// `cairn ARGS` on a fresh pseudo-terminal (stdin, stdout and stderr all on it).
fn on_a_terminal(server: &Server, args: &[&str]) -> PtySession {
    on_a_terminal_of(&server.url, args)
}

/// `cairn ARGS` on a fresh pseudo-terminal, as a client of the server at `url`.
fn on_a_terminal_of(url: &str, args: &[&str]) -> PtySession {
    let mut command = cairn_client(url, args);
    command.env("TERM", "dumb");
    rexpect::session::spawn_command(command, Some(PATIENCE_MS)).expect("cairn on a pty")
}

/// Runs the blocking terminal session `talk` off the runtime's threads.
async fn talk<T: Send + 'static>(
    mut session: PtySession,
    talk: impl FnOnce(&mut PtySession) -> T + Send + 'static,
) -> (PtySession, T) {
    tokio::task::spawn_blocking(move || {
        let result = talk(&mut session);
        (session, result)
    })
    .await
    .expect("the terminal session")
}

/// Waits for `text`, failing with what was printed instead.
fn expect(session: &mut PtySession, text: &str) -> String {
    session
        .exp_string(text)
        .unwrap_or_else(|e| panic!("expected {text:?} on the terminal: {e}"))
}

/// Waits for the command to end; its exit code.
fn exit_code(session: &mut PtySession) -> i32 {
    session.exp_eof().expect("the command ends");
    match session.process().wait().expect("wait") {
        WaitStatus::Exited(_, code) => code,
        other => panic!("cairn did not exit: {other:?}"),
    }
}

/// Waits for `cairn exec watch` to print that the execution completed, and to exit; what it
/// printed before, and its exit code.
fn closed(session: &mut PtySession) -> (String, i32) {
    let before = expect(session, "execution closed: COMPLETED");
    (before, exit_code(session))
}

/// The one approval `id` waits for, once it asked.
async fn asked(c: &mut TestClient, id: &str) -> pb::Approval {
    let waiting = c
        .wait_until(id, "the ask", |e| e.waiting_for == "approval")
        .await;
    waiting.approvals[0].clone()
}

/// The answer recorded in `id`'s history.
async fn recorded_answer(c: &mut TestClient, id: &str) -> serde_json::Value {
    let history = c.history(id).await;
    let resolved: Vec<_> = history
        .iter()
        .filter(|e| e.kind == "ApprovalResolved")
        .collect();
    assert_eq!(resolved.len(), 1, "answered once: {history:?}");
    resolved[0].payload.clone()
}

/// Allows from the API, as another person would.
async fn approve(c: &mut TestClient, id: &str, approval_id: &str) {
    c.executions
        .resolve_approval(pb::ResolveApprovalRequest {
            id: id.into(),
            approval_id: approval_id.into(),
            allow: true,
            request_id: format!("elsewhere-{approval_id}"),
            ..Default::default()
        })
        .await
        .expect("approve");
}

/// The id `cairn run` prints as it starts streaming.
fn started_id(before: &str) -> String {
    let words: Vec<&str> = before.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| *w == "execution")
        .unwrap_or_else(|| panic!("no execution id in {before:?}"));
    words[at + 1].to_string()
}

/// Reads `from` up to and including `needle`; what came before it.
fn read_until(from: &mut impl Read, needle: &str) -> String {
    let mut read = Vec::new();
    let mut byte = [0u8];
    while !read.ends_with(needle.as_bytes()) {
        let n = from.read(&mut byte).expect("read");
        assert_eq!(
            n,
            1,
            "ended before {needle:?}: {}",
            String::from_utf8_lossy(&read)
        );
        read.push(byte[0]);
    }
    read.truncate(read.len() - needle.len());
    String::from_utf8_lossy(&read).into_owned()
}

async fn run_allows_and_denies(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    c.create_agent("careful", "echo", json!({ "ask_tool": "Bash" }))
        .await;

    // `y`: the tool runs and the run completes with what it wrote.
    let session = on_a_terminal(&server, &["run", "careful", "ls"]);
    let (_, (started, code)) = talk(session, |s| {
        let started = expect(s, "streaming output");
        let question = expect(s, QUESTION);
        assert!(
            question.contains(r#"allow Bash {"prompt":"ls"}?"#),
            "{question}"
        );
        s.send_line("y").unwrap();
        expect(s, "[Bash allowed] ls");
        expect(s, "COMPLETED");
        (started, exit_code(s))
    })
    .await;
    assert_eq!(code, 0);
    let id = started_id(&started);
    let answer = recorded_answer(&mut c, &id).await;
    assert_eq!(answer["decision"]["decision"], "allow", "{answer}");
    assert!(
        answer["request_id"].as_str().unwrap().starts_with("cli-"),
        "{answer}"
    );

    // `n` and a message: denied, and the model received the message.
    let session = on_a_terminal(&server, &["run", "careful", "rm"]);
    let (_, (started, code)) = talk(session, |s| {
        let started = expect(s, "streaming output");
        expect(s, QUESTION);
        s.send_line("n").unwrap();
        expect(s, "message for the model (optional): ");
        s.send_line("not on my disk").unwrap();
        expect(s, "[Bash denied: not on my disk] rm");
        (started, exit_code(s))
    })
    .await;
    assert_eq!(code, 0);
    let id = started_id(&started);
    let answer = recorded_answer(&mut c, &id).await;
    assert_eq!(
        answer["decision"],
        json!({ "decision": "deny", "message": "not on my disk" })
    );
    assert_eq!(
        c.watch(&id, 0).await.text(),
        "[Bash denied: not on my disk] rm"
    );
}

async fn watch_answers_and_keeps_streaming(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    c.create_agent("careful", "echo", json!({ "ask_tool": "Bash" }))
        .await;

    // `cairn exec watch` of an execution started elsewhere answers its ask.
    let id = c.start_simple("careful", "ls").await;
    asked(&mut c, &id).await;
    let session = on_a_terminal(&server, &["exec", "watch", &id]);
    let (_, code) = talk(session, |s| {
        expect(s, QUESTION);
        s.send_line("yes").unwrap();
        expect(s, "[Bash allowed] ls");
        expect(s, "execution closed: COMPLETED");
        exit_code(s)
    })
    .await;
    assert_eq!(code, 0);
    assert_eq!(
        recorded_answer(&mut c, &id).await["decision"]["decision"],
        "allow"
    );

    // Skipped, it stays pending and the command says how to answer it; answered elsewhere, the
    // output streams on while a question is still open, and the command ends.
    let id = c.start_simple("careful", "date").await;
    let ask = asked(&mut c, &id).await;
    let session = on_a_terminal(&server, &["exec", "watch", &id]);
    let (session, ()) = talk(session, |s| {
        expect(s, QUESTION);
        s.send_line("s").unwrap();
        expect(s, "left pending; answer with `cairn exec approve");
    })
    .await;
    assert_eq!(c.get(&id).await.approvals[0].state, "pending");
    approve(&mut c, &id, &ask.approval_id).await;
    let (_, code) = talk(session, |s| {
        expect(s, "[Bash allowed] date");
        exit_code(s)
    })
    .await;
    assert_eq!(code, 0);

    let id = c.start_simple("careful", "whoami").await;
    let ask = asked(&mut c, &id).await;
    let session = on_a_terminal(&server, &["exec", "watch", &id]);
    let (session, ()) = talk(session, |s| {
        expect(s, QUESTION);
    })
    .await;
    approve(&mut c, &id, &ask.approval_id).await;
    let (_, code) = talk(session, |s| {
        expect(s, "[Bash allowed] whoami");
        expect(s, "execution closed: COMPLETED");
        exit_code(s)
    })
    .await;
    assert_eq!(code, 0, "nobody typed, and the stream went on");
}

async fn no_terminal_no_question(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    c.create_agent("careful", "echo", json!({ "ask_tool": "Bash" }))
        .await;

    // Piped: the ask is printed with the commands that answer it, and nothing is read.
    let mut piped = server
        .cairn(&["run", "careful", "uptime"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cairn");
    let mut stderr = piped.stderr.take().unwrap();
    let id = started_id(&read_until(&mut stderr, "streaming output"));
    // Answered once the command showed the ask, not merely once the server has it.
    let shown = read_until(&mut stderr, "--message WHY`]");
    let ask = asked(&mut c, &id).await;
    assert!(
        shown.contains(&format!("`cairn exec approve {id} {}`", ask.approval_id)),
        "{shown}"
    );
    approve(&mut c, &id, &ask.approval_id).await;
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    let output = piped.wait_with_output().unwrap();
    assert!(output.status.success(), "{shown}{rest}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "[Bash allowed] uptime\n"
    );
    assert!(
        !shown.contains(QUESTION) && !rest.contains(QUESTION),
        "asked without a terminal: {shown}{rest}"
    );

    // `--no-prompt` on a terminal: the same.
    let id = c.start_simple("careful", "hostname").await;
    let ask = asked(&mut c, &id).await;
    let session = on_a_terminal(&server, &["exec", "watch", &id, "--no-prompt"]);
    let (session, shown) = talk(session, |s| expect(s, "--message WHY`]")).await;
    assert!(shown.contains("cairn exec approve"), "{shown}");
    approve(&mut c, &id, &ask.approval_id).await;
    let (_, (rest, code)) = talk(session, closed).await;
    assert_eq!(code, 0);
    assert!(rest.contains("[Bash allowed] hostname"), "{rest}");
    assert!(!shown.contains(QUESTION) && !rest.contains(QUESTION));
}

/// The server is killed while the question is open and answered while it is down: the answer
/// goes through once it is back, and the stream resumes. Then a question skipped before a
/// restart is not asked again when the resumed stream announces the same wait.
async fn answered_across_a_server_restart(db: Db) {
    let (mut server, url) = Proc::server(&db, "127.0.0.1:0", &[], &[]);
    let listen = url.trim_start_matches("http://").to_string();
    let _worker = Proc::worker("w-prompt", &[&url], &[], &[]);
    let mut c = TestClient::connect(&url).await;
    c.create_agent("careful", "echo", json!({ "ask_tool": "Bash" }))
        .await;
    let id = c.start_simple("careful", "ls").await;
    asked(&mut c, &id).await;

    let session = on_a_terminal_of(&url, &["exec", "watch", &id]);
    let (session, first) = talk(session, |s| expect(s, QUESTION)).await;
    server.kill();
    let (session, broke) = talk(session, |s| {
        let broke = expect(s, "[stream broke");
        s.send_line("y").unwrap();
        broke
    })
    .await;
    let (mut server, url) = Proc::server(&db, &listen, &["--no-migrate"], &[]);
    let (_, (rest, code)) = talk(session, closed).await;
    assert_eq!(code, 0);
    let transcript = format!("{first}{QUESTION}{broke}{rest}");
    assert_eq!(
        transcript.matches(QUESTION).count(),
        1,
        "asked once: {transcript}"
    );
    assert_eq!(
        transcript.matches("[Bash allowed] ls").count(),
        1,
        "{transcript}"
    );
    let mut c = TestClient::connect(&url).await;
    assert_eq!(
        recorded_answer(&mut c, &id).await["decision"]["decision"],
        "allow"
    );

    let id = c.start_simple("careful", "df").await;
    let ask = asked(&mut c, &id).await;
    let session = on_a_terminal_of(&url, &["exec", "watch", &id]);
    let (session, first) = talk(session, |s| {
        let first = expect(s, QUESTION);
        s.send_line("s").unwrap();
        expect(s, "left pending");
        first
    })
    .await;
    server.kill();
    let (session, broke) = talk(session, |s| expect(s, "[stream broke")).await;
    let (_server, url) = Proc::server(&db, &listen, &["--no-migrate"], &[]);
    // The resumed stream's first message is the wait, announced again.
    let (session, resumed) = talk(session, |s| expect(s, "[stream resumed")).await;
    let mut c = TestClient::connect(&url).await;
    approve(&mut c, &id, &ask.approval_id).await;
    let (_, (rest, code)) = talk(session, closed).await;
    assert_eq!(code, 0);
    let transcript = format!("{first}{QUESTION}{broke}{resumed}{rest}");
    assert_eq!(
        transcript.matches(QUESTION).count(),
        1,
        "skipped, and not asked again: {transcript}"
    );
    assert!(transcript.contains("[Bash allowed] df"), "{transcript}");
}

on_both_stores!(
    run_allows_and_denies,
    watch_answers_and_keeps_streaming,
    no_terminal_no_question,
    answered_across_a_server_restart
);
