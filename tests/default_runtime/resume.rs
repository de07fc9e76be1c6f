//! Checkpoints: retried attempts resume, later turns continue the conversation, cancellation
//! hangs up.

use serde_json::json;

use super::*;

#[tokio::test]
async fn a_retry_does_not_repeat_the_model_call_that_completed() {
    let fake = FakeOpenAi::start().await;
    let runtime = runtime(&fake);
    fake.push(Reply::tool_call("call_1", "lookup", &["{}"]));
    fake.push(Reply::error(500, "the upstream fell over"));

    let (result, progress) = run(&runtime, turn(0, "hi", json!({})), 1, None).await;
    let error = result.unwrap_err();
    assert!(error.retryable && error.code == "http_500", "{error}");
    assert_eq!(fake.request_count(), 2);
    let checkpoint = last_checkpoint(&progress);

    fake.push(Reply::text(&["Recovered."]));
    let (result, progress) = run(&runtime, turn(0, "hi", json!({})), 2, Some(checkpoint)).await;
    let output = result.expect("the retry succeeds");

    // One more request: the tool-calling model call was not made again.
    assert_eq!(fake.request_count(), 3);
    let requests = fake.requests();
    assert_eq!(requests[2].body["messages"], requests[1].body["messages"]);
    assert_eq!(output.output["text"], "Recovered.");
    assert_eq!(output.output["resumed_after_model_calls"], 1);
    assert_eq!(output.output["model_calls"], 2);
    // Usage covers the whole turn, including the model call of the first attempt.
    assert_eq!(
        (
            output.usage.input_tokens,
            output.usage.output_tokens,
            output.usage.tool_calls
        ),
        (30, 6, 1)
    );
    assert!(
        chunks(&progress, "tool_use").is_empty(),
        "the tool result was already saved"
    );
}

#[tokio::test]
async fn the_next_turn_continues_the_conversation() {
    let fake = FakeOpenAi::start().await;
    let runtime = runtime(&fake);
    let config = json!({"instructions": "Be kind."});
    fake.push(Reply::text(&["One."]));
    fake.push(Reply::text(&["Two."]));

    let (first, _) = run(&runtime, turn(0, "first?", config.clone()), 1, None).await;
    let checkpoint = first.unwrap().checkpoint;
    let (second, _) = run(&runtime, turn(1, "second?", config), 1, checkpoint).await;
    let second = second.expect("the second turn succeeds");

    assert_eq!(
        fake.requests()[1].body["messages"],
        json!([
            {"role": "system", "content": "Be kind."},
            {"role": "user", "content": "first?"},
            {"role": "assistant", "content": "One."},
            {"role": "user", "content": "second?"},
        ])
    );
    // Each turn reports its own usage.
    assert_eq!(
        (second.usage.input_tokens, second.usage.output_tokens),
        (10, 1)
    );
    assert_eq!(second.checkpoint.unwrap()["turn"], 1);
}

#[tokio::test]
async fn a_turn_whose_answer_was_saved_is_not_asked_again() {
    let fake = FakeOpenAi::start().await;
    let runtime = runtime(&fake);
    fake.push(Reply::text(&["Done."]));
    let (first, progress) = run(&runtime, turn(0, "hi", json!({})), 1, None).await;
    let first = first.unwrap();

    // The worker died after the last checkpoint but before reporting: attempt 2 resumes from it.
    let (again, _) = run(
        &runtime,
        turn(0, "hi", json!({})),
        2,
        Some(last_checkpoint(&progress)),
    )
    .await;
    let again = again.expect("the retry succeeds");
    assert_eq!(fake.request_count(), 1);
    assert_eq!(again.output["text"], "Done.");
    assert_eq!(
        (again.usage, again.checkpoint),
        (first.usage, first.checkpoint)
    );
}

#[tokio::test]
async fn cancellation_hangs_up_mid_stream() {
    let fake = FakeOpenAi::start().await;
    fake.push(Reply::stream().role().content("Once upon").hang());
    let runtime = runtime(&fake);
    let cancel = CancellationToken::new();
    let (io, mut progress) = io(1, None, cancel.clone());
    let running = tokio::spawn(async move { runtime.run(turn(0, "a story", json!({})), io).await });

    let first = tokio::time::timeout(PATIENCE, progress.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        first,
        Progress::Chunk {
            kind: "text".into(),
            data: json!({"text": "Once upon"}),
            checkpoint: None
        }
    );
    cancel.cancel();
    let result = tokio::time::timeout(PATIENCE, running)
        .await
        .expect("the turn stops")
        .unwrap();
    assert!(result.unwrap_err().is_canceled());
    tokio::time::timeout(PATIENCE, fake.wait_for_disconnect())
        .await
        .expect("the fake sees the client hang up");
}
