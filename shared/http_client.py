"""The HTTP client the project's own callers use for its services: a connection pool that sends
a request again when it failed on a pooled connection the server had just closed.

    with http_client.client("http://127.0.0.1:8001", timeout=10) as api:
        api.post("/predict", json=record)

The race it covers (see `shared/keepalive.py`): a connection sits idle in the pool, the server
closes it as the next request goes out on it, and the request fails before any answer
(httpx: `RemoteProtocolError` "Server disconnected without sending a response", or a reset
while writing or reading). `httpx.HTTPTransport(retries=N)` does not cover it: it retries
only failures to connect.

What is retried, and why that is safe: a request that failed before any response arrived, on
a connection that was *reused* from the pool (one opened for this request that fails is a
real failure and is raised). A server closing an idle connection has not read the request,
so nothing ran. GETs are idempotent anyway; the services' `POST /predict` is idempotent in
effect: it scores the same record to the same answer and changes nothing but the
prediction log, which a request the server never read did not reach. Timeouts are never
retried (the server may be working on it).

One-shot calls (`httpx.get(...)`) open a fresh connection each time: nothing stale to retry.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from shared.keepalive import CLIENT_IDLE_SECONDS

log = logging.getLogger(__name__)

# Failures before any response: the server closed the connection, or reset it.
STALE_CONNECTION_ERRORS = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


class RetryStaleConnections(httpx.HTTPTransport):
    """An `httpx.HTTPTransport` that resends a request which failed, before any response,
    on a connection reused from its pool: up to `retries` times (each failed connection
    leaves the pool, so the next try takes another pooled one or opens a new one)."""

    def __init__(self, retries: int = 3, **kwargs: Any):
        super().__init__(**kwargs)
        self.retries = retries

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        extensions = request.extensions
        try:
            for attempt in range(self.retries + 1):
                opened: list[str] = []
                request.extensions = {**extensions, "trace": _tracing(extensions, opened)}
                try:
                    return super().handle_request(request)
                except STALE_CONNECTION_ERRORS as error:
                    replayable = isinstance(request.stream, httpx.ByteStream)
                    if opened or not replayable or attempt == self.retries:
                        raise
                    log.info("%s %s failed on a pooled connection the server closed (%s: %s): "
                             "sending it again", request.method, request.url,
                             type(error).__name__, error)  # fmt: skip
            raise AssertionError("unreachable")  # pragma: no cover
        finally:
            request.extensions = extensions


def _tracing(extensions: dict[str, Any], opened: list[str]):
    """httpcore's trace hook: notes when this request opened a connection of its own (a
    `connect_tcp` event never happens on a reused one), and calls the caller's hook too."""
    theirs = extensions.get("trace")

    def trace(event: str, info: dict[str, Any]) -> None:
        if event.endswith("connect_tcp.started"):
            opened.append(event)
        if theirs is not None:
            theirs(event, info)

    return trace


def client(
    base_url: str = "", *, timeout: float = 10.0, connections: int = 100, retries: int = 3,
    **kwargs: Any,
) -> httpx.Client:  # fmt: skip
    """An `httpx.Client` with a pool of up to `connections` connections, each dropped after
    `CLIENT_IDLE_SECONDS` idle (well inside the servers' keep-alive), that resends a request
    failed on a stale pooled connection. `kwargs` go to `httpx.Client`."""
    limits = httpx.Limits(max_connections=connections, keepalive_expiry=CLIENT_IDLE_SECONDS)
    transport = RetryStaleConnections(retries=retries, limits=limits)
    return httpx.Client(base_url=base_url, timeout=timeout, transport=transport, **kwargs)
