"""Level 2's CI/CD on the embedded runner, through a real `git push` (a real Prefect server,
runner and process worker, a real MLflow server, the production service as a process): what
the container suite (tests/docker/test_level2_stack.py) does not already cover.

- A commit that breaks a model test goes red at that step and delivers nothing; the container
  suite's red commit breaks a data test.
- With manual approval on, CD pauses before production until a person answers in the Prefect
  UI; a refused release stops there and production stays as it was.

A good push, a worse model stopped at the gate and a canary rolled back are the container
suite's; the embedded good push is also `make demo`'s (tests/e2e/test_level2_demo.py).
Images are not built here (L2_BUILD_IMAGES=never): the embedded mode's path."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

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
from level2_cicd.names import CD
from level2_cicd.settings import CicdSettings
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
            # (a hold-out of ~600 rows, slices of ~100), and its groups a little further apart.
            "L1_CHAMPION_MARGIN": "-0.02",
            "L1_MAX_SLICE_DROP": "0.1",
            "L1_MAX_FAIRNESS_WORSENING": "0.25",
            "L2_REMOTE": str(root / "remote.git"),
            "L2_WORKSPACE": str(root / "ci"),
            "L2_BUILD_IMAGES": "never",
            "L2_STAGING_PORT": str(free_port()),
            "L2_PRODUCTION_URL": production,
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
            with running(command, health, root / "runner.log", env=runner_env, timeout=120):
                clone = root / "clone"
                subprocess.run(["git", "clone", "-q", env["L2_REMOTE"], str(clone)], check=True)
                yield {
                    "clone": clone,
                    "seeded": git("rev-parse", "HEAD", cwd=clone).strip(),  # a green commit
                    "mlflow": MlflowClient(tracking.url),
                    "production": production,
                }


def champion(delivery) -> str | None:
    ref = registry.lookup(delivery["mlflow"], "churn")
    return ref.version if ref else None


def push(clone: Path, message: str) -> tuple[str, str]:
    """Commit everything in the clone and push it; returns the commit and git's output."""
    git("commit", "-q", "-am", message, cwd=clone)
    sha = git("rev-parse", "HEAD", cwd=clone).strip()
    pushed = subprocess.run(
        ["git", "push", "origin", "main"], cwd=clone, capture_output=True, text=True, check=True
    )
    return sha, pushed.stderr


def flow_runs(name: str) -> list:
    with get_client(sync_client=True) as api:
        return api.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=5,
        )


def ci_run(sha: str):
    """The CI flow run of `sha`, once it has finished."""
    name = f"ci-{sha[:12]}"

    def finished():
        runs = flow_runs(name)
        return runs[0] if runs and runs[0].state and runs[0].state.is_final() else None

    return wait_for(finished, 600, f"{name} to finish", every=2)


def ci_report(sha: str) -> str:
    """The commit's CI report, as the Prefect UI's Artifacts page shows it."""
    key = ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=[f"ci-{sha[:12]}"]))
    with get_client(sync_client=True) as api:
        [found] = api.read_latest_artifacts(
            artifact_filter=key,
            flow_run_filter=FlowRunFilter(),  # this client sends null, which the server refuses
            task_run_filter=TaskRunFilter(),
            sort=ArtifactCollectionSort.UPDATED_DESC,
            limit=1,
        )
    return found.data


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
    report = ci_report(sha)
    assert "**red**" in report and "| model tests | failed |" in report
    assert "images" not in report and "start CD" not in report  # a red commit goes no further
    assert flow_runs(f"cd-{sha[:12]}") == []
    assert champion(delivery) == before
    assert served_version(delivery["production"]) == before
    train.write_text(source)  # the next change starts from working code


def test_with_manual_approval_a_refused_release_stops_before_production(delivery):
    mlflow, production = delivery["mlflow"], delivery["production"]
    before = champion(delivery)
    sha = delivery["seeded"]  # the remote's first commit, green (`make level2-cd SHA=...`)
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
