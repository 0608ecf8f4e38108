"""The Makefile is the one vocabulary: `make` alone lists every target with what it does."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_make_without_a_target_lists_every_phony_target_with_a_description():
    makefile = (ROOT / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:((?:.*\\\n)*.*)$", makefile, re.M).group(1)
    targets = phony.replace("\\\n", " ").split()
    out = subprocess.run(
        ["make", "-s"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    listed = dict(re.findall(r"^  (\S+)\s+(.+)$", out, re.M))
    assert sorted(listed) == sorted(targets)
    assert all(len(description) > 10 for description in listed.values())
