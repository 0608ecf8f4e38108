"""Keep-alive races, with a real service under uvicorn on loopback: the project's servers keep
an idle connection open longer than its clients' pools do, and the project's client sends a
request again when the server closed its pooled connection as the request went out, where a
plain client loses it."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from shared import http_client, model_file
from shared.keepalive import CLIENT_IDLE_SECONDS, SERVER_KEEP_ALIVE_SECONDS
from shared.schema import example_record
from shared.servers import free_port, running
from tests.integration.relay import Relay

# uvicorn's default keep-alive, which the services used to have: a bound test must idle longer
UVICORN_DEFAULT_KEEP_ALIVE = 5


@contextmanager
def level0_service(tmp: Path, pipeline, **settings: str) -> Iterator[str]:
    """The level-0 service as a real uvicorn process serving `pipeline`; yields its URL."""
    model_file.save(pipeline, {"name": "churn", "version": "v1"}, tmp / "serving")
    port = free_port()
    env = {**os.environ, "L0_SERVE_PORT": str(port), "L0_SERVE_MODEL_DIR": str(tmp / "serving"),
           **{f"L0_SERVE_{k.upper()}": v for k, v in settings.items()}}  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with running([sys.executable, "-m", "level0_manual.service"], f"{url}/health",
                 tmp / "service.log", env=env, timeout=60):  # fmt: skip
        yield url


def opened_connection(client: httpx.Client, path: str) -> bool:
    """GET `path`; True when the request opened a new connection (not a pooled one)."""
    events: list[str] = []
    response = client.get(path, extensions={"trace": lambda event, info: events.append(event)})
    assert response.status_code == 200
    return any(e.endswith("connect_tcp.started") for e in events)


def test_the_services_keep_an_idle_connection_open_longer_than_the_clients_pool(tmp_path, trained):
    """The bound: server keep-alive > load balancers' usual 60 s > the pool's idle limit."""
    assert SERVER_KEEP_ALIVE_SECONDS > 60 > CLIENT_IDLE_SECONDS
    limits = httpx.Limits(keepalive_expiry=UVICORN_DEFAULT_KEEP_ALIVE + 5)
    with level0_service(tmp_path, trained.pipeline) as url, \
            httpx.Client(base_url=url, limits=limits) as client:  # fmt: skip
        assert opened_connection(client, "/health")
        time.sleep(UVICORN_DEFAULT_KEEP_ALIVE + 1)  # idle past uvicorn's default
        assert not opened_connection(client, "/health"), "the server closed an idle connection"


ROUNDS = 3
KEEP_ALIVE, IDLE, DELAY = 1, 0.7, 0.6  # the request leaves at 0.7 s idle, arrives at 1.3 s


@pytest.fixture(scope="module")
def racing_service(tmp_path_factory, trained) -> Iterator[Relay]:
    """The level-0 service with a 1-s keep-alive, behind a relay whose delay makes every
    request sent after IDLE seconds arrive past the keep-alive."""
    tmp = tmp_path_factory.mktemp("racing")
    with (
        level0_service(tmp, trained.pipeline, keep_alive_seconds=str(KEEP_ALIVE)) as url,
        Relay(int(url.rsplit(":", 1)[1]), DELAY).running() as relay,
    ):
        yield relay


def idle_then_predict(client: httpx.Client) -> list[httpx.Response | Exception]:
    """ROUNDS times: a request, the pooled connection idle past the keep-alive, a request."""
    outcomes: list[httpx.Response | Exception] = []
    for i in range(ROUNDS):
        first = client.post("/predict", json={**example_record(), "customer_id": f"a-{i}"})
        assert first.status_code == 200
        time.sleep(IDLE)
        try:
            outcomes.append(
                client.post("/predict", json={**example_record(), "customer_id": f"b-{i}"})
            )
        except httpx.HTTPError as error:
            outcomes.append(error)
    return outcomes


def test_a_plain_pooled_client_loses_the_request_the_server_closes_its_connection_on(
    racing_service,
):
    """The race, reproduced: without a retry the request is lost."""
    before = racing_service.races
    with httpx.Client(base_url=racing_service.url, timeout=10) as plain:
        outcomes = idle_then_predict(plain)
    assert racing_service.races - before == ROUNDS  # the server closed on each request
    assert all(isinstance(o, httpx.RemoteProtocolError) for o in outcomes), outcomes
    assert "Server disconnected without sending a response" in str(outcomes[0])


def test_the_projects_client_sends_the_request_again_and_loses_none(racing_service):
    before = racing_service.races
    with http_client.client(racing_service.url, timeout=10) as client:
        outcomes = idle_then_predict(client)
    assert racing_service.races - before == ROUNDS  # the same race, every round
    assert [o.status_code for o in outcomes] == [200] * ROUNDS, outcomes
    ids = [o.json()["predictions"][0]["customer_id"] for o in outcomes]
    assert ids == [f"b-{i}" for i in range(ROUNDS)]


def test_a_failure_on_a_new_connection_is_not_sent_again(racing_service):
    """Only a reused connection is retried: a server that drops a fresh one is an error."""
    racing_service.cut()
    try:
        with http_client.client(racing_service.url, timeout=10) as client:
            refused = racing_service.refused
            with pytest.raises(http_client.STALE_CONNECTION_ERRORS):
                client.get("/health")
            assert racing_service.refused - refused == 1
    finally:
        racing_service.restore()
