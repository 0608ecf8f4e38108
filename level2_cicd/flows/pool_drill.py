"""The worker drill: many runs on one pool served by several workers, one of which dies.

    make level2-worker-drill            # 3 workers, 60 runs; kill a worker while it runs

Three process workers (compose.workers.yaml) serve the pool `level2-drill`, whose
concurrency limit (3) is lower than what the workers would take on their own; this module
creates the pool, deploys the flow below with the same limit and the lost-run automations
(level2_cicd/lost_runs.py), submits the runs and waits for every one to end. A worker killed
mid-run (`docker kill`) leaves its run silent: it is marked Crashed, scheduled once more, and
another worker completes it. What to look at: the pool's page in the Prefect UI (never more
than 3 running), a lost run's state history (Running, Crashed, AwaitingRetry, Pending, Running,
Completed), and each run's "drill start" log lines (one per attempt).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import time
from collections import Counter

from prefect import flow, get_run_logger, runtime
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.sorting import FlowRunSort
from prefect.deployments import run_deployment

from level2_cicd import lost_runs

POOL = "level2-drill"
LIMIT = 3
DEPLOYMENT = "drill"
SOURCE = "/app"  # the image's checkout, where each worker finds this module
ENTRYPOINT = "level2_cicd/flows/pool_drill.py:pool_drill"


@flow(name="pool-drill")
def pool_drill(seconds: float = 2.0) -> str:
    """One unit of drill work: say where and which attempt, hold a slot for `seconds`."""
    logger, host = get_run_logger(), socket.gethostname()
    logger.info("drill start: attempt %s on %s", runtime.flow_run.run_count, host)
    time.sleep(seconds)
    logger.info("drill end: attempt %s on %s", runtime.flow_run.run_count, host)
    return host


async def prepare(pool: str = POOL, limit: int = LIMIT, source: str = SOURCE) -> str:
    """The pool with its limit, the automations, the deployment: its id."""
    async with get_client() as client:
        await client.create_work_pool(WorkPoolCreate(name=pool, type="process",
                                                     concurrency_limit=limit), overwrite=True)  # fmt: skip
    drill = await pool_drill.from_source(source=source, entrypoint=ENTRYPOINT)
    # Prefect checks a pool's limit as a worker asks for runs, so two workers asking at once
    # could together take one run too many; the deployment's limit is held by the server as
    # each run starts (a lease), which makes the bound exact
    deployment = await drill.to_deployment(name=DEPLOYMENT, work_pool_name=pool,
                                            concurrency_limit=limit)  # fmt: skip
    deployment_id = str(await deployment.apply())
    name = f"{pool_drill.name}/{DEPLOYMENT}"
    await lost_runs.install(lost_runs.crash_silent_runs(name, deployment_id),
                            lost_runs.retry_crashed_runs(name, deployment_id))  # fmt: skip
    return deployment_id


async def submit(deployment_id: str, runs: int, seconds: float) -> list[str]:
    submitted = []
    for _ in range(runs):
        run = await run_deployment(deployment_id, parameters={"seconds": seconds}, timeout=0)
        submitted.append(str(run.id))
    return submitted


async def states(run_ids: list[str]) -> Counter:
    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=run_ids)),
            sort=FlowRunSort.ID_DESC,  # the server refuses a limit without an order
            limit=len(run_ids),
        )
    return Counter(run.state.name for run in runs if run.state)


async def drill(runs: int, seconds: float, timeout: float) -> Counter:
    submitted = await submit(await prepare(), runs, seconds)
    print(f"{runs} runs submitted to pool {POOL} (limit {LIMIT}); waiting for them to end")
    deadline = time.monotonic() + timeout
    while True:
        seen = await states(submitted)
        print(dict(sorted(seen.items())), flush=True)
        ended = sum(seen[name] for name in ("Completed", "Failed", "Cancelled"))
        if ended == runs or time.monotonic() > deadline:
            return seen
        await asyncio.sleep(5)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=2.0, help="each run's work")
    parser.add_argument("--timeout", type=float, default=600)
    options = parser.parse_args(argv)
    seen = asyncio.run(drill(options.runs, options.seconds, options.timeout))
    if set(seen) - {"Completed"}:
        raise SystemExit(f"not every run completed: {dict(seen)}")
    print(f"every run completed: {dict(seen)}")


if __name__ == "__main__":
    main()
