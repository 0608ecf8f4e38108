"""Every server the project starts keeps idle connections open for the one stated bound
(shared/keepalive.py), longer than its clients' pools: the services, MLflow and Prefect, in
the embedded mode and in the container stacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.keepalive import CLIENT_IDLE_SECONDS, SERVER_KEEP_ALIVE_SECONDS
from shared.servers import MlflowServer, PrefectServer

ROOT = Path(__file__).resolve().parents[3]


def test_the_bound_lets_clients_and_load_balancers_let_go_first():
    assert CLIENT_IDLE_SECONDS < 60 < SERVER_KEEP_ALIVE_SECONDS


@pytest.mark.parametrize(
    ("module", "prefix"),
    [("level0_manual.service", "L0_SERVE_"), ("level1_ct.service", "L1_SERVE_"),
     ("level2_cicd.service", "L2_SERVE_")],
)  # fmt: skip
def test_each_service_runs_uvicorn_with_its_keep_alive_setting(monkeypatch, module, prefix):
    import importlib

    service = importlib.import_module(module)
    runs: list[dict] = []
    monkeypatch.setattr(service.uvicorn, "run", lambda app, **options: runs.append(options))
    if hasattr(service, "get_settings"):
        service.get_settings.cache_clear()
    service.main()
    monkeypatch.setenv(f"{prefix}KEEP_ALIVE_SECONDS", "90")
    if hasattr(service, "get_settings"):
        service.get_settings.cache_clear()
    service.main()
    assert [r["timeout_keep_alive"] for r in runs] == [SERVER_KEEP_ALIVE_SECONDS, 90]
    if hasattr(service, "get_settings"):
        service.get_settings.cache_clear()


def test_the_embedded_mlflow_and_prefect_servers_keep_connections_open_as_long():
    mlflow = MlflowServer().command()
    assert mlflow[mlflow.index("--uvicorn-opts") + 1] == (
        f"--timeout-keep-alive {SERVER_KEEP_ALIVE_SECONDS}"
    )
    prefect = PrefectServer().command()
    assert prefect[prefect.index("--keep-alive-timeout") + 1] == str(SERVER_KEEP_ALIVE_SECONDS)


def test_the_stacks_mlflow_and_prefect_servers_keep_connections_open_as_long():
    mlflow = (ROOT / "infra/compose/mlflow.yaml").read_text()
    assert f'--uvicorn-opts "--timeout-keep-alive {SERVER_KEEP_ALIVE_SECONDS}"' in mlflow
    prefect = (ROOT / "infra/compose/prefect.yaml").read_text()
    assert (
        f"prefect server start --host 0.0.0.0 --port 4200 --keep-alive-timeout {SERVER_KEEP_ALIVE_SECONDS}"
        in prefect
    )
