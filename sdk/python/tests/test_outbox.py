"""Batches: a checkpoint travels only with every chunk emitted before it."""

import json

from cairn_worker.io import MAX_BATCH_CHUNKS, Chunk, Outbox, TurnIO


def test_a_checkpoint_goes_with_the_chunks_before_it_and_not_before() -> None:
    outbox = Outbox()
    io = TurnIO(outbox)
    io.emit("a")
    io.checkpoint({"n": 1})
    io.emit("b")
    batch = outbox.take(limit_bytes=len("text") + len(json.dumps({"text": "a"})))
    assert [c.data_json for c in batch.chunks] == ['{"text": "a"}']
    assert json.loads(batch.checkpoint) == {"n": 1}
    outbox.sent_batch(batch)
    io.checkpoint({"n": 2})
    batch = outbox.take()
    assert batch.first_index == 1
    assert [c.data_json for c in batch.chunks] == ['{"text": "b"}']
    assert json.loads(batch.checkpoint) == {"n": 2}


def test_a_checkpoint_queued_while_a_batch_is_in_flight_is_kept() -> None:
    outbox = Outbox()
    io = TurnIO(outbox)
    io.emit("a")
    in_flight = outbox.take()
    io.checkpoint({"n": 1})  # covers "a", queued after the batch was cut
    outbox.sent_batch(in_flight)
    assert outbox.pending()
    batch = outbox.take()
    assert batch.chunks == [] and json.loads(batch.checkpoint) == {"n": 1}


def test_batches_hold_at_most_256_chunks_and_1_mib() -> None:
    outbox = Outbox()
    for i in range(MAX_BATCH_CHUNKS + 10):
        outbox.push(Chunk("text", json.dumps({"text": str(i)})))
    assert outbox.full()
    assert len(outbox.take().chunks) == MAX_BATCH_CHUNKS
    big = Outbox()
    big.push(Chunk("text", "x" * (2 << 20)))
    big.push(Chunk("text", "y"))
    assert len(big.take().chunks) == 1, "a chunk larger than a batch goes alone"


def test_usage_adds_up_and_tool_uses_count_as_tool_calls() -> None:
    io = TurnIO(Outbox())
    io.usage(input_tokens=10, output_tokens=2)
    io.usage(input_tokens=5, cost_usd=0.5)
    call = io.emit_tool_use("search", {"q": "x"})
    io.emit_tool_result(call, "found")
    usage = io.total_usage()
    assert (usage.input_tokens, usage.output_tokens, usage.cost_usd, usage.tool_calls) == (15, 2, 0.5, 1)
