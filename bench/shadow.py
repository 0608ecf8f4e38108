"""Benchmark: what a shadow rollout costs production's customers.

Level 2's production service answers every request with the champion; under a shadow
rollout a copy of each request goes to the candidate in a process of its own, at idle CPU priority
(level2_cicd/shadow.py). This measures production's p99 (and throughput) under the same
load with no candidate and with a shadow, alternating rounds on one service process, in one
run, and prints the ratio of the medians, at two loads: a steady rate of half what the
service answered flat out in the warm-up (production's usual day), and flat out (closed
loop: every connection sends its next request once answered). Target (issue "Progressive
delivery"): with a shadow, p99 within 10 % of without. It also prints what the shadow scored
and dropped (a shadow that cannot keep up drops copies; production never waits for it).

On 2 cores the load generator, the service and the shadow share the machine: the shadow
process gets only the CPU the other two leave (SCHED_IDLE), which is the point: flat out, it
is what the service and the load generator leave between them, and the figures move by 10 %
from round to round with no shadow at all: read the medians, and the steady rate's first.

    make bench-shadow        (a real MLflow server and the service on free ports, no Docker)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import httpx
import mlflow
from mlflow import MlflowClient

from level1_ct import registry
from level2_cicd.names import CANARY, ROLLOUT_KIND
from shared.data import labelled_feature_files, load_labelled
from shared.features import SKOPS_TRUSTED_TYPES
from shared.loadtest import LoadResult, load
from shared.schema import MODEL_NAME, example_record
from shared.servers import MlflowServer, free_port, mlflow_server, running
from shared.simulator import SimulationConfig, simulate
from shared.train import TrainingConfig, train
from shared.waiting import wait_until


def register(client: MlflowClient, pipeline, seed: int) -> str:
    with mlflow.start_run(run_name=f"bench-shadow-{seed}"):
        info = mlflow.sklearn.log_model(
            pipeline, name="model", skops_trusted_types=SKOPS_TRUSTED_TYPES
        )
    return registry.register(client, MODEL_NAME, info.model_uri, {"data_version": "bench"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-shadow-"))
    try:
        measure(work, args.connections, args.seconds, args.rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(work: Path, connections: int, seconds: float, rounds: int) -> None:
    simulate(work / "landing", SimulationConfig(days=10))
    frame = load_labelled(labelled_feature_files(work / "landing"))
    with mlflow_server(MlflowServer(root=work / "mlflow", port=free_port())) as tracking:
        mlflow.set_tracking_uri(tracking.url)
        mlflow.set_experiment("bench-shadow")
        client = MlflowClient(tracking.url)
        champion = register(client, train(frame, TrainingConfig(n_iter=2, seed=1)).pipeline, 1)
        registry.promote(client, MODEL_NAME, champion)
        shadow = register(client, train(frame, TrainingConfig(n_iter=2, seed=2)).pipeline, 2)
        client.set_model_version_tag(MODEL_NAME, shadow, ROLLOUT_KIND, "shadow")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "MLFLOW_TRACKING_URI": tracking.url, "L2_SERVE_PORT": str(port),
               "L2_SERVE_POLL_SECONDS": "0.5",
               "PREDICTION_STORE_URL": f"sqlite:///{work / 'predictions.db'}"}  # fmt: skip
        command = [sys.executable, "-m", "level2_cicd.service"]
        with running(command, f"{url}/health", work / "service.log", env=env, timeout=120):
            body = [example_record()]
            warm = asyncio.run(load(f"{url}/predict", body, connections, 5))
            for rate in (warm.rps / 2, None):
                compare(client, shadow, url, body, connections, seconds, rounds, rate)


def compare(client: MlflowClient, shadow: str, url: str, body: list, connections: int,
            seconds: float, rounds: int, rate: float | None) -> None:  # fmt: skip
    """`rounds` of the load each way, alternating; the medians' ratio."""
    pace = f"{rate:.0f} req/s" if rate else "flat out"
    print(f"{connections} connections, {pace}, {seconds:.0f} s of POST /predict (one record), "
          f"{rounds} rounds each way, alternating:")  # fmt: skip
    results: dict[bool, list[LoadResult]] = {False: [], True: []}
    scored = dropped = 0
    for _ in range(rounds):
        for shadowing in (False, True):
            shadow_on(client, shadow if shadowing else None, url)
            result = asyncio.run(load(f"{url}/predict", body, connections, seconds, rate))
            results[shadowing].append(result)
            if shadowing:
                arm = wait_until(lambda: settled(url), 60, "the shadow to catch up")
                scored, dropped = scored + arm["requests"], dropped + arm["dropped"]
            print(f"  {'shadow   ' if shadowing else 'no shadow'}: {result.summary}")
    p99 = {s: statistics.median(r.p99_ms for r in results[s]) for s in results}
    rps = {s: statistics.median(r.rps for r in results[s]) for s in results}
    print(
        f"{pace}, production with a shadow (medians of {rounds}): p99 {p99[True]:.1f} vs "
        f"{p99[False]:.1f} ms without ({100 * (p99[True] / p99[False] - 1):+.1f} %; target "
        f"<= +10 %), {rps[True]:.0f} vs {rps[False]:.0f} req/s; the shadow scored {scored} "
        f"copies and dropped {dropped}"
    )


def shadow_on(client: MlflowClient, version: str | None, url: str) -> None:
    """Point the `canary` alias at the shadow `version` (None: remove it); wait for production
    to follow (each shadow round is a new window: its counters start at 0)."""
    if version is not None:
        client.set_registered_model_alias(MODEL_NAME, CANARY, version)
    elif CANARY in registry.aliases(client, MODEL_NAME):
        client.delete_registered_model_alias(MODEL_NAME, CANARY)
    wait_until(lambda: rollout(url)["canary_version"] == version, 30,
               "production to follow the alias")  # fmt: skip


def rollout(url: str) -> dict:
    return httpx.get(f"{url}/rollout", timeout=5).json()


def settled(url: str) -> dict | None:
    """The shadow's arm once every copy of the round is scored or dropped."""
    figures = rollout(url)
    arm = figures["canary"]
    done = arm["requests"] + arm["dropped"] >= figures["champion"]["requests"]
    return arm if done else None


if __name__ == "__main__":
    main()
