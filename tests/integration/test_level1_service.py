"""Level 1's service as a real uvicorn process following a real MLflow registry: it swaps
to a new champion under load without failing a request (and explains with the version it
serves, before and after), keeps serving when MLflow is gone
(and says "degraded"), loses no poll to MLflow closing idle connections and is not degraded
by one failed poll, and logs every prediction in batches to the prediction store."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter

import httpx
import pytest

from level1_ct.service import served_version
from shared.schema import example_record
from shared.servers import MlflowServer, free_port, mlflow_server
from shared.train import TrainingConfig, train
from tests.integration.level1 import level1_service, register_champion, wait_for
from tests.integration.relay import Relay


@pytest.fixture(scope="module")
def two_models(trained, split):
    """Two different fitted models: the session's, and one from another seed and space."""
    other = train(split[0], TrainingConfig(n_iter=1, cv_folds=2, seed=99))
    return trained.pipeline, other.pipeline


def test_hot_swap_under_load_fails_no_request_and_then_serves_the_new_version(tmp_path, two_models):
    first, second = two_models
    with mlflow_server(MlflowServer(root=tmp_path / "mlflow", port=free_port())) as mlflow:
        v1 = register_champion(mlflow.url, first)
        with level1_service(tmp_path, mlflow.url) as url:
            assert served_version(url) == v1
            explained_before = assert_explains(url, v1)
            seen: list[tuple[int, str | None]] = []
            stop = threading.Event()

            def load() -> None:
                with httpx.Client(timeout=10) as client:
                    while not stop.is_set():
                        try:
                            r = client.post(f"{url}/predict", json=[example_record()] * 5)
                            seen.append((r.status_code, r.json().get("model_version")))
                        except httpx.HTTPError as error:
                            seen.append((0, repr(error)))

            workers = [threading.Thread(target=load) for _ in range(4)]
            for w in workers:
                w.start()
            wait_for(lambda: len(seen) > 50, 30, "load before the swap")
            v2 = register_champion(mlflow.url, second)  # the pipeline's move: alias -> v2
            wait_for(lambda: served_version(url) == v2, 30, "the service to follow the alias")
            swapped_at = len(seen)
            wait_for(lambda: len(seen) > swapped_at + 50, 30, "load after the swap")
            stop.set()
            for w in workers:
                w.join()
            explained_after = assert_explains(url, v2)

    statuses = Counter(status for status, _ in seen)
    assert statuses == {200: len(seen)}, f"failed requests during the swap: {statuses}"
    versions = [version for _, version in seen]
    assert set(versions) == {v1, v2}
    # Once a request saw the new version, every later answer comes from it: no flapping.
    assert versions[-50:] == [v2] * 50
    first_new = versions.index(v2)
    assert all(v == v2 for v in versions[first_new + 8 :])  # 4 clients: a few in flight
    assert explained_before != explained_after  # /explain follows the swap too


def assert_explains(url: str, version: str) -> dict[str, float]:
    """POST /explain answers with `version`'s attributions, adding up to its output and to
    what /predict answers, customer by customer; returns the first record's."""
    records = [{**example_record(), "customer_id": "c-1"},
               {**example_record(), "customer_id": "c-2", "complaints_90d": 6}]  # fmt: skip
    answer = httpx.post(f"{url}/explain", json=records, timeout=60)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_version"] == version
    assert [e["customer_id"] for e in body["explanations"]] == ["c-1", "c-2"]
    predicted = httpx.post(f"{url}/predict", json=records).json()["predictions"]
    for explained, served in zip(body["explanations"], predicted, strict=True):
        total = body["base_value"] + sum(explained["attributions"].values())
        assert total == pytest.approx(explained["log_odds"], abs=1e-4)
        assert explained["churn_probability"] == pytest.approx(
            served["churn_probability"], abs=1e-6
        )
    complaints = [e["attributions"]["complaints_90d"] for e in body["explanations"]]
    assert complaints[1] > complaints[0]  # 6 complaints push towards churn more than 1
    return body["explanations"][0]["attributions"]


def test_mlflow_down_keeps_predictions_answered_and_health_degraded(tmp_path, two_models):
    server = MlflowServer(root=tmp_path / "mlflow", port=free_port())
    with mlflow_server(server):
        version = register_champion(server.url, two_models[0])
        service = level1_service(tmp_path, server.url)
        url = service.__enter__()
    try:
        # The MLflow server is stopped now; the service keeps the model it has.
        health = wait_for(
            lambda: (h := httpx.get(f"{url}/health").json())["status"] == "degraded" and h,
            30,
            "/health to say degraded",
        )
        assert server.url in health["detail"] and health["model_version"] == version
        answer = httpx.post(f"{url}/predict", json=example_record())
        assert answer.status_code == 200 and answer.json()["model_version"] == version
        assert httpx.get(f"{url}/model").json()["version"] == version
    finally:
        service.__exit__(None, None, None)


class HealthSamples:
    """GET /health every 0.1 s in a thread, for the block: every status seen, in order."""

    def __init__(self, url: str):
        self.url, self.seen = url, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.seen.append(httpx.get(f"{self.url}/health", timeout=10).json()["status"])

    def __enter__(self) -> HealthSamples:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def test_polls_lose_nothing_to_keep_alive_races_and_one_failed_poll_is_not_degraded(
    tmp_path, two_models
):
    """MLflow closes idle connections after 1 s; the service polls every 0.7 s through a slow
    line (0.6 s), so every poll's first request reaches MLflow after it closed the pooled
    connection. The polls still see the alias move; one failed poll leaves /health "ok";
    polls failing `degraded_after_failed_polls` (3) times in a row make it "degraded"."""
    first, second = two_models
    server = MlflowServer(root=tmp_path / "mlflow", port=free_port(), keep_alive_seconds=1)
    log = tmp_path / "service.log"

    def failed_polls() -> int:
        return log.read_text().count("cannot reach the model registry")

    with mlflow_server(server), Relay(server.port, delay=0.6).running() as line:
        v1 = register_champion(server.url, first)
        with level1_service(tmp_path, line.url, poll_seconds="0.7") as url:
            assert served_version(url) == v1
            with HealthSamples(url) as health:
                wait_for(lambda: line.races >= 3, 60, "three polls racing MLflow's keep-alive")
                v2 = register_champion(server.url, second)
                wait_for(lambda: served_version(url) == v2, 90, "the service to follow the alias")
                assert failed_polls() == 0, "a poll was lost to a closed connection"

                line.cut()  # one poll fails
                wait_for(lambda: failed_polls() >= 1, 30, "a failed poll", every=0.05)
                line.restore()
                races = line.races
                wait_for(lambda: line.races >= races + 2, 30, "two more polls")
            assert failed_polls() < 3 and health.seen.count("ok") > 20
            assert set(health.seen) == {"ok"}, f"/health flipped on one failed poll: {health.seen}"

            line.cut()  # the registry unreachable for good
            started = time.monotonic()
            degraded = wait_for(
                lambda: (h := httpx.get(f"{url}/health").json())["status"] == "degraded" and h,
                60,
                "/health to say degraded",
                every=0.1,
            )
            assert failed_polls() >= 1 + 3 and time.monotonic() - started > 1.0
            assert line.url in degraded["detail"] and degraded["model_version"] == v2
            line.restore()
            wait_for(lambda: httpx.get(f"{url}/health").json()["status"] == "ok", 30, "recovery")


def test_every_prediction_is_logged_with_its_model_version(tmp_path, two_models):
    with mlflow_server(MlflowServer(root=tmp_path / "mlflow", port=free_port())) as mlflow:
        version = register_champion(mlflow.url, two_models[0])
        with level1_service(tmp_path, mlflow.url) as url:
            records = [{**example_record(), "customer_id": f"c-{i}"} for i in range(7)]
            first = httpx.post(f"{url}/predict", json=records[:3])
            second = httpx.post(f"{url}/predict", json=records[3:])
            assert first.status_code == second.status_code == 200
            store = tmp_path / "predictions.db"

            def logged():
                if not store.exists():
                    return None
                try:
                    with sqlite3.connect(store) as db:
                        rows = db.execute(
                            "SELECT request_id, customer_id, model_version, age, probability, "
                            "churn FROM predictions ORDER BY id"
                        ).fetchall()
                except sqlite3.OperationalError:  # the writer's first flush creates the table
                    return None
                return rows if len(rows) == 7 else None

            rows = wait_for(logged, 30, "7 logged predictions")
    assert [r[1] for r in rows] == [f"c-{i}" for i in range(7)]
    assert {r[2] for r in rows} == {version}
    assert {r[0] for r in rows[:3]} == {first.headers["x-request-id"]}
    assert {r[0] for r in rows[3:]} == {second.headers["x-request-id"]}
    answered = first.json()["predictions"] + second.json()["predictions"]
    assert [r[4] for r in rows] == pytest.approx(
        [p["churn_probability"] for p in answered], abs=1e-6
    )
    assert all(r[3] == example_record()["age"] for r in rows)
