"""The pipeline's exporter (level1_ct/pipeline_metrics.py): the figures Prometheus' rules
judge, read from a real MLflow store (SQLite, in process), a prediction store and a landing
folder as the flows write them. Read with prometheus_client's own parser."""

from __future__ import annotations

import json
import time
from datetime import date

import pandas as pd
import pytest
from mlflow import MlflowClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from level1_ct import names
from level1_ct.pipeline_metrics import PipelineCollector, Runs
from level1_ct.prediction_log import connect, record_monitoring
from level1_ct.settings import PipelineSettings

EXPERIMENT = "level1-ct"


def scrape(collector) -> dict[tuple[str, frozenset], float]:
    metrics = CollectorRegistry()
    metrics.register(collector)
    text = generate_latest(metrics).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples, metric, **labels):
    return samples.get((metric, frozenset(labels.items())))


def land(landing, days: list[date], labelled: list[date]) -> None:
    for folder, which in (("features", days), ("labels", labelled)):
        (landing / folder).mkdir(parents=True, exist_ok=True)
        for day in which:
            pd.DataFrame({"x": [1]}).to_parquet(landing / folder / f"{day.isoformat()}.parquet")


def quarantine(landing, name: str, rows: int) -> None:
    folder = landing / names.QUARANTINE / "features"
    folder.mkdir(parents=True, exist_ok=True)
    reason = {"file": name, "violations": {"ok": False, "rows": rows, "violations": [
        {"column": "age", "rule": "max", "message": "12 rows above 100", "rows": 12}]}}  # fmt: skip
    (folder / name.replace(".parquet", ".reason.json")).write_text(json.dumps(reason))


@pytest.fixture
def world(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    settings = PipelineSettings(
        mlflow_tracking_uri=uri, prediction_store_url=f"sqlite:///{tmp_path}/predictions.db",
        landing=tmp_path / "landing", drift_share_threshold=0.4, max_model_age_days=2,
    )  # fmt: skip
    return settings, MlflowClient(uri)


def run(client, experiment_id, status, **tags):
    created = client.create_run(experiment_id, tags=tags)
    client.log_metric(created.info.run_id, "roc_auc", 0.81)
    client.set_terminated(created.info.run_id, status)
    return created.info.run_id


def test_training_runs_the_champion_monitoring_and_the_quarantine(world):
    settings, client = world
    experiment = client.create_experiment(EXPERIMENT)
    promoted = run(client, experiment, "FINISHED", gate="passed", promoted="true")
    for name, gap in (("age_band", 0.14), ("city_tier", 0.38)):  # as evaluate().flat() logs
        client.log_metric(promoted, f"fairness/{name}/equalized_odds_difference", gap)
    client.log_metric(promoted, "fairness/age_band/18-24/true_positive_rate", 0.45)
    run(client, experiment, "FINISHED", gate="rejected", promoted="false")
    run(client, experiment, "FAILED")
    run(client, experiment, "FAILED")  # the newest two failed, one after the other
    client.create_registered_model("churn")
    version = str(
        client.create_model_version(
            "churn", f"runs:/{promoted}/model", promoted, tags={"window": "2026-01-01..2026-01-10"}
        ).version
    )
    client.set_registered_model_alias("churn", "champion", version)
    land(settings.landing, [date(2026, 1, d) for d in range(1, 16)],
         [date(2026, 1, d) for d in range(1, 13)])  # fmt: skip
    quarantine(settings.landing, "2026-01-16.parquet", rows=300)
    quarantine(settings.landing, "export-final.parquet", rows=200)
    store = connect(settings.prediction_store_url)
    record_monitoring(store, "0", {"drift_share": 0.9})  # an older version's: not the champion's
    record_monitoring(store, version, {"drift_share": 0.5, "drifted_columns": 4.0,
                                       "live_roc_auc": 0.7, "rows": 2000.0,
                                       "live_fairness/age_band/equalized_odds_difference": 0.31,
                                       "live_fairness/age_band/18-24/true_positive_rate": 0.2,
                                       })  # fmt: skip

    samples = scrape(PipelineCollector(settings))

    assert value(samples, "churn_training_runs_total", outcome="promoted") == 1
    assert value(samples, "churn_training_runs_total", outcome="rejected") == 1
    assert value(samples, "churn_training_runs_total", outcome="failed") == 2
    assert value(samples, "churn_training_failures_in_a_row") == 2
    assert time.time() - value(samples, "churn_last_successful_training_timestamp_seconds") < 60
    assert (
        value(samples, "churn_champion_info", version=version, window="2026-01-01..2026-01-10") == 1
    )
    assert value(samples, "churn_champion_holdout_roc_auc") == pytest.approx(0.81)
    assert value(samples, "churn_champion_data_lag_days") == 2  # labels up to the 12th
    assert value(samples, "churn_drift_share") == 0.5
    assert value(samples, "churn_drifted_columns") == 4
    assert value(samples, "churn_live_roc_auc") == 0.7
    gaps = {labels: v for (name, labels), v in samples.items()
            if name == "churn_champion_equalized_odds_difference"}  # fmt: skip
    assert gaps == {frozenset({("attribute", "age_band")}): 0.14,
                    frozenset({("attribute", "city_tier")}): 0.38}  # fmt: skip
    live = [k for k in samples if k[0] == "churn_live_equalized_odds_difference"]
    assert live == [
        ("churn_live_equalized_odds_difference", frozenset({("attribute", "age_band")}))
    ]
    assert value(samples, "churn_live_equalized_odds_difference", attribute="age_band") == 0.31
    assert value(samples, "churn_alert_threshold", name="equalized_odds_difference") == 0.6
    assert value(samples, "churn_batches_quarantined_total") == 2
    assert value(samples, "churn_contract_refused_rows_total") == 500
    assert value(samples, "churn_alert_threshold", name="drift_share") == 0.4
    assert value(samples, "churn_alert_threshold", name="model_age_seconds") == 2 * 86400
    for source in ("mlflow", "landing"):
        assert value(samples, "churn_pipeline_source_up", source=source) == 1


def test_before_anything_ran_the_counters_are_zero_and_nothing_is_invented(world):
    settings, client = world
    samples = scrape(PipelineCollector(settings))
    assert value(samples, "churn_training_runs_total", outcome="failed") == 0
    assert value(samples, "churn_batches_quarantined_total") == 0  # increase() needs the 0
    for absent in ("churn_drift_share", "churn_champion_info", "churn_live_roc_auc",
                   "churn_last_successful_training_timestamp_seconds"):  # fmt: skip
        assert not any(name == absent for name, _ in samples), absent


def test_a_store_that_does_not_answer_costs_only_its_own_figures(world, monkeypatch):
    settings, _ = world
    down = settings.model_copy(update={"mlflow_tracking_uri": "http://127.0.0.1:9/"})
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    samples = scrape(PipelineCollector(down))
    assert value(samples, "churn_pipeline_source_up", source="mlflow") == 0
    assert value(samples, "churn_pipeline_source_up", source="landing") == 1
    assert value(samples, "churn_batches_quarantined_total") == 0


def test_failures_in_a_row_count_back_from_the_newest_finished_run():
    assert Runs(["running", "failed", "failed", "promoted", "failed"], None).failures_in_a_row == 2
    assert Runs(["rejected", "failed"], None).failures_in_a_row == 0
    assert Runs([], None).failures_in_a_row == 0


def test_a_replaced_champion_has_no_drift_until_its_own_first_check(world):
    """What resolves DriftHigh: the new champion's figures start afresh."""
    settings, client = world
    experiment = client.create_experiment(EXPERIMENT)
    first = run(client, experiment, "FINISHED", gate="passed", promoted="true")
    client.create_registered_model("churn")
    old = str(client.create_model_version("churn", f"runs:/{first}/model", first).version)
    client.set_registered_model_alias("churn", "champion", old)
    record_monitoring(connect(settings.prediction_store_url), old, {"drift_share": 0.8})
    assert value(scrape(PipelineCollector(settings)), "churn_drift_share") == 0.8
    new = str(client.create_model_version("churn", f"runs:/{first}/model", first).version)
    client.set_registered_model_alias("churn", "champion", new)
    assert value(scrape(PipelineCollector(settings)), "churn_drift_share") is None


def test_level_2_counts_rollouts_by_where_they_ended(world, monkeypatch):
    from level2_cicd.pipeline_metrics import DeliveryCollector, rollout_outcome

    monkeypatch.setattr(DeliveryCollector, "from_prefect", lambda self: [])  # the stack's test
    settings, client = world
    experiment = client.create_experiment(EXPERIMENT)
    source = run(client, experiment, "FINISHED")
    client.create_registered_model("churn")
    for tag in ("promoted", "rolled back", "stopped at staging run", "rolled back", None):
        version = client.create_model_version("churn", f"runs:/{source}/model", source).version
        if tag:
            client.set_model_version_tag("churn", str(version), "rollout", tag)
    samples = scrape(DeliveryCollector(settings))
    assert value(samples, "churn_rollouts_total", outcome="rolled back") == 2
    assert value(samples, "churn_rollouts_total", outcome="promoted") == 1
    assert value(samples, "churn_rollouts_total", outcome="stopped") == 1
    assert value(samples, "churn_pipeline_source_up", source="registry") == 1
    assert rollout_outcome("pending") is None and rollout_outcome("staging") is None
