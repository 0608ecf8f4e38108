"""Level 1's closed loop in the embedded mode, with nobody pressing a button: the deployments
runner serves the flows, the user base drifts, monitoring flags it from the prediction log,
its event triggers the training deployment, the gate passes, and the service answers with the
new champion. Real MLflow, Prefect server, runner and service processes."""

from __future__ import annotations

import json
import os
import sqlite3
import sys

import httpx
import pandas as pd
import pytest
from mlflow import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
from prefect.client.schemas.sorting import FlowRunSort
from prefect.variables import Variable

from level1_ct import registry
from level1_ct.flows.landing import LAST_SEEN
from level1_ct.flows.training import training_pipeline
from level1_ct.service import served_version
from shared.data import feature_files
from shared.schema import FEATURE_NAMES, ID
from shared.servers import MlflowServer, free_port, mlflow_server, running
from shared.simulator import SimulationConfig, generate_day, land_day, simulate
from tests.integration.level1 import (
    level1_service,
    pipeline_env,
    prefect,
    wait_for,
)

DRIFTING = SimulationConfig(
    scenario="covariate-shift", days=8, seed=7, rows_per_day=400, label_delay_days=2
)


def training_runs() -> list:
    """The training deployment's flow runs that have started, oldest first (the cron
    schedule's future runs are not among them)."""
    with get_client(sync_client=True) as api:
        runs = api.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["ct-training"])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=20,
        )[::-1]
    return [run for run in runs if run.start_time is not None]


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    root = tmp_path_factory.mktemp("loop")
    landing = root / "landing"
    simulate(landing, DRIFTING)  # days 0-7: before the user base changes
    with (
        mlflow_server(MlflowServer(root=root / "mlflow", port=free_port())) as mlflow,
        prefect(root) as orchestrator,
    ):
        env = {
            "MLFLOW_TRACKING_URI": mlflow.url,
            "PREDICTION_STORE_URL": f"sqlite:///{root / 'predictions.db'}",
            "L1_LANDING": str(landing),
            "L1_N_ITER": "3",
            "L1_SEED": "7",
            "L1_EVIDENTLY_WORKSPACE": str(root / "evidently"),
            "L1_MONITOR_INTERVAL_SECONDS": "15",
            "L1_MONITOR_MIN_ROWS": "300",
            "L1_MONITOR_ROWS": "1500",
            "L1_WATCH_INTERVAL_SECONDS": "86400",  # this test is about the drift trigger
            "L1_TRAIN_CRON": "0 0 1 1 *",
        }
        with pipeline_env(orchestrator, env):
            state = training_pipeline(reason="manual", return_state=True)  # the first champion
            assert state.is_completed() and "promoted" in state.message, state.message
            yield {"root": root, "landing": landing, "mlflow": mlflow, "prefect": orchestrator,
                   "env": env}  # fmt: skip


def test_drift_in_live_traffic_retrains_and_the_service_serves_the_new_champion(loop):
    client = MlflowClient(loop["mlflow"].url)
    first = registry.lookup(client, "churn")
    runner_port = free_port()
    runner_env = {
        **os.environ, **loop["env"], "PREFECT_API_URL": loop["prefect"].api_url,
        # The runner's own web server answers /health once its deployments are served.
        "PREFECT_RUNNER_SERVER_ENABLE": "true", "PREFECT_RUNNER_SERVER_PORT": str(runner_port),
    }  # fmt: skip
    with level1_service(loop["root"], loop["mlflow"].url) as url:
        assert served_version(url) == first.version
        # Two weeks pass: the young segment grows; the batches and their labels land.
        for day in range(DRIFTING.days, DRIFTING.days + 13):
            land_day(loop["landing"], DRIFTING, day)
        Variable.set(LAST_SEEN, feature_files(loop["landing"])[-1].name, overwrite=True)
        # The last days' customers ask for predictions: the drifted traffic monitoring sees.
        days = [generate_day(DRIFTING, d)[0] for d in range(16, 21)]
        records = json.loads(pd.concat(days)[[*FEATURE_NAMES, ID]].to_json(orient="records"))
        with httpx.Client(timeout=30) as http:
            for start in range(0, len(records), 100):
                answer = http.post(f"{url}/predict", json=records[start : start + 100])
                assert answer.status_code == 200, answer.text

        command = [sys.executable, "-m", "level1_ct.flows.deployments"]
        runner_health = f"http://127.0.0.1:{runner_port}/health"
        with running(command, runner_health, loop["root"] / "runner.log", env=runner_env):
            new = wait_for(
                lambda: (v := served_version(url)) != first.version and v,
                420,
                "a drift-triggered retrain to move the champion and the service to follow",
                every=2,
            )

    runs = training_runs()
    assert [r.parameters["reason"] for r in runs] == ["drift"], [r.parameters for r in runs]
    assert runs[0].state.is_completed() and "promoted" in runs[0].state.message
    assert registry.lookup(client, "churn").version == new
    version = client.get_model_version("churn", new)
    assert version.tags["prefect_flow_run_id"] == str(runs[0].id)
    with sqlite3.connect(loop["root"] / "predictions.db") as db:
        alerts = db.execute(
            "SELECT model_version FROM monitoring WHERE metric = 'alert' AND value = 1"
        ).fetchall()
        drift = db.execute(
            "SELECT max(value) FROM monitoring WHERE metric = 'drift_share'"
        ).fetchone()[0]
    assert alerts == [(first.version,)]
    assert drift >= 0.3
    projects = list((loop["root"] / "evidently").glob("*/snapshots/*.json"))
    assert projects, "monitoring reports must be in the Evidently workspace"
