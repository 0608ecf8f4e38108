"""The test tiers' plugin (tests/tiers.py), run by pytest on a small suite of its own: a tier
over its time budget fails and names its slowest test, a test over the tier's timeout fails
with its stack, a test from another tier's folder is refused, and each run records its times."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.tiers import ROOT, report, tiers

pytest_plugins = ["pytester"]

TIERS = """
[quick]
path = "suite/quick"
budget_seconds = {budget}
timeout_seconds = {timeout}
first = {first}

[slow]
path = "suite/slow"
budget_seconds = 60
timeout_seconds = 60
"""


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    """A rootdir with two tiers' folders; pytest in a subprocess, with tests.tiers importable."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    (pytester.path / "suite/quick").mkdir(parents=True)
    (pytester.path / "suite/slow").mkdir(parents=True)
    pytester.makefile(".ini", pytest="[pytest]\n")  # the rootdir

    def run(tier: str, folder: str, budget: float = 60, timeout: float = 60, *options: str,
            first: tuple[str, ...] = ()):  # fmt: skip
        tiers_file = TIERS.format(budget=budget, timeout=timeout, first=json.dumps(list(first)))
        (pytester.path / "tiers.toml").write_text(tiers_file)
        return pytester.runpytest_subprocess(
            "-p", "tests.tiers", "-p", "no:cacheprovider", "--tiers-file", "tiers.toml",
            "--tier", tier, *options, folder,
        )  # fmt: skip

    return run


def write(pytester: pytest.Pytester, path: str, body: str) -> None:
    (pytester.path / path).write_text(f"import time\n\n{body}\n")


def recorded(pytester: pytest.Pytester, tier: str) -> dict:
    return json.loads((pytester.path / f"var/test-times/{tier}.json").read_text())


def test_a_tier_within_its_budget_passes_and_records_each_tests_time(pytester, suite):
    write(pytester, "suite/quick/test_a.py", "def test_a():\n    time.sleep(0.2)")
    result = suite("quick", "suite/quick", budget=30)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*tier quick: * s of its 30 s budget*"])
    run = recorded(pytester, "quick")
    assert run["exit_status"] == 0 and run["budget_seconds"] == 30
    assert run["tests"]["suite/quick/test_a.py::test_a"] >= 0.2


def test_a_tier_over_its_budget_fails_and_names_its_slowest_test(pytester, suite):
    write(pytester, "suite/quick/test_a.py",
          "def test_slow():\n    time.sleep(1.2)\n\ndef test_fast():\n    pass")  # fmt: skip
    result = suite("quick", "suite/quick", budget=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # though every test passed
    result.stdout.fnmatch_lines(["*2 passed*"], consecutive=False)
    result.stdout.fnmatch_lines(["*tier quick: * s of its 1 s budget: OVER BUDGET*",
                                 "*s  suite/quick/test_a.py::test_slow"])  # fmt: skip
    assert recorded(pytester, "quick")["exit_status"] == pytest.ExitCode.TESTS_FAILED


def test_on_xdist_workers_the_controller_judges_the_tier_on_every_workers_tests(pytester, suite):
    """`make test-<tier>` runs the slow tiers with `-n 2 --dist loadfile`: one record, every test."""
    for name in ("a", "b"):
        write(pytester, f"suite/quick/test_{name}.py", f"def test_{name}():\n    time.sleep(0.8)")
    result = suite("quick", "suite/quick", 1, 60, "-n", "2", "--dist", "loadfile")
    result.stdout.fnmatch_lines(["*2 workers*", "*2 passed*"], consecutive=False)
    # Either worker alone stays within 1 s; the tier, from the controller's start, does not
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*tier quick: * s of its 1 s budget: OVER BUDGET*"])
    assert sum("OVER BUDGET" in line for line in result.stdout.lines) == 1  # the controller's
    run = recorded(pytester, "quick")
    assert set(run["tests"]) == {"suite/quick/test_a.py::test_a", "suite/quick/test_b.py::test_b"}
    assert run["exit_status"] == pytest.ExitCode.TESTS_FAILED


def test_on_xdist_workers_the_tiers_first_modules_start_first_then_the_largest(pytester, suite):
    """xdist hands a worker the next module as its current one runs out: the longest modules,
    named in `first`, must start at once, not wait behind the short ones."""
    log = pytester.path / "started.log"
    for name, tests in (("big", 3), ("mid", 2), ("small", 1)):
        body = "\n\n".join(
            f"def test_{i}():\n    with open({str(log)!r}, 'a') as f:\n"
            f"        f.write('{name} ' + os.environ['PYTEST_XDIST_WORKER'] + '\\n')\n"
            "    time.sleep(0.3)"
            for i in range(tests)
        )
        write(pytester, f"suite/quick/test_{name}.py", f"import os\n\n{body}")
    workers = ("-n", "2", "--dist", "loadfile", "--no-loadscope-reorder")

    def order_per_worker(first: tuple[str, ...]) -> dict[str, list[str]]:
        log.unlink(missing_ok=True)
        assert suite("quick", "suite/quick", 60, 60, *workers, first=first).ret == 0
        found: dict[str, list[str]] = {}
        for module, worker in (line.split() for line in log.read_text().splitlines()):
            if module not in found.setdefault(worker, []):
                found[worker].append(module)
        return found

    # By their number of tests: the small module waits behind the middle one
    assert sorted(order_per_worker(()).values()) == [["big"], ["mid", "small"]]
    assert sorted(order_per_worker(("test_small.py",)).values()) == [["big"], ["small", "mid"]]
    result = suite("quick", "suite/quick", 60, 60, *workers, first=("test_gone.py",))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*tier quick's first: no *test_gone.py* in *suite/quick"])


def test_a_test_over_the_tiers_timeout_fails_with_a_timeout(pytester, suite):
    write(pytester, "suite/quick/test_a.py", "def test_hangs():\n    time.sleep(30)")
    result = suite("quick", "suite/quick", timeout=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*Failed: Timeout (>1*s) from pytest-timeout*"])
    assert result.duration < 20


def test_a_test_from_another_tiers_folder_is_refused(pytester, suite):
    write(pytester, "suite/slow/test_b.py", "def test_b():\n    pass")
    result = suite("quick", "suite", budget=30)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*not in tier quick's*suite/slow/test_b.py::test_b*"])


def test_an_unknown_tier_is_refused_with_the_known_ones(pytester, suite):
    result = suite("nightly", "suite")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--tier nightly: the tiers are quick, slow*"])


# What the tiers' budgets may add up to. 55 minutes kept .ci/run inside its hour on the
# machine they were set on; CI's machine since 2026-12-06 is slower, and the suite's budgets
# add up to 65 minutes there (tests/tiers.toml): over the hour, under CI's hard limit of 90.
# Raised from 55 for that machine, and to 67 on 2026-12-07 when monitoring began explaining
# the champion's live answers in every run (the container tier took 2240 s, from 1881-2030 s);
# 69 on 2026-12-07 when a clean clone's container tier took 2343 s, 4 % under its budget, with
# those explanations at most every 10 minutes (CI's own run of the suite: 56.5 minutes).
# Bring it down as the container journeys get shorter.
BUDGETS_MINUTES = 69


def test_the_projects_tiers_cover_every_test_folder_and_fit_the_stated_minutes():
    defined = tiers()
    folders = {p.name for p in (ROOT / "tests").iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert {Path(t.path).name for t in defined.values()} == folders
    assert list(defined) == ["unit", "integration", "e2e", "containers"]  # make test's order
    assert sum(t.budget_seconds for t in defined.values()) <= BUDGETS_MINUTES * 60


def test_the_report_lists_every_tier_with_its_time_or_not_run(tmp_path):
    (tmp_path / "unit.json").write_text(json.dumps(
        {"tier": "unit", "seconds": 412.0, "budget_seconds": 600, "exit_status": 0, "tests": {"a": 1}}))  # fmt: skip
    table = report(tmp_path)
    assert "unit" in table and "412 s" in table and "1 tests, ok" in table
    assert all(name in table for name in tiers())
    assert table.count("not run") == len(tiers()) - 1
