"""Benchmark: how long a level's stack takes from `up` to all healthy, and how much memory
it holds when idle (the sum of `docker stats`), against the platform's targets.

Prints figures, asserts nothing. Needs the engine and the images (`make images`); runs the
stack under its own project name and ports, and removes it (with its volumes) afterwards.

    make bench-stack LEVEL=0
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import time
import uuid
from pathlib import Path

from shared.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
LEVEL_DIRS = {0: "level0_manual", 1: "level1_ct", 2: "level2_cicd"}
MEMORY_TARGET_GB = {0: 1.0, 1: 2.5, 2: 3.0}
UP_TARGET_SECONDS = 60
UNITS = {"b": 1, "kib": 2**10, "mib": 2**20, "gib": 2**30, "kb": 1e3, "mb": 1e6, "gb": 1e9}


def to_bytes(text: str) -> float:
    """'389.2MiB' -> bytes."""
    number, unit = re.fullmatch(r"([\d.]+)\s*([A-Za-z]+)", text.strip()).groups()
    return float(number) * UNITS[unit.lower()]


def ports() -> set[str]:
    """Every published port's variable in the stacks' compose files (`127.0.0.1:${X:-n}`):
    the benchmark gives each a free port, so it runs beside a stack that is up."""
    files = [*ROOT.glob("level*/compose.yaml"), *(ROOT / "infra/compose").glob("*.yaml")]
    pattern = re.compile(r"127\.0\.0\.1:\$\{([A-Z0-9_]+):-\d+\}")
    return {name for path in files for name in pattern.findall(path.read_text())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--level", type=int, default=int(os.environ.get("LEVEL", 0)))
    parser.add_argument("--idle", type=float, default=15, help="seconds to settle before measuring")
    args = parser.parse_args()
    level = args.level
    project = f"bench-l{level}-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "COMPOSE_PROJECT_NAME": project} | {p: str(free_port()) for p in ports()}
    compose_file = ROOT / LEVEL_DIRS[level] / "compose.yaml"
    if not compose_file.is_file():
        raise SystemExit(f"level {level} has no stack yet ({compose_file} is missing)")
    compose = ["docker", "compose", "-f", str(compose_file)]

    def up() -> float:
        started = time.monotonic()
        done = subprocess.run([*compose, "up", "-d", "--wait"], env=env, capture_output=True,
                              text=True)  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"the stack did not come up (make images?):\n{done.stderr[-3000:]}")
        return time.monotonic() - started

    try:
        up_seconds = up()
        time.sleep(args.idle)
        stats = subprocess.run(
            ["docker", "stats", "--no-stream", "--format", "{{json .}}"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        rows = [json.loads(line) for line in stats.splitlines()]
        rows = [r for r in rows if r["Name"].startswith(project)]
        total = 0.0
        print(f"level {level} stack, idle after {args.idle:.0f} s:")
        for row in sorted(rows, key=lambda r: r["Name"]):
            used = to_bytes(row["MemUsage"].split("/")[0])
            total += used
            print(f"  {row['Name'].removeprefix(project + '-'):<16} {used / 2**20:>8.0f} MiB")
        target = MEMORY_TARGET_GB[level]
        print(f"  {'total':<16} {total / 2**20:>8.0f} MiB   (target <= {target} GB)")
        print(f"up -> all healthy: {up_seconds:.1f} s on fresh volumes"
              f"   (target <= {UP_TARGET_SECONDS} s, images built)")  # fmt: skip
        # The everyday case: the stack stopped (`make down`) and started again, volumes kept
        subprocess.run([*compose, "down"], env=env, capture_output=True, check=True)
        print(f"up -> all healthy: {up():.1f} s again after `make down` (volumes kept)")
    finally:
        subprocess.run([*compose, "down", "-v"], env=env, capture_output=True)


if __name__ == "__main__":
    main()
