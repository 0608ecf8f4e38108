"""CD's staging container (the container stack): a commit whose serving image CI never built
is refused with the reason, not with the engine's failed pull from Docker Hub."""

from __future__ import annotations

from types import SimpleNamespace

import docker
import pytest

from level2_cicd.flows.cd import staging_container
from level2_cicd.report import StepFailed
from level2_cicd.settings import CicdSettings


class NoImages:
    """An engine without the commit's image, that cannot pull (no Docker Hub)."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.images = SimpleNamespace(get=self.get_image)
        self.containers = SimpleNamespace(list=lambda **_: [], run=self.run)

    def get_image(self, name: str):
        raise docker.errors.ImageNotFound(f"No such image: {name}")

    def run(self, image: str, **_):
        self.started.append(image)
        raise docker.errors.APIError("500 Server Error: Get https://registry-1.docker.io/v2/")


def test_a_commit_without_its_serving_image_is_refused_with_the_reason(monkeypatch):
    engine = NoImages()
    monkeypatch.setattr(docker, "from_env", lambda **_: engine)
    sha = "0123456789abcdef" * 2 + "01234567"
    with (
        pytest.raises(StepFailed, match=r"level2-serving:0123456789ab is missing: CI builds it"),
        staging_container(sha, CicdSettings(image_prefix="mlops-levels")),
    ):
        pass
    assert engine.started == []  # no pull attempted
