"""Before a `make level1-*` or `level2-*` command asks the servers for a run: are they there?

Without this, a run asked of a Prefect server that is not running ends in a stack trace, and
one asked of a deployment that no runner serves waits for half an hour. Instead the command
stops at once and says what to start.
"""

from __future__ import annotations

import os
import sys

from shared.servers import is_healthy

EMBEDDED = "the embedded servers: `make mlflow` and `make prefect` (each in its own terminal)"
CONTAINERS = "or the container stack: `make up LEVEL=<n>`, then the command with STACK=docker"


def problems(*, mlflow: bool) -> list[str]:
    """What is not answering (Prefect; MLflow if `mlflow`), each with how to start it."""
    from prefect.settings import PREFECT_API_URL

    found = []
    api = PREFECT_API_URL.value()
    if not api:
        found.append("PREFECT_API_URL is not set: run the command through make, or set it")
    elif not is_healthy(f"{api.rstrip('/')}/health"):
        found.append(f"the Prefect server does not answer at {api}: start `make prefect`")
    tracking = os.environ.get("MLFLOW_TRACKING_URI", "")
    if mlflow and tracking.startswith("http") and not is_healthy(f"{tracking.rstrip('/')}/health"):
        found.append(f"MLflow does not answer at {tracking}: start `make mlflow`")
    return found


def not_served(deployment: str, runner: str) -> str | None:
    """Why no runner would pick up a run of `deployment`, or None when one would."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import DeploymentStatus
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as api:
            found = api.read_deployment_by_name(deployment)
    except ObjectNotFound:
        return f"no deployment {deployment} on the Prefect server: start `make {runner}`"
    if found.status != DeploymentStatus.READY:
        return f"no runner serves {deployment} (it stopped?): start `make {runner}`"
    return None


def require(deployment: str, runner: str, *, mlflow: bool = True) -> None:
    """Exit with what to start unless Prefect (and MLflow) answer and a runner serves
    `deployment`."""
    found = problems(mlflow=mlflow)
    if not found and (why := not_served(deployment, runner)):
        found.append(why)
    if found:
        sys.exit(
            f"cannot start {deployment}:\n"
            + "".join(f"  - {problem}\n" for problem in found)
            + f"Start {EMBEDDED}, then `make {runner}`;\n{CONTAINERS}."
        )
