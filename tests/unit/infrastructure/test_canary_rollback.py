"""A canary rollback is done when production says so: production follows the `canary` alias
on its own poll, so after CD removes the alias some customers are still routed to the
rolled-back version until production's next look. CD waits for production's `/rollout` to
drop it, on every replica, and says so when it does not."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from level2_cicd.flows.cd import Candidate, canary_unloaded, production_rollout
from level2_cicd.settings import CicdSettings

ARM = {"requests": 0, "errors": 0, "p50_ms": 0.0, "p95_ms": 0.0, "histogram": [0] * 10}
NONE_COUNTED = {"customers": 0, "disagreements": 0, "dropped": 0}  # figures ARM does not give


@contextmanager
def production(
    canary_versions: list[str | None], host: str = "127.0.0.1", port: int = 0, arm: dict = ARM
) -> Iterator[tuple[str, list[str]]]:
    """An HTTP server answering GET /rollout with the next canary version of the list (the
    last one from then on), and `arm`'s figures for both arms; it records each request's
    path."""
    asked: list[str] = []

    class Rollout(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            version = canary_versions[min(len(asked), len(canary_versions)) - 1]
            figures = {"canary_version": version, "counted_version": "5", "champion": arm,
                       "canary": arm}  # fmt: skip
            body = json.dumps(figures).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Rollout)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://{host}:{server.server_port}", asked
    finally:
        server.shutdown()
        server.server_close()


def candidate(version: str) -> Candidate:
    return Candidate(version=version, summary="passed the gate")


def test_cd_waits_until_production_routes_no_customer_to_the_rolled_back_canary():
    with production(["5", "5", None]) as (url, asked):
        settings = CicdSettings(production_url=url, production_timeout_seconds=30)
        assert canary_unloaded(candidate("5"), settings)
    assert asked == ["/rollout"] * 3  # it kept asking until the canary was gone


def test_a_production_that_keeps_the_canary_is_reported_not_waited_on_forever():
    with production(["5"]) as (url, asked):
        settings = CicdSettings(production_url=url, production_timeout_seconds=1)
        assert not canary_unloaded(candidate("5"), settings)
    assert len(asked) >= 2


def test_another_canary_in_production_is_not_the_rolled_back_one():
    with production(["6"]) as (url, _):
        assert canary_unloaded(candidate("5"), CicdSettings(production_url=url))


@contextmanager
def replicas(monkeypatch, *canary_versions: list[str | None], arms=(ARM, ARM)):
    """Two production replicas on one port (127.0.0.1 and 127.0.0.2), found as CD finds them:
    the name `production-replicas` resolves to both (as the stack's DNS does)."""
    port = free_loopback_port()
    with (
        production(canary_versions[0], "127.0.0.1", port, arms[0]) as (_, first),
        production(canary_versions[1], "127.0.0.2", port, arms[1]) as (_, second),
    ):
        resolve = socket.getaddrinfo

        def both(host, *args, **kwargs):
            if host != "production-replicas":
                return resolve(host, *args, **kwargs)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))
                    for ip in ("127.0.0.2", "127.0.0.1")]  # fmt: skip

        monkeypatch.setattr(socket, "getaddrinfo", both)
        yield CicdSettings(production_url=f"http://production:{port}",
                           production_replicas="production-replicas",
                           production_timeout_seconds=2), (first, second)  # fmt: skip


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_canary_is_unloaded_only_when_no_replica_routes_to_it(monkeypatch):
    with replicas(monkeypatch, [None], ["5"]) as (settings, (first, second)):
        assert not canary_unloaded(candidate("5"), settings)  # the second replica still does
    assert len(first) >= 2 and len(second) >= 2  # both were asked, again and again
    with replicas(monkeypatch, [None], ["5", None]) as (settings, _):
        assert canary_unloaded(candidate("5"), settings)


def test_cd_judges_the_canary_on_every_replicas_requests(monkeypatch):
    fast = {**ARM, "requests": 60, "errors": 1, "p95_ms": 12.0, "histogram": [6] * 10}
    slow = {**ARM, "requests": 40, "errors": 0, "p95_ms": 30.0, "histogram": [4] * 10}
    with replicas(monkeypatch, ["5"], ["5"], arms=(fast, slow)) as (settings, _):
        figures = production_rollout(settings)
    assert figures["replicas"] == 2 and figures["counted_versions"] == ["5"]
    assert figures["canary"] == {"requests": 100, "errors": 1, "p95_ms": 30.0,
                                 "histogram": [10] * 10, **NONE_COUNTED}  # fmt: skip


def test_pooled_figures_add_up_and_take_the_slowest_replicas_tail():
    from level2_cicd.rollout import pooled

    idle = {**ARM, "p95_ms": 900.0}  # answered nothing: its (stale) tail says nothing
    busy = {**ARM, "requests": 10, "errors": 2, "p95_ms": 20.0, "histogram": [1] * 10}
    figures = pooled([
        {"canary_version": "5", "counted_version": "5", "champion": busy, "canary": busy},
        {"canary_version": None, "counted_version": "4", "champion": busy, "canary": idle},
    ])  # fmt: skip
    assert figures["canary"] == {"requests": 10, "errors": 2, "p95_ms": 20.0,
                                 "histogram": [1] * 10, **NONE_COUNTED}  # fmt: skip
    assert figures["champion"]["requests"] == 20 and figures["champion"]["histogram"] == [2] * 10
    assert figures["counted_versions"] == ["4", "5"] and figures["canary_versions"] == ["5", "None"]
    with pytest.raises(ValueError, match="no production replica"):
        pooled([])
