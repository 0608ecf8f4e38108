"""The replay decides what the level decides: on a short story, what `make compare`'s level 1
concludes from a day's monitoring check equals what level 1's monitoring flow concludes, as a
Prefect flow run against real MLflow and Prefect servers, when the prediction store holds the
same answers and labels and the registry the same champion with its reference rows."""

from __future__ import annotations

import re

import mlflow
import pandas as pd
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient

from compare.changes import initial_code
from compare.levels import PIPELINE, Level1, Runs, first_model
from compare.servers import InProcess
from compare.settings import CompareSettings
from compare.world import World
from level1_ct import registry
from level1_ct.assessment import ALERT
from level1_ct.flows.monitoring import monitoring_flow
from level1_ct.prediction_log import connect, labels, monitoring, predictions
from shared.features import SKOPS_TRUSTED_TYPES
from shared.schema import DATE, FEATURE_NAMES, ID, LABEL
from shared.servers import MlflowServer, free_port, mlflow_server
from tests.integration.level1 import pipeline_env, prefect

# The young customers arrive from the story's second day: by its last day the champion's
# traffic has drifted and labels of a week of answers have landed.
STORY = CompareSettings(days=21, start_day=8, rows_per_day=300, n_iter=1,
                        covariate_shift_day=9, covariate_shift_days=4, incident_day=None,
                        concept_drift_day=None, good_change_day=None,
                        bad_change_day=None)  # fmt: skip
DAY = STORY.days - 1


@pytest.fixture(scope="module")
def replayed():
    """Level 1 replayed up to DAY, and its monitoring check on DAY's evening."""
    world = World(STORY)
    runs = Runs(world, STORY)
    level = Level1(world, runs, first_model(world, runs, initial_code(STORY)), InProcess(world))
    for day in range(STORY.start_day, DAY):
        level.serve(day)
        level.end_of_day(day)
    level.serve(DAY)
    return level, level.monitor(DAY)


def register(tracking_uri: str, level: Level1) -> str:
    """The replayed champion as level 1's pipeline registers one: the model, its hold-out
    ROC AUC and its training rows' sample; returns its registry version."""
    champion = level.champion
    train_frame = champion.fitted.train_frame
    reference = train_frame.sample(min(len(train_frame), PIPELINE.reference_rows), random_state=0)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("replay-parity")
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            champion.pipeline, name="model", skops_trusted_types=SKOPS_TRUSTED_TYPES
        )
        mlflow.log_metric("roc_auc", champion.holdout_auc)
        mlflow.log_table(reference, registry.REFERENCE_FILE)
    client = MlflowClient(tracking_uri)
    version = registry.register(client, PIPELINE.model_name, info.model_uri, {})
    registry.promote(client, PIPELINE.model_name, version)
    return version


def store(url: str, level: Level1, version: str) -> None:
    """Every answer the replayed service gave, in order, as the service logs them (the
    champion's under its registry `version`), and the labels that have landed by DAY."""
    engine = connect(url)
    world = level.world
    with engine.begin() as conn:
        for day in sorted(level.served):
            served = level.served[day]
            features = world.features(day)[world.answerable(day)]
            rows = features[list(FEATURE_NAMES)].assign(
                **{ID: served.ids}, request_id=[f"{day}-{i}" for i in range(len(served.ids))],
                predicted_at=world.evening(day), model_name=PIPELINE.model_name,
                model_version=version if served.version == level.champion.version
                else f"replayed-{served.version}",
                probability=served.probability, churn=served.probability >= 0.5,
            )  # fmt: skip
            if len(rows):
                conn.execute(predictions.insert(), rows.to_dict("records"))
        landed = [d for d in world.labels_landed(DAY) if d in level.served]
        frame = pd.concat([world.labels(d)[[ID, DATE, LABEL]] for d in landed])
        conn.execute(
            labels.insert(), frame.assign(**{LABEL: frame[LABEL].astype(bool)}).to_dict("records")
        )
    engine.dispose()


@pytest.fixture(scope="module")
def flow_run(replayed, tmp_path_factory):
    """Level 1's monitoring flow on the replay's answers: its state and the figures it stored."""
    level, _ = replayed
    root = tmp_path_factory.mktemp("parity")
    (root / "landing" / "labels").mkdir(parents=True)
    url = f"sqlite:///{root / 'predictions.db'}"
    with (
        mlflow_server(MlflowServer(root=root / "mlflow", port=free_port())) as tracking,
        prefect(root) as orchestrator,
    ):
        version = register(tracking.url, level)
        store(url, level, version)
        env = {
            "MLFLOW_TRACKING_URI": tracking.url,
            "PREDICTION_STORE_URL": url,
            "L1_LANDING": str(root / "landing"),
            "L1_EVIDENTLY_WORKSPACE": str(root / "evidently"),
        }
        with pipeline_env(orchestrator, env):
            state = monitoring_flow(return_state=True)
    engine = connect(url)
    with engine.connect() as conn:
        stored = dict(conn.execute(sa.select(monitoring.c.metric, monitoring.c.value)).all())
    engine.dispose()
    return state, stored


def test_the_story_gives_the_check_something_to_decide(replayed):
    _, found = replayed
    assert found is not None and found.alerts, "the story's last day must raise an alert"
    assert "live_roc_auc" in found.metrics and found.metrics["labelled_rows"] >= 1000


def test_the_replayed_monitoring_check_finds_what_the_monitoring_flow_finds(replayed, flow_run):
    _, found = replayed
    state, stored = flow_run
    assert state.is_completed(), state.message
    assert stored.keys() == found.metrics.keys()
    for metric, value in found.metrics.items():
        assert stored[metric] == pytest.approx(value, abs=1e-9), metric
    # The same alerts, in the same words, and the same verdict on retraining
    assert found.alerts and all(alert in state.message for alert in found.alerts.values())
    assert ("retraining triggered" in state.message) == found.retrain
    assert (ALERT in stored) == found.retrain
    assert re.search(r"drifted \(threshold \d+%\): ", state.message)
