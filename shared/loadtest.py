"""A small HTTP load generator: keep-alive connections, each sending one request after the
other for a while. Used by the benchmarks (bench/) and by level 2's staging check.

A bare HTTP/1.1 client on asyncio streams: a full client library costs more CPU per request
than the service, and client and service share the machine (wrk's role, in Python).
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import time
from dataclasses import dataclass, field

import httpx


@dataclass(frozen=True)
class LoadResult:
    rps: float  # answered requests per second
    times_ms: list[float] = field(repr=False)  # latency of each 200 answer
    errors: int  # answers other than 200, and connections that broke

    def percentile(self, q: int) -> float:
        if len(self.times_ms) < 2:
            return self.times_ms[0] if self.times_ms else float("inf")
        return statistics.quantiles(self.times_ms, n=100)[q - 1]

    @property
    def p50_ms(self) -> float:
        return self.percentile(50)

    @property
    def p99_ms(self) -> float:
        return self.percentile(99)

    @property
    def summary(self) -> str:
        return (
            f"{self.rps:.0f} req/s, p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms, "
            f"{self.errors} errors"
        )


async def load(
    url: str, body: object, connections: int, seconds: float, rate: float | None = None
) -> LoadResult:
    """POST `body` as JSON to `url` over `connections` connections for `seconds`: each one as
    fast as it is answered, or (`rate`) all of them together at about `rate` requests a
    second, each request sent at its time (a steady load below what the service can take)."""
    parsed = httpx.URL(url)
    payload = json.dumps(body).encode()
    request = (
        f"POST {parsed.raw_path.decode()} HTTP/1.1\r\nHost: {parsed.host}:{parsed.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload
    times: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(parsed.host, parsed.port)
        every = connections / rate if rate else 0.0
        due = time.perf_counter()
        try:
            while time.perf_counter() < deadline:
                if every:
                    due += every
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
                await reader.readexactly(length)
                if head.startswith(b"HTTP/1.1 200"):
                    times.append((time.perf_counter() - started) * 1000)
                else:
                    errors += 1
        except (OSError, asyncio.IncompleteReadError):
            errors += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    return LoadResult(len(times) / (time.perf_counter() - started), times, errors)
