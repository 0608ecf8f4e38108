"""`make level1-train` and friends where the servers or the runner are not running: they say
what to start instead of ending in a stack trace, or waiting half an hour for a run that no
runner picks up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.servers import free_port
from tests.integration.level1 import prefect

ROOT = Path(__file__).resolve().parents[2]


def test_level1_train_without_the_runner_says_to_start_it(tmp_path: Path):
    with prefect(tmp_path) as server:
        env = {**os.environ, "PREFECT_API_URL": server.api_url, "MLFLOW_TRACKING_URI": ""}
        result = subprocess.run(
            [sys.executable, "-m", "level1_ct.run", "train"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert result.returncode == 1
    assert "no deployment ct-training/ct-training on the Prefect server: start " \
           "`make level1-runner`" in result.stderr  # fmt: skip
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("target", "runner"), [("level1-train", "level1-runner"), ("level2-cd", "level2-runner")]
)
def test_a_level_command_without_its_servers_says_what_to_start(target, runner):
    env = {k: v for k, v in os.environ.items()
           if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "MAKEFLAGS")}  # fmt: skip
    mlflow, prefect = free_port(), free_port()
    result = subprocess.run(
        ["make", "-s", "-o", ".venv/.installed", target, "SHA=0123456789abcdef",
         f"MLFLOW_PORT={mlflow}", f"PREFECT_PORT={prefect}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    said = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"the Prefect server does not answer at http://127.0.0.1:{prefect}/api" in said
    assert f"MLflow does not answer at http://127.0.0.1:{mlflow}: start `make mlflow`" in said
    assert f"then `make {runner}`" in said
    assert "Traceback" not in said
