"""`make demo`: level 0 end to end in the embedded mode, no Docker.

It runs the steps of level0_manual/README.md in order, with real servers: land simulated
data, start an MLflow tracking server on SQLite, train and log by hand, export, hand the
file over, start the prediction service, send it real HTTP requests, stop everything.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import httpx
from pydantic_settings import BaseSettings, SettingsConfigDict

from level0_manual.handoff import handoff
from level0_manual.predict import print_predictions, request_predictions, sample_records
from level0_manual.train import TrainingRefused, TrainSettings, run
from shared.schema import example_record
from shared.servers import MlflowServer, ServerError, mlflow_server, port_in_use, running
from shared.simulator import SimulationConfig, simulate


class DemoSettings(BaseSettings):
    """Settings of the demo, from DEMO_* environment variables (tests use other ports)."""

    model_config = SettingsConfigDict(env_prefix="DEMO_", frozen=True)

    var: Path = Path("var")  # everything the demo writes goes under here
    scenario: str = "stable"
    days: int = 14
    seed: int = 42
    n_iter: int = 10
    mlflow_port: int = 5000
    service_port: int = 8000


def step(title: str) -> None:
    print(f"\n==> {title}", flush=True)


def demo(settings: DemoSettings) -> None:
    landing = settings.var / "landing"
    exported = settings.var / "level0" / "exported"
    serving = settings.var / "level0" / "serving"
    service_url = f"http://127.0.0.1:{settings.service_port}"
    started = time.monotonic()
    # Check before working for a minute: `make mlflow` or the level-0 stack may hold them.
    for port, what in ((settings.mlflow_port, "MLflow"), (settings.service_port, "the service")):
        if port_in_use(port):
            raise ServerError(
                f"port {port}, which the demo wants for {what}, is in use (make mlflow? "
                f"the container stack: make down LEVEL=0?); stop it or set DEMO_*_PORT"
            )

    step(f"1. Data: simulate {settings.days} days of scenario '{settings.scenario}'")
    config = SimulationConfig(scenario=settings.scenario, days=settings.days, seed=settings.seed)
    written = simulate(landing, config, replace=True)
    print(
        f"landed {len(written)} files in {landing} (labels arrive {config.label_delay_days} days late)"
    )

    server = MlflowServer(root=settings.var / "mlflow", port=settings.mlflow_port)
    print(f"starting MLflow on SQLite at {server.url} (store {server.root}, ~15 s) ...", flush=True)
    with mlflow_server(server):
        step("2. Train by hand, log to MLflow by hand, export a model file")
        run(TrainSettings(
            landing=landing, export_dir=exported, mlflow_tracking_uri=server.url,
            n_iter=settings.n_iter, seed=settings.seed,
        ))  # fmt: skip

    step("3. Hand-off: ops copies the file to the service")
    handoff(exported, serving)

    step(f"4. Start the prediction service at {service_url} with the handed-off model")
    env = {
        **os.environ,
        "L0_SERVE_MODEL_DIR": str(serving),
        "L0_SERVE_PORT": str(settings.service_port),
    }
    log = settings.var / "level0" / "service.log"
    command = [sys.executable, "-m", "level0_manual.service"]
    with running(command, f"{service_url}/health", log, env=env, timeout=60):
        health = httpx.get(f"{service_url}/health").json()
        if health["status"] != "ok":
            raise RuntimeError(f"the service did not load the handed-off model: {health}")
        print(f"healthy: {health}")

        step("5. Real HTTP predictions for customers of the newest batch")
        records = sample_records(landing, 5)
        print_predictions(records, request_predictions(service_url, records))

        step("6. A malformed request is refused with the field named")
        bad = {**example_record(), "age": "twenty"}
        answer = httpx.post(f"{service_url}/predict", json=bad)
        print(f"POST /predict with age='twenty' -> {answer.status_code} {answer.json()}")

    step(f"Done in {time.monotonic() - started:.0f} s. Where to look:")
    print(f"  MLflow runs:    make mlflow, then open http://127.0.0.1:{settings.mlflow_port}"
          " (experiment 'level0-manual')")  # fmt: skip
    print("  the service:    make level0-serve, then open http://127.0.0.1:8000/docs")
    print(f"  files:          data {landing}, exported model {exported}, served model {serving}")
    print("  the guide:      level0_manual/README.md")


def main() -> None:
    try:
        demo(DemoSettings())
    except (TrainingRefused, ServerError, RuntimeError, FileNotFoundError) as failure:
        sys.exit(f"\ndemo failed: {failure}")


if __name__ == "__main__":
    main()
