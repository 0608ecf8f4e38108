"""Level 2's CI/CD through a real `git push` (a real Prefect server, runner and process
worker, a real MLflow server, the production service as a process under steady live
traffic): the remote's hook starts CI; a green commit's pipeline is deployed to staging from
the remote at that commit and run; its model passes level 1's gate, the staging service's
contract and load checks, and a canary in production, and production ends up serving it.
A commit that breaks a test goes red and delivers nothing; a commit whose model is worse
than the champion stops at the gate; a canary that fails is rolled back while production's
clients see no error; with manual approval on, a refused release stops before production.

Images are not built here (L2_BUILD_IMAGES=never): the embedded mode's path."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactCollectionFilter,
    ArtifactCollectionFilterKey,
    FlowRunFilter,
    FlowRunFilterName,
    TaskRunFilter,
)
from prefect.client.schemas.sorting import ArtifactCollectionSort, FlowRunSort
from prefect.deployments import run_deployment
from prefect.flow_runs import resume_flow_run

from level1_ct import registry
from level1_ct.flows.training import training_pipeline
from level1_ct.service import served_version
from level2_cicd import remote
from level2_cicd.flows.cd import DEPLOYMENT as CD
from level2_cicd.settings import CicdSettings
from level2_cicd.traffic import Traffic
from shared.servers import MlflowServer, free_port, mlflow_server, running
from shared.simulator import land_day, simulate
from tests.conftest import SMALL
from tests.integration.level1 import (
    pipeline_env,
    prefect,
    service_process,
    wait_for,
)

AUTHOR = ["-c", "user.name=Learner", "-c", "user.email=learner@example.org"]


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *AUTHOR, *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout


API_KEY = "test-admin-key"


@contextmanager
def production_service(root: Path, tracking_uri: str) -> Iterator[str]:
    """Level 2's production service (champion + canary arm) as a real uvicorn process."""
    settings = {"canary_share": "0.3", "api_key": API_KEY}
    with service_process("level2_cicd.service", "L2_SERVE_", root, tracking_uri, settings) as url:
        yield url


@pytest.fixture(scope="module")
def delivery(tmp_path_factory):
    root = tmp_path_factory.mktemp("level2")
    own_landing = root / "landing"
    simulate(own_landing, replace(SMALL, days=SMALL.days - 3))  # the world before level 2
    with (
        mlflow_server(MlflowServer(root=root / "mlflow", port=free_port())) as tracking,
        production_service(root / "production", tracking.url) as production,
        prefect(root) as orchestrator,
    ):
        env = {
            "MLFLOW_TRACKING_URI": tracking.url,
            "L1_LANDING": str(own_landing),
            "L1_N_ITER": "3",
            "L1_SEED": "7",
            # A candidate may be a little worse than the champion on this small data set
            # (a hold-out of ~600 rows, slices of ~100); the worse model below is far worse.
            "L1_CHAMPION_MARGIN": "-0.02",
            "L1_MAX_SLICE_DROP": "0.1",
            "L2_REMOTE": str(root / "remote.git"),
            "L2_WORKSPACE": str(root / "ci"),
            "L2_BUILD_IMAGES": "never",
            "L2_STAGING_PORT": str(free_port()),
            "L2_PRODUCTION_URL": production,
            "L2_ROLLOUT_WINDOW_SECONDS": "20",
            "L2_ROLLOUT_CHECK_SECONDS": "2",
            "L2_CANARY_MIN_REQUESTS": "100",
        }
        with pipeline_env(orchestrator, env):
            # Level 1 left a champion behind; three more days have landed since.
            state = training_pipeline(reason="before level 2", return_state=True)
            assert "promoted to champion" in (state.message or ""), state.message
            for day in range(SMALL.days - 3, SMALL.days):
                land_day(own_landing, SMALL, day)
            remote.create(CicdSettings())
            runner_port = free_port()
            runner_env = {
                **os.environ,
                "PREFECT_RUNNER_SERVER_ENABLE": "true",
                "PREFECT_RUNNER_SERVER_PORT": str(runner_port),
            }
            command = [sys.executable, "-m", "level2_cicd.flows.deployments"]
            health = f"http://127.0.0.1:{runner_port}/health"
            with (
                running(command, health, root / "runner.log", env=runner_env, timeout=120),
                Traffic(production, rate=40) as traffic,
            ):
                clone = root / "clone"
                subprocess.run(["git", "clone", "-q", env["L2_REMOTE"], str(clone)], check=True)
                yield {
                    "root": root,
                    "clone": clone,
                    "mlflow": MlflowClient(tracking.url),
                    "production": production,
                    "traffic": traffic,
                }


def champion(delivery) -> str | None:
    ref = registry.lookup(delivery["mlflow"], "churn")
    return ref.version if ref else None


def push(clone: Path, message: str, branch: str = "main") -> tuple[str, str]:
    """Commit everything in the clone and push it; returns the commit and git's output."""
    git("commit", "-q", "-am", message, cwd=clone)
    sha = git("rev-parse", "HEAD", cwd=clone).strip()
    pushed = subprocess.run(
        ["git", "push", "origin", branch], cwd=clone, capture_output=True, text=True, check=True
    )
    return sha, pushed.stderr


def flow_runs(name: str) -> list:
    with get_client(sync_client=True) as api:
        return api.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=5,
        )


def finished_run(name: str, timeout: float = 600):
    """The flow run called `name`, once it has finished."""

    def finished():
        runs = flow_runs(name)
        return runs[0] if runs and runs[0].state and runs[0].state.is_final() else None

    return wait_for(finished, timeout, f"{name} to finish", every=2)


def ci_run(sha: str):
    """The CI flow run of `sha`, once it has finished."""
    return finished_run(f"ci-{sha[:12]}")


def artifact(sha: str, stage: str = "ci") -> str:
    """The commit's CI or CD report, as the Prefect UI's Artifacts page shows it."""
    key = ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=[f"{stage}-{sha[:12]}"]))
    with get_client(sync_client=True) as api:
        [found] = api.read_latest_artifacts(
            artifact_filter=key,
            flow_run_filter=FlowRunFilter(),  # this client sends null, which the server refuses
            task_run_filter=TaskRunFilter(),
            sort=ArtifactCollectionSort.UPDATED_DESC,
            limit=1,
        )
    return found.data


def test_a_good_push_is_tested_deployed_to_staging_and_served_in_production(delivery):
    clone, mlflow = delivery["clone"], delivery["mlflow"]
    before = champion(delivery)
    assert served_version(delivery["production"]) == before
    gate = clone / "shared" / "gate.py"
    source = gate.read_text()
    edited = source.replace("may a candidate replace the champion?", "may a candidate take over?")
    assert edited != source
    gate.write_text(edited)
    sha, output = push(clone, "Gate: reviewed")

    assert f"CI/CD started for {sha[:12]}" in output  # the hook answered the push

    run = ci_run(sha)
    assert run.state.is_completed(), run.state.message
    assert run.parameters == {"sha": sha}
    report = artifact(sha)
    assert "**green**" in report
    for step in ("lint", "data tests", "model tests", "infrastructure tests", "start CD"):
        assert f"| {step} | passed |" in report, report
    assert "| images | skipped | L2_BUILD_IMAGES=never |" in report

    delivered = finished_run(f"cd-{sha[:12]}", timeout=900)
    assert delivered.state.is_completed(), delivered.state.message
    report = artifact(sha, "cd")
    steps = ("deploy pipeline", "staging run", "staging service", "canary", "promote", "production")
    for step in steps:
        assert f"| {step} | passed |" in report, report
    assert "contract answered; load:" in report
    assert "| approval | skipped | automatic (L2_APPROVAL=auto) |" in report

    # The pipeline ran as the commit's versioned staging deployment ...
    with get_client(sync_client=True) as api:
        staging = api.read_deployment_by_name("ct-training/staging")
    assert staging.version == sha[:12] and staging.work_pool_name == "level2-pipeline"
    [staged] = flow_runs(f"staging-{sha[:12]}")
    assert staged.deployment_id == staging.id and staged.parameters["promote_on_pass"] is False
    # ... produced the champion, with the commit in its lineage ...
    version = champion(delivery)
    assert version != before
    tags = mlflow.get_model_version("churn", version).tags
    assert tags["code_version"] == sha and tags["cd_commit"] == sha
    assert tags["gate"] == "passed" and tags["rollout"] == "promoted"
    assert tags["previous_champion"] == before
    # ... that went through the canary on live traffic before it was promoted ...
    assert tags["rollout_decision"].startswith("promote: "), tags["rollout_decision"]
    assert {"candidate", "canary"}.isdisjoint(mlflow.get_registered_model("churn").aliases)
    # ... and that production serves, having answered every request on the way.
    assert served_version(delivery["production"]) == version
    answers = delivery["traffic"].answers
    assert {status for status, _ in answers} == {200}
    assert {before, version} <= {answered for _, answered in answers}


def test_a_push_that_breaks_a_model_test_is_red_and_delivers_nothing(delivery):
    clone = delivery["clone"]
    before = champion(delivery)
    train = clone / "shared" / "train.py"
    source = train.read_text()
    # A plausible slip: the hold-out's first day leaks into training
    broken = source.replace("frame[frame[DATE] < cutoff]", "frame[frame[DATE] <= cutoff]", 1)
    assert broken != source, "the breakage must apply to shared/train.py"
    train.write_text(broken)
    sha, _ = push(clone, "Train on everything")

    run = ci_run(sha)
    assert run.state.is_failed()
    assert f"CI red at model tests for {sha[:12]}" in run.state.message
    report = artifact(sha)
    assert "**red**" in report and "| model tests | failed |" in report
    assert "images" not in report and "start CD" not in report  # a red commit goes no further
    assert flow_runs(f"cd-{sha[:12]}") == []
    assert champion(delivery) == before
    assert served_version(delivery["production"]) == before
    train.write_text(source)  # the next change starts from working code


def test_a_push_that_yields_a_worse_model_is_stopped_at_the_gate(delivery):
    """Pushed to a branch that is not delivered, then delivered by hand (`make level2-cd
    SHA=...`): CD alone, as CI has nothing to say about it (the unit tests pass)."""
    clone, mlflow = delivery["clone"], delivery["mlflow"]
    before = champion(delivery)
    assert before is not None
    git("checkout", "-q", "-b", "faster", cwd=clone)
    training = clone / "level1_ct" / "flows" / "training.py"
    source = training.read_text()
    anchor = "else dict(PARAM_SPACE)\n"
    # "Training takes too long": two boosting rounds of two-leaf trees. The unit tests do not
    # see the pipeline's search space; level 1's gate sees the model it yields.
    faster = (
        anchor + '    space |= {"max_iter": [2], "max_leaf_nodes": [2], "learning_rate": [0.03]}\n'
    )
    assert anchor in source
    training.write_text(source.replace(anchor, faster, 1))
    sha, pushed = push(clone, "Train faster", branch="faster")
    assert "CI/CD started" not in pushed  # only the delivered branch triggers
    git("checkout", "-q", "main", cwd=clone)

    delivered = run_deployment(CD, parameters={"sha": sha}, flow_run_name=f"cd-{sha[:12]}",
                               timeout=900)  # fmt: skip
    assert delivered.state.is_failed()
    message = delivered.state.message
    assert f"CD stopped at staging run for {sha[:12]}" in message, message
    assert "rejected by the gate" in message and "roc_auc >= champion + margin" in message
    report = artifact(sha, "cd")
    assert "| staging run | failed |" in report and "staging service" not in report

    rejected = mlflow.search_model_versions(f"name = 'churn' and tags.cd_commit = '{sha}'")
    assert [v.tags["rollout"] for v in rejected] == ["stopped at gate"]
    assert champion(delivery) == before  # production unchanged
    assert served_version(delivery["production"]) == before


def test_a_canary_that_fails_in_production_is_rolled_back_and_clients_see_no_error(delivery):
    mlflow, production = delivery["mlflow"], delivery["production"]
    before = champion(delivery)
    sha = mlflow.get_model_version("churn", before).tags["cd_commit"]
    # The drill: every request that production routes to the canary fails
    fault = {"error_rate": 1.0}
    set_fault = httpx.post(f"{production}/admin/fault", json=fault, headers={"X-API-Key": API_KEY})
    assert set_fault.status_code == 200
    answered = len(delivery["traffic"].answers)
    try:
        # The champion's commit is delivered again (`make level2-cd SHA=...`): a new version
        run = run_deployment(CD, parameters={"sha": sha}, timeout=900)
    finally:
        httpx.post(f"{production}/admin/fault", json={}, headers={"X-API-Key": API_KEY})

    assert run.state.is_failed()
    assert f"CD stopped at canary for {sha[:12]}" in run.state.message, run.state.message
    assert "canary rolled back: error rate 100.0%" in run.state.message
    [rolled_back] = [
        v for v in mlflow.search_model_versions(f"name = 'churn' and tags.cd_commit = '{sha}'")
        if v.version != before
    ]  # fmt: skip
    assert rolled_back.tags["rollout"] == "rolled back"
    assert rolled_back.tags["rollout_decision"].startswith("rollback: error rate")
    assert {"candidate", "canary"}.isdisjoint(mlflow.get_registered_model("churn").aliases)
    assert champion(delivery) == before and served_version(production) == before
    figures = httpx.get(f"{production}/rollout").json()
    assert figures["canary_version"] is None  # the canary arm is unloaded
    assert figures["counted_version"] == rolled_back.version
    assert figures["canary"]["errors"] == figures["canary"]["requests"] > 0
    # Clients never saw the canary's errors: the champion answered those requests
    during = delivery["traffic"].answers[answered:]
    assert during and {status for status, _ in during} == {200}
    assert {version for _, version in during} == {before}


def test_with_manual_approval_a_refused_release_stops_before_production(delivery):
    mlflow, production = delivery["mlflow"], delivery["production"]
    before = champion(delivery)
    sha = mlflow.get_model_version("churn", before).tags["cd_commit"]
    started = run_deployment(CD, parameters={"sha": sha, "approval_mode": "manual"}, timeout=0)

    def now():
        with get_client(sync_client=True) as api:
            return api.read_flow_run(started.id)

    wait_for(lambda: now().state.is_paused() or now().state.is_final(), 600,
             "CD to pause for approval", every=2)  # fmt: skip
    assert now().state.is_paused()
    assert champion(delivery) == before  # nothing moves while it waits
    resume_flow_run(started.id, run_input={"approve": False, "note": "not on a Friday"})
    run = wait_for(lambda: (run := now()).state.is_final() and run, 120, "CD to finish")

    assert run.state.is_failed()
    assert f"CD stopped at approval for {sha[:12]}: not approved: not on a Friday" in (
        run.state.message
    )
    [refused] = [
        v for v in mlflow.search_model_versions(f"name = 'churn' and tags.cd_commit = '{sha}'")
        if v.tags.get("rollout") == "stopped at approval"
    ]  # fmt: skip
    assert {"candidate", "canary"}.isdisjoint(mlflow.get_registered_model("churn").aliases)
    assert refused.version != before
    assert champion(delivery) == before and served_version(production) == before
