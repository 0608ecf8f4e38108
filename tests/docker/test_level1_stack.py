"""Level 1 in containers, through the make targets of level1_ct/README.md: `make up LEVEL=1`
comes up healthy; a replay lands batches and the loop trains a champion that the service
serves; drifted traffic makes Prometheus' DriftHigh fire and Alertmanager's webhook (the
alert inbox) start a retrain with no human, which, with no new data since the champion was
trained, the gate stops as a copy of the champion: the service keeps it; new batches then
bring a new champion, served, and the alert resolves. A champion older than the staleness
bound pages the inbox. Everything over published ports: Postgres, MLflow, Prefect server,
runner, simulator, service, Evidently UI, Prometheus, Alertmanager and the inbox all real."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pandas as pd
import pytest
from mlflow import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterName,
    FlowRunFilter,
    FlowRunFilterExpectedStartTime,
)
from prefect.client.schemas.sorting import FlowRunSort
from prefect.settings import PREFECT_API_URL, temporary_settings

from level1_ct import names
from level1_ct.service import served_version
from shared.schema import FEATURE_NAMES, ID, example_record
from shared.simulator import SimulationConfig, generate_day
from tests.browser import render
from tests.docker.conftest import run, started_stack
from tests.integration.level1 import wait_for


@dataclass
class Stack:
    env: dict[str, str]
    ports: dict[str, int]

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def make(self, *args: str, timeout: int = 900) -> str:
        return run(["make", *args, "LEVEL=1"], env=self.env, timeout=timeout)

    def flow_runs(self, deployment: str) -> list:
        """The deployment's flow runs due by now (not the schedule's future ones), oldest
        first, whatever their state: a triggered run queued for the deployment's one slot
        waits in a scheduled state, without a start time."""
        api_url = f"{self.url('prefect')}/api"
        only = DeploymentFilter(name=DeploymentFilterName(any_=[deployment]))
        due = FlowRunFilter(expected_start_time=FlowRunFilterExpectedStartTime(
            before_=datetime.now(UTC)))  # fmt: skip
        with (
            temporary_settings(updates={PREFECT_API_URL: api_url}),
            get_client(sync_client=True) as api,
        ):
            runs = api.read_flow_runs(
                flow_run_filter=due, deployment_filter=only,
                sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=200,
            )  # fmt: skip
        return runs[::-1]

    def training_runs(self) -> list:
        """ct-training's flow runs that have started, oldest first."""
        started = [r for r in self.flow_runs(names.TRAINING) if r.start_time is not None]
        return sorted(started, key=lambda r: r.start_time)

    def training_settled(self) -> bool:
        """A training run has started, and none is running or due to run."""
        runs = self.flow_runs(names.TRAINING)
        return any(r.start_time for r in runs) and all(r.state.is_final() for r in runs)

    def firing(self) -> set[str]:
        """The alerts Prometheus has firing now."""
        found = httpx.get(f"{self.url('prometheus')}/api/v1/alerts").json()["data"]["alerts"]
        return {a["labels"]["alertname"] for a in found if a["state"] == "firing"}

    def inbox(self, name: str) -> list[dict]:
        """The inbox's record of every firing of alert `name`, newest first."""
        return [a for a in httpx.get(f"{self.url('inbox')}/alerts").json() if a["name"] == name]

    def announced(self, batch: str) -> datetime | None:
        """When the landing watcher announced `batch` (its run started), if it has."""
        for watch in self.flow_runs(names.WATCH_LANDING)[::-1]:
            if watch.state.is_completed() and (watch.state.message or "").endswith(batch):
                return watch.start_time
        return None


@pytest.fixture(scope="module")
def stack(images, request):
    settings = {
        "L1_N_ITER": "2",
        "L1_WATCH_INTERVAL_SECONDS": "15",
        "L1_MONITOR_INTERVAL_SECONDS": "20",
        # Which batches each triggered run sees depends on timing: every candidate that
        # clears the absolute bars passes (the gate's comparisons have tests of their own), so
        # the champion is always the newest run's recipe and no outcome hangs on a coin flip.
        "L1_CHAMPION_MARGIN": "-1",
        "L1_MAX_SLICE_DROP": "1",
        "L1_MAX_FAIRNESS_WORSENING": "1",
        # Stale after 90 s: the first champion soon pages the inbox (ModelStale)
        "L1_MAX_MODEL_AGE_DAYS": str(90 / 86400),
    }
    with started_stack(1, request, settings) as started:
        ports = {name: started.ports[variable] for name, variable in (
            ("mlflow", "MLFLOW_PORT"), ("prefect", "PREFECT_PORT"), ("serving", "L1_SERVE_PORT"),
            ("evidently", "EVIDENTLY_PORT"), ("prometheus", "PROMETHEUS_PORT"),
            ("alertmanager", "ALERTMANAGER_PORT"), ("inbox", "INBOX_PORT"))}  # fmt: skip
        yield Stack(started.env, ports)


def test_every_service_is_up_and_the_service_waits_for_a_champion(stack):
    assert httpx.get(f"{stack.url('mlflow')}/health").status_code == 200
    assert httpx.get(f"{stack.url('prefect')}/api/health").status_code == 200
    assert httpx.get(stack.url("evidently")).status_code == 200
    health = httpx.get(f"{stack.url('serving')}/health").json()
    assert health["status"] == "no_model" and "champion" in health["detail"]

    # Prometheus scrapes every service and the pipeline's exporter, and has level 1's rules
    def targets():
        found = httpx.get(f"{stack.url('prometheus')}/api/v1/targets").json()["data"]
        return {t["labels"]["job"]: t["health"] for t in found["activeTargets"]}

    jobs = {"serving", "pipeline", "alerts", "alertmanager", "prometheus"}
    wait_for(lambda: targets() == dict.fromkeys(jobs, "up"), 60, f"{jobs} scraped")
    groups = httpx.get(f"{stack.url('prometheus')}/api/v1/rules").json()["data"]["groups"]
    assert {"DriftHigh", "ModelStale", "NoModelLoaded"} <= {
        r["name"] for g in groups for r in g["rules"]
    }
    assert httpx.get(f"{stack.url('alertmanager')}/-/ready").status_code == 200
    assert httpx.get(f"{stack.url('inbox')}/health").json()["actions"] == ["retrain"]
    # The Prefect UI calls the API on the published port, not the container's.
    settings = httpx.get(f"{stack.url('prefect')}/ui-settings").json()
    assert settings["api_url"] == f"http://127.0.0.1:{stack.ports['prefect']}/api"
    # ... and there is a UI: the image builds it (the server's user could not)
    assert settings["available_uis"], settings
    page = httpx.get(stack.url("prefect"), headers={"accept": "text/html"}, follow_redirects=True)
    assert page.status_code == 200 and "<!doctype html>" in page.text.lower(), page.text[:200]
    script = re.search(r'src="(/[^"]+\.js)"', page.text).group(1)
    assert httpx.get(f"{stack.url('prefect')}{script}").status_code == 200


def test_replayed_batches_train_a_champion_that_the_service_serves(stack):
    replay = stack.make(
        "level1-replay", "STACK=docker", "SCENARIO=covariate-shift", "DAYS=9",
        "SECONDS_PER_DAY=2",
    )  # fmt: skip
    assert "Completed" in replay and "predictions served" in replay
    # The newest day is a training run's only when the watcher has announced it and the run
    # its event triggered has finished (runs triggered together queue for one slot).
    last = int(re.search(r"replayed days \d+\.\.(\d+)", replay).group(1))
    newest = f"{SimulationConfig(scenario='covariate-shift').day_date(last).isoformat()}.parquet"
    announced = wait_for(lambda: stack.announced(newest), 120, f"the watcher to announce {newest}")
    wait_for(lambda: any(r.created >= announced for r in stack.flow_runs(names.TRAINING)), 60,
             f"the training run that {newest} triggered")  # fmt: skip
    wait_for(stack.training_settled, 600, "the triggered training runs to finish", every=5)
    runs = stack.training_runs()
    assert {r.parameters.get("reason") for r in runs} == {"new-data"}
    assert any("promoted to champion" in (r.state.message or "") for r in runs)

    champion = MlflowClient(stack.url("mlflow")).get_registered_model("churn").aliases["champion"]
    assert wait_for(lambda: served_version(stack.url("serving")) == champion, 30, "the champion")
    answer = httpx.post(f"{stack.url('serving')}/predict", json=[example_record()] * 2)
    assert answer.status_code == 200 and answer.json()["model_version"] == champion
    shown = httpx.get(f"{stack.url('serving')}/model").json()
    assert shown["alias"] == "champion" and shown["data_version"].startswith("sha256:")


def test_drifted_traffic_triggers_a_retrain_that_is_not_a_copy_of_the_champion(stack):
    """A run by hand (`make level1-train`) trains on every batch landed so far (the watcher
    may not have seen the replay's last one yet); nothing lands after it, so the drift retrain
    trains the champion's own recipe (same data, code and params): the gate rejects it by
    name, registers nothing, and the champion stays served. (Before the gate knew lineage,
    this registered the same model again and reloaded the service with it.)"""
    client = MlflowClient(stack.url("mlflow"))
    stack.make("level1-train", "STACK=docker")
    wait_for(stack.training_settled, 600, "the training runs to finish", every=5)
    before = client.get_registered_model("churn").aliases["champion"]
    started = len(stack.training_runs())
    # Customers from three weeks on, when the user base has become much younger.
    late = SimulationConfig(scenario="covariate-shift", seed=42, rows_per_day=300)
    frame = pd.concat([generate_day(late, d)[0] for d in (19, 20)])
    records = json.loads(frame[[*FEATURE_NAMES, ID]].to_json(orient="records"))
    with httpx.Client(timeout=30) as http:
        for start in range(0, len(records), 100):
            answer = http.post(f"{stack.url('serving')}/predict", json=records[start : start + 100])
            assert answer.status_code == 200 and answer.json()["model_version"] == before

    def drift_run():
        runs = stack.training_runs()[started:]
        return next((r for r in runs if r.parameters.get("reason") == "drift"), None)

    triggered = wait_for(drift_run, 300, "DriftHigh to start a drift retrain", every=5)
    # The one path: Prometheus' rule fired, Alertmanager's webhook reached the inbox, which
    # started the run (the deployment has no drift trigger in the stack)
    assert {"alert", "DriftHigh"} <= set(triggered.tags), triggered.tags
    assert "DriftHigh" in stack.firing()
    [record] = stack.inbox("DriftHigh")
    assert record["outcome"] == "started" and str(triggered.id) in record["detail"]
    assert record["action"] == "retrain" and record["status"] == "firing"
    wait_for(stack.training_settled, 600, "the drift retrain to finish", every=5)
    triggered = next(r for r in stack.training_runs() if r.id == triggered.id)
    assert triggered.state.is_completed(), triggered.state.message
    assert f"same data, code and params as champion version {before}" in triggered.state.message
    assert client.get_registered_model("churn").aliases["champion"] == before
    assert not client.search_model_versions(f"tags.prefect_flow_run_id = '{triggered.id}'")
    assert served_version(stack.url("serving")) == before
    # The alert is in the Evidently UI's workspace too, through its API.
    projects = httpx.get(f"{stack.url('evidently')}/api/projects").json()
    assert any("level 1" in p["name"] for p in projects)


def test_new_batches_bring_a_new_champion_and_the_drift_alert_resolves(stack):
    """Still drifting after the twin was stopped: the next batches' run trains a new champion,
    the service serves it, its figures start afresh, and DriftHigh resolves, in Prometheus
    and in the inbox's history. The retrain it started stays the only drift run."""
    client = MlflowClient(stack.url("mlflow"))
    before = client.get_registered_model("churn").aliases["champion"]
    assert "DriftHigh" in stack.firing()
    stack.make("level1-replay", "STACK=docker", "SCENARIO=covariate-shift", "DAYS=3",
               "SECONDS_PER_DAY=2")  # fmt: skip

    def new_champion():
        now = client.get_registered_model("churn").aliases["champion"]
        return now if now != before else None

    champion = wait_for(new_champion, 600, "a new champion from the new batches", every=5)
    assert wait_for(lambda: served_version(stack.url("serving")) == champion, 60, "it served")
    wait_for(lambda: "DriftHigh" not in stack.firing(), 120, "DriftHigh to resolve", every=5)
    wait_for(lambda: stack.inbox("DriftHigh")[0]["status"] == "resolved", 120,
             "the inbox to record DriftHigh resolved", every=5)  # fmt: skip
    drift_runs = [r for r in stack.training_runs() if r.parameters.get("reason") == "drift"]
    assert len(drift_runs) == 1, [(r.name, r.tags) for r in drift_runs]


def test_a_champion_older_than_the_staleness_bound_pages_the_inbox(stack):
    """L1_MAX_MODEL_AGE_DAYS is 90 s in this stack: ModelStale fires and waits for a person."""
    pages = wait_for(lambda: stack.inbox("ModelStale"), 180, "ModelStale in the inbox", every=5)
    assert pages[0]["outcome"] == "paged" and pages[0]["action"] == "page"
    assert "serves a model trained" in pages[0]["summary"]


def test_prometheus_alerts_page_and_the_inbox_render_in_a_browser(stack):
    """What a workshop opens: Prometheus' Alerts page lists the rules (and what fires); the
    inbox shows the page that fired."""
    alerts_page = render(f"{stack.url('prometheus')}/classic/alerts")  # Debian's UI
    for rule in ("DriftHigh", "ModelStale", "NoModelLoaded", "TrainingFailing"):
        assert rule in alerts_page, rule
    inbox_page = render(stack.url("inbox"))
    assert "ModelStale" in inbox_page and "paged" in inbox_page
    assert "DriftHigh" in inbox_page and "started" in inbox_page
