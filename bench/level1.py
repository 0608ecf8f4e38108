"""Benchmark level 1: serving at 16 concurrent connections against `mlflow models serve` of
the same registered model on the same machine in the same run, and the lead time from a
batch landing to the new champion being served.

Prints figures, asserts nothing. Targets (issue "Level 1"): at least 3x the throughput of
`mlflow models serve`, p99 <= 30 ms on 2 cores; the lead time is reported.

    make bench-level1                 # both
    python -m bench.level1 serving    # one part: serving | lead-time
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path

import mlflow
from mlflow import MlflowClient

from level1_ct import registry
from shared.data import labelled_feature_files, load_labelled
from shared.features import SKOPS_TRUSTED_TYPES
from shared.loadtest import LoadResult, load
from shared.schema import MODEL_NAME, example_record
from shared.servers import MlflowServer, free_port, mlflow_server, running
from shared.simulator import SimulationConfig, simulate
from shared.train import TrainingConfig, train

CONNECTIONS = 16
SECONDS = 15.0


def report(name: str, result: LoadResult) -> None:
    print(f"  {name:<34} {result.rps:>6.0f} req/s   p50 {result.p50_ms:6.1f} ms   "
          f"p99 {result.p99_ms:6.1f} ms   errors {result.errors}")  # fmt: skip


def serving(work: Path) -> None:
    simulate(work / "landing", SimulationConfig(days=10))
    frame = load_labelled(labelled_feature_files(work / "landing"))
    pipeline = train(frame, TrainingConfig(n_iter=4)).pipeline
    with mlflow_server(MlflowServer(root=work / "mlflow", port=free_port())) as server:
        mlflow.set_tracking_uri(server.url)
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(
                pipeline, name="model", skops_trusted_types=SKOPS_TRUSTED_TYPES,
                pip_requirements=registry.model_requirements(),
            )  # fmt: skip
        client = MlflowClient(server.url)
        version = registry.register(client, MODEL_NAME, info.model_uri, {})
        registry.promote(client, MODEL_NAME, version)
        # `mlflow models serve` shells out to uvicorn: the venv's bin/ must be on PATH.
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        # One OpenMP thread for both servers, as the level-1 service sets for itself.
        env = {**os.environ, "PATH": path, "OMP_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": server.url,
               "PREDICTION_STORE_URL": f"sqlite:///{work / 'predictions.db'}"}  # fmt: skip
        ours, theirs = free_port(), free_port()
        level1 = [sys.executable, "-m", "level1_ct.service"]
        reference = [
            sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/churn/{version}",
            "--env-manager", "local", "--host", "127.0.0.1", "--port", str(theirs),
        ]  # fmt: skip
        record = example_record()
        print(f"one record per request, {CONNECTIONS} connections, {SECONDS:.0f} s each, "
              f"one server process each; client and server share this machine's "
              f"{os.cpu_count()} cores")  # fmt: skip
        with running(level1, f"http://127.0.0.1:{ours}/health", work / "level1.log",
                     env={**env, "L1_SERVE_PORT": str(ours)}):  # fmt: skip
            url = f"http://127.0.0.1:{ours}/predict"
            asyncio.run(load(url, record, CONNECTIONS, 2))  # warm up
            mine = asyncio.run(load(url, record, CONNECTIONS, SECONDS))
        with running(reference, f"http://127.0.0.1:{theirs}/health", work / "mlflow-serve.log",
                     env=env, timeout=120):  # fmt: skip
            url = f"http://127.0.0.1:{theirs}/invocations"
            body = {"dataframe_records": [record]}
            asyncio.run(load(url, body, CONNECTIONS, 2))
            other = asyncio.run(load(url, body, CONNECTIONS, SECONDS))
    report("level-1 service (micro-batching)", mine)
    report("mlflow models serve", other)
    print(f"  throughput ratio: {mine.rps / max(other.rps, 1):.1f}x (target >= 3x); "
          f"level-1 p99 target <= 30 ms")  # fmt: skip


def lead_time(work: Path) -> None:
    from level1_ct.demo import DemoSettings, demo

    settings = DemoSettings(
        var=work, n_iter=5, mlflow_port=free_port(), prefect_port=free_port(),
        level1_service_port=free_port(),
    )  # fmt: skip
    figures = demo(settings)
    print(f"\nlead time, batch landed -> new champion served: {figures['lead_time_s']:.0f} s "
          f"(watcher every 5 s, runner polling every 10 s, n_iter={settings.n_iter})")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", nargs="?", choices=["serving", "lead-time", "all"], default="all")
    part = parser.parse_args(argv).part
    work = Path(tempfile.mkdtemp(prefix="bench-level1-"))
    try:
        if part in ("serving", "all"):
            serving(work / "serving")
        if part in ("lead-time", "all"):
            lead_time(work / "lead-time")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
