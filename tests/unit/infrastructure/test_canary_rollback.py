"""A canary rollback is done when production says so: production follows the `canary` alias
on its own poll, so after CD removes the alias some customers are still routed to the
rolled-back version until production's next look. CD waits for production's `/rollout` to
drop it, and says so when it does not."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from level2_cicd.flows.cd import Candidate, canary_unloaded
from level2_cicd.settings import CicdSettings


@contextmanager
def production(canary_versions: list[str | None]) -> Iterator[tuple[str, list[str]]]:
    """An HTTP server answering GET /rollout with the next canary version of the list (the
    last one from then on); it records each request's path."""
    asked: list[str] = []

    class Rollout(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            version = canary_versions[min(len(asked), len(canary_versions)) - 1]
            body = json.dumps({"canary_version": version, "counted_version": "5"}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Rollout)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", asked
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
