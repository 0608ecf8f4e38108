"""Benchmark: level 2's production as 1, 2 and 3 replicas behind its load balancer (HAProxy,
level2_cicd/compose.replicas.yaml), in one run: the throughput and latency each gives through
the balancer, under the same load. On 2 cores the load generator and the stack's other
services share the CPU with the replicas: read the rows against each other, not as a
cluster's figures. Prints figures, asserts nothing.

    make bench-replicas      (needs make images; a level-2 stack of its own, removed after)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import time
import uuid

import httpx

from bench.stack_footprint import ROOT, ports
from shared.loadtest import load
from shared.schema import example_record
from shared.servers import free_port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    project = f"bench-replicas-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "COMPOSE_PROJECT_NAME": project} | {p: str(free_port()) for p in ports()}
    compose = ["docker", "compose", "-f", str(ROOT / "level2_cicd/compose.yaml"),
               "-f", str(ROOT / "level2_cicd/compose.replicas.yaml")]  # fmt: skip
    url = f"http://127.0.0.1:{env['L2_SERVE_PORT']}"

    def compose_up(*extra: str) -> None:
        done = subprocess.run([*compose, "up", "-d", "--wait", *extra], env=env,
                              capture_output=True, text=True)  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"the stack did not come up (make images?):\n{done.stderr[-3000:]}")

    try:
        print("level 2's stack with the load balancer (the first champion is trained first)")
        compose_up()
        # The stack's own clients would share the replicas: only the benchmark's load counts
        subprocess.run([*compose, "stop", "traffic"], env=env, capture_output=True, check=True)
        print(f"{args.connections} connections for {args.seconds:.0f} s of POST /predict "
              f"(one record) through the balancer, per row:")  # fmt: skip
        rows = {}
        for replicas in args.replicas:
            compose_up("--no-deps", "--scale", f"production={replicas}", "production", "lb")
            in_rotation(url, replicas)
            asyncio.run(load(f"{url}/predict", [example_record()], args.connections, 3))  # warm
            result = asyncio.run(load(f"{url}/predict", [example_record()], args.connections,
                                      args.seconds))  # fmt: skip
            rows[replicas] = result
            ratio = result.rps / rows[args.replicas[0]].rps
            print(f"  {replicas} replica(s): {result.summary}   ({ratio:.2f}x the first row)")
    finally:
        subprocess.run([*compose, "down", "-v", "--remove-orphans"], env=env, capture_output=True)


def in_rotation(url: str, replicas: int, timeout: float = 180) -> None:
    """Wait until the balancer sends requests to `replicas` distinct replicas with a model."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = set()
        for _ in range(4 * replicas):
            answer = httpx.get(f"{url}/model", timeout=5)
            if answer.status_code == 200:
                seen.add(answer.headers["x-replica"])
        if len(seen) == replicas:
            return
        time.sleep(1)
    raise SystemExit(f"{replicas} replicas were not all in rotation after {timeout:.0f} s")


if __name__ == "__main__":
    main()
