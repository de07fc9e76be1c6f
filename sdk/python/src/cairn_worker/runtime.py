"""Runtimes: what a worker serves. Subclass :class:`Runtime`, or decorate a coroutine function
with ``@worker.runtime(...)``."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from .io import TurnIO
from .turn import Turn

#: ``async def run(turn, io)``: returns the turn's result (a ``str`` becomes ``{"text": ...}``,
#: a ``dict`` is stored as it is, ``None`` means ``{"text": <everything emitted>}``).
RunFunction = Callable[[Turn, TurnIO], Awaitable[Any]]


class Runtime:
    """A runtime served by this worker: a name agents use as their ``runtime``, a description,
    and the JSON Schema of the agents' ``runtime_config`` (checked by the server when an agent
    is created or updated, so ``run`` can trust it)."""

    name: str = ""
    description: str = ""
    config_schema: dict[str, Any] = {}

    async def run(self, turn: Turn, io: TurnIO) -> Any:
        """Runs one turn; raise :class:`~cairn_worker.RetryableError` or
        :class:`~cairn_worker.NonRetryableError` to fail it."""
        raise NotImplementedError


class FunctionRuntime(Runtime):
    """A runtime whose ``run`` is a coroutine function."""

    def __init__(
        self,
        name: str,
        function: RunFunction,
        *,
        description: str = "",
        config_schema: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.description = description or (function.__doc__ or "").strip().split("\n")[0]
        self.config_schema = config_schema if config_schema is not None else {}
        self._function = function

    async def run(self, turn: Turn, io: TurnIO) -> Any:
        return await self._function(turn, io)
