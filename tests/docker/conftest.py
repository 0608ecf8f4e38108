"""Container tests: a Docker engine is required. In CI (CI=true) a missing engine fails the
run; elsewhere the tests skip with the command that provides one. Images are built once per
session, by the same `make images` a learner runs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(command: list[str], env: dict[str, str] | None = None, timeout: int = 900) -> str:
    """Run a command at the repository root; fail the test with its output when it fails."""
    result = subprocess.run(
        command,
        cwd=ROOT,
        env=env or dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} exited {result.returncode}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result.stdout


@pytest.fixture(scope="session")
def engine() -> None:
    try:
        answers = subprocess.run(["docker", "info"], capture_output=True).returncode == 0
        message = "no Docker engine answers: run `make engine` (Debian, root) or start Docker"
    except FileNotFoundError:
        answers, message = (
            False,
            "no `docker` CLI: run `make engine` (Debian, root) or install Docker",
        )
    if not answers:
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def images(engine) -> None:
    run(["make", "images"], timeout=2400)
