"""Settings of level 2's CI/CD flows, from L2_* environment variables.

Level 2 wraps level 1: the training pipeline, its gate and its settings (L1_*) are level 1's.
What is added here is the process around the code: where the git remote is, where CI checks
commits out, which images CI builds, and what CD requires of a candidate before production.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from level2_cicd.names import IMAGES, WORK_POOL
from level2_cicd.rollout import AbRule, Bounds, ShadowBounds


class CicdSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="L2_", frozen=True)

    # Source control: the remote a push goes to, and the branch that is delivered
    remote: str = "var/level2/remote.git"  # a path (embedded mode) or the git server's URL
    branch: str = "main"
    # The git server's login (the container stack's remote asks for one)
    git_username: str = ""
    git_password: SecretStr = SecretStr("")
    workspace: Path = Path("var/level2/ci")  # one checkout per commit under test

    # CI: each step gets this long; the test sections are the ML Test Score's
    step_timeout_seconds: int = 900
    # Images: "auto" builds when a Docker engine answers and reports the step skipped when
    # not (the embedded mode on a laptop without Docker); "always" fails without an engine.
    build_images: Literal["auto", "always", "never"] = "auto"
    image_prefix: str = "mlops-levels"
    # A commit's images add its code on top of mlops-levels/python-env:<base_tag>
    # (dependencies come from the lock file and change with `make images`, not with a push)
    base_tag: str = "latest"
    # Who builds them: "docker", the engine behind the socket (the stack); "kubernetes", a
    # Job of buildah, pushing to `image_registry` (a cluster: level2_cicd/cluster_images.py)
    image_builder: Literal["docker", "kubernetes"] = "docker"
    image_registry: str = ""  # host[:port] the builder pushes to
    image_pull_registry: str = ""  # the same registry as the nodes pull from, if it differs
    # A green commit starts CD (false: CI only, e.g. to check commits without delivering)
    deliver: bool = True

    # CD of the pipeline: the commit's training pipeline is deployed as `ct-training/staging`
    # (version: the commit) to this work pool; a process worker runs it from the git remote.
    work_pool: str = WORK_POOL
    # Who runs the pool's flow runs: "process", this runner's process worker (the stack, the
    # embedded mode); "kubernetes", a Kubernetes worker of its own, each run a Job
    # (deploy/k8s/level2/worker.yaml, level2_cicd/work_pool.py)
    pipeline_worker: Literal["process", "kubernetes"] = "process"
    staging_timeout_seconds: int = 1800  # the staging run, queued and trained

    # The staging service: the candidate served with the commit's code, then checked. As a
    # process of the checkout (the embedded mode), or as a container of the commit's serving
    # image on the stack's network (the container stack, where CI built that image).
    staging: Literal["process", "container"] = "process"
    docker_network: str = ""  # the network a staging container joins (container mode)
    staging_port: int = 8002
    load_connections: int = 4
    load_seconds: float = 5.0
    min_qps: float = 50.0  # the staging load test fails below this throughput ...
    max_p99_ms: float = 250.0  # ... or above this tail latency

    # Production: how a candidate is rolled out (level2_cicd/service.py routes it, by the
    # version's `rollout_kind` tag): "canary", a share of live requests answered by it;
    # "shadow", a copy of every request scored by it, its answers never served; "ab", a
    # share of customers answered by it, judged on their labels. A commit chooses its own
    # with a trailer in its message, `Rollout: shadow`.
    rollout: Literal["canary", "shadow", "ab"] = "canary"
    # A canary or a shadow is judged against the champion every `rollout_check_seconds`,
    # promoted after the window when within these bounds, rolled back (a shadow: discarded)
    # as soon as it is clearly outside them
    rollout_window_seconds: float = 120.0
    rollout_check_seconds: float = 5.0
    # (the bounds' defaults and meaning: level2_cicd/rollout.py's Bounds, ShadowBounds)
    canary_min_requests: int = Bounds.min_requests
    canary_max_error_rate_increase: float = Bounds.max_error_rate_increase
    canary_max_p95_ratio: float = Bounds.max_p95_ratio
    canary_p95_slack_ms: float = Bounds.p95_slack_ms
    canary_max_prediction_psi: float = Bounds.max_prediction_psi
    shadow_max_disagreement: float = ShadowBounds.max_disagreement
    # An A/B test is judged on the labels of each arm's decisions (AbRule: the sample, the
    # test, the margin); it has no window but a time limit
    ab_min_labelled: int = AbRule.min_labelled
    ab_margin: float = AbRule.margin
    ab_alpha: float = AbRule.alpha
    ab_time_limit_seconds: float = AbRule.time_limit_seconds

    # Production: "manual" pauses each delivery before production until approved in the UI
    approval: Literal["auto", "manual"] = "auto"
    approval_timeout_seconds: int = 3600
    production_url: str = "http://127.0.0.1:8001"  # level 2's production service
    # A DNS name with one address per production replica (the stack's network alias
    # `production-replicas`, a headless Service on Kubernetes): CD reads each replica's
    # canary figures and waits for every replica. Empty: production_url is the one replica.
    production_replicas: str = ""
    production_timeout_seconds: int = 60  # for it to serve the promoted version

    # Level 1's loop around the delivered pipeline, served by the CI/CD runner: the landing
    # watcher and monitoring, whose events trigger ct-training/production, and the replay
    # that lands days and sends their traffic (the container stack turns it on)
    ct_loop: bool = False

    # The container stack's first start (level2_cicd/bootstrap.py): days landed, and their seed
    bootstrap_days: int = 10
    bootstrap_seed: int = 42
    # and its first champion's search size: a starting point, not a tuned model (the search
    # was most of a fresh stack's start: n_iter=10 took 47 s of 134 s on 2 cores)
    bootstrap_n_iter: int = 3

    @model_validator(mode="after")
    def _a_cluster_build_needs_a_registry(self) -> CicdSettings:
        if self.image_builder == "kubernetes" and not self.image_registry:
            raise ValueError("L2_IMAGE_BUILDER=kubernetes needs L2_IMAGE_REGISTRY (host[:port])")
        return self

    def commit_image(self, target: str, sha: str, registry: str = "") -> str:
        """A commit's image of a Dockerfile target (names.IMAGES), at `registry` (host[:port])
        where a cluster's builder pushed it, else in the local engine."""
        image = f"{self.image_prefix}/{IMAGES[target]}:{sha[:12]}"
        return f"{registry}/{image}" if registry else image

    def bounds(self) -> Bounds:
        return Bounds(
            min_requests=self.canary_min_requests,
            max_error_rate_increase=self.canary_max_error_rate_increase,
            max_p95_ratio=self.canary_max_p95_ratio,
            p95_slack_ms=self.canary_p95_slack_ms,
            max_prediction_psi=self.canary_max_prediction_psi,
        )

    def shadow_bounds(self) -> ShadowBounds:
        return ShadowBounds(max_disagreement=self.shadow_max_disagreement)

    def ab_rule(self) -> AbRule:
        return AbRule(
            min_labelled=self.ab_min_labelled, margin=self.ab_margin, alpha=self.ab_alpha,
            time_limit_seconds=self.ab_time_limit_seconds,
        )  # fmt: skip


@cache
def get_settings() -> CicdSettings:
    return CicdSettings()
