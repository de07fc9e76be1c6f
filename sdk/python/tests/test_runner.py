"""A runtime runs on a loop and thread of its own: its blocking code leaves the SDK's loop free."""

import asyncio
import threading

import pytest

from cairn_worker.runner import RuntimeThread


async def test_the_sdk_loop_runs_while_the_runtime_blocks() -> None:
    gate = threading.Event()

    async def blocking() -> bool:
        # A synchronous wait, as a blocking tool does: only another loop can open the gate.
        return gate.wait(timeout=30)

    thread = RuntimeThread(blocking(), "blocking")
    await asyncio.sleep(0)
    gate.set()  # done by the SDK's loop while the runtime is blocked
    assert await thread.outcome is True


async def test_cancellation_reaches_the_runtime_and_resolves_the_outcome_cancelled() -> None:
    signal = asyncio.Event()
    saw: list[str] = []

    async def waits() -> None:
        await signal.wait()
        saw.append("signal")
        await asyncio.sleep(3600)

    thread = RuntimeThread(waits(), "waits")
    thread.call(signal.set)
    while not saw:
        await asyncio.sleep(0.01)
    thread.cancel()
    with pytest.raises(asyncio.CancelledError):
        await thread.outcome


async def test_a_runtime_error_is_the_outcome() -> None:
    async def fails() -> None:
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        await RuntimeThread(fails(), "fails").outcome
