"""Open a page in Debian's headless Chromium and read what a person would see: the DOM after
the page's scripts ran. The one way the tests look at a web UI (API docs, MLflow, Prefect,
Evidently, the compare report): a test that only fetches a page's assets cannot tell a
blank or broken single-page app from a working one.

Where there is no Chromium, a test that needs it is skipped, saying so; in CI
(CI=true, where .ci/run installs Debian's chromium) it fails instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile

import pytest

# Headless, and quiet on a closed network: no GPU, no QUIC, no update or sync calls home,
# a fresh profile per page. --no-sandbox: tests run as root in containers.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    """The Chromium executable; skips the test where there is none (fails it in CI)."""
    found = shutil.which("chromium") or shutil.which("google-chrome")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("no chromium on PATH: .ci/run installs Debian's chromium")
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    return found


def render(url: str, budget_ms: int = 8000, timeout: float = 120) -> str:
    """The DOM of `url` once its scripts had `budget_ms` of (virtual) time to run.

    Chromium runs in its own process group, stopped as a whole when it is done or times out,
    so that no renderer or zygote process outlives the test.
    """
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        command = [
            chromium(),
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}",
            "--dump-dom",
            url,
        ]
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            dom, errors = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            process.wait()  # reaps it
            raise AssertionError(f"chromium did not finish {url} in {timeout:.0f} s") from None
        finally:
            _kill_group(process)  # helpers that outlive the browser
    assert process.returncode == 0, f"chromium exited with {process.returncode}: {errors[-2000:]}"
    return dom


def _kill_group(process: subprocess.Popen) -> None:
    """Kill whatever is left of Chromium's process group (its leader may be gone already)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
