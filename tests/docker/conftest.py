"""Container tests: a Docker engine is required. In CI (CI=true) a missing engine fails the
run; elsewhere the tests skip with the command that provides one. Images are built once per
session, by the same `make images` a learner runs."""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from shared.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
LEVEL_DIRS = {0: "level0_manual", 1: "level1_ct", 2: "level2_cicd"}


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
    """`make images`, once per pytest process: on pytest-xdist's workers (`-n 2`) they take
    turns, so the second finds every layer cached."""
    lock = ROOT / "var" / "images.lock"
    lock.parent.mkdir(exist_ok=True)
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        run(["make", "images"], timeout=2400)


@dataclass(frozen=True)
class Started:
    """A level's stack the tests brought up: its compose project, the environment its make
    targets need, and its published ports by variable (MLFLOW_PORT, L1_SERVE_PORT, ...)."""

    level: int
    project: str
    env: dict[str, str]
    ports: dict[str, int]

    def url(self, port_variable: str) -> str:
        return f"http://127.0.0.1:{self.ports[port_variable]}"

    def make(self, *args: str, timeout: int = 900) -> str:
        return run(["make", *args, f"LEVEL={self.level}"], env=self.env, timeout=timeout)


@contextmanager
def started_stack(
    level: int, request: pytest.FixtureRequest, settings: dict[str, str]
) -> Iterator[Started]:
    """The one way the container tests set a level's stack up and tear it down: `make up` as a
    compose project of its own, on free loopback ports, with the test's settings; its logs
    printed when one of the tests using it failed; every container and volume removed after."""
    compose_file = ROOT / LEVEL_DIRS[level] / "compose.yaml"
    project = f"l{level}test{uuid.uuid4().hex[:8]}"
    published = published_ports(compose_file)
    env = {**os.environ, **published, "COMPOSE_PROJECT_NAME": project, **settings}
    compose = ["docker", "compose", "-p", project, "-f", str(compose_file)]
    stack = Started(level, project, env, {name: int(port) for name, port in published.items()})
    failed_before = request.session.testsfailed
    try:
        stack.make("up")
        yield stack
    finally:
        if request.session.testsfailed > failed_before:
            logs = subprocess.run([*compose, "logs", "--tail=150"], capture_output=True, text=True)
            print(f"\n---- logs of {project} ----\n{logs.stdout[-30000:]}{logs.stderr[-3000:]}")
        subprocess.run(  # every profile's services, so level 0's workbench volume goes too
            [*compose, "--profile", "*", "down", "-v", "--remove-orphans"],
            capture_output=True,
            env=env,
        )
