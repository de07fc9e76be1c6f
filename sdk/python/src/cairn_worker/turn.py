"""What a runtime is handed for one turn."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

#: The key under which the SDK stores its own part of a checkpoint. A checkpoint the SDK writes
#: is ``{"cairn_sdk": 1, "state": <the runtime's state>, "conversation": [...]}``, so every
#: turn gets the conversation so far without the runtime having to keep it.
SDK_KEY = "cairn_sdk"


@dataclass(frozen=True)
class AgentInfo:
    """The agent as it was when the execution started."""

    id: str
    name: str
    runtime: str
    model_id: str
    #: The agent's ``runtime_config`` (already checked against the runtime's schema).
    config: dict[str, Any]


@dataclass(frozen=True)
class Turn:
    """One turn of an execution, as one attempt runs it."""

    #: The prompt of this turn.
    prompt: str
    #: 0-based turn number.
    index: int
    agent: AgentInfo
    #: The state the runtime last saved with ``io.checkpoint`` (in this turn's earlier attempt,
    #: or at the end of the previous turn), or ``None`` on a fresh start.
    checkpoint: Any
    #: The earlier turns of this execution: ``{"role": "user"|"assistant", "content": str}``.
    conversation: list[dict[str, str]] = field(default_factory=list)
    execution_id: str = ""
    activity_id: str = ""
    attempt: int = 1
    #: The W3C traceparent of the execution's trace, if it has one.
    traceparent: str | None = None


def split_checkpoint(raw: Any) -> tuple[Any, list[dict[str, str]]]:
    """The runtime's state and the conversation from a stored checkpoint. A checkpoint not
    written by the SDK is handed to the runtime as it is, with no conversation."""
    if isinstance(raw, dict) and raw.get(SDK_KEY) == 1:
        conversation = raw.get("conversation")
        return raw.get("state"), conversation if isinstance(conversation, list) else []
    return raw, []


def wrap_checkpoint(state: Any, conversation: list[dict[str, str]]) -> dict[str, Any]:
    """The checkpoint the SDK stores for ``state`` and the conversation so far."""
    return {SDK_KEY: 1, "state": state, "conversation": conversation}


def turn_from_task(task: Any) -> Turn:
    """A :class:`Turn` from a polled ``Task`` message."""
    body = json.loads(task.turn_json)
    agent = body.get("agent", {})
    configuration = agent.get("configuration") or {}
    raw = json.loads(task.checkpoint_json) if task.checkpoint_json else None
    state, conversation = split_checkpoint(raw)
    return Turn(
        prompt=body.get("prompt", ""),
        index=int(body.get("index", 0)),
        agent=AgentInfo(
            id=str(agent.get("id", "")),
            name=agent.get("name", ""),
            runtime=agent.get("runtime", task.runtime),
            model_id=agent.get("model_id", ""),
            config=configuration.get("runtime_config") or {},
        ),
        checkpoint=state,
        conversation=conversation,
        execution_id=task.execution_id,
        activity_id=task.activity_id,
        attempt=task.attempt,
        traceparent=body.get("traceparent"),
    )
