"""The replay decides what the level decides. On a short story, what `make compare`'s level 1
concludes on a day equals what level 1's flows conclude, as Prefect flow runs against real
MLflow and Prefect servers, on the same inputs: the training pipeline's data contract and gate
on the same landed batches and champion, and monitoring's figures, alerts and retrain verdict
on the same answers and labels in the prediction store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient

from compare.changes import initial_code
from compare.levels import PIPELINE, Level1, Runs, first_model
from compare.served import Model
from compare.servers import InProcess
from compare.settings import CompareSettings
from compare.world import World
from level1_ct import registry
from level1_ct.assessment import ALERT, LIVE_ATTRIBUTION, SHIFT
from level1_ct.flows.monitoring import monitoring_flow
from level1_ct.flows.training import explain_globally, training_pipeline
from level1_ct.prediction_log import connect, labels, monitoring, predictions
from shared.data import batch_path, features_dir, labels_dir
from shared.features import SKOPS_TRUSTED_TYPES
from shared.gate import SAME_LINEAGE
from shared.schema import DATE, FEATURE_NAMES, ID, LABEL
from shared.servers import MlflowServer, free_port, mlflow_server
from tests.integration.level1 import pipeline_env, prefect

# The young customers arrive from the story's second day: by its last day the champion's
# traffic has drifted and labels of a week of answers have landed; that day's export breaks.
# The search is the pipeline's (3 folds), so that the same days train the same model.
STORY = CompareSettings(days=21, start_day=8, rows_per_day=300, n_iter=1, cv_folds=3,
                        covariate_shift_day=9, covariate_shift_days=4, incident_day=20,
                        concept_drift_day=None, good_change_day=None,
                        bad_change_day=None, rollout_kinds=[])  # fmt: skip
DAY = STORY.days - 1  # the bad batch lands; monitoring's check
GATE_DAY = DAY - 1  # a good batch lands: the gate's verdict


@dataclass
class Replayed:
    level: Level1
    gate_champion: Model  # the champion the run of GATE_DAY was judged against


@pytest.fixture(scope="module")
def replayed() -> Replayed:
    """Level 1 replayed to the end of the story."""
    world = World(STORY)
    runs = Runs(world, STORY)
    level = Level1(world, runs, first_model(world, runs, initial_code(STORY)), InProcess(world))
    for day in range(STORY.start_day, STORY.days):
        level.serve(day)
        if day == GATE_DAY:
            gate_champion = level.champion
        level.end_of_day(day)
    return Replayed(level, gate_champion)


def register(tracking_uri: str, champion: Model) -> str:
    """A replayed champion as level 1's pipeline registers one: the model, its hold-out
    ROC AUC, its training rows' sample and what it leans on on its hold-out (the pipeline's
    own step); returns its registry version."""
    train_frame = champion.fitted.train_frame
    reference = train_frame.sample(min(len(train_frame), PIPELINE.reference_rows), random_state=0)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(PIPELINE.experiment)  # the active one: the flow logs its runs there too
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(
            champion.pipeline, name="model", skops_trusted_types=SKOPS_TRUSTED_TYPES
        )
        mlflow.log_metric("roc_auc", champion.holdout_auc)
        mlflow.log_table(reference, registry.REFERENCE_FILE)
    settings = PIPELINE.model_copy(update={"mlflow_tracking_uri": tracking_uri})
    explain_globally.fn(settings, run.info.run_id, champion.pipeline, champion.fitted.holdout)
    client = MlflowClient(tracking_uri)
    version = registry.register(client, PIPELINE.model_name, info.model_uri, {})
    registry.promote(client, PIPELINE.model_name, version)
    return version


def land(landing: Path, world: World, through: int) -> None:
    """What has landed by the end of day `through`: every batch, and the labels of the days
    the label delay has passed."""
    for day in range(through + 1):
        batch = batch_path(features_dir(landing), world.config.day_date(day))
        if not batch.exists():
            batch.parent.mkdir(parents=True, exist_ok=True)
            world.features(day).to_parquet(batch, index=False)
    for day in world.labels_landed(through):
        labels_file = batch_path(labels_dir(landing), world.config.day_date(day))
        if not labels_file.exists():
            labels_file.parent.mkdir(parents=True, exist_ok=True)
            world.labels(day).to_parquet(labels_file, index=False)


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


@dataclass
class FlowRuns:
    gate: Any  # the training run on GATE_DAY's landing: its state
    gate_checks: list[dict]  # and its gate's checks (gate.json in its MLflow run)
    contract: Any  # the training run once DAY's batch has landed
    monitoring: Any  # the monitoring run on DAY's evening
    stored: dict[str, float]  # and the figures it stored
    again: Any  # monitoring run again at once: the figures it stored


@pytest.fixture(scope="module")
def flows(replayed: Replayed, tmp_path_factory) -> FlowRuns:
    """Level 1's flows on the replay's inputs, in the story's order."""
    level, world = replayed.level, replayed.level.world
    root = tmp_path_factory.mktemp("parity")
    landing, quiet = root / "landing", root / "monitoring-landing"
    (quiet / "labels").mkdir(parents=True)  # monitoring's labels are in the store already
    url = f"sqlite:///{root / 'predictions.db'}"
    with (
        mlflow_server(MlflowServer(root=root / "mlflow", port=free_port())) as tracking,
        prefect(root) as orchestrator,
    ):
        env = {"MLFLOW_TRACKING_URI": tracking.url, "PREDICTION_STORE_URL": url,
               "L1_N_ITER": str(STORY.n_iter), "L1_SEED": str(STORY.seed),
               "L1_EVIDENTLY_WORKSPACE": str(root / "evidently")}  # fmt: skip
        register(tracking.url, replayed.gate_champion)
        with pipeline_env(orchestrator, env | {"L1_LANDING": str(landing)}):
            land(landing, world, GATE_DAY)
            gate = training_pipeline(reason="parity-gate", return_state=True)
            land(landing, world, DAY)
            contract = training_pipeline(reason="parity-contract", return_state=True)
        client = MlflowClient(tracking.url)
        [gate_run] = client.search_runs(
            [client.get_experiment_by_name(PIPELINE.experiment).experiment_id],
            filter_string="tags.trigger = 'parity-gate'",
        )
        gate_checks = mlflow.artifacts.load_dict(f"{gate_run.info.artifact_uri}/gate.json")
        version = register(tracking.url, level.champion)
        store(url, level, version)
        with pipeline_env(orchestrator, env | {"L1_LANDING": str(quiet)}):
            monitoring_state = monitoring_flow(return_state=True)
            again = monitoring_flow(return_state=True)
    assert again.is_completed(), again.message
    engine = connect(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(monitoring.c.checked_at, monitoring.c.metric,
                                      monitoring.c.value)).all()  # fmt: skip
    engine.dispose()
    first, second = sorted({when for when, _, _ in rows})
    stored, again = ({m: v for when, m, v in rows if when == check} for check in (first, second))
    return FlowRuns(gate, gate_checks["checks"], contract, monitoring_state, stored, again)


def test_the_story_gives_each_decision_something_to_decide(replayed):
    level = replayed.level
    assert level.verdicts[GATE_DAY] is not None and level.verdicts[DAY] is None
    found = level.checks[DAY]
    assert found is not None and found.alerts, "the story's last day must raise an alert"
    assert "live_roc_auc" in found.metrics and found.metrics["labelled_rows"] >= 1000


def test_the_replayed_gate_judges_as_the_training_pipeline_judges(replayed, flows):
    level = replayed.level
    verdict = level.verdicts[GATE_DAY]
    assert flows.gate.is_completed(), flows.gate.message
    outcome = flows.gate.result()
    window = level.trained[-1].days  # the last training run ran on DAY - 1 (DAY's stopped)
    dates = [level.world.config.day_date(d).isoformat() for d in (window[0], window[-1])]
    assert outcome["window"] == "..".join(dates)
    assert outcome["gate"] == ("passed" if verdict.passed else "rejected")
    # Every check but lineage (the replay's stands for files by days), with its numbers
    replay = {c.name: c for c in verdict.checks if c.name != SAME_LINEAGE}
    pipeline = {c["name"]: c for c in flows.gate_checks if c["name"] != SAME_LINEAGE}
    assert pipeline.keys() == replay.keys()
    for name, check in replay.items():
        assert pipeline[name]["passed"] == check.passed, name
        for number in ("value", "threshold"):
            ours = getattr(check, number)
            expected = ours if ours is None else pytest.approx(ours, abs=1e-9)
            assert pipeline[name][number] == expected, (name, number)


def test_a_bad_batch_stops_the_replayed_run_and_the_pipeline_alike(replayed, flows):
    world = replayed.level.world
    assert flows.contract.is_failed()
    bad = batch_path(Path("."), world.config.day_date(DAY)).name
    assert f"{bad}: {world.violations(DAY)}" in flows.contract.message
    [event] = [e for e in replayed.level.events if e.kind == "batch-rejected"]
    assert event.day == DAY and world.violations(DAY) in event.text


def test_the_replayed_monitoring_check_finds_what_the_monitoring_flow_finds(replayed, flows):
    found, state, stored = replayed.level.checks[DAY], flows.monitoring, flows.stored
    assert state.is_completed(), state.message
    assert stored.keys() == found.metrics.keys()
    for metric, value in found.metrics.items():
        assert stored[metric] == pytest.approx(value, abs=1e-9), metric
    # The same alerts, in the same words, and the same verdict on retraining
    assert all(alert in state.message for alert in found.alerts.values())
    assert ("retraining triggered" in state.message) == found.retrain
    assert (ALERT in stored) == found.retrain


def test_monitoring_again_within_the_interval_judges_the_attributions_it_measured(flows):
    """Explaining the live answers costs a check seconds: a check within
    L1_ATTRIBUTION_INTERVAL_SECONDS of the one that measured them judges those figures again,
    so the shift (and its alert) holds, and does not record them a second time."""
    first, again = flows.stored, flows.again
    assert any(m.startswith(LIVE_ATTRIBUTION) for m in first)
    assert not any(m.startswith(LIVE_ATTRIBUTION) for m in again)
    assert again[SHIFT] == pytest.approx(first[SHIFT], abs=1e-12)
    assert again["drift_share"] == pytest.approx(first["drift_share"])
