"""Helpers for level 1's tests: real servers (MLflow, Prefect, the service) as local processes,
and the pipeline's settings pointed at them."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

from level1_ct import registry
from level1_ct.settings import get_settings
from shared.features import SKOPS_TRUSTED_TYPES
from shared.servers import PrefectServer, free_port, prefect_server, running
from shared.waiting import wait_until


@contextmanager
def pipeline_env(prefect: PrefectServer, env: dict[str, str]) -> Iterator[None]:
    """The flows' environment for the block (`env`: L1_*, MLFLOW_TRACKING_URI, ...) and
    the Prefect API of `prefect`."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        patch.setenv("PREFECT_API_URL", prefect.api_url)
        get_settings.cache_clear()
        with temporary_settings(
            updates={PREFECT_API_URL: prefect.api_url, PREFECT_HOME: str(prefect.home)}
        ):
            yield
    get_settings.cache_clear()


@contextmanager
def prefect(root: Path) -> Iterator[PrefectServer]:
    """A Prefect server for the block. On the way out, this process's event and log workers
    are flushed and stopped while the server still answers: Prefect keeps one of each per
    process, bound to the first server it talked to, so a worker left over would send the
    next server's task-run events to this one once it is gone (and block the interpreter's
    exit retrying them)."""
    with prefect_server(PrefectServer(home=root / "prefect", port=free_port())) as server:
        try:
            yield server
        finally:
            for worker in (EventsWorker, APILogWorker):
                worker.drain_all(timeout=30, at_exit=False)


def register_champion(tracking_uri: str, pipeline: Any, name: str = "churn", example=None) -> str:
    """Log and register a fitted Pipeline, and make it the champion; returns its version."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("level1-test")
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            pipeline, name="model", input_example=example, skops_trusted_types=SKOPS_TRUSTED_TYPES
        )
    client = MlflowClient(tracking_uri)
    version = registry.register(client, name, info.model_uri, {"data_version": "sha256:test"})
    registry.promote(client, name, version)
    return version


@contextmanager
def level1_service(tmp: Path, tracking_uri: str, **settings: str) -> Iterator[str]:
    """The level-1 service as a real uvicorn process; yields its base URL."""
    with service_process("level1_ct.service", "L1_SERVE_", tmp, tracking_uri, settings) as url:
        yield url


@contextmanager
def service_process(
    module: str, prefix: str, tmp: Path, tracking_uri: str, settings: dict[str, str]
) -> Iterator[str]:
    """A prediction service `python -m <module>`, reading `<prefix>*` settings, as a real
    uvicorn process on a free port; yields its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "PREDICTION_STORE_URL": f"sqlite:///{tmp / 'predictions.db'}",
        f"{prefix}PORT": str(port),
        f"{prefix}POLL_SECONDS": "0.5",
        f"{prefix}LOG_FLUSH_SECONDS": "0.2",
        **{f"{prefix}{k.upper()}": v for k, v in settings.items()},
    }
    url = f"http://127.0.0.1:{port}"
    with running([sys.executable, "-m", module], f"{url}/health", tmp / "service.log", env=env,
                 timeout=60):  # fmt: skip
        yield url


def wait_for(condition, timeout: float, what: str, every: float = 0.5) -> Any:
    """Poll `condition` until it returns something truthy; fail the test with `what`."""
    try:
        return wait_until(condition, timeout, what, every=every)
    except TimeoutError as error:
        raise AssertionError(str(error)) from None
