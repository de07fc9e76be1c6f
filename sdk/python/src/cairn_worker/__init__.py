"""Cairn worker SDK: serve Cairn runtimes written in Python.

    from cairn_worker import Worker

    worker = Worker("http://127.0.0.1:7233")

    @worker.runtime("shout", description="Answers in capitals.",
                    config_schema={"type": "object", "properties": {"times": {"type": "integer"}}})
    async def shout(turn, io):
        io.emit(turn.prompt.upper())

    worker.run_forever()
"""

from .errors import ConfigurationError, NonRetryableError, RetryableError, RuntimeFailure
from .io import TurnIO, Usage
from .runtime import FunctionRuntime, Runtime
from .turn import AgentInfo, Turn
from .worker import Worker

__all__ = [
    "AgentInfo",
    "ConfigurationError",
    "FunctionRuntime",
    "NonRetryableError",
    "RetryableError",
    "Runtime",
    "RuntimeFailure",
    "Turn",
    "TurnIO",
    "Usage",
    "Worker",
]
