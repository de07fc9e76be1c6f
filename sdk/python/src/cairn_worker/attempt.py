"""One attempt: runs a runtime's turn while sending its output in batches (which also extend
the lease), learns of cancellation from the replies, and ends with one report: completed,
failed, cancelled, or released back to the server when the worker drains.

The cadence is Cairn's own worker's: a full batch goes at once, other output after a 50 ms
window, and a heartbeat at least every third of the lease's heartbeat timeout (at most 500 ms).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import grpc

from ._proto import cairn_pb2 as pb
from .connection import Answer, Backoff, Servers, classify, describe
from .errors import RuntimeFailure
from .io import Batch, Outbox, TurnIO
from .runner import RuntimeThread
from .runtime import Runtime
from .turn import Turn, turn_from_task, wrap_checkpoint

log = logging.getLogger("cairn_worker")

#: Output is held this long so that close pieces travel together.
FLUSH_WINDOW = 0.05
#: How long a report is retried while no server answers before the attempt gives up (its lease
#: will have expired by then, and the engine retries it elsewhere).
REPORT_PATIENCE = 60.0


class LeaseLost(Exception):
    """The server no longer holds this attempt's lease: stop, report nothing more."""


class Refused(Exception):
    """The server refused a message for good."""


def heartbeat_interval(heartbeat_ms: int) -> float:
    return min(max(heartbeat_ms / 3, 10), 500) / 1000


def failure_of(error: BaseException) -> tuple[pb.Failure, int]:
    """The ``Failure`` an exception of a runtime becomes, and the retry delay it asks for."""
    if isinstance(error, RuntimeFailure):
        failure = pb.Failure(
            code=error.code,
            message=error.message,
            retryable=error.retryable,
            details_json=json.dumps(error.details) if error.details else "",
        )
        return failure, int((error.retry_after or 0) * 1000)
    message = f"{type(error).__name__}: {error}"
    return pb.Failure(code="python_exception", message=message[:60_000], retryable=True), 0


def output_of(result: Any, io: TurnIO) -> dict[str, Any]:
    if result is None:
        return {"text": io.text()}
    if isinstance(result, str):
        return {"text": result}
    if isinstance(result, dict):
        return result
    return {"value": result}


class Attempt:
    """A claimed task being run."""

    def __init__(
        self,
        servers: Servers,
        task: Any,
        runtime: Runtime,
        *,
        cancel_grace: float,
    ) -> None:
        self.servers = servers
        self.runtime = runtime
        self.lease = pb.Lease(
            task_id=task.task_id, attempt=task.attempt, lease_token=task.lease_token
        )
        self.turn: Turn = turn_from_task(task)
        self.outbox = Outbox(asyncio.get_running_loop())
        conversation = self.turn.conversation
        self.io = TurnIO(
            self.outbox, wrap=lambda state: json.dumps(wrap_checkpoint(state, conversation))
        )
        self.heartbeat = heartbeat_interval(task.heartbeat_timeout_ms)
        self.cancel_grace = cancel_grace
        #: Set by the worker when it drains and this attempt's drain time is up.
        self.release_requested = asyncio.Event()
        self.name = f"{task.execution_id}/{task.activity_id}#{task.attempt}"
        #: Cancellation of the execution was requested (a progress reply said so).
        self.cancel_requested = False

    # The attempt's life ------------------------------------------------------------------

    async def run(self) -> None:
        log.info("attempt %s started (runtime %s)", self.name, self.runtime.name)
        self.thread = RuntimeThread(self.runtime.run(self.turn, self.io), self.name)
        work = self.thread.outcome
        try:
            outcome = await self._supervise(work)
            await self._finish(work, outcome)
        except LeaseLost as e:
            log.warning("attempt %s: lease lost (%s); dropping it", self.name, e)
        except Refused as e:
            log.error("attempt %s: the server refused its report for good: %s", self.name, e)
        finally:
            if not work.done():
                self.thread.cancel()

    async def _supervise(self, work: asyncio.Future[Any]) -> str:
        """Sends output and heartbeats until the runtime ends (``done``), the worker asks for
        the attempt back (``release``), or a cancelled runtime outlives its grace
        (``abandoned``)."""
        last_sent = time.monotonic()
        pending_since: float | None = None
        abandon_at: float | None = None
        release = asyncio.create_task(self.release_requested.wait())
        try:
            while not work.done():
                now = time.monotonic()
                if self.outbox.pending() and pending_since is None:
                    pending_since = now
                due = last_sent + self.heartbeat
                if pending_since is not None:
                    due = min(due, now if self.outbox.full() else pending_since + FLUSH_WINDOW)
                if abandon_at is not None:
                    due = min(due, abandon_at)
                waiters: set[asyncio.Future[Any]] = {work, release}
                ready = None
                if pending_since is None:
                    ready = asyncio.create_task(self.outbox.ready.wait())
                    waiters.add(ready)
                await asyncio.wait(waiters, timeout=max(0.0, due - now), return_when=asyncio.FIRST_COMPLETED)
                if ready is not None and not ready.done():
                    ready.cancel()
                if self.release_requested.is_set():
                    return "release"
                if work.done():
                    break
                now = time.monotonic()
                if abandon_at is not None and now >= abandon_at:
                    log.warning("attempt %s ignored cancellation for %.1fs; abandoning it", self.name, self.cancel_grace)
                    return "abandoned"
                if now >= last_sent + self.heartbeat or (
                    pending_since is not None
                    and (self.outbox.full() or now >= pending_since + FLUSH_WINDOW)
                ):
                    cancel = await self._send_progress()
                    last_sent, pending_since = time.monotonic(), None
                    if cancel and abandon_at is None:
                        self.cancel_requested = True
                        log.info("attempt %s: cancellation requested", self.name)
                        self.thread.call(self.io.cancelled.set)
                        abandon_at = time.monotonic() + self.cancel_grace
            return "done"
        finally:
            release.cancel()

    async def _finish(self, work: asyncio.Future[Any], outcome: str) -> None:
        if outcome == "release":
            self.thread.cancel()
            await asyncio.wait({work}, timeout=self.cancel_grace)
            await self._flush()
            await self._call("ReleaseTask", pb.ReleaseTaskRequest(lease=self.lease))
            log.info("attempt %s released (the worker drains)", self.name)
            return
        if outcome == "abandoned":
            self.thread.cancel()
            await self._report_cancelled(abandoned=True)
            return
        error = work.exception() if not work.cancelled() else asyncio.CancelledError()
        if self.cancel_requested and error is not None:
            await self._report_cancelled(abandoned=False)
            return
        if error is not None:
            failure, retry_after_ms = failure_of(error)
            log.info("attempt %s failed: %s (%s)", self.name, failure.message, failure.code)
            batch = await self._flush(keep_last=True)
            checkpoint = batch.checkpoint or self._latest_checkpoint()
            request = pb.FailTaskRequest(
                lease=self.lease,
                chunks=[pb.ChunkIn(kind=c.kind, data_json=c.data_json) for c in batch.chunks],
                checkpoint_json=checkpoint,
                failure=failure,
                retry_after_ms=retry_after_ms,
                first_chunk_index=batch.first_index,
            )
            await self._call("FailTask", request)
            return
        result = work.result()
        output = output_of(result, self.io)
        batch = await self._flush(keep_last=True)
        usage = self.io.total_usage()
        has_state, state = self.io.state()
        conversation = self.turn.conversation + [
            {"role": "user", "content": self.turn.prompt},
            {"role": "assistant", "content": str(output.get("text", self.io.text()))},
        ]
        request = pb.CompleteTaskRequest(
            lease=self.lease,
            chunks=[pb.ChunkIn(kind=c.kind, data_json=c.data_json) for c in batch.chunks],
            checkpoint_json=json.dumps(wrap_checkpoint(state if has_state else None, conversation)),
            output_json=json.dumps(output),
            usage=pb.Usage(
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cost_usd=usage.cost_usd,
                tool_calls=usage.tool_calls,
            ),
            first_chunk_index=batch.first_index,
            accept_next_task=False,
        )
        await self._call("CompleteTask", request)
        log.info("attempt %s completed", self.name)

    async def _report_cancelled(self, *, abandoned: bool) -> None:
        batch = await self._flush(keep_last=True)
        request = pb.CancelTaskRequest(
            lease=self.lease,
            chunks=[pb.ChunkIn(kind=c.kind, data_json=c.data_json) for c in batch.chunks],
            abandoned=abandoned,
            first_chunk_index=batch.first_index,
        )
        await self._call("CancelTask", request)
        log.info("attempt %s cancelled%s", self.name, " (abandoned)" if abandoned else "")

    # Messages ----------------------------------------------------------------------------

    def _latest_checkpoint(self) -> str:
        return self.outbox.checkpoints[-1][1] if self.outbox.checkpoints else ""

    async def _flush(self, keep_last: bool = False) -> Batch:
        """Sends queued output as progress; with ``keep_last``, the last batch is returned
        unsent, to go with the report."""
        while True:
            batch = self.outbox.take()
            more = len(batch.chunks) < len(self.outbox.chunks)
            if keep_last and not more:
                return batch
            if not self.outbox.pending():
                return batch
            await self._send(batch)

    async def _send_progress(self) -> bool:
        """Sends one batch (or a heartbeat); returns whether cancellation was requested."""
        return await self._send(self.outbox.take())

    async def _send(self, batch: Batch) -> bool:
        request = pb.ReportProgressRequest(
            lease=self.lease,
            chunks=[pb.ChunkIn(kind=c.kind, data_json=c.data_json) for c in batch.chunks],
            checkpoint_json=batch.checkpoint,
            first_chunk_index=batch.first_index,
        )
        reply = await self._call("ReportProgress", request)
        self.outbox.sent_batch(batch)
        return bool(reply.cancel_requested)

    async def _call(self, method: str, request: Any) -> Any:
        """Calls ``method``, sending the same message again while the server is unreachable
        (a batch sent twice is stored once: it names its first chunk's index)."""
        backoff = Backoff()
        deadline = time.monotonic() + REPORT_PATIENCE
        while True:
            try:
                return await getattr(self.servers.stub(), method)(
                    request, metadata=self.servers.metadata(), timeout=30
                )
            except grpc.RpcError as e:
                answer = classify(e)
                if answer is Answer.LEASE_LOST:
                    raise LeaseLost(describe(e)) from None
                if answer is Answer.REFUSED:
                    raise Refused(describe(e)) from None
                if time.monotonic() > deadline:
                    raise LeaseLost(f"no server answered for {REPORT_PATIENCE:.0f}s") from None
                log.warning("attempt %s: %s failed, retrying: %s", self.name, method, describe(e))
                await asyncio.sleep(backoff.next())
