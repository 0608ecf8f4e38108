"""Container tests: a Docker engine is required. In CI (CI=true) a missing engine fails the
run; elsewhere the tests skip with the command that provides one. Images are built once per
session, by the same `make images` a learner runs."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from shared.servers import free_port

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


def published_ports(compose_file: Path) -> dict[str, str]:
    """A free loopback port for every port variable the stack publishes (`${NAME:-8002}` in
    its compose file and the files it includes), for the test's environment: a test stack
    never binds a default port another stack holds (a learner's, or one left running)."""
    files = [compose_file]
    for included in yaml.safe_load(compose_file.read_text()).get("include", []):
        paths = included["path"] if isinstance(included, dict) else included  # long or short
        for path in [paths] if isinstance(paths, str) else paths:
            files.append(compose_file.parent / path)
    names = {
        name
        for file in files
        for name in re.findall(r"127\.0\.0\.1:\$\{(\w+):-\d+\}", file.read_text())
    }
    return {name: str(free_port()) for name in sorted(names)}


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
