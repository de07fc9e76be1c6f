"""Errors a runtime raises to say how its attempt failed, and what the engine makes of them.

Raise :class:`RetryableError` for a failure another attempt may get past (a rate limit, a
timeout, a flaky dependency) and :class:`NonRetryableError` for one it cannot (a bad
configuration, a refused request). Each becomes the attempt's ``Failure`` with its ``code``;
the execution's retry policy (attempts, back-off, non-retryable codes) decides what happens
next, exactly as for Cairn's built-in runtimes. Any other exception is a retryable failure with
code ``python_exception``: an unexpected error is more often transient than not, and the retry
policy bounds it.
"""

from __future__ import annotations

from typing import Any


class RuntimeFailure(Exception):
    """A failure of one attempt, with a stable code and whether a retry may help."""

    retryable: bool = True

    def __init__(
        self,
        message: str,
        *,
        code: str = "runtime_error",
        details: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.details = details or {}
        self.retry_after = retry_after


class RetryableError(RuntimeFailure):
    """Another attempt may succeed; ``retry_after`` (seconds) asks for the earliest retry."""

    retryable = True


class NonRetryableError(RuntimeFailure):
    """Another attempt would fail the same way: the execution fails now."""

    retryable = False


class ConfigurationError(Exception):
    """The worker itself is misconfigured or was refused by the server for good (a built-in
    runtime name, an invalid schema, a bad token): it cannot serve, and says why."""
