"""The Python worker the suite runs (tests/python_sdk.rs): a real Agno agent with one Python
tool, its model the suite's fake OpenAI-compatible server, plus `steps`, a runtime that shows
checkpoints, cancellation and drain.

Environment: CAIRN_SERVER (the servers), WORKER_ID, OPENAI_BASE_URL (the fake), HOLD=1 (the
`steps` runtime then waits after its first step until it is cancelled or released),
DRAIN_TIMEOUT (seconds), MARKER_DIR (where `steps` writes `cancelled-<worker>` when its
cancellation signal fires).
"""

import asyncio
import os
from pathlib import Path

from agno.agent import Agent
from agno.models.openai.like import OpenAILike

from cairn_worker import NonRetryableError, RetryableError, Turn, TurnIO, Worker
from cairn_worker.agno import AgnoRuntime

WORKER_ID = os.environ["WORKER_ID"]


def lookup_weather(city: str) -> str:
    """Looks up today's weather in a city."""
    return f"sunny, 21C in {city}"


def agent_for(turn: Turn) -> Agent:
    return Agent(
        model=OpenAILike(
            id=turn.agent.model_id or "gpt-test",
            base_url=os.environ["OPENAI_BASE_URL"],
            api_key="not-needed",
            max_retries=0,
        ),
        tools=[lookup_weather],
        instructions="Answer briefly.",
    )


worker = Worker(
    worker_id=WORKER_ID,
    concurrency=2,
    drain_timeout=float(os.environ.get("DRAIN_TIMEOUT", "10")),
    cancel_grace=5.0,
)
worker.add(
    AgnoRuntime(
        agent_for,
        name="agno",
        description="A real Agno agent with a weather tool.",
        config_schema={
            "type": "object",
            "properties": {
                "instructions": {"type": "string", "description": "The system prompt."},
                "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            },
            "additionalProperties": False,
        },
    )
)


@worker.runtime(
    "steps",
    description="Two steps, checkpointed; holds after the first when HOLD=1.",
    config_schema={
        "type": "object",
        "properties": {"fail": {"type": "boolean"}, "flaky": {"type": "boolean"}},
    },
)
async def steps(turn: Turn, io: TurnIO) -> str:
    if turn.agent.config.get("fail"):
        raise NonRetryableError("asked to fail", code="asked_to_fail")
    if turn.agent.config.get("flaky") and turn.attempt == 1:
        raise RetryableError("flaky on its first attempt", code="flaky")
    done = (turn.checkpoint or {}).get("done", 0)
    if done < 1:
        io.emit(f"step 1 on {WORKER_ID}\n")
        io.checkpoint({"done": 1})
    if os.environ.get("HOLD") == "1":
        try:
            await io.cancelled.wait()
        finally:
            if io.cancelled.is_set():
                Path(os.environ["MARKER_DIR"], f"cancelled-{WORKER_ID}").write_text("fired")
        io.raise_if_cancelled()
    io.emit(f"step 2 on {WORKER_ID}\n")
    io.checkpoint({"done": 2})
    return {"text": f"finished on {WORKER_ID}", "conversation": turn.conversation}


if __name__ == "__main__":
    worker.run_forever()
