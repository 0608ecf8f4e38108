"""Level 2's CI: what every pushed commit of the ML code goes through before anything of it
is deployed.

    checkout -> lint -> data tests -> model tests -> infrastructure tests -> images

Each check is the commit's own make target (`make lint`, `make test-ml SECTION=...`): what a
developer runs, and what the GitHub Actions workflow calls. The test steps are the ML Test
Score's sections (Breck et al., 2017), as pytest markers on the project's own tests: `data`
(the schema, feature invariants, the simulator's scenarios), `model` (training converges,
beats the dummy, no NaN, monotonic in the drivers, slices, the gate), `infrastructure`
(lineage, the prediction API's contract, the pipeline steps on a sample). The images are the
commit's code on the locked environment of `make images`, tagged with the commit, built
through the Docker socket with the docker SDK and smoke-tested against the API contract.

The first failing step stops the run: the flow run fails with the step and the end of its
output in its message, and the commit is red. Each run leaves a markdown artifact keyed by the
commit (`ci-<sha>`), so the Prefect UI's Artifacts page shows every commit's result.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed

from level2_cicd.settings import CicdSettings, get_settings

SECTIONS = {
    "data": "data tests: the schema, feature invariants, the simulator's scenarios",
    "model": "model tests: convergence, the baseline, NaN, monotonicity, slices, the gate",
    "infrastructure": "infrastructure tests: lineage, the API contract, pipeline steps",
}
COMMIT_DOCKERFILE = "infra/docker/commit.Dockerfile"
IMAGES = ("pipeline", "serving")  # the Dockerfile's targets

ci_step = task(cache_policy=NO_CACHE)


class StepFailed(RuntimeError):
    """A CI step failed: the commit is red and nothing of it is deployed."""


@dataclass
class CiReport:
    sha: str
    steps: list[tuple[str, str, str]] = field(default_factory=list)  # (step, result, detail)

    @property
    def green(self) -> bool:
        return all(result != "failed" for _, result, _ in self.steps)

    def markdown(self) -> str:
        verdict = "green" if self.green else "red"
        rows = "\n".join(f"| {s} | {r} | {d} |" for s, r, d in self.steps)
        return (
            f"# CI for commit `{self.sha[:12]}`: **{verdict}**\n\n"
            f"| step | result | detail |\n|---|---|---|\n{rows}\n"
        )


def _run(command: list[str], cwd: Path, timeout: int) -> str:
    """Run a step's command in the checkout; raise StepFailed with the end of its output."""
    env = {**os.environ, "PYTHONPATH": str(cwd), "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        result = subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as error:
        raise StepFailed(f"`{' '.join(command)}` timed out after {timeout} s") from error
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        raise StepFailed(f"`{' '.join(command)}` exited {result.returncode}:\n{output[-3000:]}")
    return output


@ci_step
def checkout(remote: str, sha: str, workspace: Path) -> Path:
    """A fresh checkout of exactly the pushed commit."""
    target = workspace / sha[:12]
    if target.exists():
        subprocess.run(["rm", "-rf", str(target)], check=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    _run(["git", "clone", "--quiet", "--no-checkout", remote, str(target)], workspace, 300)
    _run(["git", "-c", "advice.detachedHead=false", "checkout", "--quiet", sha], target, 300)
    subject = _run(["git", "log", "-1", "--format=%h %an: %s"], target, 30)
    get_run_logger().info("checked out %s", subject)
    return target


def make(target: str, *assignments: str) -> list[str]:
    """`make <target>` of the commit's own Makefile, with the runner's environment as the
    venv (the commit's lock is the runner's: a push changes code, `make images` the lock)."""
    venv = Path(sys.prefix)
    return ["make", "--no-print-directory", "-o", f"{venv}/.installed", f"VENV={venv}",
            target, *assignments]  # fmt: skip


@ci_step
def lint(checkout: Path, timeout: int) -> str:
    """`make lint`: ruff's rules and format."""
    _run(make("lint"), checkout, timeout)
    return "make lint: clean"


@ci_step
def tests(checkout: Path, section: str, timeout: int) -> str:
    """`make test-ml SECTION=<section>`: one ML Test Score section of the commit's tests."""
    output = _run(make("test-ml", f"SECTION={section}"), checkout, timeout)
    summary = output.strip().splitlines()[-1] if output.strip() else ""
    get_run_logger().info("%s tests: %s", section, summary)
    if " passed" not in summary:
        raise StepFailed(f"no {section} tests ran: {summary}")
    return summary.strip("= ")


def engine_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=5).ping()
        return True
    except Exception:  # noqa: BLE001 - any failure means: no usable engine
        return False


@ci_step
def build_images(checkout: Path, sha: str, settings: CicdSettings) -> list[str]:
    """The commit's images, tagged with the commit, through the Docker socket."""
    import docker

    client = docker.from_env(timeout=600)
    tags = []
    for target in IMAGES:
        tag = f"{settings.image_prefix}/{target}:{sha[:12]}"
        started = time.monotonic()
        try:
            client.images.build(
                path=str(checkout), dockerfile=COMMIT_DOCKERFILE, target=target, tag=tag,
                buildargs={"BASE_IMAGE": f"{settings.image_prefix}/python:{settings.base_tag}",
                           "CODE_VERSION": sha},
                rm=True, forcerm=True,
            )  # fmt: skip
        except docker.errors.BuildError as error:
            log = "".join(chunk.get("stream", "") for chunk in error.build_log)
            raise StepFailed(f"building {tag} failed: {error.msg}\n{log[-2000:]}") from error
        get_run_logger().info("built %s in %.0f s", tag, time.monotonic() - started)
        tags.append(tag)
    return tags


@ci_step
def smoke_test_serving(tag: str) -> str:
    """The serving image starts and answers its API contract (without a model yet: health
    says why, and a malformed request gets a 422 naming the field)."""
    import docker

    client = docker.from_env(timeout=60)
    container = client.containers.run(
        tag, detach=True, ports={"8001/tcp": ("127.0.0.1", None)},
        environment={"L1_SERVE_HOST": "0.0.0.0", "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",
                     "PREDICTION_STORE_URL": "sqlite:////tmp/predictions.db"},
    )  # fmt: skip
    try:
        url = _published_url(container)
        deadline = time.monotonic() + 90
        while True:
            try:
                health = httpx.get(f"{url}/health", timeout=3)
                break
            except httpx.HTTPError:
                container.reload()
                if container.status == "exited" or time.monotonic() > deadline:
                    logs = container.logs(tail=50).decode(errors="replace")
                    raise StepFailed(f"{tag} did not answer /health:\n{logs}") from None
                time.sleep(1)
        bad = httpx.post(f"{url}/predict", json={"records": [{"age": "old"}]}, timeout=10)
        if bad.status_code != 422 or "age" not in bad.text:
            raise StepFailed(f"{tag}: a malformed request got {bad.status_code}: {bad.text}")
        return f"{tag}: /health {health.json().get('status')}, malformed request 422"
    finally:
        container.remove(force=True)


def _published_url(container) -> str:
    for _ in range(20):
        container.reload()
        bindings = container.attrs["NetworkSettings"]["Ports"].get("8001/tcp")
        if bindings:
            return f"http://127.0.0.1:{bindings[0]['HostPort']}"
        time.sleep(0.5)
    raise StepFailed("the serving container published no port")


@ci_step
def record(report: CiReport) -> None:
    """The commit's result as an artifact keyed by the commit."""
    create_markdown_artifact(
        key=f"ci-{report.sha[:12]}",
        markdown=report.markdown(),
        description=f"CI of commit {report.sha[:12]}",
    )


def _attempt(report: CiReport, name: str, fn, *args, **kwargs):
    try:
        value = fn(*args, **kwargs)
    except StepFailed as error:
        report.steps.append((name, "failed", str(error).splitlines()[0][:200]))
        raise
    report.steps.append((name, "passed", value if isinstance(value, str) else ""))
    return value


@flow(name="ci", flow_run_name="ci-{sha:.12}", log_prints=True)
def ci(sha: str):
    """Check one commit: lint, the ML Test Score's sections, the images. Fails on the first
    failing step: a red commit is never deployed."""
    settings = get_settings()
    report = CiReport(sha=sha)
    try:
        where = _attempt(report, "checkout", checkout, settings.remote, sha, settings.workspace)
        _attempt(report, "lint", lint, where, settings.step_timeout_seconds)
        for section in SECTIONS:
            _attempt(report, f"{section} tests", tests, where, section,
                     settings.step_timeout_seconds)  # fmt: skip
        if settings.build_images == "never" or (
            settings.build_images == "auto" and not engine_answers()
        ):
            why = (
                "L2_BUILD_IMAGES=never" if settings.build_images == "never" else "no Docker engine"
            )
            report.steps.append(("images", "skipped", why))
            get_run_logger().warning("images not built: %s", why)
        else:
            tags = _attempt(report, "images", build_images, where, sha, settings)
            _attempt(report, "serving contract", smoke_test_serving, tags[-1])
    except StepFailed as error:
        record(report)
        step_name = report.steps[-1][0]
        return Failed(message=f"CI red at {step_name} for {sha[:12]}: {error}"[:2000])
    record(report)
    return Completed(message=f"CI green for {sha[:12]}")
