"""The Makefile is the one vocabulary: `make` alone lists every target with what it does."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_make_without_a_target_lists_every_phony_target_with_a_description():
    makefile = (ROOT / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:((?:.*\\\n)*.*)$", makefile, re.M).group(1)
    targets = phony.replace("\\\n", " ").split()
    out = subprocess.run(
        ["make", "-s"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    listed = dict(re.findall(r"^  (\S+)\s+(.+)$", out, re.M))
    assert sorted(listed) == sorted(targets)
    assert all(len(description) > 10 for description in listed.values())


# What `docker image ls --format '...'` printed (Docker CLI 28.2): the CLI trims leading
# spaces of a format, and <none> images are listed too.
IMAGE_LS = """<none>:<none>\t765MB
mlops-levels/serving:latest\t772MB
mlops-levels/python:latest\t2.03GB
<none>:<none>\t1.1GB
mlops-levels/postgres:15\t711MB
python:3.11-slim-bookworm\t130MB
"""


def fake_docker(folder: Path) -> str:
    """A `docker` that succeeds at everything and lists IMAGE_LS; returns a PATH with it."""
    (folder / "image-ls.txt").write_text(IMAGE_LS)
    docker = folder / "docker"
    docker.write_text(
        f'#!/bin/sh\n[ "$1 $2" = "image ls" ] && cat {folder / "image-ls.txt"}\nexit 0\n'
    )
    docker.chmod(0o755)
    return f"{folder}:{os.environ['PATH']}"


def test_make_images_ends_with_the_size_of_each_of_the_projects_images(tmp_path):
    # The listing is build-images.sh's last line, run as the script runs it
    listing = (ROOT / "infra/scripts/build-images.sh").read_text().strip().splitlines()[-1]
    out = subprocess.run(
        ["bash", "-c", f". infra/scripts/lib.sh; PREFIX=mlops-levels; {listing}"],
        cwd=ROOT, env={**os.environ, "PATH": fake_docker(tmp_path)},
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rows = [line.split() for line in out.splitlines()]
    assert rows == [["mlops-levels/serving:latest", "772MB"], ["mlops-levels/python:latest", "2.03GB"],
                    ["mlops-levels/postgres:15", "711MB"]]  # fmt: skip
    assert all(line.startswith("  ") for line in out.splitlines())


@pytest.mark.parametrize("level", ["0", "1", "2"])
def test_make_up_prints_the_ports_of_env_and_the_shell_over_the_defaults(tmp_path, level):
    dotenv = tmp_path / ".env"
    dotenv.write_text("MLFLOW_PORT=5055\nPREFECT_PORT=4255\nL0_SERVE_PORT=8100\n"
                      "L1_SERVE_PORT=8101\nEVIDENTLY_PORT=8102\n# L2_SERVE_PORT=1\n")  # fmt: skip
    ports = ("MLFLOW_PORT", "PREFECT_PORT", "L0_SERVE_PORT", "L1_SERVE_PORT", "L2_SERVE_PORT",
             "EVIDENTLY_PORT", "L2_GIT_PORT", "PROMETHEUS_PORT", "INBOX_PORT")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ports and k != "MAKEFLAGS"}
    env |= {"PATH": fake_docker(tmp_path), "ENV_FILE": str(dotenv), "L2_GIT_PORT": "9003"}
    out = subprocess.run(
        ["make", "-s", "-o", "env", "up", f"LEVEL={level}"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    urls = set(re.findall(r"http://127\.0\.0\.1:(\d+)", out))
    observability = {"9090", "8004"}  # Prometheus and the alert inbox, at their defaults
    expected = {"0": {"5055", "8100"}, "1": {"5055", "4255", "8101", "8102", *observability},
                "2": {"5055", "4255", "8001", "9003", *observability}}  # fmt: skip
    assert urls == expected[level], out
