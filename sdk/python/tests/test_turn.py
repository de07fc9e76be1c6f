"""Turns from tasks, checkpoints with the conversation, and failures as the engine sees them."""

import json
from types import SimpleNamespace

from cairn_worker import NonRetryableError, RetryableError, Worker
from cairn_worker.attempt import failure_of, heartbeat_interval, output_of
from cairn_worker.io import Outbox, TurnIO
from cairn_worker.turn import turn_from_task, wrap_checkpoint


def task(checkpoint: object = None) -> SimpleNamespace:
    turn = {
        "agent": {
            "id": "a1",
            "name": "weather",
            "runtime": "agno",
            "model_id": "m",
            "configuration": {"runtime_config": {"instructions": "hi"}},
        },
        "index": 1,
        "prompt": "and tomorrow?",
    }
    return SimpleNamespace(
        turn_json=json.dumps(turn),
        checkpoint_json=json.dumps(checkpoint) if checkpoint is not None else "",
        runtime="agno",
        execution_id="e1",
        activity_id="turn-2",
        attempt=1,
    )


def test_a_turn_carries_the_state_and_the_conversation_of_the_sdk_checkpoint() -> None:
    conversation = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    turn = turn_from_task(task(wrap_checkpoint({"n": 3}, conversation)))
    assert turn.checkpoint == {"n": 3}
    assert turn.conversation == conversation
    assert turn.agent.config == {"instructions": "hi"}
    assert (turn.index, turn.prompt, turn.attempt) == (1, "and tomorrow?", 1)


def test_a_foreign_checkpoint_is_handed_over_as_it_is() -> None:
    turn = turn_from_task(task({"session_id": "x"}))
    assert turn.checkpoint == {"session_id": "x"} and turn.conversation == []
    assert turn_from_task(task()).checkpoint is None


def test_errors_map_to_failure_codes_and_retryability() -> None:
    failure, after = failure_of(RetryableError("slow down", code="rate_limited", retry_after=2))
    assert (failure.code, failure.retryable, after) == ("rate_limited", True, 2000)
    failure, _ = failure_of(NonRetryableError("bad key", code="auth"))
    assert (failure.code, failure.retryable) == ("auth", False)
    failure, _ = failure_of(ValueError("oops"))
    assert (failure.code, failure.retryable) == ("python_exception", True)
    assert "ValueError: oops" in failure.message


def test_results_become_outputs() -> None:
    io = TurnIO(Outbox())
    io.emit("streamed")
    assert output_of(None, io) == {"text": "streamed"}
    assert output_of("text", io) == {"text": "text"}
    assert output_of({"text": "t", "x": 1}, io) == {"text": "t", "x": 1}


def test_heartbeats_are_a_third_of_the_timeout_at_most_half_a_second() -> None:
    assert heartbeat_interval(900) == 0.3
    assert heartbeat_interval(30_000) == 0.5
    assert heartbeat_interval(3) == 0.01


def test_runtimes_are_registered_by_decorator_once_each() -> None:
    worker = Worker("http://127.0.0.1:1")

    @worker.runtime("shout", config_schema={"type": "object"})
    async def shout(turn, io):  # type: ignore[no-untyped-def]
        """Answers in capitals."""

    assert worker.runtimes["shout"].description == "Answers in capitals."
    try:
        worker.runtime("shout")(shout)
    except ValueError as e:
        assert "added twice" in str(e)
    else:
        raise AssertionError("a second runtime of the same name is refused")


def test_the_health_file_is_touched_by_the_loop(tmp_path) -> None:  # type: ignore[no-untyped-def]
    health = tmp_path / "alive"
    worker = Worker("http://127.0.0.1:1", health_file=health)
    worker._alive()
    assert health.exists()
