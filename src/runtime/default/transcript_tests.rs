use serde_json::json;

use super::*;

fn call(id: &str) -> ToolCall {
    ToolCall {
        id: id.into(),
        name: "read".into(),
        arguments: "{}".into(),
    }
}

fn completion(text: &str, calls: &[&str]) -> Completion {
    Completion {
        text: text.into(),
        tool_calls: calls.iter().map(|id| call(id)).collect(),
        finish_reason: Some(
            if calls.is_empty() {
                "stop"
            } else {
                "tool_calls"
            }
            .into(),
        ),
        usage: TokenUsage {
            input_tokens: 10,
            output_tokens: 2,
            cost_usd: 0.5,
        },
    }
}

#[test]
fn the_tail_decides_the_next_step() {
    let mut t = Transcript::start(None, 0, "hi").unwrap();
    assert_eq!(t.next_step(), Step::CallModel);
    t.record_completion(&completion("", &["a", "b"]));
    assert_eq!(t.next_step(), Step::RunTool(call("a")));
    assert!(!t.turn_complete);
    t.record_tool_result(&call("a"), "A", true);
    assert_eq!(t.next_step(), Step::RunTool(call("b")));
    t.record_tool_result(&call("b"), "refused", false);
    assert_eq!(t.next_step(), Step::CallModel);
    t.record_completion(&completion("done", &[]));
    assert_eq!(t.next_step(), Step::Finished);
    assert!(t.turn_complete);
    assert_eq!(t.answer(), "done");
    assert_eq!(
        (t.model_calls, t.tool_calls, t.usage.input_tokens),
        (2, 1, 20)
    );
}

#[test]
fn a_retry_of_the_same_turn_resumes_as_saved() {
    let mut t = Transcript::start(None, 2, "hi").unwrap();
    t.record_completion(&completion("", &["a"]));
    let resumed = Transcript::start(Some(&t.to_value()), 2, "hi").unwrap();
    assert_eq!(resumed, t);
    assert_eq!(resumed.next_step(), Step::RunTool(call("a")));
}

#[test]
fn the_next_turn_appends_its_prompt_and_starts_its_own_accounting() {
    let mut first = Transcript::start(None, 0, "one").unwrap();
    first.record_completion(&completion("1", &[]));
    let second = Transcript::start(Some(&first.to_value()), 1, "two").unwrap();
    assert_eq!(second.turn, 1);
    assert_eq!(second.messages.len(), 3);
    assert_eq!(
        second.messages[2],
        json!({"role": "user", "content": "two"})
    );
    assert_eq!((second.model_calls, second.usage.input_tokens), (0, 0));
    assert_eq!(second.next_step(), Step::CallModel);
}

#[test]
fn unusable_checkpoints_are_refused() {
    let unfinished = Transcript::start(None, 0, "one").unwrap().to_value();
    let mut later = Transcript::start(None, 5, "x").unwrap();
    later.turn_complete = true;
    let mut old_format = unfinished.clone();
    old_format["format"] = json!(0);
    for (checkpoint, expected) in [
        (
            json!({"session": "x"}),
            "not a `default` runtime transcript",
        ),
        (old_format, "format 0"),
        (unfinished, "an unfinished turn"),
        (later.to_value(), "a later turn"),
    ] {
        let error = Transcript::start(Some(&checkpoint), 1, "p").unwrap_err();
        assert_eq!(error.code, "invalid_checkpoint");
        assert!(!error.retryable);
        assert!(error.message.contains(expected), "{}", error.message);
    }
}
