"""Settings of level 2's CI/CD flows, from L2_* environment variables.

Level 2 wraps level 1: the training pipeline, its gate and its settings (L1_*) are level 1's.
What is added here is the process around the code: where the git remote is, where CI checks
commits out, and which images CI builds.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict


class CicdSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="L2_", frozen=True)

    # Source control: the remote a push goes to, and the branch that is delivered
    remote: str = "var/level2/remote.git"  # a path (embedded mode) or the git server's URL
    branch: str = "main"
    workspace: Path = Path("var/level2/ci")  # one checkout per commit under test

    # CI: each step gets this long; the test sections are the ML Test Score's
    step_timeout_seconds: int = 900
    # Images: "auto" builds when a Docker engine answers and reports the step skipped when
    # not (the embedded mode on a laptop without Docker); "always" fails without an engine.
    build_images: Literal["auto", "always", "never"] = "auto"
    image_prefix: str = "mlops-levels"
    # A commit's images add its code on top of these (dependencies come from the lock file
    # and change with `make images`, not with a push)
    base_tag: str = "latest"


@cache
def get_settings() -> CicdSettings:
    return CicdSettings()
