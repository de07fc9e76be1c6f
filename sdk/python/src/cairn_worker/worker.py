"""The worker: registers its runtimes with a server, polls for their tasks up to its
concurrency, runs each as an :class:`~cairn_worker.attempt.Attempt`, and on SIGTERM drains:
it stops polling, gives running attempts ``drain_timeout`` seconds, then releases the rest to
the server so another worker resumes them from their checkpoints at once."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
import uuid
from pathlib import Path
from typing import Any, Callable, Sequence

import grpc

from ._proto import cairn_pb2 as pb
from .attempt import Attempt
from .connection import Answer, Backoff, Servers, classify, describe
from .errors import ConfigurationError
from .runtime import FunctionRuntime, Runtime, RunFunction

log = logging.getLogger("cairn_worker")

#: The request header in which a polling worker says how many attempts it runs at once.
SLOTS_HEADER = "cairn-worker-slots"


class Worker:
    """A Cairn worker process serving runtimes written in Python.

    ``servers`` is one URL or several (a list, or comma-separated): the worker uses them one
    at a time and moves on when one is unreachable (default: ``CAIRN_SERVER``). The token
    comes from ``token``, ``token_file`` or ``CAIRN_TOKEN``; ``https://`` servers are reached
    over TLS trusting ``ca_cert`` (PEM bytes or a path; default ``CAIRN_CA_CERT``) or else the
    system roots, checking the certificate against ``tls_domain`` (``CAIRN_TLS_DOMAIN``) when
    it is not the URL's host.
    """

    def __init__(
        self,
        servers: str | Sequence[str] | None = None,
        *,
        token: str | None = None,
        token_file: str | os.PathLike[str] | None = None,
        ca_cert: bytes | str | os.PathLike[str] | None = None,
        tls_domain: str | None = None,
        worker_id: str | None = None,
        queue: str = "default",
        concurrency: int = 4,
        drain_timeout: float = 10.0,
        cancel_grace: float = 5.0,
        poll_wait: float = 20.0,
        health_file: str | os.PathLike[str] | None = None,
    ) -> None:
        servers = servers or os.environ.get("CAIRN_SERVER", "http://127.0.0.1:7233")
        urls = [u.strip() for u in servers.split(",")] if isinstance(servers, str) else list(servers)
        if token is None and token_file is not None:
            token = Path(token_file).read_text().strip()
        if token is None:
            token = os.environ.get("CAIRN_TOKEN") or None
        if ca_cert is None and os.environ.get("CAIRN_CA_CERT"):
            ca_cert = os.environ["CAIRN_CA_CERT"]
        if isinstance(ca_cert, (str, os.PathLike)):
            ca_cert = Path(ca_cert).read_bytes()
        tls_domain = tls_domain or os.environ.get("CAIRN_TLS_DOMAIN") or None
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.servers = Servers(urls, token=token, ca_cert=ca_cert, tls_domain=tls_domain)
        self.worker_id = worker_id or f"py-{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self.queue = queue
        self.concurrency = concurrency
        self.drain_timeout = drain_timeout
        self.cancel_grace = cancel_grace
        self.poll_wait = poll_wait
        #: Touched after every poll (or failed poll) and every ``poll_wait`` while all slots
        #: are busy: a liveness probe can check that the worker's loop still turns.
        health = health_file or os.environ.get("CAIRN_WORKER_HEALTH_FILE")
        self.health_file = Path(health) if health else None
        self.runtimes: dict[str, Runtime] = {}
        self._attempts: set[asyncio.Task[None]] = set()
        self._running: dict[asyncio.Task[None], Attempt] = {}
        self._draining: asyncio.Event | None = None
        self._slot_freed: asyncio.Event | None = None

    # Runtimes ----------------------------------------------------------------------------

    def add(self, runtime: Runtime) -> Runtime:
        """Serves ``runtime`` (an instance of a :class:`Runtime` subclass)."""
        if not runtime.name:
            raise ValueError("a runtime needs a name")
        if runtime.name in self.runtimes:
            raise ValueError(f"runtime `{runtime.name}` is added twice")
        self.runtimes[runtime.name] = runtime
        return runtime

    def runtime(
        self,
        name: str,
        *,
        description: str = "",
        config_schema: dict[str, Any] | None = None,
    ) -> Callable[[RunFunction], RunFunction]:
        """Decorates ``async def run(turn, io)`` as the runtime ``name``."""

        def register(function: RunFunction) -> RunFunction:
            self.add(
                FunctionRuntime(
                    name, function, description=description, config_schema=config_schema
                )
            )
            return function

        return register

    # Running -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Starts draining (what SIGTERM and SIGINT do)."""
        if self._draining is not None and not self._draining.is_set():
            log.info("cairn-worker %s draining", self.worker_id)
            self._draining.set()

    def run_forever(self) -> None:
        """Runs until SIGTERM or SIGINT, then drains and returns. Logs to stderr unless logging
        is configured; exits with status 2 when the server refuses the worker for good."""
        if not logging.getLogger().handlers:
            logging.basicConfig(
                level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
            )
        try:
            asyncio.run(self.run())
        except ConfigurationError as e:
            log.error("%s", e)
            sys.exit(2)

    async def run(self) -> None:
        """Serves until :meth:`stop` (or SIGTERM/SIGINT), then drains."""
        if not self.runtimes:
            raise ConfigurationError("the worker has no runtimes: add one before running it")
        self._draining = asyncio.Event()
        self._slot_freed = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.stop)
            except (NotImplementedError, RuntimeError):
                pass  # not the main thread: the caller stops it with stop()
        log.info(
            "cairn-worker %s serving %s on %s",
            self.worker_id,
            ",".join(sorted(self.runtimes)),
            ",".join(self.servers.urls),
        )
        try:
            await self._serve()
            await self._drain()
        finally:
            await self.servers.close()
            for sig in (signal.SIGTERM, signal.SIGINT):
                try:
                    loop.remove_signal_handler(sig)
                except (NotImplementedError, RuntimeError):
                    pass
        log.info("cairn-worker %s stopped", self.worker_id)

    async def _serve(self) -> None:
        assert self._draining is not None and self._slot_freed is not None
        draining = asyncio.create_task(self._draining.wait())
        registered = -1
        backoff = Backoff()
        try:
            while not self._draining.is_set():
                self._alive()
                free = self.concurrency - len(self._attempts)
                if free <= 0:
                    self._slot_freed.clear()
                    slot = asyncio.create_task(self._slot_freed.wait())
                    await asyncio.wait(
                        {slot, draining},
                        timeout=self.poll_wait,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    slot.cancel()
                    continue
                try:
                    stub = self.servers.stub()
                    if registered != self.servers.generation:
                        await self._register(stub)
                        registered = self.servers.generation
                    poll = asyncio.ensure_future(
                        stub.PollTasks(
                            pb.PollTasksRequest(
                                worker_id=self.worker_id,
                                runtimes=sorted(self.runtimes),
                                queue=self.queue,
                                max_tasks=free,
                                wait_ms=int(self.poll_wait * 1000),
                            ),
                            metadata=self.servers.metadata(
                                [(SLOTS_HEADER, str(self.concurrency))]
                            ),
                            timeout=self.poll_wait + 30,
                        )
                    )
                    await asyncio.wait({poll, draining}, return_when=asyncio.FIRST_COMPLETED)
                    if not poll.done():
                        # Draining: a task the server leased to this poll meanwhile is lost
                        # with the call and comes back when its lease expires.
                        poll.cancel()
                        break
                    tasks = poll.result().tasks
                    backoff.reset()
                except grpc.RpcError as e:
                    if classify(e) is Answer.REFUSED:
                        raise ConfigurationError(
                            f"cairn-worker {self.worker_id}: {self.servers.url} refused the "
                            f"worker: {describe(e)}"
                        ) from None
                    log.warning("server %s: %s; trying the next", self.servers.url, describe(e))
                    await self.servers.next()
                    pause = asyncio.create_task(asyncio.sleep(backoff.next()))
                    await asyncio.wait({pause, draining}, return_when=asyncio.FIRST_COMPLETED)
                    pause.cancel()
                    continue
                for task in tasks:
                    self._start(task)
        finally:
            draining.cancel()

    def _alive(self) -> None:
        if self.health_file is not None:
            try:
                self.health_file.touch()
            except OSError as e:
                log.warning("cannot touch the health file %s: %s", self.health_file, e)

    async def _register(self, stub: Any) -> None:
        request = pb.RegisterRuntimesRequest(
            worker_id=self.worker_id,
            runtimes=[
                pb.RuntimeSpec(
                    name=r.name,
                    description=r.description,
                    config_schema_json=json.dumps(r.config_schema),
                )
                for r in self.runtimes.values()
            ],
        )
        await stub.RegisterRuntimes(request, metadata=self.servers.metadata(), timeout=30)
        log.info(
            "cairn-worker %s registered %s with %s",
            self.worker_id,
            ",".join(sorted(self.runtimes)),
            self.servers.url,
        )

    def _start(self, task: Any) -> None:
        runtime = self.runtimes.get(task.runtime)
        if runtime is None:
            log.error("the server handed over a task of runtime `%s`, which this worker does not serve", task.runtime)
            return
        attempt = Attempt(self.servers, task, runtime, cancel_grace=self.cancel_grace)
        running = asyncio.create_task(attempt.run())
        self._attempts.add(running)
        self._running[running] = attempt
        running.add_done_callback(self._ended)

    def _ended(self, running: asyncio.Task[None]) -> None:
        self._attempts.discard(running)
        self._running.pop(running, None)
        if self._slot_freed is not None:
            self._slot_freed.set()

    async def _drain(self) -> None:
        if not self._attempts:
            return
        log.info(
            "cairn-worker %s: %d attempt(s) running; they get %.1fs to finish",
            self.worker_id,
            len(self._attempts),
            self.drain_timeout,
        )
        _, late = await asyncio.wait(set(self._attempts), timeout=self.drain_timeout)
        for running in late:
            attempt = self._running.get(running)
            if attempt is not None:
                attempt.release_requested.set()
        if late:
            await asyncio.wait(late)
