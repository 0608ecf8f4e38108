"""Benchmark level 2: the lead time from `git push` to the new model serving in production.

    make bench-level2                # the embedded mode (the level-2 demo; no images)
    make bench-level2 STACK=docker   # the container stack (make images first): CI builds
                                     # the commit's images, staging runs in a container

Both push the same change (a reworded docstring) and time it until production answers with
a new version: CI, the commit's pipeline deployed and run in staging, the staging checks, the
canary window on live traffic, promotion. Prints figures, asserts nothing. Target (issue
"Level 2"): under 10 minutes on 2 cores with a warm image cache.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from level1_ct.demo import wait_for_version
from level2_cicd.demo import DemoSettings, demo, git
from level2_cicd.remote import git_auth_env
from level2_cicd.settings import CicdSettings
from shared.servers import free_port, read_dotenv

ROOT = Path(__file__).resolve().parents[1]


def embedded() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-level2-"))
    try:
        settings = DemoSettings(
            var=work, mlflow_port=free_port(), prefect_port=free_port(),
            level2_service_port=free_port(),
        )  # fmt: skip
        figures = demo(settings)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nlead time, git push -> new model served in production: {figures['lead_time_s']:.0f} s "
          f"(target < 600 s; canary window {settings.rollout_window_seconds:.0f} s, "
          f"n_iter={settings.n_iter}, images not built)")  # fmt: skip


def stack() -> None:
    """`make up LEVEL=2` under its own project name and ports, one push, then removed."""
    project = f"bench-l2-{uuid.uuid4().hex[:6]}"
    ports = {
        p: free_port() for p in ("MLFLOW_PORT", "PREFECT_PORT", "L2_SERVE_PORT", "L2_GIT_PORT")
    }
    env = {**os.environ, "COMPOSE_PROJECT_NAME": project} | {k: str(v) for k, v in ports.items()}
    production = f"http://127.0.0.1:{ports['L2_SERVE_PORT']}"
    window = CicdSettings().rollout_window_seconds
    work = Path(tempfile.mkdtemp(prefix="bench-level2-stack-"))
    try:
        started = time.monotonic()
        subprocess.run(["make", "up", "LEVEL=2"], cwd=ROOT, env=env, check=True)
        print(f"make up LEVEL=2 (fresh volumes, a first champion trained): "
              f"{time.monotonic() - started:.0f} s")  # fmt: skip
        first = httpx.get(f"{production}/model", timeout=5).json()["version"]
        secrets = read_dotenv(ROOT / ".env")
        login = CicdSettings(git_username=secrets["L2_GIT_USERNAME"],
                             git_password=secrets["L2_GIT_PASSWORD"])  # fmt: skip
        os.environ.update(git_auth_env(login))  # for git() below
        git("clone", "-q", f"http://127.0.0.1:{ports['L2_GIT_PORT']}/ml.git", "ml", cwd=work)
        clone = work / "ml"
        gate = clone / "shared" / "gate.py"
        gate.write_text(gate.read_text().replace(
            "may a candidate replace the champion?", "may a candidate take over?", 1))  # fmt: skip
        git("commit", "-qam", "Gate: reviewed", cwd=clone)
        pushed_at = time.monotonic()
        print(git("push", "-q", "origin", "main", cwd=clone).strip())
        second = wait_for_version(production, first, 1800)
        lead_time = time.monotonic() - pushed_at
    finally:
        shutil.rmtree(work, ignore_errors=True)
        subprocess.run(["docker", "compose", "-f", str(ROOT / "level2_cicd/compose.yaml"), "down",
                        "-v", "--remove-orphans"], env=env, capture_output=True)  # fmt: skip
    print(f"\nlead time, git push -> new model served in production: {lead_time:.0f} s "
          f"(version {first} -> {second}; target < 600 s; container stack: CI with images, "
          f"staging container, canary window {window:.0f} s)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", choices=["local", "docker"], default="local")
    if parser.parse_args().stack == "docker":
        stack()
    else:
        embedded()


if __name__ == "__main__":
    main()
