"""Connections to Cairn servers: one at a time, moving to the next URL when one is unreachable
(as ``cairn worker`` does), with the bearer token on every call and TLS for ``https://`` URLs."""

from __future__ import annotations

import enum
import random
from typing import Any, Sequence
from urllib.parse import urlparse

import grpc

from ._proto import cairn_pb2_grpc


class Answer(enum.Enum):
    """What a failed call means to a worker (the classes of Cairn's own worker client)."""

    #: The attempt's lease is gone: stop working on it and report nothing more.
    LEASE_LOST = "lease_lost"
    #: The server could not be reached or failed for now: send the same message again.
    RETRY = "retry"
    #: Refused for good: the message, the registration or the credentials are invalid.
    REFUSED = "refused"


def classify(error: grpc.RpcError) -> Answer:
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    if code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND):
        return Answer.LEASE_LOST
    if code in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    ):
        return Answer.RETRY
    return Answer.REFUSED


def describe(error: grpc.RpcError) -> str:
    details = error.details() if hasattr(error, "details") else str(error)
    code = error.code().name if hasattr(error, "code") else "UNKNOWN"
    return f"{details} ({code})"


class Backoff:
    """Jittered exponential back-off between 100 ms and 5 s."""

    def __init__(self, first: float = 0.1, most: float = 5.0) -> None:
        self.first, self.most, self.current = first, most, first

    def next(self) -> float:
        delay = self.current * random.uniform(0.5, 1.0)
        self.current = min(self.current * 2, self.most)
        return delay

    def reset(self) -> None:
        self.current = self.first


class Servers:
    """The servers a worker may use, one at a time."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        token: str | None = None,
        ca_cert: bytes | None = None,
        tls_domain: str | None = None,
    ) -> None:
        if not urls:
            raise ValueError("at least one server URL is needed (e.g. http://127.0.0.1:7233)")
        for url in urls:
            if urlparse(url).scheme not in ("http", "https"):
                raise ValueError(f"server URL `{url}` must start with http:// or https://")
        self.urls = list(urls)
        self._token = token
        self._ca_cert = ca_cert
        self._tls_domain = tls_domain
        self._index = 0
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None
        #: Moves on with every new connection, so the worker registers again on each.
        self.generation = 0

    @property
    def url(self) -> str:
        return self.urls[self._index]

    def metadata(self, extra: Sequence[tuple[str, str]] = ()) -> list[tuple[str, str]]:
        metadata = list(extra)
        if self._token:
            metadata.append(("authorization", f"Bearer {self._token}"))
        return metadata

    def stub(self) -> Any:
        """The `WorkerService` client of the current server (connecting lazily)."""
        if self._stub is None:
            parsed = urlparse(self.url)
            target = parsed.netloc
            if parsed.scheme == "https":
                credentials = grpc.ssl_channel_credentials(root_certificates=self._ca_cert)
                # The name the server's certificate is checked against, when it is not the
                # URL's host (as `cairn worker --tls-domain`).
                options = (
                    [("grpc.ssl_target_name_override", self._tls_domain)]
                    if self._tls_domain
                    else []
                )
                self._channel = grpc.aio.secure_channel(target, credentials, options=options)
            else:
                self._channel = grpc.aio.insecure_channel(target)
            self._stub = cairn_pb2_grpc.WorkerServiceStub(self._channel)
            self.generation += 1
        return self._stub

    async def next(self) -> None:
        """Moves to the next URL (or reconnects to the only one)."""
        await self.close()
        self._index = (self._index + 1) % len(self.urls)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        self._channel, self._stub = None, None
