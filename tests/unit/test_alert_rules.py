"""The alert rules and their routing, checked offline with the tools Prometheus and
Alertmanager ship (Debian: `apt-get install prometheus prometheus-alertmanager`):

- `promtool test rules`: every alert fires on a series that breaks it and stays quiet on one
  that does not (level1_ct/prometheus/rules_test.yml, level2_cicd/prometheus/rules_test.yml);
- `amtool config routes test`: every alert reaches a receiver that acts or pages (no alert
  goes nowhere), and the level's runbook has a section for it.

Without the tools these tests skip (CI installs them, and fails instead)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = [ROOT / "level1_ct/prometheus/rules.yml", ROOT / "level2_cicd/prometheus/rules.yml"]
ALERTMANAGER = ROOT / "infra/compose/alertmanager/alertmanager.yml"
ACTIONS = {"retrain": "automation", "page": "person"}  # the `action` label -> its receiver


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        message = f"{name} is not installed: apt-get install prometheus prometheus-alertmanager"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def alerts(rules: Path) -> list[dict]:
    groups = yaml.safe_load(rules.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def cases_of(rules: Path) -> dict[str, set[str]]:
    """Alert name -> the kinds of case its promtool tests have: "fires", "quiet"."""
    cases: dict[str, set[str]] = {}
    for test in yaml.safe_load(rules.with_name("rules_test.yml").read_text())["tests"]:
        for case in test["alert_rule_test"]:
            kind = "fires" if case.get("exp_alerts") else "quiet"
            cases.setdefault(case["alertname"], set()).add(kind)
    return cases


@pytest.mark.parametrize("rules", RULES, ids=lambda p: p.parent.parent.name)
def test_promtool_passes_the_rules_tests(rules):
    promtool = tool("promtool")
    checked = subprocess.run(
        [promtool, "check", "rules", str(rules)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    result = subprocess.run(
        [promtool, "test", "rules", "rules_test.yml"], cwd=rules.parent, capture_output=True,
        text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("rules", RULES, ids=lambda p: p.parent.parent.name)
def test_every_alert_is_tested_firing_and_quiet(rules):
    cases = cases_of(rules)
    for rule in alerts(rules):
        assert cases.get(rule["alert"]) == {"fires", "quiet"}, rule["alert"]


@pytest.mark.parametrize("rules", RULES, ids=lambda p: p.parent.parent.name)
def test_every_alert_acts_or_pages_and_has_a_runbook_section(rules):
    for rule in alerts(rules):
        assert rule["labels"]["action"] in ACTIONS, rule["alert"]
        readme, anchor = rule["annotations"]["runbook"].split("#")
        headings = re.findall(r"^#+ (.+)$", (ROOT / readme).read_text(), re.MULTILINE)
        anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in headings}
        assert anchor in anchors, f"{rule['alert']}: no section #{anchor} in {readme}"


def test_alertmanager_accepts_its_configuration():
    result = subprocess.run(
        [tool("amtool"), "check-config", str(ALERTMANAGER)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("rules", RULES, ids=lambda p: p.parent.parent.name)
def test_every_alert_is_routed_to_the_receiver_its_action_names(rules):
    amtool = tool("amtool")
    for rule in alerts(rules):
        labels = {"alertname": rule["alert"], **rule["labels"]}
        result = subprocess.run(
            [amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER}",
             *(f"{k}={v}" for k, v in labels.items())],
            capture_output=True, text=True,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == [ACTIONS[rule["labels"]["action"]]], rule["alert"]
