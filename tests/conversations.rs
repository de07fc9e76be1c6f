//! Conversations: interactive executions that wait for their next message. Each answer streams
//! and ends with a `waiting` event, the runtime sees the turns before (echo gives back the
//! previous prompts its checkpoint carried), a message sent twice with one request id is one
//! turn, nothing is lost when the worker or the server is killed between messages, the idle
//! timeout closes a conversation, and a closed one refuses messages without writing anything.
//! With the `default` runtime against a fake OpenAI-compatible server, each model request
//! carries the conversation so far.

mod common;
mod fake_openai;

use std::time::Duration;

use cairn::api::pb;
use common::client::{start_request, text_of};
use common::fleet::Proc;
use common::{Db, Server, TestClient};
use fake_openai::{FakeOpenAi, Reply};
use serde_json::json;

/// Reads the stream until a `waiting` event after `turns` completed turns; returns the chunks
/// before it and the waiting execution.
async fn until_waiting(
    stream: &mut tonic::Streaming<pb::StreamExecutionResponse>,
    turns: u32,
) -> (Vec<pb::OutputChunk>, pb::Execution) {
    use pb::stream_execution_response::Event;
    let mut chunks = Vec::new();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(60), stream.message())
            .await
            .expect("an answer within a minute")
            .expect("stream error")
            .expect("the stream ended while the conversation is open");
        match message.event {
            Some(Event::Chunk(chunk)) => chunks.push(chunk),
            Some(Event::Waiting(e)) if e.turns >= turns => return (chunks, e),
            Some(Event::Waiting(_)) => {}
            Some(Event::Closed(e)) => panic!("closed while a turn was expected: {e:?}"),
            None => {}
        }
    }
}

async fn send(
    c: &mut TestClient,
    id: &str,
    text: &str,
    request_id: &str,
) -> pb::SendMessageResponse {
    c.executions
        .send_message(pb::SendMessageRequest {
            id: id.into(),
            text: text.into(),
            request_id: request_id.into(),
        })
        .await
        .expect("send a message")
        .into_inner()
}

fn interactive(agent: &str, prompts: &[&str]) -> pb::StartExecutionRequest {
    pb::StartExecutionRequest {
        interactive: true,
        ..start_request(agent, prompts)
    }
}

/// The outputs of the completed turns, in order.
async fn turn_outputs(c: &mut TestClient, id: &str) -> Vec<serde_json::Value> {
    c.history(id)
        .await
        .into_iter()
        .filter(|e| e.kind == "ActivityCompleted")
        .map(|e| e.payload["output"].clone())
        .collect()
}

async fn three_message_conversation(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    c.create_agent("talker", "echo", json!({})).await;
    let id = c.start(interactive("talker", &["hello there"])).await;

    let mut stream = c.output_stream(&id, 0).await;
    let (chunks, waiting) = until_waiting(&mut stream, 1).await;
    assert_eq!(text_of(&chunks), "hello there", "the first answer streams");
    assert!(chunks.len() >= 2, "in several chunks: {chunks:?}");
    assert_eq!(waiting.status, "WAITING");
    assert_eq!(waiting.waiting_for, "input");
    assert!(waiting.interactive);

    let sent = send(&mut c, &id, "how are you", "m-2").await;
    assert_eq!((sent.turn, sent.created), (2, true));
    let again = send(&mut c, &id, "how are you", "m-2").await;
    assert_eq!(
        (again.turn, again.created),
        (2, false),
        "the same request id appends once"
    );
    let (chunks, _) = until_waiting(&mut stream, 2).await;
    assert_eq!(text_of(&chunks), "how are you");

    let sent = send(&mut c, &id, "goodbye now", "m-3").await;
    assert_eq!(sent.turn, 3);
    let (chunks, _) = until_waiting(&mut stream, 3).await;
    assert_eq!(text_of(&chunks), "goodbye now");

    let outputs = turn_outputs(&mut c, &id).await;
    assert_eq!(outputs.len(), 3);
    assert_eq!(outputs[0].get("previous_prompts"), None);
    assert_eq!(outputs[1]["previous_prompts"], json!(["hello there"]));
    assert_eq!(
        outputs[2]["previous_prompts"],
        json!(["hello there", "how are you"]),
        "the runtime received the conversation so far from its checkpoint"
    );

    c.executions
        .close_execution(pb::CloseExecutionRequest { id: id.clone() })
        .await
        .expect("close");
    let closed = c.watch(&id, 0).await;
    assert_eq!(closed.closed.status, "COMPLETED");
    assert_eq!(closed.text(), "hello therehow are yougoodbye now");
    let history = c.history(&id).await;
    let count = |kind: &str| history.iter().filter(|e| e.kind == kind).count();
    assert_eq!(
        count("MessageReceived"),
        2,
        "the duplicate appended nothing"
    );
    assert_eq!(count("CloseRequested"), 1);
    assert_eq!(count("ActivityCompleted"), 3);
    let replayed = c
        .executions
        .replay_execution(pb::ReplayExecutionRequest { id: id.clone() })
        .await
        .expect("replay")
        .into_inner();
    assert!(replayed.ok, "the conversation replays: {replayed:?}");
    assert_eq!(replayed.status, "COMPLETED");
}

/// The `default` runtime in a conversation: each answer streams from the model, and each model
/// request carries every message and answer before it (the transcript the turns checkpointed),
/// with one model call per message; the history replays.
async fn a_default_conversation_sends_the_model_the_turns_before(db: Db) {
    let model = FakeOpenAi::start().await;
    for answer in [
        ["Hi, ", "I am fine."],
        ["Paris ", "is the capital."],
        ["Good", "bye!"],
    ] {
        model.push(Reply::text(&answer));
    }
    let server = Server::dev_with_model(&db, &model.base_url());
    let mut c = server.client().await;
    c.create_model_agent("assistant", "gpt-test", json!({}))
        .await;
    let id = c.start(interactive("assistant", &["how are you?"])).await;
    let mut stream = c.output_stream(&id, 0).await;
    let (chunks, _) = until_waiting(&mut stream, 1).await;
    assert_eq!(text_of(&chunks), "Hi, I am fine.");
    send(&mut c, &id, "capital of France?", "m-2").await;
    let (chunks, _) = until_waiting(&mut stream, 2).await;
    assert_eq!(text_of(&chunks), "Paris is the capital.");
    send(&mut c, &id, "thanks, bye", "m-3").await;
    let (chunks, _) = until_waiting(&mut stream, 3).await;
    assert_eq!(text_of(&chunks), "Goodbye!");

    let requests = model.requests();
    assert_eq!(requests.len(), 3, "one model call per message");
    let last = requests[2].body["messages"].to_string();
    for said in [
        "how are you?",
        "Hi, I am fine.",
        "capital of France?",
        "Paris is the capital.",
        "thanks, bye",
    ] {
        assert!(
            last.contains(said),
            "the third request carries `{said}`: {last}"
        );
    }
    c.executions
        .close_execution(pb::CloseExecutionRequest { id: id.clone() })
        .await
        .expect("close");
    assert_eq!(c.watch(&id, 0).await.closed.status, "COMPLETED");
    let replayed = c
        .executions
        .replay_execution(pb::ReplayExecutionRequest { id: id.clone() })
        .await
        .expect("replay")
        .into_inner();
    assert!(replayed.ok, "the conversation replays: {replayed:?}");
}

/// A message that arrives while a turn runs waits behind it; the turns run in the order sent.
async fn messages_queue_behind_a_running_turn(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    c.create_agent("slow", "echo", json!({ "delay_ms": 30 }))
        .await;
    let id = c
        .start(interactive("slow", &["one two three four five"]))
        .await;
    send(&mut c, &id, "six", "q-1").await;
    let sent = send(&mut c, &id, "seven", "q-2").await;
    let mut stream = c.output_stream(&id, 0).await;
    assert_eq!(sent.turn, 3);
    let (chunks, waiting) = until_waiting(&mut stream, 3).await;
    assert_eq!(text_of(&chunks), "one two three four fivesixseven");
    assert_eq!(waiting.waiting_for, "input");
    let outputs = turn_outputs(&mut c, &id).await;
    assert_eq!(
        outputs[2]["previous_prompts"],
        json!(["one two three four five", "six"])
    );
}

/// Kill -9 the worker, then the server, between messages: every message is answered once, and
/// each turn still sees the ones before.
async fn kill_between_messages_loses_nothing(db: Db) {
    let (server, url) = Proc::server(&db, "127.0.0.1:0", &[], &[]);
    let mut server = server;
    let listen = url.trim_start_matches("http://").to_string();
    let mut worker = Proc::worker("w-1", &[&url], &[], &[]);
    let mut c = TestClient::connect(&url).await;
    c.create_agent("talker", "echo", json!({})).await;
    let id = c.start(interactive("talker", &["first message"])).await;
    c.wait_until(&id, "the first answer", |e| e.waiting_for == "input")
        .await;

    worker.kill();
    let sent = send(&mut c, &id, "second message", "k-2").await;
    assert!(sent.created);
    let _worker = Proc::worker("w-2", &[&url], &[], &[]);
    c.wait_until(&id, "the second answer", |e| {
        e.waiting_for == "input" && e.turns == 2
    })
    .await;

    server.kill();
    let (_server, url) = Proc::server(&db, &listen, &["--no-migrate"], &[]);
    let mut c = TestClient::connect(&url).await;
    let sent = send(&mut c, &id, "third message", "k-3").await;
    assert_eq!(sent.turn, 3);
    c.wait_until(&id, "the third answer", |e| {
        e.waiting_for == "input" && e.turns == 3
    })
    .await;

    let outputs = turn_outputs(&mut c, &id).await;
    assert_eq!(outputs.len(), 3, "each turn completed once: {outputs:?}");
    assert_eq!(
        outputs[2]["previous_prompts"],
        json!(["first message", "second message"])
    );
    let mut stream = c.output_stream(&id, 0).await;
    let (chunks, _) = until_waiting(&mut stream, 3).await;
    assert_eq!(
        text_of(&chunks),
        "first messagesecond messagethird message",
        "every answer once, in order"
    );
}

/// The idle timeout closes a conversation through its timer; a closed conversation, and an
/// execution that is not one, refuse messages and write nothing.
async fn idle_timeout_closes_and_closed_refuses(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    c.create_agent("talker", "echo", json!({})).await;
    let request = pb::StartExecutionRequest {
        idle_timeout_ms: 1,
        ..interactive("talker", &["are you there"])
    };
    let id = c.start(request).await;
    let closed = c.watch(&id, 0).await;
    assert_eq!(closed.closed.status, "COMPLETED");
    assert_eq!(closed.text(), "are you there");
    let history = c.history(&id).await;
    assert!(
        history.iter().any(|e| e.kind == "IdleTimedOut"),
        "closed by its idle timeout: {:?}",
        common::client::kinds(&history)
    );

    let once = c.start_simple("talker", "not a conversation").await;
    c.watch(&once, 0).await;
    let before = db.row_counts().await;
    for (target, why) in [(&id, "is COMPLETED"), (&once, "is not a conversation")] {
        let refused = c
            .executions
            .send_message(pb::SendMessageRequest {
                id: target.clone(),
                text: "hello?".into(),
                request_id: "late".into(),
            })
            .await
            .expect_err("refused");
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
        assert!(refused.message().contains(why), "{}", refused.message());
        let refused = c
            .executions
            .close_execution(pb::CloseExecutionRequest { id: target.clone() })
            .await
            .expect_err("refused");
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    }
    assert_eq!(
        db.row_counts().await,
        before,
        "a refused message writes nothing"
    );
}

/// A conversation may start with no prompt: it waits for its first message at once, and a
/// close then completes it.
async fn starts_empty_and_closes(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    c.create_agent("talker", "echo", json!({})).await;
    let id = c.start(interactive("talker", &[])).await;
    let waiting = c.get(&id).await;
    assert_eq!(
        (waiting.status.as_str(), waiting.waiting_for.as_str()),
        ("WAITING", "input")
    );
    let sent = send(&mut c, &id, "first words", "e-1").await;
    assert_eq!(sent.turn, 1);
    c.executions
        .close_execution(pb::CloseExecutionRequest { id: id.clone() })
        .await
        .expect("close while the turn runs");
    let closed = c.watch(&id, 0).await;
    assert_eq!(closed.closed.status, "COMPLETED", "after the running turn");
    assert_eq!(closed.text(), "first words");
}

/// A failed conversation's retry reuses its completed turns and carries its messages.
async fn retry_reuses_turns_and_messages(db: Db) {
    let server = Server::dev(&db, &[]);
    let mut c = server.client().await;
    c.create_agent(
        "fragile",
        "echo",
        json!({ "fail_turns": [2], "fail_retryable": false }),
    )
    .await;
    let id = c.start(interactive("fragile", &["turn one"])).await;
    c.wait_until(&id, "the first answer", |e| e.waiting_for == "input")
        .await;
    send(&mut c, &id, "turn two", "r-2").await;
    let failed = c.watch(&id, 0).await;
    assert_eq!(failed.closed.status, "FAILED");

    c.agents
        .update_agent(pb::UpdateAgentRequest {
            agent: "fragile".into(),
            configuration_json: Some(json!({ "runtime_config": {} }).to_string()),
            ..Default::default()
        })
        .await
        .expect("fix the agent");
    let retried = c
        .executions
        .retry_execution(pb::RetryExecutionRequest {
            id: id.clone(),
            ..Default::default()
        })
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(retried.reused_turns, 1);
    let retry = retried.execution_id;
    let waiting = c
        .wait_until(&retry, "the retried second answer", |e| {
            e.waiting_for == "input"
        })
        .await;
    assert!(waiting.interactive, "the retry is a conversation too");
    let outputs = turn_outputs(&mut c, &retry).await;
    assert_eq!(outputs.len(), 1, "only turn two ran again: {outputs:?}");
    assert_eq!(outputs[0]["previous_prompts"], json!(["turn one"]));
    assert_eq!(outputs[0]["text"], "turn two");
}

on_both_stores!(
    three_message_conversation,
    a_default_conversation_sends_the_model_the_turns_before,
    messages_queue_behind_a_running_turn,
    kill_between_messages_loses_nothing,
    idle_timeout_closes_and_closed_refuses,
    starts_empty_and_closes,
    retry_reuses_turns_and_messages,
);
