"""`make compare`: the default scenario shows what each level claims and the outputs are
written. That a seed gives the same comparison twice, whatever L*_ variables the shell exports,
is checked where the suite replays a story twice anyway: tests/docker/test_compare_stacks.py
(and tests/unit/test_compare.py checks the replay takes the levels' defaults)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from compare.settings import CompareSettings
from tests.browser import render

ROOT = Path(__file__).resolve().parents[2]

# A shorter story with the same kinds of events, for the container stacks' replay
SHORT = {
    "COMPARE_DAYS": "24",
    "COMPARE_START_DAY": "8",
    "COMPARE_COVARIATE_SHIFT_DAY": "10",
    "COMPARE_COVARIATE_SHIFT_DAYS": "4",
    "COMPARE_INCIDENT_DAY": "14",
    "COMPARE_CONCEPT_DRIFT_DAY": "17",
    "COMPARE_CONCEPT_DRIFT_DAYS": "3",
    "COMPARE_GOOD_CHANGE_DAY": "9",
    "COMPARE_BAD_CHANGE_DAY": "11",
    "COMPARE_SEED": "7",
    "COMPARE_ROWS_PER_DAY": "300",
    "COMPARE_N_ITER": "1",
    "COMPARE_ROLLOUT_KINDS": "[]",  # level 2's rollout kinds: the default run's
    "COMPARE_GROUP_HARM_DAY": "none",  # the group-harm story: the default run's
}


def compare(out: Path, **env: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["make", "compare"],
        cwd=ROOT,
        env={**os.environ, "COMPARE_OUT": str(out), **env},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def default_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("compare")
    return compare(out), out


def figures(out: Path) -> dict[str, dict]:
    found = json.loads((out / "summary.json").read_text())
    return {key.split(" ")[0]: value for key, value in found.items()}  # "0 (manual)" -> "0"


def incident_days(figure: str) -> dict[str, str]:
    """ "covariate shift: 12; broken export: 0" -> {"covariate shift": "12", ...}"""
    return dict(part.rsplit(": ", 1) for part in figure.split("; "))


def test_the_default_scenario_shows_what_each_level_claims(default_run):
    _, out = default_run
    level = figures(out)
    # Level 0: nobody retrains, nothing watches: after the concept drift quality stays down.
    assert level["0"]["days to recover from concept drift"] is None
    assert level["0"]["days to detect concept drift"] is None
    assert level["0"]["training runs"] == 2  # the person's retrains: the two releases
    # Level 1: monitoring notices, the pipeline retrains through the gate and recovers.
    recovered = level["1"]["days to recover from concept drift"]
    assert recovered is not None and recovered <= CompareSettings().recovery_window_days, recovered
    assert level["1"]["days to detect covariate shift"] is not None
    assert level["1"]["training runs triggered by drift"] > 0
    # The data incident is quarantined where a pipeline runs, never trained on anywhere.
    for number in "012":
        assert level[number]["bad data that reached training"] == 0
    assert level["1"]["bad batches rejected"] == level["2"]["bad batches rejected"] == 1
    # Untested code released by hand reaches production at levels 0 and 1; level 2's CI
    # stops it, and ships the good change faster, with no manual step.
    assert level["0"]["bad deployments in production"] == 1
    assert level["1"]["bad deployments in production"] == 1
    assert level["2"]["bad deployments in production"] == 0
    assert level["2"]["days a bad change served"] == 0
    given = {n: level[n]["customers who got a bad change's answers"] for n in "012"}
    assert given["2"] == 0 < given["1"] and given["0"] > 0, given  # every customer, for days
    lead = {n: level[n]["lead time of the good change (days)"] for n in "012"}
    assert None not in lead.values(), lead
    assert lead["2"] < lead["1"] and lead["2"] < lead["0"], lead
    assert level["2"]["manual steps"] == 0 < level["1"]["manual steps"] < level["0"]["manual steps"]
    # Alerts: level 0 has no monitoring; levels 1 and 2 raise the stacks' alerts, the broken
    # export pages the evening it lands, and level 2's CI stops the bad change with no alert.
    assert (level["0"]["alerts raised"], level["0"]["pages to a person"]) == (0, 0)
    for number in "12":
        assert level[number]["true alerts"] > 0 and level[number]["pages to a person"] > 0
        assert (
            incident_days(level[number]["days from each incident to its first alert"])[
                "broken export"
            ]
            == "0"
        )
    bad_change = "refactor the service's scoring"
    assert (
        incident_days(level["2"]["days from each incident to its first action"])[bad_change] == "0"
    )
    assert (
        incident_days(level["2"]["days from each incident to its first alert"])[bad_change]
        == "never"
    )
    assert incident_days(level["0"]["days from each incident to its first alert"]) == dict.fromkeys(
        ["covariate shift", "concept drift", "broken export", bad_change], "never"
    )
    # Quality over the whole replay ranks the levels.
    auc = {n: level[n]["mean ROC AUC"] for n in "012"}
    assert auc["0"] < auc["1"] <= auc["2"] + 0.005, auc


def test_the_report_table_and_plots_are_written(default_run):
    result, out = default_run
    table = (out / "summary.md").read_text()
    assert (
        table.splitlines()[0]
        == "| figure | level 0 (manual) | level 1 (continuous training) | level 2 (CI/CD) |"
    )
    assert table.strip() in result.stdout  # the same table printed at the end
    assert "day 59" in result.stdout  # progress, day by day
    for png in ("quality.png", "drift.png", "group_harm.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 3
    assert "CI red for &#x27;refactor the service&#x27;s scoring&#x27;" in page
    assert "reverted by hand" in page
    assert '<p id="alerts">' in page and "Level 0 has no" in page


def test_level_2s_rollout_kinds_expose_whom_each_should_and_take_the_time_each_needs(
    default_run,
):
    """The same two pushes delivered as a canary, a shadow and an A/B test: the bad change
    (the same ROC AUC, far more customers flagged) is stopped by every kind, after its share
    of customers got its answers under a canary, none under a shadow, many more under an A/B
    test that waits for their labels; the good change is promoted by all three."""
    result, out = default_run
    kinds = json.loads((out / "summary.json").read_text())["rollout kinds"]
    assert list(kinds) == ["canary", "shadow", "ab"]
    bad, good = "'search wider, classes weighed evenly' (bad)", "'widen the hyper-parameter search'"
    outcomes = [kinds[k][f"{bad}: outcome"] for k in kinds]
    assert outcomes == ["rolled back", "discarded", "rolled back"], kinds
    exposed = {k: kinds[k][f"{bad}: customers who got its answers"] for k in kinds}
    assert exposed["shadow"] == 0 < exposed["canary"] < exposed["ab"], exposed
    assert "PSI" in kinds["canary"][f"{bad}: decided on"]
    assert "would change" in kinds["shadow"][f"{bad}: decided on"]
    assert "labelled decisions" in kinds["ab"][f"{bad}: decided on"]
    assert [kinds[k][f"{good}: outcome"] for k in kinds] == ["promoted"] * 3, kinds
    took = {k: kinds[k][f"{good}: days from push to decision"] for k in kinds}
    assert took["shadow"] <= took["canary"] < took["ab"], took
    assert took["ab"] > CompareSettings().label_delay_days  # labels land days later
    assert "Level 2's rollout kinds:" in result.stdout
    assert (out / "rollout_kinds.md").read_text().startswith("| figure | rollout canary |")


def test_the_report_renders_in_headless_chromium(default_run):
    _, out = default_run
    dom = render((out / "report.html").as_uri(), budget_ms=10000)
    assert 'data-plots="3"' in dom, dom[:500]  # every plot decoded by the browser
    assert dom.count('data-rendered="true"') == 3
    for plot in ("quality", "drift", "group_harm"):
        assert f"see {plot}.png" not in dom  # no plot replaced
    assert '<table id="summary">' in dom and '<table id="events">' in dom
    assert '<table id="kinds">' in dom and "A/B test answers 50%" in dom
    assert '<table id="harm">' in dom and '<figure id="group-harm">' in dom


def test_a_change_that_harms_one_group_is_shipped_by_level_0_and_stopped_by_the_gate(default_run):
    """The group-harm story: a change that drops the feature rural customers' churn turns on.
    Level 0 hands its model over and serves it to the end, to every rural customer it answers;
    level 1's gate rejects every candidate its released code trains, naming the rural slice;
    level 2's staging gate rejects the push itself, for the same reason. Where it served, the
    rural customers' ranking and the share of their churners flagged fell well below the
    other levels', while everyone's ROC AUC moved far less."""
    result, out = default_run
    harm = json.loads((out / "summary.json").read_text())["group harm"]
    assert list(harm) == ["0", "1", "2"]
    served = {n: harm[n]["days a group-harming model served"] for n in harm}
    assert served["0"] >= 10 and served["1"] == served["2"] == 0, served
    assert harm["0"]["city_tier=rural customers who got its answers"] > 500
    assert harm["0"]["stopped by"].startswith("nothing")
    assert harm["1"]["stopped by"].startswith("the gate, on ")
    assert harm["2"]["stopped by"].startswith("the staging gate, before any release")
    for n in ("1", "2"):
        assert "slice city_tier=rural roc_auc" in harm[n]["stopped by"], harm[n]
    rural, everyone = (
        "live ROC AUC, last week: city_tier=rural",
        "live ROC AUC, last week: everyone",
    )
    assert harm["0"][rural] < harm["1"][rural] - 0.05, harm
    assert harm["0"][rural] < harm["2"][rural] - 0.05, harm
    flagged = "churners flagged, last week: city_tier=rural"
    assert harm["0"][flagged] < harm["1"][flagged] - 0.15, harm
    rural_loss = harm["1"][rural] - harm["0"][rural]
    assert harm["1"][everyone] - harm["0"][everyone] < rural_loss / 2, harm
    assert "The group-harm story:" in result.stdout
    assert (out / "group_harm.md").read_text().startswith("| figure | level 0 | level 1 |")
