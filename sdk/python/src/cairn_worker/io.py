"""``TurnIO``: what a runtime writes to while it runs, and how it learns it should stop.

Output goes into an :class:`Outbox` that the attempt drains in batches (the SDK's business:
batching, heartbeats and retries of lost replies). A checkpoint is queued in order with the
output, so a batch carries a checkpoint only together with every chunk emitted before it: a
retry resumed from a checkpoint never repeats nor skips output.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from dataclasses import dataclass
from typing import Any, Callable

#: The most chunks one progress batch carries (the server's limit, `MAX_BATCH_CHUNKS`).
MAX_BATCH_CHUNKS = 256
#: The most bytes of chunks a batch of several chunks carries (`MAX_BATCH_BYTES`).
MAX_BATCH_BYTES = 1 << 20


@dataclass
class Chunk:
    """One output chunk: its kind (``text``, ``tool_use``, ``tool_result``, ...) and its data
    encoded as JSON, as it goes on the wire."""

    kind: str
    data_json: str

    @property
    def size(self) -> int:
        return len(self.kind) + len(self.data_json.encode())


@dataclass
class Usage:
    """Tokens, cost and tool calls of a turn, summed over every ``io.usage`` call."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    tool_calls: int = 0


class Outbox:
    """Chunks and checkpoints in the order the runtime produced them, cut into batches.

    The runtime fills it from its own thread (see ``runner.py``) while the SDK's loop drains
    it, so every change holds a lock, and the SDK's loop is woken thread-safely."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._lock = threading.Lock()
        self._loop = loop
        self.chunks: list[Chunk] = []
        #: (how many of ``chunks`` it covers, the checkpoint as JSON), oldest first.
        self.checkpoints: list[tuple[int, str]] = []
        #: Chunks of this attempt already stored by the server (the next batch's first index).
        self.sent = 0
        #: Wakes the sender when there is something to send.
        self.ready = asyncio.Event()

    def _wake(self) -> None:
        if self._loop is None:
            self.ready.set()
        else:
            try:
                self._loop.call_soon_threadsafe(self.ready.set)
            except RuntimeError:
                pass  # the SDK's loop is gone: the attempt is over

    def push(self, chunk: Chunk) -> None:
        with self._lock:
            self.chunks.append(chunk)
        self._wake()

    def checkpoint(self, state_json: str) -> None:
        with self._lock:
            self.checkpoints.append((len(self.chunks), state_json))
        self._wake()

    def pending(self) -> bool:
        return bool(self.chunks or self.checkpoints)

    def full(self) -> bool:
        return len(self.chunks) >= MAX_BATCH_CHUNKS

    def take(self, limit_bytes: int = MAX_BATCH_BYTES) -> Batch:
        """The next batch: at most ``MAX_BATCH_CHUNKS`` chunks and ``limit_bytes`` (a single
        larger chunk goes alone), with the newest checkpoint that covers no chunk beyond them.
        Call :meth:`sent_batch` with it once the server stored it."""
        with self._lock:
            size, n = 0, 0
            for chunk in self.chunks[:MAX_BATCH_CHUNKS]:
                if n > 0 and size + chunk.size > limit_bytes:
                    break
                size += chunk.size
                n += 1
            # Checkpoints are queued in order, so those a batch covers are a prefix.
            covered = 0
            while covered < len(self.checkpoints) and self.checkpoints[covered][0] <= n:
                covered += 1
            checkpoint = self.checkpoints[covered - 1][1] if covered else ""
            return Batch(self.chunks[:n], checkpoint, self.sent, covered)

    def sent_batch(self, batch: Batch) -> None:
        """Drops a stored batch and the checkpoints it covered (output queued meanwhile stays)."""
        n = len(batch.chunks)
        with self._lock:
            del self.chunks[:n]
            self.sent += n
            self.checkpoints = [
                (c - n, s) for c, s in self.checkpoints[batch.checkpoints_covered :]
            ]
            if not self.pending():
                self.ready.clear()


@dataclass
class Batch:
    """What one progress message (or the final report) carries."""

    chunks: list[Chunk]
    #: The newest checkpoint covering every chunk up to the batch's last (JSON; "" for none).
    checkpoint: str
    #: The index of ``chunks[0]`` among this attempt's chunks.
    first_index: int
    #: How many queued checkpoints the batch covers (sent, or superseded by the one sent).
    checkpoints_covered: int


class TurnIO:
    """What a runtime's ``run(turn, io)`` writes to.

    ``emit`` and friends never block: output is queued and sent by the SDK in batches of at
    most 256 chunks and 1 MiB, every 50 ms or when a batch is full, and at least every
    heartbeat interval even when there is nothing to send.
    """

    def __init__(self, outbox: Outbox, wrap: Callable[[Any], str] = json.dumps) -> None:
        self._outbox = outbox
        #: Turns a state into the checkpoint stored (the SDK adds the conversation so far).
        self._wrapped = wrap
        self._usage = Usage()
        self._tool_calls_seen = 0
        self._text: list[str] = []
        self._state: Any = None
        self._has_state = False
        #: Set when cancellation of the execution was requested: stop soon (the SDK waits a
        #: grace period, then cancels the ``run`` coroutine). ``await io.cancelled.wait()``.
        #: ``run`` has an event loop (and a thread) of its own, so code that blocks does not
        #: stop the SDK's heartbeats.
        self.cancelled = asyncio.Event()

    # Output -----------------------------------------------------------------------------

    def emit(self, text: str) -> None:
        """A piece of the answer's text (a ``text`` chunk)."""
        if text:
            self._text.append(text)
            self.emit_chunk("text", {"text": text})

    def emit_chunk(self, kind: str, data: dict[str, Any]) -> None:
        """A chunk of any kind; ``data`` must be JSON-serialisable."""
        self._outbox.push(Chunk(kind, json.dumps(data)))

    def emit_tool_use(
        self,
        name: str,
        arguments: Any,
        *,
        id: str | None = None,
        **extra: Any,
    ) -> str:
        """A tool call the runtime is making (a ``tool_use`` chunk); returns its id, generated
        when not given. Counts one tool call in the turn's usage."""
        call_id = id or f"call_{uuid.uuid4().hex[:12]}"
        self._tool_calls_seen += 1
        self.emit_chunk("tool_use", {"id": call_id, "name": name, "arguments": arguments, **extra})
        return call_id

    def emit_tool_result(
        self,
        id: str,
        content: Any,
        *,
        name: str | None = None,
        is_error: bool = False,
    ) -> None:
        """The result of the tool call ``id`` (a ``tool_result`` chunk)."""
        data: dict[str, Any] = {"id": id, "content": content, "is_error": is_error}
        if name is not None:
            data["name"] = name
        self.emit_chunk("tool_result", data)

    def checkpoint(self, state: Any) -> None:
        """Saves ``state`` (JSON-serialisable): a retry of this turn, on any worker, starts
        with it as ``turn.checkpoint``, and so does the next turn. It covers every chunk
        emitted before it."""
        self._state = state
        self._has_state = True
        self._outbox.checkpoint(self._wrapped(state))

    def usage(
        self,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost_usd: float = 0.0,
        tool_calls: int = 0,
    ) -> None:
        """Adds to the turn's usage (recorded with the outcome, shown by ``cairn exec get``)."""
        self._usage.input_tokens += max(0, int(input_tokens))
        self._usage.output_tokens += max(0, int(output_tokens))
        self._usage.cost_usd += max(0.0, float(cost_usd))
        self._usage.tool_calls += max(0, int(tool_calls))

    def raise_if_cancelled(self) -> None:
        """Raises ``asyncio.CancelledError`` when cancellation was requested."""
        if self.cancelled.is_set():
            raise asyncio.CancelledError("cancellation of the execution was requested")

    # For the SDK ------------------------------------------------------------------------

    def total_usage(self) -> Usage:
        usage = Usage(**vars(self._usage))
        if usage.tool_calls == 0:
            usage.tool_calls = self._tool_calls_seen
        return usage

    def text(self) -> str:
        return "".join(self._text)

    def state(self) -> tuple[bool, Any]:
        return self._has_state, self._state
