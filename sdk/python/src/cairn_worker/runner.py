"""Runs a runtime's turn on an event loop of its own, in a thread of its own.

The SDK's loop sends heartbeats and output; the runtime's code may block (a synchronous Agno
tool, a slow import, a CPU-bound step) without starving them, so a busy runtime never loses its
lease. The two meet only through thread-safe calls: the outcome comes back as a future of the
SDK's loop, cancellation goes over as a call scheduled on the runtime's loop.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Coroutine


class RuntimeThread:
    """One turn running on its own loop; :attr:`outcome` resolves on the caller's loop."""

    def __init__(self, coroutine: Coroutine[Any, Any, Any], name: str) -> None:
        self._caller = asyncio.get_running_loop()
        #: The turn's result, its exception, or cancelled when the runtime was cancelled.
        self.outcome: asyncio.Future[Any] = self._caller.create_future()
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task[Any] | None = None
        self._started = threading.Event()
        self._coroutine = coroutine
        self._thread = threading.Thread(target=self._main, name=f"cairn-{name}", daemon=True)
        self._thread.start()
        self._started.wait()

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._task = self._loop.create_task(self._coroutine)
        self._started.set()
        try:
            result = self._loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            self._deliver(lambda f: f.cancel())
        except BaseException as e:  # the runtime's failure, reported as the attempt's
            # Bound now: `e` is unbound when the except block ends, before the caller's loop
            # runs the callback.
            self._deliver(lambda f, error=e: f.set_exception(error))
        else:
            self._deliver(lambda f: f.set_result(result))
        finally:
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    def _deliver(self, settle: Any) -> None:
        def on_caller() -> None:
            if not self.outcome.done():
                settle(self.outcome)

        try:
            self._caller.call_soon_threadsafe(on_caller)
        except RuntimeError:
            pass  # the SDK's loop is gone: nobody waits for the outcome any more

    def call(self, function: Any, *args: Any) -> None:
        """Calls ``function(*args)`` on the runtime's loop (e.g. to set its cancellation event)."""
        try:
            self._loop.call_soon_threadsafe(function, *args)
        except RuntimeError:
            pass  # the runtime has ended

    def cancel(self) -> None:
        """Cancels the runtime's coroutine (``CancelledError`` at its next ``await``)."""
        if self._task is not None:
            self.call(self._task.cancel)
