"""Level 1's parts that need no server: the prediction log's buffer and writer process,
monitoring's alert rules, the Evidently drift check, and which failures the pipeline retries."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import threading
from datetime import UTC, datetime

import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST

from level1_ct import reports
from level1_ct.assessment import DRIFT, LIVE_QUALITY, alerts
from level1_ct.flows.retrying import is_transient
from level1_ct.prediction_log import PredictionLog, connect, load_labels, recent_predictions
from level1_ct.settings import PipelineSettings
from shared.schema import FEATURE_NAMES, example_record
from shared.simulator import SimulationConfig, generate_day


def row(i: int, version: str = "1") -> dict:
    return {**example_record(), "customer_id": f"c-{i}", "request_id": f"r-{i}",
            "predicted_at": datetime.now(UTC), "model_name": "churn", "model_version": version,
            "probability": 0.25, "churn": False}  # fmt: skip


@pytest.fixture
def new_log():
    """Makes prediction logs, and closes them after the test (each has a writer process)."""
    made: list[PredictionLog] = []

    def make(url: str, **settings) -> PredictionLog:
        made.append(PredictionLog(url, **settings))
        return made[-1]

    yield make
    for log in made:
        log.close()


def test_the_log_writes_buffered_rows_in_one_batch(tmp_path, new_log):
    log = new_log(f"sqlite:///{tmp_path / 'p.db'}")
    log.record([row(1), row(2)])
    log.record([row(3)])
    assert log.pending == 3  # nothing written until the flush
    assert log.flush() == 3 and log.pending == 0
    with sqlite3.connect(tmp_path / "p.db") as db:
        assert db.execute("SELECT customer_id FROM predictions ORDER BY id").fetchall() == [
            ("c-1",),
            ("c-2",),
            ("c-3",),
        ]


def test_an_unreachable_store_keeps_the_rows_and_says_why(tmp_path, new_log):
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the database folder should be")
    log = new_log(f"sqlite:///{blocked / 'p.db'}")
    log.record([row(1), row(2)])
    assert log.flush() == 0
    assert log.pending == 2 and log.last_error  # kept for the next try, reason recorded
    blocked.unlink()
    assert log.flush() == 2 and log.last_error is None


def test_a_full_buffer_drops_the_oldest_and_counts_them(tmp_path, new_log):
    log = new_log(f"sqlite:///{tmp_path / 'p.db'}", max_buffer=3)
    log.record([row(i) for i in range(5)])
    assert log.pending == 3 and log.dropped == 2


def test_a_writer_process_that_dies_is_reported_and_replaced(tmp_path, new_log):
    log = new_log(f"sqlite:///{tmp_path / 'p.db'}")
    log.record([row(1)])
    assert log.flush() == 1
    with sqlite3.connect(tmp_path / "p.db", isolation_level=None) as lock:
        lock.execute("BEGIN EXCLUSIVE")  # the writer waits for the database...
        threading.Timer(1, log._writer.kill).start()  # ...and dies meanwhile
        log.record([row(2), row(3)])
        assert log.flush() == 0
        lock.execute("ROLLBACK")
    assert "writer process stopped" in log.last_error and log.dropped == 2
    log.record([row(4)])
    assert log.flush() == 1 and log.last_error is None  # a new writer took over
    assert log.dropped == 2  # and what the dead one held stays counted


def test_closing_the_log_writes_what_is_left_and_ends_the_writer(tmp_path):
    log = PredictionLog(f"sqlite:///{tmp_path / 'p.db'}", flush_seconds=3600)
    log.start()
    log.record([row(1)])
    assert log.flush() == 1  # the writer is up
    writer = log._writer
    log.record([row(2), row(3)])
    # Stopping a service signals its process group: the writer outlives the signal, writes
    # the last batch the service hands it, and ends when the service closes its input
    os.kill(writer.pid, signal.SIGTERM)
    log.close()
    assert writer.returncode == 0 and log.dropped == 0
    with sqlite3.connect(tmp_path / "p.db") as db:
        assert db.execute("SELECT count(*) FROM predictions").fetchone() == (3,)


def test_labels_are_loaded_once_and_joined_to_predictions(tmp_path, landing, new_log):
    engine = connect(f"sqlite:///{tmp_path / 'p.db'}")
    loaded = load_labels(engine, landing)
    assert loaded.added > 0 and loaded.skipped == {}
    assert load_labels(engine, landing).added == 0  # the second call adds nothing
    labelled_id = pd.read_parquet(sorted((landing / "labels").glob("*.parquet"))[0])["customer_id"][
        0
    ]
    log = new_log(f"sqlite:///{tmp_path / 'p.db'}")
    log.record([{**row(1), "customer_id": labelled_id}, row(2), row(3, version="2")])
    log.flush()
    live = recent_predictions(engine, "1", limit=10)
    assert list(live["customer_id"]) == [labelled_id, "c-2"]  # version 1 only, oldest first
    assert live["churned"].notna().tolist() == [True, False]  # c-2 has no label yet
    # What live quality is judged on: labelled answers, whichever version gave them
    log.record([{**row(4, version="2"), "customer_id": labelled_id}])
    log.flush()
    labelled = recent_predictions(engine, None, limit=10, labelled=True)
    assert list(labelled["customer_id"]) == [labelled_id, labelled_id]
    assert list(labelled["model_version"]) == ["1", "2"]
    assert labelled["churned"].notna().all()


@pytest.mark.parametrize("content", [b"", b"not parquet at all"], ids=["empty", "text"])
def test_monitoring_leaves_out_a_label_file_it_cannot_read_and_tries_it_again(
    tmp_path, landing, content
):
    own = tmp_path / "landing"
    shutil.copytree(landing / "labels", own / "labels")
    first, *rest = sorted((own / "labels").glob("*.parquet"))
    good = first.read_bytes()
    first.write_bytes(content)
    engine = connect(f"sqlite:///{tmp_path / 'p.db'}")

    loaded = load_labels(engine, own)  # does not raise: the other files still load
    assert list(loaded.skipped) == [first.name]
    assert f"*: readable: labels/{first.name}" in loaded.skipped[first.name]
    assert loaded.added == sum(len(pd.read_parquet(p)) for p in rest)

    first.write_bytes(good)  # a person re-exports the day: it loads on the next check
    again = load_labels(engine, own)
    assert again.skipped == {} and again.added == len(pd.read_parquet(first))


def settings(**overrides) -> PipelineSettings:
    return PipelineSettings(**overrides)


def test_alerts_fire_on_drift_share_and_on_a_live_quality_drop_only():
    quiet = {"drift_share": 0.1, "live_roc_auc": 0.80}
    assert alerts(settings(), quiet, [], holdout_auc=0.82) == {}
    drifted = alerts(settings(), {"drift_share": 0.4}, ["age", "platform"], holdout_auc=0.82)
    assert list(drifted) == [DRIFT] and "age, platform" in drifted[DRIFT]
    worse = alerts(settings(), {"drift_share": 0.0, "live_roc_auc": 0.70}, [], holdout_auc=0.82)
    assert list(worse) == [LIVE_QUALITY] and "live ROC AUC 0.700" in worse[LIVE_QUALITY]


def test_drift_is_found_in_a_shifted_user_base_and_not_in_a_stable_one():
    config = SimulationConfig(scenario="covariate-shift", rows_per_day=500, seed=3)
    reference = pd.concat([generate_day(config, d)[0] for d in (0, 1)])
    same = reports.data_drift(generate_day(config, 2)[0], reference)
    shifted = reports.data_drift(generate_day(config, 21)[0], reference)
    assert same.share < 0.3 <= shifted.share
    assert "age" in shifted.drifted and "age" not in same.drifted
    assert set(shifted.drifted) <= set(FEATURE_NAMES)


def test_monitoring_measures_live_attributions_at_most_once_per_interval_and_version(
    tmp_path, monkeypatch, trained, split
):
    """Within attribution_interval_seconds of the check that measured a version's live
    attributions, monitoring judges those figures again without loading the champion; a new
    champion, or the interval passed, is measured."""
    from level1_ct import registry
    from level1_ct.assessment import LIVE_ATTRIBUTION
    from level1_ct.flows.monitoring import live_attributions
    from level1_ct.prediction_log import record_monitoring

    loaded = []
    monkeypatch.setattr(registry, "load_model",
                        lambda ref, uri: loaded.append(ref.version) or trained.pipeline)  # fmt: skip
    engine = connect(f"sqlite:///{tmp_path / 'store.db'}")

    def check(version: str, interval: int = 600):
        """One check, recorded as the flow records it."""
        settings = PipelineSettings(attribution_interval_seconds=interval)
        ref = registry.ModelRef("churn", version, "run", "data")
        found = live_attributions.fn(settings, engine, ref, split[1].head(300))
        measured = {LIVE_ATTRIBUTION + k: v for k, v in found.figures.items()}
        record_monitoring(
            engine, version, {"drift_share": 0.1, **(measured if found.measured else {})}
        )
        return found

    first = check("1")
    assert first.measured and loaded == ["1"] and first.figures["tenure_months"] > 0
    for _ in range(2):  # the second time, the newest check of "1" is one that did not measure
        again = check("1")
        assert not again.measured and loaded == ["1"]
        assert again.figures == pytest.approx(first.figures, abs=1e-12)
    assert check("2").measured and loaded == ["1", "2"]
    assert check("1", interval=0).measured and loaded == ["1", "2", "1"]


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (ConnectionError("refused"), True),
        (MlflowException("API request failed: Max retries exceeded with url"), True),
        (MlflowException("no such model", error_code=RESOURCE_DOES_NOT_EXIST), False),
        (MlflowException("bad alias", error_code=INVALID_PARAMETER_VALUE), False),
        (ValueError("training data has a single class"), False),
    ],
)
def test_only_transient_failures_are_retried(error, transient):
    assert is_transient(error) is transient


def test_the_training_deployment_has_all_four_triggers():
    """Schedule, new data, drift as configured; on demand is any run of the deployment."""
    from level1_ct import events
    from level1_ct.flows.deployments import pipeline, simulator

    training, monitoring, watcher = pipeline(settings(train_cron="15 2 * * *"))
    [cron] = training.schedules
    assert cron.schedule.cron == "15 2 * * *" and cron.parameters == {"reason": "schedule"}
    triggers = {next(iter(t.expect)): t.parameters["reason"] for t in training.triggers}
    assert triggers == {events.DATA_LANDED: "new-data", events.DRIFT_DETECTED: "drift"}
    assert all(
        t.match.root["prefect.resource.id"] == f"{events.RESOURCE}.*" for t in training.triggers
    )
    assert training.concurrency_limit == 1  # triggered runs queue instead of racing
    assert monitoring.schedules[0].schedule.interval.total_seconds() == 60
    assert watcher.schedules[0].schedule.interval.total_seconds() == 30
    assert [d.name for d in simulator()] == ["ct-replay"]


def test_a_version_that_cannot_score_is_not_swapped_in(monkeypatch, trained):
    """The follower scores the example record with a new version before swapping: a model
    that fails there keeps the old one serving, and /health's reason names the version."""
    from level1_ct import registry, service

    class Broken:
        def predict_proba(self, frame):
            raise ValueError("columns in the wrong order")

    refs = {
        "1": registry.ModelRef("churn", "1", "r1", "d1"),
        "2": registry.ModelRef("churn", "2", "r2", "d2"),
    }
    pipelines = {"1": trained.pipeline, "2": Broken()}
    alias = {"version": "1"}
    monkeypatch.setattr(registry, "lookup", lambda client, name, a: refs[alias["version"]])
    monkeypatch.setattr(registry, "load_model", lambda ref, uri: pipelines[ref.version])
    follower = service.ModelFollower(service.ServiceSettings())
    assert follower.check() and follower.current.ref.version == "1"
    alias["version"] = "2"
    assert not follower.check()
    assert follower.current.ref.version == "1"
    assert follower.problem.startswith("version 2 cannot score: ValueError: columns")


class _Scores:
    """A model that scores every row 0.5 (what the follower calls before a swap)."""

    def predict_proba(self, frame):
        return [[0.5, 0.5]] * len(frame)


def test_health_is_degraded_only_after_polls_fail_in_a_row(monkeypatch):
    """A poll that cannot reach the registry is a blip until `degraded_after_failed_polls`
    polls fail in a row; then the follower's problem (what /health reports) says so. A
    poll that gets through clears it, and the count starts again."""
    from level1_ct import registry, service

    ref = registry.ModelRef("churn", "1", "r1", "d1")
    down = {"polls": 0}

    def lookup(client, name, alias):
        if down["polls"]:
            down["polls"] -= 1
            raise ConnectionError("Connection aborted: RemoteDisconnected")
        return ref

    monkeypatch.setattr(registry, "lookup", lookup)
    monkeypatch.setattr(registry, "load_model", lambda ref, uri: _Scores())
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the default registry address
    follower = service.ModelFollower(service.ServiceSettings(degraded_after_failed_polls=3))
    assert follower.check() and follower.problem is None
    down["polls"] = 2
    for _ in range(3):
        follower.check()
        assert follower.problem is None  # two failed polls, then one that got through
    down["polls"] = 3
    follower.check()
    follower.check()
    assert follower.problem is None and follower.failed_polls == 2
    follower.check()
    assert follower.problem.startswith("cannot reach the model registry at http://127.0.0.1:5000")
    assert "RemoteDisconnected" in follower.problem
    assert follower.current.ref.version == "1"  # still serving
    follower.check()
    assert follower.problem is None and follower.failed_polls == 0
