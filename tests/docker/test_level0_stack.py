"""Level 0 in containers, through the make targets of level0_manual/README.md: the stack
comes up healthy, the manual train -> hand-off -> restart path serves predictions over the
published port, the run is in MLflow, and state survives `down` and `up`."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest
from mlflow.tracking import MlflowClient

from shared.schema import example_record
from tests.docker.conftest import run, started_stack


@dataclass
class Stack:
    env: dict[str, str]
    mlflow_url: str
    service_url: str

    def make(self, *args: str) -> str:
        return run(["make", *args, "LEVEL=0"], env=self.env)


@pytest.fixture(scope="module")
def stack(images, request):
    with started_stack(0, request, {"L0_N_ITER": "2"}) as started:
        yield Stack(started.env, started.url("MLFLOW_PORT"), started.url("L0_SERVE_PORT"))


def test_the_stack_is_healthy_and_the_service_waits_for_a_model(stack):
    assert httpx.get(f"{stack.mlflow_url}/health").status_code == 200
    health = httpx.get(f"{stack.service_url}/health").json()
    assert health["status"] == "no_model"
    assert httpx.post(f"{stack.service_url}/predict", json=example_record()).status_code == 503


def test_the_manual_path_train_handoff_restart_serves_predictions(stack):
    stack.make("data", "STACK=docker", "DAYS=8")
    trained = stack.make("level0-train", "STACK=docker")
    assert "exported /data/exported/model.skops" in trained
    handoff = stack.make("level0-handoff", "STACK=docker")
    assert "MANUAL HAND-OFF" in handoff and "restart serving" in handoff

    answer = httpx.post(f"{stack.service_url}/predict", json=[example_record()] * 3)
    assert answer.status_code == 200
    assert len(answer.json()["predictions"]) == 3
    served = httpx.get(f"{stack.service_url}/model").json()
    assert served["mlflow_tracking_uri"] == "http://mlflow:5000"
    assert served["code_version"] not in ("", "unknown")  # the image knows its commit

    refused = httpx.post(f"{stack.service_url}/predict", json={**example_record(), "age": "x"})
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"][-1] == "age"


def test_the_run_and_its_model_are_in_mlflow_over_its_rest_api(stack):
    served = httpx.get(f"{stack.service_url}/model").json()
    client = MlflowClient(stack.mlflow_url)
    experiment = client.get_experiment_by_name("level0-manual")
    [logged] = client.search_runs([experiment.experiment_id])
    assert logged.info.run_id == served["mlflow_run_id"]
    assert {"learning_rate", "train_rows"} <= set(logged.data.params)
    assert logged.data.metrics["roc_auc"] > logged.data.metrics["baseline/roc_auc"]
    [model] = client.search_logged_models(experiment_ids=[experiment.experiment_id])
    assert model.source_run_id == logged.info.run_id
    # artifacts go through the server's proxy onto its volume
    assert {"data_validation.json", "lineage.json"} <= {
        a.path for a in client.list_artifacts(logged.info.run_id)
    }


def test_runs_models_and_the_served_file_survive_down_and_up(stack):
    served = httpx.get(f"{stack.service_url}/model").json()
    assert httpx.get(f"{stack.mlflow_url}/health", timeout=2).status_code == 200  # open, then
    stack.make("down")
    for closed in (f"{stack.mlflow_url}/health", f"{stack.service_url}/health"):
        with pytest.raises(httpx.HTTPError):
            httpx.get(closed, timeout=2)
    stack.make("up")
    client = MlflowClient(stack.mlflow_url)
    assert client.get_run(served["mlflow_run_id"]).info.status == "FINISHED"
    assert client.search_logged_models(
        experiment_ids=[client.get_experiment_by_name("level0-manual").experiment_id]
    )
    assert httpx.get(f"{stack.service_url}/model").json()["version"] == served["version"]
