"""Prometheus' and Alertmanager's binaries for the tests (Debian: `apt-get install prometheus
prometheus-alertmanager`): without them a test skips, with CI=true it fails."""

from __future__ import annotations

import os
import shutil

import pytest

INSTALL = "apt-get install prometheus prometheus-alertmanager"


def tool(name: str) -> str:
    """The path of `name` (promtool, amtool, prometheus, prometheus-alertmanager)."""
    found = shutil.which(name)
    if found is None:
        message = f"{name} is not installed: {INSTALL}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found
