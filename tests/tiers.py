"""The test suite's tiers (tests/tiers.toml): a pytest plugin and a report.

`pytest --tier NAME <its folder>` (what `make test-<tier>` runs) gives each test the tier's
timeout (pytest-timeout), refuses a test from another tier's folder, and when the session ends
writes var/test-times/<tier>.json (under the rootdir) and fails the tier if it took longer than
its budget, naming its slowest tests. `python -m tests.tiers` prints the last run of each tier as a table.
A tier run on pytest-xdist's workers (`-n 2`, as the Makefile runs the slow tiers) is judged
once, by the controller, on the reports the workers send it.
"""

from __future__ import annotations

import json
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TIERS_FILE = ROOT / "tests/tiers.toml"
TIMES = ROOT / "var/test-times"


@dataclass(frozen=True)
class Tier:
    name: str
    path: str
    budget_seconds: float
    timeout_seconds: float
    first: tuple[str, ...] = ()  # modules (paths under `path`) to start first, in this order


def scheduled(items: list[pytest.Item], first: tuple[str, ...], folder: Path) -> list[pytest.Item]:
    """The order a tier's modules start in on pytest-xdist's workers: `first`'s (paths under
    the tier's folder), then the rest by their number of tests, most first (xdist's own
    order, which `--no-loadscope-reorder` hands to this one); each module's tests in their
    order. A tier lasts as long as its longest chain of modules: its longest go first."""

    def module(item: pytest.Item) -> str:
        return Path(item.path).relative_to(folder).as_posix()

    sizes: dict[str, int] = {}
    for item in items:
        sizes[module(item)] = sizes.get(module(item), 0) + 1
    rank = {name: i for i, name in enumerate(first)}
    order = sorted(sizes, key=lambda name: (rank.get(name, len(rank)), -sizes[name]))
    position = {name: i for i, name in enumerate(order)}
    return sorted(items, key=lambda item: position[module(item)])  # stable within a module


def tiers(file: Path = TIERS_FILE) -> dict[str, Tier]:
    """The tiers in the order `make test` runs them."""
    table = tomllib.loads(file.read_text())
    return {
        name: Tier(name=name, **{**fields, "first": tuple(fields.get("first", ()))})
        for name, fields in table.items()
    }


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--tier", help="run as this tier of --tiers-file: its per-test timeout, its time budget"
    )
    parser.addoption("--tiers-file", type=Path, default=TIERS_FILE, help="default: %(default)s")


def pytest_configure(config: pytest.Config) -> None:
    name = config.getoption("tier")
    if not name:
        return
    defined = tiers(config.getoption("tiers_file"))
    if name not in defined:
        raise pytest.UsageError(f"--tier {name}: the tiers are {', '.join(defined)}")
    tier, folder = defined[name], config.rootpath / defined[name].path
    unknown = [module for module in tier.first if not (folder / module).is_file()]
    if unknown:
        raise pytest.UsageError(f"tier {name}'s first: no {unknown} in {folder}")
    # An xdist worker (it has `workerinput`) only collects and runs: the controller times the tier
    worker = hasattr(config, "workerinput")
    config.pluginmanager.register(TierRun(defined[name], config.rootpath, worker), "tier-run")


class TierRun:
    """One tier's run: its wall time against its budget, and each test's duration."""

    def __init__(self, tier: Tier, root: Path, worker: bool = False) -> None:
        self.tier = tier
        self.worker = worker
        self.folder = root / tier.path
        self.times = root / TIMES.relative_to(ROOT)
        self.started = time.monotonic()
        self.ended: float | None = None  # when the session finished
        self.tests: dict[str, float] = {}

    def seconds(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def over_budget(self) -> bool:
        return self.seconds() > self.tier.budget_seconds

    def slowest(self, n: int | None = None) -> list[tuple[str, float]]:
        return sorted(self.tests.items(), key=lambda item: -item[1])[:n]

    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        strays = [i.nodeid for i in items if not Path(i.path).is_relative_to(self.folder)]
        if strays:
            raise pytest.UsageError(f"not in tier {self.tier.name}'s {self.folder}: {strays[:5]}")
        if self.worker:  # collected on xdist's workers (-n): the controller takes their order
            items[:] = scheduled(items, self.tier.first, self.folder)
        # pytest-timeout's bound for each test, unless the command line or the test sets one
        if config.getoption("timeout", None) is None:
            for item in items:
                if item.get_closest_marker("timeout") is None:
                    item.add_marker(pytest.mark.timeout(self.tier.timeout_seconds))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.tests[report.nodeid] = self.tests.get(report.nodeid, 0.0) + report.duration

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.ended = time.monotonic()
        if self.worker:
            return
        if self.over_budget() and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        self.times.mkdir(parents=True, exist_ok=True)
        record = {
            "tier": self.tier.name,
            "seconds": round(self.seconds(), 1),
            "budget_seconds": self.tier.budget_seconds,
            "exit_status": int(session.exitstatus),
            "tests": {nodeid: round(seconds, 3) for nodeid, seconds in self.slowest()},
        }
        (self.times / f"{self.tier.name}.json").write_text(json.dumps(record, indent=1) + "\n")

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.worker:
            return
        line = f"tier {self.tier.name}: {self.seconds():.0f} s of its {self.tier.budget_seconds:.0f} s budget"
        if not self.over_budget():
            terminalreporter.write_sep("=", line, green=True)
            return
        terminalreporter.write_sep("=", f"{line}: OVER BUDGET (tests/tiers.toml)", red=True)
        for nodeid, seconds in self.slowest(5):
            terminalreporter.write_line(f"  {seconds:7.1f} s  {nodeid}")


def report(folder: Path = TIMES) -> str:
    """The last run of each tier, in make test's order, and their total."""
    rows, total = [], 0.0
    for name, tier in tiers().items():
        file = folder / f"{name}.json"
        if not file.exists():
            rows.append(f"  {name:<12} {'not run':>9}   budget {tier.budget_seconds:6.0f} s")
            continue
        run = json.loads(file.read_text())
        total += run["seconds"]
        verdict = "over budget" if run["seconds"] > run["budget_seconds"] else "ok"
        failed = "" if run["exit_status"] == 0 else f", exit {run['exit_status']}"
        rows.append(
            f"  {name:<12} {run['seconds']:7.0f} s   budget {run['budget_seconds']:6.0f} s   "
            f"{len(run['tests'])} tests, {verdict}{failed}"
        )
    return "\n".join(["test tiers (var/test-times/):", *rows, f"  {'total':<12} {total:7.0f} s"])


if __name__ == "__main__":
    print(report(Path(sys.argv[1]) if len(sys.argv) > 1 else TIMES))
