"""Level 2's deployments, served by one long-running process (the CI/CD runner):

    ci/level2-ci    on every push to the remote (its post-receive hook calls the Prefect API)

    python -m level2_cicd.flows.deployments

PREFECT_API_URL must point at the Prefect server. In the container stack the runner has the
Docker socket mounted, so CI builds the commit's images on the stack's own engine.
"""

from __future__ import annotations

import os

from prefect import serve

from level2_cicd.flows.ci import ci
from level2_cicd.hook import DEPLOYMENT


def deployments() -> list:
    flow_name, name = DEPLOYMENT.split("/")
    assert flow_name == ci.name
    return [
        ci.to_deployment(
            name=name,
            concurrency_limit=1,  # commits are checked one at a time, in push order
            description="Lint, test (ML Test Score sections) and build one pushed commit.",
        )
    ]


def main() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # see level1_ct.flows.deployments
    serve(*deployments())


if __name__ == "__main__":
    main()
