"""Level 2's CI through a real `git push`: the remote's post-receive hook starts the CI flow on
the served deployment (a real Prefect server and runner); a good commit goes green, a commit
that breaks a test goes red at that test's section and builds nothing. Images are not built
here (L2_BUILD_IMAGES=never): no container test covers that step yet."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactCollectionFilter,
    ArtifactCollectionFilterKey,
    FlowRunFilter,
    FlowRunFilterName,
    TaskRunFilter,
)
from prefect.client.schemas.sorting import ArtifactCollectionSort, FlowRunSort

from level2_cicd import remote
from level2_cicd.settings import CicdSettings
from shared.servers import free_port, running
from tests.integration.level1 import pipeline_env, prefect, wait_for

AUTHOR = ["-c", "user.name=Learner", "-c", "user.email=learner@example.org"]


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *AUTHOR, *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture(scope="module")
def delivery(tmp_path_factory):
    root = tmp_path_factory.mktemp("level2")
    env = {
        "L2_REMOTE": str(root / "remote.git"),
        "L2_WORKSPACE": str(root / "ci"),
        "L2_BUILD_IMAGES": "never",
    }
    with prefect(root) as orchestrator, pipeline_env(orchestrator, env):
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
            yield {"root": root, "clone": clone}


def push(clone: Path, message: str) -> tuple[str, str]:
    """Commit everything in the clone and push it; returns the commit and git's output."""
    git("commit", "-q", "-am", message, cwd=clone)
    sha = git("rev-parse", "HEAD", cwd=clone).strip()
    pushed = subprocess.run(
        ["git", "push", "origin", "main"], cwd=clone, capture_output=True, text=True, check=True
    )
    return sha, pushed.stderr


def ci_run(sha: str):
    """The CI flow run of `sha`, once it has finished."""

    def finished():
        name = FlowRunFilterName(any_=[f"ci-{sha[:12]}"])
        with get_client(sync_client=True) as api:
            runs = api.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=name), sort=FlowRunSort.START_TIME_DESC, limit=5
            )
        return runs[0] if runs and runs[0].state and runs[0].state.is_final() else None

    return wait_for(finished, 600, f"the CI run of {sha[:12]} to finish", every=2)


def artifact(sha: str) -> str:
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


def test_a_good_push_starts_ci_and_goes_green(delivery):
    clone = delivery["clone"]
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
    for step in ("lint", "data tests", "model tests", "infrastructure tests"):
        assert f"| {step} | passed |" in report, report
    assert "| images | skipped | L2_BUILD_IMAGES=never |" in report


def test_a_push_that_breaks_a_model_test_is_red_and_builds_nothing(delivery):
    clone = delivery["clone"]
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
    assert "images" not in report  # a red commit builds nothing
