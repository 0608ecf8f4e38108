"""The alert rules and their routing, checked offline with the tools Prometheus and
Alertmanager ship (Debian: `apt-get install prometheus prometheus-alertmanager`):

- `promtool test rules`: every alert fires on a series that breaks it and stays quiet on one
  that does not (level1_ct/prometheus/rules_test.yml, level2_cicd/prometheus/rules_test.yml);
- `amtool config routes test`: every alert reaches a receiver that acts or pages (no alert
  goes nowhere), and the level's runbook has a section for it.

Without the tools these tests skip (CI installs them, and fails instead)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from compare import routing
from shared import alert_routing
from tests.prometheus_tools import tool

ROOT = Path(__file__).resolve().parents[2]
RULES = list(routing.RULE_FILES)  # level 1's, level 2's: the files the comparison reads
ALERTMANAGER = ROOT / "infra/compose/alertmanager/alertmanager.yml"
ACTIONS = {"retrain": "automation", "page": "person"}  # the `action` label -> its receiver


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


LOADED_BY = {RULES[0]: ("1", "2"), RULES[1]: ("2",)}  # the levels whose Prometheus loads them


def routes_test(labels: dict[str, str]) -> list[str]:
    result = subprocess.run(
        [tool("amtool"), "config", "routes", "test", f"--config.file={ALERTMANAGER}",
         *(f"{k}={v}" for k, v in labels.items())],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().split(",")


@pytest.mark.parametrize("rules", RULES, ids=lambda p: p.parent.parent.name)
def test_every_alert_is_routed_to_the_receiver_its_action_names(rules):
    """As each level's Prometheus sends it (its external label `level`), checked with amtool;
    shared/alert_routing.receivers, which the comparison counts pages with, agrees."""
    for level in LOADED_BY[rules]:
        for rule in alerts(rules):
            labels = {"alertname": rule["alert"], **rule["labels"], "level": level}
            routed = routes_test(labels)
            assert routed == alert_routing.receivers(labels), labels
            expected = [ACTIONS[rule["labels"]["action"]]]
            if rule["alert"] == "LiveQualityDrop" and level == "1":
                expected = ["person", "automation"]  # no CI at level 1: a person looks too
            assert routed == expected, labels


def test_the_routing_reader_follows_continue_and_the_parents_receiver():
    tree = {
        "receiver": "person",
        "routes": [
            {"matchers": ['team=~"ml|data"'], "continue": True},
            {"receiver": "a", "matchers": ['severity!="low"']},
            {"receiver": "b"},
        ],
    }  # fmt: skip
    assert alert_routing.receivers({"team": "ml", "severity": "high"}, tree) == ["person", "a"]
    assert alert_routing.receivers({"team": "ops", "severity": "low"}, tree) == ["b"]
    assert alert_routing.receivers({}, {"receiver": "person"}) == ["person"]
    # Alertmanager's deprecated matchers are refused rather than read as "match everything"
    old_style = {"receiver": "person", "routes": [{"receiver": "a", "match": {"team": "ml"}}]}
    with pytest.raises(alert_routing.RoutingError, match="matchers"):
        alert_routing.receivers({"team": "ops"}, old_style)


ALL_DESTINATIONS = {
    "ALERT_INBOX_URL": "http://127.0.0.1:8004/alertmanager",
    "ALERT_WEBHOOK_URL": "https://hooks.example.org/pages",
    "ALERT_SLACK_WEBHOOK_URL": "https://hooks.slack.example/services/T0/B0/x",
    "ALERT_SLACK_CHANNEL": "#churn-oncall",
    "ALERT_EMAIL_TO": "oncall@example.org",
    "ALERT_SMTP_SMARTHOST": "smtp.example.org:587",
    "ALERT_SMTP_FROM": "alertmanager@example.org",
    "ALERT_SMTP_USERNAME": "alertmanager",
    "ALERT_SMTP_PASSWORD": "not-in-git",
}


def test_pages_are_forwarded_where_the_environment_says_and_alertmanager_accepts_it(tmp_path):
    out = tmp_path / "alertmanager.yml"
    out.write_text("left by an earlier start")
    out.chmod(0o644)
    assert alert_routing.write(ALERTMANAGER, out, ALL_DESTINATIONS) == ["webhook", "slack", "email"]
    result = subprocess.run(
        [tool("amtool"), "check-config", str(out)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    receivers = {r["name"]: r for r in yaml.safe_load(out.read_text())["receivers"]}
    pages, automation = receivers["person"], receivers["automation"]
    assert [w["url"] for w in pages["webhook_configs"]] == [
        ALL_DESTINATIONS["ALERT_INBOX_URL"], ALL_DESTINATIONS["ALERT_WEBHOOK_URL"]
    ]  # fmt: skip
    assert pages["slack_configs"][0]["channel"] == "#churn-oncall"
    assert pages["email_configs"][0]["auth_password"] == "not-in-git"
    # Automatic actions are not pages: they reach the inbox only
    assert set(automation) == {"name", "webhook_configs"}
    assert [w["url"] for w in automation["webhook_configs"]] == [
        ALL_DESTINATIONS["ALERT_INBOX_URL"]
    ]
    assert out.stat().st_mode & 0o077 == 0  # the secrets are readable by their owner only


def test_nothing_configured_leaves_the_committed_routes_and_a_partial_email_is_refused(tmp_path):
    base = yaml.safe_load(ALERTMANAGER.read_text())
    assert alert_routing.render(base, {"ALERT_WEBHOOK_URL": "", "ALERT_EMAIL_TO": ""}) == base
    with pytest.raises(
        alert_routing.RoutingError, match="ALERT_SMTP_SMARTHOST and ALERT_SMTP_FROM"
    ):
        alert_routing.render(base, {"ALERT_EMAIL_TO": "oncall@example.org"})
