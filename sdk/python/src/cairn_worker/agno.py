"""Run an `Agno <https://docs.agno.com>`_ ``Agent`` as a Cairn runtime.

:class:`AgnoRuntime` wraps a user's agent (any model Agno supports; for example ``OpenAILike``
pointed at LiteLLM) and streams its run events as Cairn output: text deltas as ``text`` chunks,
tool calls as ``tool_use`` and their results as ``tool_result``. Each model request's token
counts become the turn's usage. The agent's session, the messages so far, is the checkpoint:
it is saved after every completed round of tool calls and at the end of each turn, so a retry
(on any worker) or the next turn continues the same conversation without repeating a model
call whose result it already has.

The agent keeps no session store of its own here: Cairn's checkpoint is the session, handed to
every attempt, so workers need no shared database.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any, Callable

from agno.agent import Agent
from agno.run.agent import (
    ModelRequestCompletedEvent,
    RunCancelledEvent,
    RunCompletedEvent,
    RunContentEvent,
    RunErrorEvent,
    ToolCallCompletedEvent,
    ToolCallStartedEvent,
)
from agno.models.response import ToolExecution

from .errors import NonRetryableError, RetryableError
from .io import TurnIO
from .runtime import Runtime
from .turn import Turn

#: The `runtime_config` an Agno agent accepts when the runtime is given no schema of its own.
DEFAULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "instructions": {
            "type": "string",
            "description": "Replaces the agent's instructions for this agent.",
        },
    },
    "additionalProperties": False,
}

AgentSource = Agent | Callable[[Turn], Agent]


def _session(turn: Turn) -> list[dict[str, Any]]:
    """The messages to run this turn with: a retry of it continues from its last checkpoint
    (which already holds its prompt and the rounds it completed); a new turn adds its prompt
    to the session the previous turn ended with."""
    state = turn.checkpoint if isinstance(turn.checkpoint, dict) else {}
    messages = list(state.get("messages") or [])
    if state.get("turn") == turn.index and not state.get("done", False):
        return messages
    return messages + [{"role": "user", "content": turn.prompt}]


class AgnoRuntime(Runtime):
    """A Cairn runtime that runs an Agno agent.

    ``agent`` is an ``Agent`` (copied for every turn, so turns never share state) or a
    function that builds one for a turn (to use ``turn.agent.model_id`` or
    ``turn.agent.config``). An agent's ``runtime_config.instructions``, when given, replaces
    the agent's instructions.
    """

    def __init__(
        self,
        agent: AgentSource,
        *,
        name: str = "agno",
        description: str = "An Agno agent (its model, tools and instructions as the worker defines them).",
        config_schema: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.description = description
        self.config_schema = config_schema if config_schema is not None else DEFAULT_SCHEMA
        self._agent = agent

    def _agent_for(self, turn: Turn) -> Agent:
        agent = self._agent(turn) if callable(self._agent) and not isinstance(self._agent, Agent) else self._agent.deep_copy()
        instructions = turn.agent.config.get("instructions")
        if isinstance(instructions, str):
            agent.instructions = instructions
        return agent

    async def run(self, turn: Turn, io: TurnIO) -> Any:
        agent = self._agent_for(turn)
        messages = _session(turn)
        run_id = str(uuid.uuid4())
        stream = _Stream(turn, io, messages)
        consume = asyncio.create_task(stream.consume(agent, run_id))
        cancelled = asyncio.create_task(io.cancelled.wait())
        try:
            await asyncio.wait({consume, cancelled}, return_when=asyncio.FIRST_COMPLETED)
            if consume.done():
                return consume.result()
            # Agno's own cancellation stops its loop at its next check; cancelling the task
            # (below) also abandons the model's HTTP stream at once.
            await Agent.acancel_run(run_id)
            raise asyncio.CancelledError("cancellation of the execution was requested")
        finally:
            # Also when this coroutine is itself cancelled (the worker drains, or gives up on
            # it): the run must not outlive the attempt.
            cancelled.cancel()
            if not consume.done():
                consume.cancel()
                await asyncio.gather(consume, return_exceptions=True)


class _Stream:
    """Turns one run's events into chunks, usage and checkpoints."""

    def __init__(self, turn: Turn, io: TurnIO, messages: list[dict[str, Any]]) -> None:
        self.turn, self.io, self.messages = turn, io, messages
        self.text: list[str] = []
        self.calls: list[ToolExecution] = []
        self.results: dict[str, str] = {}

    def checkpoint(self, done: bool) -> None:
        self.io.checkpoint({"messages": self.messages, "turn": self.turn.index, "done": done})

    async def consume(self, agent: Agent, run_id: str) -> dict[str, Any]:
        answer = ""
        events = agent.arun(
            input=self.messages,
            stream=True,
            stream_events=True,
            run_id=run_id,
            session_id=self.turn.execution_id or None,
        )
        async for event in events:
            if isinstance(event, RunContentEvent):
                if isinstance(event.content, str) and event.content:
                    self.text.append(event.content)
                    self.io.emit(event.content)
            elif isinstance(event, ToolCallStartedEvent) and event.tool is not None:
                tool = event.tool
                self.calls.append(tool)
                self.io.emit_tool_use(
                    tool.tool_name or "", tool.tool_args or {}, id=tool.tool_call_id
                )
            elif isinstance(event, ToolCallCompletedEvent) and event.tool is not None:
                self.tool_completed(event.tool, event.content)
            elif isinstance(event, ModelRequestCompletedEvent):
                self.io.usage(
                    input_tokens=event.input_tokens or 0, output_tokens=event.output_tokens or 0
                )
            elif isinstance(event, RunErrorEvent):
                message = str(event.content or "the Agno run failed")
                error_type = str(event.error_type or "")
                details = {"error_type": error_type}
                if "auth" in error_type.lower() or "validation" in error_type.lower():
                    raise NonRetryableError(message, code="agno_error", details=details)
                raise RetryableError(message, code="agno_error", details=details)
            elif isinstance(event, RunCancelledEvent):
                raise asyncio.CancelledError(str(event.reason or "cancelled"))
            elif isinstance(event, RunCompletedEvent):
                answer = event.content if isinstance(event.content, str) else "".join(self.text)
        self.messages.append({"role": "assistant", "content": "".join(self.text) or answer})
        self.checkpoint(done=True)
        return {"text": answer or "".join(self.text)}

    def tool_completed(self, tool: ToolExecution, summary: Any) -> None:
        # The event's own `content` is Agno's summary ("f(x) completed in 0.1s"); the tool's
        # return value, as the model gets it, is `tool.result`.
        result = tool.result if tool.result is not None else summary
        content = result if isinstance(result, str) else json.dumps(result, default=str)
        self.io.emit_tool_result(
            tool.tool_call_id or "", content, name=tool.tool_name, is_error=bool(tool.tool_call_error)
        )
        self.results[tool.tool_call_id or ""] = content
        if all((c.tool_call_id or "") in self.results for c in self.calls):
            # A round is complete: the model's reply with its calls and every result. A retry
            # from here sends them to the model instead of asking it again.
            self.messages.append(
                {
                    "role": "assistant",
                    "content": "".join(self.text) or None,
                    "tool_calls": [
                        {
                            "id": c.tool_call_id,
                            "type": "function",
                            "function": {"name": c.tool_name, "arguments": json.dumps(c.tool_args or {})},
                        }
                        for c in self.calls
                    ],
                }
            )
            for c in self.calls:
                self.messages.append(
                    {"role": "tool", "tool_call_id": c.tool_call_id, "content": self.results[c.tool_call_id or ""]}
                )
            self.text, self.calls, self.results = [], [], {}
            self.checkpoint(done=False)
