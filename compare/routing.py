"""Where the stacks send each alert the replay raises: the rules' labels (the levels' rules
files) through Alertmanager's committed routes (shared/alert_routing.receivers), as each
level's Prometheus sends it (its external label `level`). The replay's person looks into what
pages them, and the report counts the pages, by these files and nothing else."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml

from shared.alert_routing import PAGES, receivers

ROOT = Path(__file__).resolve().parents[1]
RULE_FILES = (ROOT / "level1_ct/prometheus/rules.yml", ROOT / "level2_cicd/prometheus/rules.yml")


def rules_of(path: Path) -> dict[str, dict[str, str]]:
    """Each alert rule of a rules file and its labels (`action`: retrain or page)."""
    groups = yaml.safe_load(path.read_text())["groups"]
    return {r["alert"]: r["labels"] for g in groups for r in g["rules"] if "alert" in r}


@cache
def labels() -> dict[str, dict[str, str]]:
    """Each alert rule of the levels' stacks and its labels."""
    return {name: found for path in RULE_FILES for name, found in rules_of(path).items()}


def pages(rule: str, level: int) -> bool:
    """Does alert `rule`, sent by level `level`'s Prometheus, page a person?"""
    return PAGES in receivers({"alertname": rule, **labels()[rule], "level": str(level)})
