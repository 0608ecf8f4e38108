"""Retries for the tasks that talk to MLflow: on a transient failure only, never on an answer
(a failed gate, a broken batch). Each retry shows in the Prefect UI as the task's state."""

from __future__ import annotations

import os

from mlflow.exceptions import MlflowException
from prefect import task
from prefect.cache_policies import NO_CACHE

# MLflow's client retries an unreachable server for minutes on its own; let it retry
# briefly and leave longer outages to the tasks' retries, which the UI shows.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")


def is_transient(error: BaseException) -> bool:
    """An error worth retrying: the tracking server unreachable or briefly failing."""
    if isinstance(error, ConnectionError | TimeoutError):
        return True
    if isinstance(error, MlflowException):
        text = str(error)
        return error.error_code == "TEMPORARILY_UNAVAILABLE" or any(
            s in text
            for s in ("Max retries exceeded", "Connection refused", "timed out", "status code 5")
        )
    return type(error).__module__.startswith(("requests", "urllib3"))


def _retry_if_transient(task, task_run, state) -> bool:
    return is_transient(state.result(raise_on_failure=False))


# A task that talks to MLflow (`@io_task`) and a pure step (`@step`); neither caches results,
# which are DataFrames and models held in memory for the run.
io_task = task(
    cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[2, 10, 30],
    retry_condition_fn=_retry_if_transient,
)  # fmt: skip
step = task(cache_policy=NO_CACHE)
