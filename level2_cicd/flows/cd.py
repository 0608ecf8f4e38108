"""Level 2's CD: what a commit that passed CI goes through on its way to production.

    deploy pipeline -> staging run (level 1's gate) -> staging service -> approval
        -> rollout in production (canary, shadow or A/B) -> promote (or roll back)
        -> production serves it

1. **Deploy the pipeline.** The commit's training pipeline (level 1's flow, as the commit has
   it) is deployed to Prefect as `ct-training/staging`, versioned by the commit, on a process
   work pool. Its worker pulls exactly that commit from the git remote for each run.
2. **Staging run.** The deployment runs on the newest data with `promote_on_pass=False`:
   level 1's gate judges the candidate against the champion on the same hold-out. A rejected
   candidate stops the delivery here; production never sees it.
3. **Staging service.** The candidate (alias `candidate`) is served by the commit's own
   serving code (in the container stack: a container of the serving image CI built for the
   commit), which must answer its API contract and a short load test within the throughput
   and p99 thresholds.
4. **Approval.** With L2_APPROVAL=manual the run pauses until a person approves it in the
   Prefect UI (Google's level 2 has a manual gate before production as an option).
5. **Rollout.** The candidate's version gets the tag `rollout_kind` (L2_ROLLOUT, or the
   commit's `Rollout:` trailer), then the registry alias `canary`: the production service
   (level2_cicd/service.py) loads it as a second arm and counts each arm. Every
   `rollout_check_seconds` CD judges the arms by the kind's rule (level2_cicd/rollout.py):
   - canary: a share of live traffic gets its answers; errors, p95 latency, the
     predictions' distribution against the champion's;
   - shadow: a copy of every request, answers never served; the canary's checks on what it
     would have answered, and how many of the champion's decisions it would change;
   - ab: a share of customers gets its answers; each arm's decisions against their labels,
     read from the prediction store as they land (a stated test, a time limit).
   Clearly worse: rolled back at once (the alias goes, and CD waits until production says
   no customer is routed to the candidate any more; a shadow is discarded). Within the
   bounds (for the whole window; for A/B, once the test says so): promoted.
6. **Promote.** `champion` moves to the candidate (the old one keeps `previous-champion`);
   the production service swaps it in and CD waits until it answers with it.
7. **Production pipeline.** The commit's pipeline is deployed as `ct-training/production`
   (version: the commit) with level 1's triggers: its schedule, new data landing, drift. From
   then on the delivered code is what retrains in production (Google's automated
   triggering); such a retrain is judged by level 1's gate and promoted by it, as at level 1.

Every step is a row of the `cd-<sha>` artifact, every rollout check a line of the flow run's
log, and the version's MLflow tags say where its rollout stands (`rollout`: staging, canary,
shadow, ab, promoted, rolled back, stopped), how (`rollout_kind`), with the decision
(`rollout_decision`), its reason and the customers who got its answers
(`rollout_exposed_customers`).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import httpx
from mlflow import MlflowClient
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.deployments import run_deployment
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.runner.storage import GitRepository
from prefect.states import Completed, Failed

# The runner's own level-1 modules are imported before a commit's copy of the training flow
# is loaded (to deploy it): that load then reuses them instead of importing the checkout's.
from level1_ct import prediction_log, registry
from level1_ct.flows.deployments import training_triggers
from level1_ct.flows.training import training_pipeline
from level1_ct.service import served_version
from level1_ct.settings import PipelineSettings
from level1_ct.settings import get_settings as pipeline_settings
from level2_cicd.flows.ci import checkout, remote_url
from level2_cicd.names import (
    CANARY,
    CANDIDATE,
    CD_FLOW,
    ENTRYPOINT,
    PRODUCTION,
    ROLLOUT_KIND,
    ROLLOUT_KINDS,
    STAGING,
)
from level2_cicd.replicas import replica_urls
from level2_cicd.report import Report, StepFailed, record
from level2_cicd.rollout import (
    ArmStats,
    Decision,
    Labelled,
    decide,
    decide_ab,
    decide_shadow,
    pooled,
)
from level2_cicd.settings import CicdSettings, get_settings
from shared import http_client
from shared.loadtest import load
from shared.schema import example_record
from shared.servers import is_healthy, running
from shared.waiting import wait_until

cd_step = task(cache_policy=NO_CACHE)


def job_variables(sha: str) -> dict:
    """What a pipeline run of the commit is told beyond its pool's template (a process or a
    Kubernetes pool): the commit, which the registered version records."""
    return {"env": {"CODE_VERSION": sha}}


def pipeline_deployment(sha: str, settings: CicdSettings, name: str, **options):
    """The commit's training pipeline as deployment `ct-training/<name>`: version = the
    commit, on the work pool, its code pulled from the git remote at that commit."""
    source = GitRepository(url=remote_url(settings.remote), commit_sha=sha)
    pipeline = training_pipeline.from_source(source=source, entrypoint=ENTRYPOINT)
    # to_deployment + apply, not deploy(): Prefect 3.8.8's deploy() asks for the pool's
    # workers with a request its own server refuses (422 on a null `limit`).
    return pipeline.to_deployment(
        name=name,
        work_pool_name=settings.work_pool,
        version=sha[:12],
        job_variables=job_variables(sha),
        concurrency_limit=1,
        tags=["level2", name],
        **options,
    )


@cd_step
def deploy_pipeline(sha: str, settings: CicdSettings) -> str:
    """`ct-training/staging`, the commit's pipeline for its staging run."""
    pipeline_deployment(
        sha, settings, STAGING,
        parameters={"reason": f"staging {sha[:12]}", "promote_on_pass": False},
        description=f"The training pipeline of commit {sha[:12]}, run by CD before production.",
    ).apply()  # fmt: skip
    return f"{training_pipeline.name}/{STAGING} version {sha[:12]} on pool {settings.work_pool}"


@cd_step
def deploy_production_pipeline(sha: str, settings: CicdSettings, pipeline: PipelineSettings) -> str:
    """`ct-training/production`: from now on the commit's pipeline is the one level 1's
    triggers run (schedule, new data, drift), replacing the previous commit's."""
    pipeline_deployment(
        sha, settings, PRODUCTION,
        **training_triggers(pipeline),
        description=f"The production training pipeline: commit {sha[:12]}, delivered by CD. "
        "Retrains on its schedule, on new data and on drift; the gate promotes.",
    ).apply()  # fmt: skip
    return f"{training_pipeline.name}/{PRODUCTION} version {sha[:12]}, triggers: schedule, new data, drift"


@dataclass(frozen=True)
class Candidate:
    version: str
    summary: str


@cd_step
def run_staging(sha: str, settings: CicdSettings, pipeline: PipelineSettings) -> Candidate:
    """Run the staging deployment and find what it registered; only a version that passed
    level 1's gate becomes the `candidate`."""
    run = run_deployment(
        f"{training_pipeline.name}/{STAGING}",
        flow_run_name=f"staging-{sha[:12]}",
        timeout=settings.staging_timeout_seconds,
    )
    message = (run.state.message or "") if run.state else ""
    if not (run.state and run.state.is_final()):
        raise StepFailed(f"{run.name} unfinished after {settings.staging_timeout_seconds} s")
    if not run.state.is_completed():
        raise StepFailed(f"{run.name} {run.state.name.lower()}: {message}")
    client = MlflowClient(pipeline.mlflow_tracking_uri)
    found = client.search_model_versions(
        f"name = '{pipeline.model_name}' and tags.prefect_flow_run_id = '{run.id}'"
    )
    if not found:
        raise StepFailed(f"{run.name} registered no model: {message}")
    version = str(found[0].version)
    client.set_model_version_tag(pipeline.model_name, version, "cd_commit", sha)
    if found[0].tags.get("gate") != "passed":
        client.set_model_version_tag(pipeline.model_name, version, "rollout", "stopped at gate")
        raise StepFailed(f"stopped by level 1's gate in {run.name}: {message}")
    client.set_registered_model_alias(pipeline.model_name, CANDIDATE, version)
    client.set_model_version_tag(pipeline.model_name, version, "rollout", "staging")
    return Candidate(version, f"{run.name}: version {version} passed the gate")


def check_contract(url: str, version: str) -> None:
    """The prediction API as its clients use it, answered by the candidate."""
    with http_client.client(url, timeout=10) as api:
        shown = api.get("/model")
        if shown.status_code != 200 or shown.json().get("version") != version:
            raise StepFailed(f"GET /model: {shown.status_code} {shown.text[:200]}")
        one = api.post("/predict", json=example_record())
        body = one.json() if one.status_code == 200 else {}
        probability = (body.get("predictions") or [{}])[0].get("churn_probability", -1)
        if body.get("model_version") != version or not 0 <= probability <= 1:
            raise StepFailed(f"POST /predict of the example: {one.status_code} {one.text[:200]}")
        many = api.post("/predict", json=[example_record()] * 3)
        if many.status_code != 200 or len(many.json()["predictions"]) != 3:
            raise StepFailed(f"POST /predict of 3 records: {many.status_code} {many.text[:200]}")
        bad = api.post("/predict", json={**example_record(), "age": "old"})
        if bad.status_code != 422 or "age" not in bad.text:
            raise StepFailed(f"a malformed record got {bad.status_code}: {bad.text[:200]}")


# What a staging container is told (the runner's MLflow login included, when it has one)
STAGING_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
               "MODEL_NAME")  # fmt: skip


@contextmanager
def staging_process(where: Path, settings: CicdSettings) -> Iterator[str]:
    """The embedded mode: the commit's serving code as a process (PYTHONPATH: its checkout)."""
    url = f"http://127.0.0.1:{settings.staging_port}"
    env = {
        **os.environ,
        "PYTHONPATH": str(where),  # the commit's code, not the runner's
        "L1_SERVE_ALIAS": CANDIDATE,
        "L1_SERVE_HOST": "127.0.0.1",
        "L1_SERVE_PORT": str(settings.staging_port),
        "PREDICTION_STORE_URL": f"sqlite:///{where / 'staging-predictions.db'}",
    }
    command = [sys.executable, "-m", "level1_ct.service"]
    with running(command, f"{url}/health", where / "staging-service.log", env=env, timeout=120):
        yield url


@contextmanager
def staging_container(sha: str, settings: CicdSettings) -> Iterator[str]:
    """The container stack: the commit's serving image (built by CI) as a container on the
    stack's network, reached by its name; removed afterwards, its log kept in the step's."""
    import docker

    client = docker.from_env(timeout=60)
    name = f"level2-staging-{sha[:12]}"
    for stale in client.containers.list(all=True, filters={"name": f"^{name}$"}):
        stale.remove(force=True)  # a retried delivery of the same commit
    image = settings.commit_image("serving", sha)
    try:
        client.images.get(image)  # not found: `run` would try to pull it, from Docker Hub
    except docker.errors.ImageNotFound as error:
        raise StepFailed(f"{image} is missing: CI builds it (L2_BUILD_IMAGES)") from error
    container = client.containers.run(
        image, name=name, detach=True, network=settings.docker_network or None,
        environment={**{k: os.environ[k] for k in STAGING_ENV if k in os.environ},
                     "L1_SERVE_ALIAS": CANDIDATE,
                     "PREDICTION_STORE_URL": "sqlite:////tmp/staging-predictions.db"},
    )  # fmt: skip
    url = f"http://{name}:8001"  # the serving image's port

    def healthy() -> bool:
        container.reload()
        if container.status == "exited":
            raise StepFailed(f"{name} exited:\n{container.logs(tail=30).decode(errors='replace')}")
        return is_healthy(f"{url}/health")

    try:
        try:
            wait_until(healthy, 120, f"{name} to answer /health")
        except TimeoutError as error:
            raise StepFailed(
                f"{error}:\n{container.logs(tail=30).decode(errors='replace')}"
            ) from None
        yield url
    finally:
        container.remove(force=True)


@cd_step
def staging_service(candidate: Candidate, sha: str, where: Path, settings: CicdSettings) -> str:
    """The commit's serving code serves the candidate; contract, then load."""
    if settings.staging == "container":
        staging = staging_container(sha, settings)
    else:
        staging = staging_process(where, settings)
    with staging as url:
        check_contract(url, candidate.version)
        body, connections, seconds = (
            example_record(),
            settings.load_connections,
            settings.load_seconds,
        )
        with ThreadPoolExecutor(1) as thread:  # its own event loop, whatever runs this task
            result = thread.submit(
                asyncio.run, load(f"{url}/predict", body, connections, seconds)
            ).result()
    get_run_logger().info("staging load test: %s", result.summary)
    problems = [
        f"{result.errors} failed requests" if result.errors else "",
        f"{result.rps:.0f} req/s < {settings.min_qps:.0f}" if result.rps < settings.min_qps else "",
        f"p99 {result.p99_ms:.0f} ms > {settings.max_p99_ms:.0f}"
        if result.p99_ms > settings.max_p99_ms
        else "",
    ]
    if any(problems):
        raise StepFailed(f"load test ({result.summary}): " + "; ".join(p for p in problems if p))
    return f"contract answered; load: {result.summary}"


class Approval(RunInput):
    """What the person who approves a release to production answers in the Prefect UI."""

    approve: bool
    note: str = ""


def approval(candidate: Candidate, settings: CicdSettings) -> str:
    """Pause the CD run until a person answers (a flow can pause, a task cannot: this step
    is the flow's own code)."""
    get_run_logger().warning(
        "version %s waits for approval: resume this flow run in the Prefect UI", candidate.version
    )
    answer = pause_flow_run(
        wait_for_input=Approval, timeout=settings.approval_timeout_seconds, poll_interval=2
    )
    if not answer.approve:
        raise StepFailed(f"not approved: {answer.note or 'no reason given'}")
    return f"approved: {answer.note}" if answer.note else "approved"


def production_rollout(settings: CicdSettings) -> dict:
    """The rollout figures of every production replica, pooled (level2_cicd/rollout.py)."""
    figures = []
    for url in replica_urls(settings):
        response = httpx.get(f"{url}/rollout", timeout=5)
        response.raise_for_status()
        figures.append(response.json())
    return pooled(figures)


def arm(figures: dict) -> ArmStats:
    return ArmStats(figures["requests"], figures["errors"], figures["p95_ms"],
                    tuple(figures["histogram"]))  # fmt: skip


def rollout_kind(where: Path, sha: str, settings: CicdSettings, override: str | None = None) -> str:
    """How the commit's candidate is rolled out: `override` (this delivery's, by hand), else
    its message's `Rollout:` trailer (the last one), else L2_ROLLOUT. An unknown kind stops
    the delivery before staging."""
    if override:
        return override
    trailers = subprocess.run(
        ["git", "-C", str(where), "log", "-1", "--format=%(trailers:key=Rollout,valueonly)", sha],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    if not trailers:
        return settings.rollout
    kind = trailers[-1].lower()
    if kind not in ROLLOUT_KINDS:
        raise StepFailed(f"the commit's 'Rollout: {kind}' is not one of {', '.join(ROLLOUT_KINDS)}")
    return kind


STEP_OF = {"canary": "canary", "shadow": "shadow", "ab": "A/B test"}  # the report's row


def labelled(
    candidate: str, since: datetime, pipeline: PipelineSettings, champion: bool = False
) -> Labelled:
    """One A/B arm's decisions since `since` whose labels have landed, from the prediction
    store (its labels table is level 1's monitoring's, filled as labels land): the
    candidate's, or (`champion`) every other version's, since a retrain may promote a new
    champion while the test runs."""
    engine = prediction_log.connect(pipeline.prediction_store_url)
    return Labelled(*prediction_log.decision_outcomes(engine, since, candidate, others=champion))


def judge(kind: str, figures: dict, candidate: Candidate, started: float, since: datetime,
          settings: CicdSettings, pipeline: PipelineSettings) -> Decision:  # fmt: skip
    """The kind's rollout rule on production's figures (level2_cicd/rollout.py)."""
    elapsed = time.monotonic() - started
    over = elapsed >= settings.rollout_window_seconds
    champion_arm, candidate_arm = arm(figures["champion"]), arm(figures["canary"])
    if kind == "shadow":
        return decide_shadow(
            champion_arm, candidate_arm, figures["canary"]["disagreements"],
            settings.bounds(), settings.shadow_bounds(), over,
        )  # fmt: skip
    if kind == "ab":
        return decide_ab(
            labelled(candidate.version, since, pipeline, champion=True),
            labelled(candidate.version, since, pipeline), settings.ab_rule(), elapsed,
        )  # fmt: skip
    return decide(champion_arm, candidate_arm, settings.bounds(), over)


@cd_step
def roll_out(
    candidate: Candidate, kind: str, settings: CicdSettings, pipeline: PipelineSettings
) -> Decision:
    """Roll the candidate out to production the `kind` way and judge it live."""
    logger, name = get_run_logger(), pipeline.model_name
    client = MlflowClient(pipeline.mlflow_tracking_uri)
    client.set_model_version_tag(name, candidate.version, ROLLOUT_KIND, kind)  # before the alias
    client.set_registered_model_alias(name, CANARY, candidate.version)
    client.set_model_version_tag(name, candidate.version, "rollout", kind)
    since = datetime.now(UTC)
    try:
        wait_until(lambda: production_rollout(settings)["counted_versions"] == [candidate.version],
                   settings.production_timeout_seconds, f"production routing to {kind} version "
                   f"{candidate.version}")  # fmt: skip
    except TimeoutError as error:
        raise StepFailed(str(error)) from None
    started = time.monotonic()
    while True:
        time.sleep(settings.rollout_check_seconds)
        figures = production_rollout(settings)
        decision = judge(kind, figures, candidate, started, since, settings, pipeline)
        logger.info("%s %s after %.0f s: %s (candidate %s; champion %s; customers exposed %d)",
                    kind, candidate.version, time.monotonic() - started, decision.summary,
                    figures["canary"], figures["champion"], figures["exposed_customers"])  # fmt: skip
        if decision.action != "wait":
            break
    exposed = str(figures["exposed_customers"])
    client.set_model_version_tag(name, candidate.version, "rollout_exposed_customers", exposed)
    client.set_model_version_tag(name, candidate.version, "rollout_decision", decision.summary)
    if decision.action == "rollback":
        undone = "discarded" if kind == "shadow" else "rolled back"
        raise StepFailed(f"{STEP_OF[kind]} {undone}: {'; '.join(decision.reasons)} "
                         f"({exposed} customers got its answers)")  # fmt: skip
    return decision


@cd_step
def promote(candidate: Candidate, sha: str, pipeline: PipelineSettings) -> str:
    client = MlflowClient(pipeline.mlflow_tracking_uri)
    previous = registry.promote(client, pipeline.model_name, candidate.version)
    for alias in (CANDIDATE, CANARY):  # production's canary arm is unloaded
        client.delete_registered_model_alias(pipeline.model_name, alias)
    client.set_model_version_tag(pipeline.model_name, candidate.version, "rollout", "promoted")
    return f"version {candidate.version} is the champion (was {previous or 'none'})"


@cd_step
def production_serves(candidate: Candidate, settings: CicdSettings) -> str:
    """Wait until every production replica answers with the new champion."""
    try:
        wait_until(lambda: {served_version(url) for url in replica_urls(settings)}
                   == {candidate.version},
                   settings.production_timeout_seconds,
                   f"{settings.production_url} serving version {candidate.version}")  # fmt: skip
    except TimeoutError as error:
        raise StepFailed(str(error)) from None
    return f"{settings.production_url} serves version {candidate.version}"


def canary_unloaded(candidate: Candidate, settings: CicdSettings) -> bool:
    """Has production stopped routing customers to the candidate's canary arm? It follows the
    alias on its own poll, so a rollback is done only once production says so."""
    try:
        return wait_until(
            lambda: candidate.version not in production_rollout(settings)["canary_versions"],
            settings.production_timeout_seconds, "production to unload the canary arm",
            ignoring=(httpx.HTTPError,),
        )  # fmt: skip
    except TimeoutError:
        return False


def abandon(candidate: Candidate, step: str, reason: str, pipeline: PipelineSettings) -> None:
    """A candidate that did not make it: off its aliases (production's canary arm is
    unloaded: the rollback), with the reason."""
    client = MlflowClient(pipeline.mlflow_tracking_uri)
    current = registry.aliases(client, pipeline.model_name)
    for alias in (CANARY, CANDIDATE):
        if current.get(alias) == candidate.version:
            client.delete_registered_model_alias(pipeline.model_name, alias)
    outcome = "rolled back" if step in STEP_OF.values() else f"stopped at {step}"
    client.set_model_version_tag(pipeline.model_name, candidate.version, "rollout", outcome)
    client.set_model_version_tag(
        pipeline.model_name, candidate.version, "rollout_reason", reason[:5000]
    )


@flow(name=CD_FLOW, flow_run_name="cd-{sha:.12}", log_prints=True)
def cd(
    sha: str,
    approval_mode: Literal["auto", "manual"] | None = None,
    rollout: Literal["canary", "shadow", "ab"] | None = None,
):
    """Deliver one commit that passed CI: its pipeline to staging, its model through staging
    to production. Stops at the first step that says no; production stays as it was.
    `approval_mode` overrides L2_APPROVAL for this run; `rollout`, the commit's `Rollout:`
    trailer and L2_ROLLOUT."""
    settings, pipeline = get_settings(), pipeline_settings()
    report = Report("CD", sha)
    candidate = None
    try:
        where = report.attempt("checkout", checkout, settings.remote, sha, settings.workspace)
        kind = report.attempt("rollout kind", rollout_kind, where, sha, settings, rollout)
        report.attempt("deploy pipeline", deploy_pipeline, sha, settings)
        candidate = report.attempt("staging run", run_staging, sha, settings, pipeline)
        report.attempt("staging service", staging_service, candidate, sha, where, settings)
        if (approval_mode or settings.approval) == "manual":
            report.attempt("approval", approval, candidate, settings)
        else:
            report.skip("approval", "automatic (L2_APPROVAL=auto)")
        report.attempt(STEP_OF[kind], roll_out, candidate, kind, settings, pipeline)
        report.attempt("promote", promote, candidate, sha, pipeline)
    except Exception as error:
        if candidate is not None:
            abandon(candidate, report.last_step, str(error), pipeline)
            rolled_out = report.last_step in STEP_OF.values()
            if rolled_out and not canary_unloaded(candidate, settings):
                error = (f"{error}; production still routes to canary version "
                         f"{candidate.version} after {settings.production_timeout_seconds} s")  # fmt: skip
        record(report)
        return Failed(message=f"CD stopped at {report.last_step} for {sha[:12]}: {error}"[:2000])
    try:
        report.attempt("production", production_serves, candidate, settings)
        report.attempt("production pipeline", deploy_production_pipeline, sha, settings, pipeline)
    except Exception as error:
        record(report)
        return Failed(message=f"version {candidate.version} promoted, but: {error}"[:2000])
    record(report)
    return Completed(message=f"delivered {sha[:12]}: version {candidate.version} in production")
