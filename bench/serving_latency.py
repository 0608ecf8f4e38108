"""Benchmark: how fast does the level-0 service answer one record at a time?

Prints figures, asserts nothing (targets live here, not in timed tests). It trains a model
on simulated data, serves it with the real service under uvicorn on a free port, then
measures:
  - in-process Pipeline.predict_proba on a one-row frame (the floor),
  - sequential single-record POST /predict over real HTTP (latency p50/p95/p99),
  - concurrent single-record requests from a thread pool (throughput),
  - what the service's Prometheus metrics cost (shared/telemetry.py): throughput and p99 at 16
    keep-alive connections with L0_SERVE_METRICS on and off, alternating, in the same run
    (target: at most 5 % fewer requests per second with them on).

    make bench
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pandas as pd

from shared import model_file
from shared.data import labelled_feature_files, load_labelled
from shared.loadtest import LoadResult, load
from shared.schema import MODEL_NAME, example_record
from shared.servers import free_port, running
from shared.simulator import SimulationConfig, simulate
from shared.train import TrainingConfig, train


def percentiles(ms: list[float]) -> str:
    q = statistics.quantiles(ms, n=100)
    return f"p50 {q[49]:.2f} ms  p95 {q[94]:.2f} ms  p99 {q[98]:.2f} ms"


def main(requests: int = 2000, concurrency: int = 8) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    try:
        measure(work, requests, concurrency)
        metrics_cost(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(work: Path, requests: int, concurrency: int) -> None:
    simulate(work / "landing", SimulationConfig(days=10))
    result = train(
        load_labelled(labelled_feature_files(work / "landing")), TrainingConfig(n_iter=4)
    )
    model_file.save(result.pipeline, {"name": MODEL_NAME, "version": "bench"}, work / "model")
    print(f"model: {result.params}")

    row = pd.DataFrame([example_record()])
    result.pipeline.predict_proba(row)
    times = []
    for _ in range(1000):
        started = time.perf_counter()
        result.pipeline.predict_proba(row)
        times.append((time.perf_counter() - started) * 1000)
    print(f"in-process predict_proba, 1 row:   {percentiles(times)}")

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "L0_SERVE_MODEL_DIR": str(work / "model"), "L0_SERVE_PORT": str(port)}
    command = [sys.executable, "-m", "level0_manual.service"]
    with running(command, f"{url}/health", work / "service.log", env=env):
        with httpx.Client(base_url=url) as client:
            for _ in range(50):  # warm up
                client.post("/predict", json=example_record())
            times = []
            for _ in range(requests):
                started = time.perf_counter()
                client.post("/predict", json=example_record()).raise_for_status()
                times.append((time.perf_counter() - started) * 1000)
        print(f"HTTP POST /predict, 1 record, sequential ({requests}): {percentiles(times)}")

        def one(client: httpx.Client) -> float:
            started = time.perf_counter()
            client.post("/predict", json=example_record()).raise_for_status()
            return (time.perf_counter() - started) * 1000

        clients = [httpx.Client(base_url=url) for _ in range(concurrency)]
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            times = list(pool.map(lambda i: one(clients[i % concurrency]), range(requests)))
        elapsed = time.perf_counter() - started
        for client in clients:
            client.close()
        print(
            f"HTTP POST /predict, {concurrency} concurrent clients: {requests / elapsed:.0f} req/s, "
            f"{percentiles(times)}  (1 uvicorn worker; client and server share the machine)"
        )


def metrics_cost(work: Path, connections: int = 16, seconds: float = 10, rounds: int = 3) -> None:
    """Throughput and p99 with the metrics on and off: `rounds` runs of each, alternating (so
    that the machine's load drifts over both alike), each on a fresh service process."""
    results: dict[bool, list[LoadResult]] = {True: [], False: []}
    for _ in range(rounds):
        for metrics in (True, False):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            env = {**os.environ, "L0_SERVE_MODEL_DIR": str(work / "model"),
                   "L0_SERVE_PORT": str(port), "L0_SERVE_METRICS": str(metrics).lower()}  # fmt: skip
            command = [sys.executable, "-m", "level0_manual.service"]
            with running(command, f"{url}/health", work / "service.log", env=env):
                asyncio.run(load(f"{url}/predict", example_record(), connections, 2))  # warm up
                result = asyncio.run(load(f"{url}/predict", example_record(), connections, seconds))
                results[metrics].append(result)
                print(f"  metrics {'on ' if metrics else 'off'}: {result.summary}")
    on, off = (statistics.median(r.rps for r in results[m]) for m in (True, False))
    p99_on, p99_off = (statistics.median(r.p99_ms for r in results[m]) for m in (True, False))
    print(
        f"/metrics' cost at {connections} connections (medians of {rounds}): {on:.0f} vs {off:.0f} "
        f"req/s ({100 * (1 - on / off):+.1f} % fewer with metrics; target <= 5 %), p99 {p99_on:.1f} "
        f"vs {p99_off:.1f} ms"
    )


if __name__ == "__main__":
    main()
