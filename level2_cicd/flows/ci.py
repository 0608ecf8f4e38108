"""Level 2's CI: what every pushed commit of the ML code goes through before anything of it
is deployed.

    checkout -> lint -> data tests -> model tests -> infrastructure tests -> images

Each check is the commit's own make target (`make lint`, `make test-ml SECTION=...`): what a
developer runs, and what the GitHub Actions workflow calls. The test steps are the ML Test
Score's sections (Breck et al., 2017), one folder each of the project's unit tests: `data`
(the schema, feature invariants, the simulator's scenarios), `model` (training converges,
beats the dummy, no NaN, monotonic in the drivers, slices, the gate), `infrastructure`
(lineage, the prediction API's contract, the pipeline steps on a sample). The images are the
commit's code on the locked environment of `make images`, tagged with the commit, built
through the Docker socket with the docker SDK (on a cluster, which has no socket, by buildah
in a Job: level2_cicd/cluster_images.py) and smoke-tested against the API contract.

The first failing step stops the run: the flow run fails with the step and the end of its
output in its message, and the commit is red. Each run leaves a markdown artifact keyed by the
commit (`ci-<sha>`), so the Prefect UI's Artifacts page shows every commit's result. A green
commit starts its CD run (`cd-<sha>`, level2_cicd/flows/cd.py) unless L2_DELIVER=false.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.deployments import run_deployment
from prefect.states import Completed, Failed

from level2_cicd.names import CD, CI_FLOW, IMAGES
from level2_cicd.remote import git_auth_env
from level2_cicd.report import Report, StepFailed, record
from level2_cicd.settings import CicdSettings, get_settings
from shared.schema import example_record
from shared.waiting import wait_until

SECTIONS = ("data", "model", "infrastructure")  # the ML Test Score's: tests/unit/<section>/
COMMIT_DOCKERFILE = "infra/docker/commit.Dockerfile"

ci_step = task(cache_policy=NO_CACHE)


# What a step's command sees of the runner's environment: a pushed commit's code runs here,
# and the runner's credentials (Prefect, MLflow, databases) are not its business.
STEP_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "OMP_NUM_THREADS")


def _run(command: list[str], cwd: Path, timeout: int, env: dict[str, str] | None = None) -> str:
    """Run a step's command in the checkout, with `env` added to STEP_ENV; raise StepFailed
    with the end of its output. Returns its standard output."""
    env = {k: os.environ[k] for k in STEP_ENV if k in os.environ} | (env or {})
    env |= {"PYTHONPATH": str(cwd), "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        result = subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as error:
        raise StepFailed(f"`{' '.join(command)}` timed out after {timeout} s") from error
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        raise StepFailed(f"`{' '.join(command)}` exited {result.returncode}:\n{output[-3000:]}")
    return result.stdout


def remote_url(remote: str) -> str:
    """The remote as git can reach it from anywhere: a local path made absolute."""
    return remote if "://" in remote or remote.startswith("git@") else str(Path(remote).resolve())


@ci_step
def checkout(remote: str, sha: str, workspace: Path) -> Path:
    """A fresh checkout of exactly the pushed commit."""
    workspace = workspace.resolve()
    target = workspace / sha[:12]
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    _run(["git", "clone", "--quiet", "--no-checkout", remote_url(remote), str(target)],
         workspace, 300, git_auth_env(get_settings()))  # fmt: skip
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


def engine_configured() -> bool:
    """Is there a Docker engine to build with? A socket or DOCKER_HOST means yes: an engine
    that then fails (down, permission denied) fails the step instead of skipping it."""
    return bool(os.environ.get("DOCKER_HOST")) or Path("/var/run/docker.sock").exists()


def images_skipped(settings: CicdSettings) -> str:
    """Why CI builds no images for this runner, or "" when it builds them."""
    if settings.build_images == "never":
        return "L2_BUILD_IMAGES=never"
    if settings.build_images == "auto" and settings.image_builder == "docker":
        return "" if engine_configured() else "no Docker engine"
    return ""


@ci_step
def build_images(checkout: Path, sha: str, settings: CicdSettings) -> list[str]:
    """The commit's images, tagged with the commit: through the Docker socket, or on a
    cluster by buildah in a Job (level2_cicd/cluster_images.py)."""
    if settings.image_builder == "kubernetes":
        from level2_cicd import cluster_images

        job = cluster_images.BuildJobSettings()
        body = cluster_images.build_job(sha, checkout, settings, job)
        log = cluster_images.run_job(body, job.namespace, settings.step_timeout_seconds + 60)
        get_run_logger().info("images built in the cluster:\n%s", log[-1000:])
        return list(cluster_images.image_refs(sha, settings.image_registry, settings).values())
    import docker

    client = docker.from_env(timeout=600)
    tags = []
    for target in IMAGES:
        tag = settings.commit_image(target, sha)
        started = time.monotonic()
        try:
            client.images.build(
                path=str(checkout), dockerfile=COMMIT_DOCKERFILE, target=target, tag=tag,
                buildargs={"BASE_IMAGE": f"{settings.image_prefix}/python-env:{settings.base_tag}",
                           "COMMIT": sha},
                rm=True, forcerm=True,
            )  # fmt: skip
        except docker.errors.BuildError as error:
            log = "".join(chunk.get("stream", "") for chunk in error.build_log)
            raise StepFailed(f"building {tag} failed: {error.msg}\n{log[-2000:]}") from error
        get_run_logger().info("built %s in %.0f s", tag, time.monotonic() - started)
        tags.append(tag)
    return tags


# The smoke test's malformed request: a record the API takes in every field but one, so that
# the 422 is about that field and nothing else.
MALFORMED = [{**example_record(), "age": "old"}]

# Run inside the serving container, against its own port: works the same whether the CI
# runner is on the host or in a container next to it (no published port needed).
PROBE = f"""
import json, urllib.error, urllib.request
base = "http://127.0.0.1:8001"
health = json.load(urllib.request.urlopen(base + "/health", timeout=3))
bad = urllib.request.Request(base + "/predict", data={json.dumps(MALFORMED).encode()!r},
                             headers={{"Content-Type": "application/json"}})
try:
    urllib.request.urlopen(bad, timeout=10)
    status, body = 200, ""
except urllib.error.HTTPError as error:
    status, body = error.code, error.read().decode()
print(json.dumps({{"health": health.get("status"), "status": status, "body": body[:500]}}))
"""


def names_the_malformed_field(status: int, body: str) -> bool:
    """The contract's answer to MALFORMED: a 422 whose only error is the field's type."""
    try:
        [error] = json.loads(body)["detail"]
    except (ValueError, KeyError, TypeError):
        return False
    return status == 422 and error["loc"][-1] == "age" and error["type"] == "int_type"


def probe_answer(output: str, tag: str) -> str:
    """Judge the probe's last line of output (PROBE's JSON)."""
    answer = json.loads(output.strip().splitlines()[-1])
    if not names_the_malformed_field(answer["status"], answer["body"]):
        raise StepFailed(f"{tag}: a malformed request got {answer['status']}: {answer['body']}")
    return f"{tag}: /health {answer['health']}, malformed request 422 naming its field"


@ci_step
def smoke_test_serving(tag: str, sha: str, settings: CicdSettings) -> str:
    """The serving image starts and answers its API contract (without a model yet: health
    says why, and a malformed request gets a 422 naming the field): a container through the
    Docker socket, or on a cluster a Job of the image the nodes pull."""
    if settings.image_builder == "kubernetes":
        from level2_cicd import cluster_images

        job = cluster_images.BuildJobSettings()
        body = cluster_images.contract_job(sha, PROBE, settings, job)
        return probe_answer(cluster_images.run_job(body, job.namespace, 360), tag)
    import docker

    client = docker.from_env(timeout=60)
    container = client.containers.run(
        tag, detach=True,
        environment={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9",
                     "PREDICTION_STORE_URL": "sqlite:////tmp/predictions.db"},
    )  # fmt: skip

    def probed() -> bytes | None:
        container.reload()
        if container.status == "exited":
            raise StepFailed(f"{tag} exited:\n{container.logs(tail=50).decode(errors='replace')}")
        code, output = container.exec_run(["python", "-c", PROBE])
        return output if code == 0 else None

    try:
        try:
            output = wait_until(probed, 90, f"{tag} to answer /health")
        except TimeoutError as error:
            raise StepFailed(
                f"{error}:\n{container.logs(tail=50).decode(errors='replace')}"
            ) from None
        return probe_answer(output.decode(), tag)
    finally:
        container.remove(force=True)


@ci_step
def start_delivery(sha: str) -> str:
    """A green commit goes on to CD: its own flow run (see level2_cicd/flows/cd.py)."""
    run = run_deployment(CD, parameters={"sha": sha}, flow_run_name=f"cd-{sha[:12]}", timeout=0)
    return f"flow run {run.name} of {CD}"


@flow(name=CI_FLOW, flow_run_name="ci-{sha:.12}", log_prints=True)
def ci(sha: str):
    """Check one commit: lint, the ML Test Score's sections, the images; a green commit goes
    on to CD. Fails on the first failing step: a red commit is never deployed."""
    settings = get_settings()
    if not re.fullmatch(r"[0-9a-f]{40}", sha):
        return Failed(message=f"not a full commit sha: {sha!r} (git rev-parse it first)")
    report = Report("CI", sha)
    skipped = ""
    try:
        where = report.attempt("checkout", checkout, settings.remote, sha, settings.workspace)
        report.attempt("lint", lint, where, settings.step_timeout_seconds)
        for section in SECTIONS:
            report.attempt(f"{section} tests", tests, where, section, settings.step_timeout_seconds)
        why = images_skipped(settings)
        if why:
            report.skip("images", why)
            get_run_logger().warning("images not built: %s", why)
            skipped = f" (images skipped: {why})"
        else:
            tags = report.attempt("images", build_images, where, sha, settings)
            report.attempt("serving contract", smoke_test_serving, tags[-1], sha, settings)
    except Exception as error:
        record(report)
        return Failed(message=f"CI red at {report.last_step} for {sha[:12]}: {error}"[:2000])
    delivery = ""
    if settings.deliver:
        delivery = "; CD started: " + report.attempt("start CD", start_delivery, sha)
    record(report)
    return Completed(message=f"CI green for {sha[:12]}{skipped}{delivery}")
