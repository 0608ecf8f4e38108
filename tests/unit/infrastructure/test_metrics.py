"""GET /metrics on every level's service (shared/telemetry.py): requests by route and status,
latency, the model each arm serves and its age, the probabilities answered; level 1's
prediction log; level 2's arms. Read with prometheus_client's own parser."""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from level0_manual.service import ServiceSettings, create_app
from level1_ct.registry import ModelRef
from shared import model_file
from shared.schema import example_record

TRAINED_AT = "2026-11-01T00:00:00+00:00"


def scrape(client: TestClient) -> dict[tuple[str, frozenset], float]:
    """Every sample of /metrics: (name, labels) -> value."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples, metric: str, **labels) -> float | None:
    return samples.get((metric, frozenset(labels.items())))


def total(samples, metric: str, **labels) -> float:
    """The sum over the samples of `metric` whose labels include `labels`."""
    return sum(v for (n, ls), v in samples.items() if n == metric and set(labels.items()) <= ls)


@pytest.fixture
def level0(trained, tmp_path):
    card = {"name": "churn", "version": "v-metrics", "trained_at": TRAINED_AT}
    model_file.save(trained.pipeline, card, tmp_path)
    with TestClient(create_app(ServiceSettings(model_dir=tmp_path, max_records=50))) as client:
        yield client


def test_level0_counts_requests_by_route_and_status_and_the_probabilities_answered(level0):
    assert level0.post("/predict", json=example_record()).status_code == 200
    assert level0.post("/predict", json=[example_record()] * 2).status_code == 200
    assert level0.post("/predict", json={**example_record(), "age": "old"}).status_code == 422
    assert level0.get("/wp-admin/x.php").status_code == 404
    samples = scrape(level0)
    ok = value(samples, "churn_http_requests_total", route="/predict", method="POST", status="200")
    assert ok == 2
    assert (
        value(samples, "churn_http_requests_total", route="/predict", method="POST", status="422")
        == 1
    )
    # A path no route has is "unmatched": a scanner cannot grow the series
    assert (
        value(samples, "churn_http_requests_total", route="unmatched", method="GET", status="404")
        == 1
    )
    assert not any("wp-admin" in str(labels) for _, labels in samples)
    assert value(samples, "churn_http_request_duration_seconds_count", route="/predict") == 3
    assert value(samples, "churn_probability_count", arm="champion") == 3  # one per record
    assert value(samples, "churn_http_requests_in_flight") == 1  # the scrape itself


def test_level0_says_which_model_it_serves_and_how_old_it_is(level0):
    samples = scrape(level0)
    assert (
        value(samples, "churn_model_info", arm="champion", name="churn", version="v-metrics") == 1
    )
    assert value(samples, "churn_model_loaded", arm="champion") == 1
    expected = time.time() - datetime.fromisoformat(TRAINED_AT).timestamp()
    assert value(samples, "churn_model_age_seconds", arm="champion") == pytest.approx(
        expected, abs=60
    )


def test_level0_without_a_model_says_none_is_loaded(tmp_path):
    with TestClient(create_app(ServiceSettings(model_dir=tmp_path))) as client:
        samples = scrape(client)
    assert value(samples, "churn_model_loaded", arm="champion") == 0
    assert total(samples, "churn_model_info") == 0


def served(version: str, pipeline, alias: str = "champion"):
    from level1_ct.service import Served

    ref = ModelRef("churn", version, "run", "data", alias, registered_at=time.time() - 3600)
    return Served(ref, pipeline, "now")


def test_level1_reports_its_champion_and_its_prediction_log(trained, tmp_path):
    from level1_ct import service as level1

    settings = level1.ServiceSettings(
        MLFLOW_TRACKING_URI="http://127.0.0.1:9",
        PREDICTION_STORE_URL=f"sqlite:///{tmp_path}/predictions.db",
        poll_seconds=3600,
    )
    app = level1.create_app(settings)
    with TestClient(app) as client:
        assert value(scrape(client), "churn_model_loaded", arm="champion") == 0
        app.state.follower.current = served("7", trained.pipeline)
        for _ in range(3):
            assert client.post("/predict", json=[example_record()] * 2).status_code == 200
        assert value(scrape(client), "churn_prediction_log_pending") == 6
        app.state.prediction_log.flush()
        samples = scrape(client)
    assert value(samples, "churn_model_info", arm="champion", name="churn", version="7") == 1
    assert value(samples, "churn_model_age_seconds", arm="champion") == pytest.approx(3600, abs=60)
    assert value(samples, "churn_probability_count", arm="champion") == 6
    assert value(samples, "churn_prediction_log_written_total") == 6
    assert value(samples, "churn_prediction_log_pending") == 0
    assert value(samples, "churn_prediction_log_dropped_total") == 0


def test_level2_reports_each_arm(trained, tmp_path):
    from level2_cicd.service import ProductionSettings, create_production_app

    settings = ProductionSettings(
        MLFLOW_TRACKING_URI="http://127.0.0.1:9",
        PREDICTION_STORE_URL=f"sqlite:///{tmp_path}/predictions.db",
        poll_seconds=3600,
        canary_share=0.5,
        api_key="s3cret",
    )
    app = create_production_app(settings)
    with TestClient(app) as client:
        app.state.follower.current = served("7", trained.pipeline)
        app.state.router.follower.current = served("8", trained.pipeline, alias="canary")
        for _ in range(40):
            assert client.post("/predict", json=example_record()).status_code == 200
        client.post("/admin/fault", json={"error_rate": 1.0}, headers={"X-API-Key": "s3cret"})
        for _ in range(40):
            assert client.post("/predict", json=example_record()).status_code == 200
        samples = scrape(client)
    assert value(samples, "churn_model_info", arm="canary", name="churn", version="8") == 1
    assert value(samples, "churn_model_info", arm="champion", name="churn", version="7") == 1
    canary_ok = value(samples, "churn_arm_requests_total", arm="canary", outcome="ok")
    canary_failed = value(samples, "churn_arm_requests_total", arm="canary", outcome="error")
    champion_ok = value(samples, "churn_arm_requests_total", arm="champion", outcome="ok")
    assert 5 < canary_ok < 35 and 5 < canary_failed < 35  # about half of each forty
    # A failed canary request is answered by the champion: 80 answers in all
    assert champion_ok == 80 - canary_ok
    assert value(samples, "churn_probability_count", arm="canary") == canary_ok
    assert value(samples, "churn_probability_count", arm="champion") == champion_ok


def test_with_metrics_off_nothing_is_measured_and_metrics_is_not_served(trained, tmp_path):
    model_file.save(trained.pipeline, {"name": "churn", "version": "v-off"}, tmp_path)
    settings = ServiceSettings(model_dir=tmp_path, metrics=False)
    app = create_app(settings)
    with TestClient(app) as client:
        assert client.post("/predict", json=example_record()).status_code == 200
        assert client.get("/metrics").status_code == 404
    assert app.state.telemetry.probability.collect()[0].samples == []
