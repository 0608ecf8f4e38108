"""Level 2's deployments and the worker of its pipeline deployments, in one long-running
process (the CI/CD runner):

    ci/level2-ci            on every push to the remote (its post-receive hook calls the API)
    cd/level2-cd            for each commit CI found green
    ct-training/staging     deployed by CD, one version per commit, on the work pool
                            `level2-pipeline`: run by the process worker started here (on
                            Kubernetes, by the pool's own worker: L2_PIPELINE_WORKER)
    ct-training/production  deployed by CD once a commit is delivered, same pool, with level
                            1's triggers (schedule, new data, drift)
    ct-monitoring, ct-watch-landing, ct-replay
                            with L2_CT_LOOP=true: level 1's loop, whose events trigger
                            ct-training/production (the container stack turns it on)

    python -m level2_cicd.flows.deployments

Why a work pool here when level 1 serves its flows: CI and CD are this runner's own code,
but the pipeline they deliver is the pushed commit's. A deployment `from_source` the git
remote at that commit, run by a worker, executes exactly that code, and the deployment's
version says which commit it is.

PREFECT_API_URL must point at the Prefect server. In the container stack the runner has the
Docker socket mounted, so CI builds the commit's images on the stack's own engine.
"""

from __future__ import annotations

import os
import subprocess
import sys

from prefect import serve

from level1_ct.flows.deployments import simulator, watchers
from level1_ct.settings import get_settings as pipeline_settings
from level2_cicd.flows.cd import cd
from level2_cicd.flows.ci import ci
from level2_cicd.names import CD_DEPLOYMENT, CI_DEPLOYMENT
from level2_cicd.remote import git_auth_env
from level2_cicd.settings import get_settings


def deployments() -> list:
    loop = [*watchers(pipeline_settings()), *simulator()] if get_settings().ct_loop else []
    return [
        *loop,
        ci.to_deployment(
            name=CI_DEPLOYMENT,
            concurrency_limit=1,  # commits are checked one at a time, in push order
            description="Lint, test (ML Test Score sections) and build one pushed commit.",
        ),
        cd.to_deployment(
            name=CD_DEPLOYMENT,
            concurrency_limit=1,  # one delivery at a time: they move the same aliases
            description="Deliver a green commit: pipeline to staging, its model to production.",
        ),
    ]


def worker() -> subprocess.Popen:
    """The process worker that runs the pipeline deployments CD creates (one run at a time:
    training takes the cores it can get)."""
    command = [sys.executable, "-m", "prefect", "worker", "start", "--pool",
               get_settings().work_pool, "--type", "process", "--limit", "1"]  # fmt: skip
    return subprocess.Popen(command, env={**os.environ, "PREFECT_WORKER_QUERY_SECONDS": "5"})


def main() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # see level1_ct.flows.deployments
    # The git server's login, for CI's checkouts and the worker's pulls (the flow runs it
    # starts inherit this environment)
    os.environ.update(git_auth_env(get_settings()))
    if get_settings().pipeline_worker == "kubernetes":  # the pool's own worker runs them
        serve(*deployments())
        return
    pipeline_worker = worker()
    try:
        serve(*deployments())
    finally:
        pipeline_worker.terminate()
        pipeline_worker.wait(timeout=30)


if __name__ == "__main__":
    main()
