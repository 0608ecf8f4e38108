"""Level 2's production service as a real uvicorn process following a real MLflow registry,
with a candidate rolled out as a shadow, then as an A/B test (its version's `rollout_kind`
tag): a shadow scores a copy of every request in a process of its own and no customer gets
its answers (nor does the prediction store log any); an A/B test answers the customers its
hash gives it, and logs each answer with the version that gave it. /explain explains, for
each customer, the version that answers them."""

from __future__ import annotations

import sqlite3

import httpx
import pytest
from mlflow import MlflowClient

from level2_cicd.names import CANARY, ROLLOUT_KIND
from level2_cicd.service import canary_arm
from shared.schema import ID, MODEL_NAME, example_record
from shared.servers import MlflowServer, free_port, mlflow_server
from shared.train import TrainingConfig, train
from tests.integration.level1 import register_champion, service_process, wait_for


@pytest.fixture(scope="module")
def candidate(split):
    """A model unlike the session's: another seed and search."""
    return train(split[0], TrainingConfig(n_iter=1, cv_folds=2, seed=99)).pipeline


def ask(url: str, customers: list[str]) -> list[str]:
    """One request per customer; the version that answered each."""
    with httpx.Client(base_url=url, timeout=10) as client:
        return [
            client.post("/predict", json={**example_record(), ID: c}).json()["model_version"]
            for c in customers
        ]


def explained(url: str, customers: list[str]) -> list[str]:
    """One /explain per customer; the version whose attributions came back for each."""
    with httpx.Client(base_url=url, timeout=60) as client:
        found = [client.post("/explain", json={**example_record(), ID: c}) for c in customers]
    assert all(r.status_code == 200 for r in found), [r.text for r in found][:2]
    return [r.json()["model_version"] for r in found]


def logged(tmp_path) -> list[tuple[str, str]]:
    with sqlite3.connect(tmp_path / "predictions.db") as db:
        return db.execute(f"select {ID}, model_version from predictions").fetchall()


def test_a_shadow_answers_nobody_and_an_ab_test_answers_its_customers(tmp_path, trained, candidate):
    with mlflow_server(MlflowServer(root=tmp_path / "mlflow", port=free_port())) as mlflow:
        champion = register_champion(mlflow.url, trained.pipeline)
        client = MlflowClient(mlflow.url)
        shadow = register_champion(mlflow.url, candidate)  # then handed back to the champion
        client.set_registered_model_alias(MODEL_NAME, "champion", champion)
        client.set_model_version_tag(MODEL_NAME, shadow, ROLLOUT_KIND, "shadow")
        client.set_registered_model_alias(MODEL_NAME, CANARY, shadow)
        settings = {"log_flush_seconds": "0.2", "ab_share": "0.5"}
        with service_process("level2_cicd.service", "L2_SERVE_", tmp_path, mlflow.url,
                             settings) as url:  # fmt: skip
            wait_for(lambda: httpx.get(f"{url}/rollout").json()["kind"] == "shadow" or None,
                     60, "production to load the shadow")  # fmt: skip
            customers = [f"s{i:04d}" for i in range(120)]
            assert set(ask(url, customers)) == {champion}
            assert set(explained(url, customers[:3])) == {
                champion
            }  # nobody's answer is the shadow's
            figures = wait_for(
                lambda: (f := httpx.get(f"{url}/rollout").json())["canary"]["requests"] == 120
                and f, 60, "the shadow process to score every copy",
            )  # fmt: skip
            arm = figures["canary"]
            assert figures["canary_version"] == shadow and figures["exposed_customers"] == 0
            assert arm["customers"] == 120 and arm["errors"] == arm["dropped"] == 0
            assert sum(arm["histogram"]) == 120 and arm["p95_ms"] > 0
            assert 0 <= arm["disagreements"] <= 120
            wait_for(lambda: len(logged(tmp_path)) >= 120, 30, "the predictions logged")
            assert {version for _, version in logged(tmp_path)} == {champion}
            metrics = httpx.get(f"{url}/metrics").text
            assert 'churn_arm_requests_total{arm="shadow",outcome="ok"} 120.0' in metrics
            assert 'churn_rollout_customers{arm="shadow",exposed="false"} 120.0' in metrics
            assert 'churn_rollout_requests{arm="shadow"} 120.0' in metrics
            assert f"churn_rollout_shadow_disagreements {arm['disagreements']}.0" in metrics
            binned = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                         if line.startswith('churn_rollout_predictions{arm="shadow"'))  # fmt: skip
            assert binned == 120

            # The same version as an A/B test: the alias goes, the tag changes, it comes back
            client.delete_registered_model_alias(MODEL_NAME, CANARY)
            wait_for(lambda: httpx.get(f"{url}/rollout").json()["canary_version"] is None
                     or None, 30, "production to drop the shadow")  # fmt: skip
            client.set_model_version_tag(MODEL_NAME, shadow, ROLLOUT_KIND, "ab")
            client.set_registered_model_alias(MODEL_NAME, CANARY, shadow)
            wait_for(lambda: httpx.get(f"{url}/rollout").json()["kind"] == "ab" or None,
                     60, "production to load the A/B candidate")  # fmt: skip
            tested = [f"t{i:04d}" for i in range(200)]
            versions = ask(url, tested)
            assert versions == [shadow if canary_arm(c, 0.5) else champion for c in tested]
            assert ask(url, tested[:20]) == versions[:20]  # a customer stays on one arm
            # /explain explains the version that answered each customer
            assert explained(url, tested[:20]) == versions[:20]
            assert {champion, shadow} <= set(versions[:20])
            figures = httpx.get(f"{url}/rollout").json()
            assert figures["exposed_customers"] == versions.count(shadow) > 0
            wait_for(lambda: len(logged(tmp_path)) >= 340, 30, "the A/B answers logged")
    answered = dict(logged(tmp_path)[120:])
    assert answered == dict(zip(tested, versions, strict=True))  # each logged with its arm
