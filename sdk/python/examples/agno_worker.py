"""A Python worker serving an Agno agent as the Cairn runtime `agno`.

Its model is any OpenAI-compatible endpoint (LiteLLM here: OPENAI_BASE_URL, OPENAI_API_KEY);
the agent's `model_id` picks the model. Run it beside `cairn server`:

    CAIRN_SERVER=http://127.0.0.1:7233 OPENAI_BASE_URL=http://127.0.0.1:4000/v1 \\
        python examples/agno_worker.py

This is the worker deploy/Dockerfile's `python-worker` image runs; build your own image FROM
that stage with your module in place of this one.
"""

import os
from datetime import datetime, timezone

from agno.agent import Agent
from agno.models.openai.like import OpenAILike

from cairn_worker import Turn, Worker
from cairn_worker.agno import AgnoRuntime


def current_time() -> str:
    """The current time in UTC, ISO 8601."""
    return datetime.now(timezone.utc).isoformat()


def agent_for(turn: Turn) -> Agent:
    return Agent(
        model=OpenAILike(
            id=turn.agent.model_id or os.environ.get("DEFAULT_MODEL", "gpt-4o-mini"),
            base_url=os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:4000/v1"),
            api_key=os.environ.get("OPENAI_API_KEY", "not-needed"),
        ),
        tools=[current_time],
        instructions="Be helpful and brief.",
    )


worker = Worker(concurrency=int(os.environ.get("CAIRN_CONCURRENCY", "8")),
                drain_timeout=float(os.environ.get("CAIRN_DRAIN_TIMEOUT", "25")))
worker.add(AgnoRuntime(agent_for, name="agno"))

if __name__ == "__main__":
    worker.run_forever()
