"""Level 1's monitoring decision (`level1_ct.assessment`), the rule the flow and `make compare`
both call: live quality only on enough labels of both outcomes, alerts by kind, and the
cooldown that holds back a second retrain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from level1_ct import reports
from level1_ct.assessment import (
    ALERT,
    ATTRIBUTION_SHIFT,
    DRIFT,
    LIVE_FAIRNESS,
    LIVE_QUALITY,
    assess,
)
from level1_ct.settings import PipelineSettings
from shared.schema import FEATURE_NAMES as _FEATURES
from shared.schema import ID, LABEL
from shared.simulator import SimulationConfig, generate_day

FEATURE_NAMES = list(_FEATURES)
NOW = datetime(2026, 3, 1, 18, tzinfo=UTC)
SETTINGS = PipelineSettings(monitor_min_rows=200, retrain_cooldown_seconds=300)


@pytest.fixture(scope="module")
def day():
    features, labels = generate_day(SimulationConfig(rows_per_day=600, seed=5), 2)
    return features.merge(labels, on=ID)


@pytest.fixture(scope="module")
def no_drift(day):
    return reports.data_drift(
        day[FEATURE_NAMES], day[FEATURE_NAMES], SETTINGS.drift_share_threshold
    )


def answered(day: pd.DataFrame, right: bool) -> pd.DataFrame:
    """The day's requests with the probability a service answered: near the label when
    `right`, its opposite when not."""
    noise = np.random.default_rng(0).random(len(day))
    label = day[LABEL].astype(float).to_numpy()
    probability = 0.4 * (label if right else 1 - label) + 0.6 * noise
    return day[[*FEATURE_NAMES, LABEL]].assign(probability=probability)


def test_live_quality_is_the_roc_auc_of_the_answers_against_their_labels(day, no_drift):
    labelled = answered(day, right=True)
    found = assess(SETTINGS, no_drift, labelled, holdout_auc=0.8, last_alert=None, now=NOW)
    expected = roc_auc_score(labelled[LABEL].astype(int), labelled["probability"])
    assert found.metrics["live_roc_auc"] == pytest.approx(expected)
    assert found.metrics["labelled_rows"] == len(labelled)
    assert found.alerts == {} and not found.retrain and ALERT not in found.metrics


def test_live_fairness_is_each_groups_rates_on_the_labelled_answers(day, no_drift):
    """Answers that flag every rural customer and nobody else: rural churners and stayers
    are all flagged, the others none, so the city tiers are 1.0 apart, recorded per group."""
    labelled = answered(day, right=True)
    labelled["probability"] = np.where(labelled["city_tier"] == "rural", 0.9, 0.1)
    metrics = assess(SETTINGS, no_drift, labelled, 0.8, last_alert=None, now=NOW).metrics
    assert metrics["live_fairness/city_tier/equalized_odds_difference"] == 1.0
    assert metrics["live_fairness/city_tier/rural/true_positive_rate"] == 1.0
    assert metrics["live_fairness/city_tier/metro/false_positive_rate"] == 0.0
    assert metrics["live_fairness/city_tier/demographic_parity_difference"] == 1.0
    assert metrics["live_fairness/platform/equalized_odds_difference"] < 0.3
    too_few = assess(SETTINGS, no_drift, labelled.head(SETTINGS.monitor_min_rows - 1), 0.8,
                     last_alert=None, now=NOW).metrics  # fmt: skip
    assert not [k for k in too_few if k.startswith("live_fairness/")]


def rural_flagged(day: pd.DataFrame) -> pd.DataFrame:
    """Right answers, but every rural customer flagged and nobody else: the city tiers' true-
    and false-positive rates 1.0 apart, the other attributes' groups near each other."""
    labelled = answered(day, right=True)
    labelled["probability"] = np.where(labelled["city_tier"] == "rural", 0.9, 0.1)
    return labelled


def test_groups_further_apart_than_the_gates_bound_page_a_person_and_retrain_nothing(day, no_drift):
    found = assess(SETTINGS, no_drift, rural_flagged(day), 0.5, None, NOW)
    assert list(found.alerts) == [LIVE_FAIRNESS] and found.pages == [found.alerts[LIVE_FAIRNESS]]
    message = found.alerts[LIVE_FAIRNESS]
    assert message.startswith("city_tier: equalised-odds difference 1.00 on labelled answers")
    assert "rural 1.00 vs " in message and message.endswith("is over the gate's bound 0.6")
    assert "platform" not in message and "age_band" not in message
    # Not a retrain's to answer, and no cooldown starts: a drift alert later still retrains
    assert not found.retrain and not found.cooling and ALERT not in found.metrics
    # Within the bound: quiet, the same rates recorded
    lenient = PipelineSettings(monitor_min_rows=200, max_equalized_odds_difference=1.0)
    quiet = assess(lenient, no_drift, rural_flagged(day), 0.5, None, NOW)
    assert quiet.alerts == {} and quiet.pages == []
    assert quiet.metrics["live_fairness/city_tier/equalized_odds_difference"] == 1.0


def test_a_fairness_page_beside_a_quality_alert_leaves_the_retrain_and_its_cooldown_alone(
    day, no_drift
):
    wrong = rural_flagged(day)
    wrong["probability"] = 1 - wrong["probability"]  # the rural churners now all missed
    cooldown = timedelta(seconds=SETTINGS.retrain_cooldown_seconds)
    found = assess(SETTINGS, no_drift, wrong, 0.8, NOW - 2 * cooldown, NOW)
    assert set(found.alerts) == {LIVE_QUALITY, LIVE_FAIRNESS}
    assert found.retrain and found.metrics[ALERT] == 1.0
    held = assess(SETTINGS, no_drift, wrong, 0.8, NOW - cooldown / 2, NOW)
    assert held.cooling and not held.retrain and held.pages == [held.alerts[LIVE_FAIRNESS]]


@pytest.mark.parametrize(
    "labels", ["too few", "one outcome"], ids=["fewer than monitor_min_rows", "a single class"]
)
def test_live_quality_is_not_judged_without_enough_labels_of_both_outcomes(day, no_drift, labels):
    wrong = answered(day, right=False)
    if labels == "too few":
        wrong = wrong.head(SETTINGS.monitor_min_rows - 1)
    else:
        wrong = wrong[wrong[LABEL].astype(bool)]
    found = assess(SETTINGS, no_drift, wrong, holdout_auc=0.8, last_alert=None, now=NOW)
    assert "live_roc_auc" not in found.metrics and LIVE_QUALITY not in found.alerts


def test_wrong_answers_raise_a_live_quality_alert_that_starts_a_retrain(day, no_drift):
    found = assess(SETTINGS, no_drift, answered(day, right=False), 0.8, last_alert=None, now=NOW)
    assert list(found.alerts) == [LIVE_QUALITY] and "below 0.760" in found.alerts[LIVE_QUALITY]
    assert found.retrain and found.metrics[ALERT] == 1.0 and not found.cooling


def test_an_alert_inside_the_cooldown_starts_no_retrain_and_one_after_it_does(day, no_drift):
    wrong = answered(day, right=False)
    cooldown = timedelta(seconds=SETTINGS.retrain_cooldown_seconds)
    recent = assess(SETTINGS, no_drift, wrong, 0.8, last_alert=NOW - cooldown / 2, now=NOW)
    assert recent.alerts and recent.cooling and not recent.retrain
    assert ALERT not in recent.metrics  # a held-back alert does not restart the cooldown
    later = assess(SETTINGS, no_drift, wrong, 0.8, last_alert=NOW - 2 * cooldown, now=NOW)
    assert later.retrain and later.metrics[ALERT] == 1.0


def test_drift_past_the_threshold_is_a_drift_alert(day):
    shifted = generate_day(SimulationConfig(scenario="covariate-shift", rows_per_day=600), 25)[0]
    drift = reports.data_drift(shifted, day, SETTINGS.drift_share_threshold)
    found = assess(SETTINGS, drift, day.head(0), holdout_auc=0.8, last_alert=None, now=NOW)
    assert DRIFT in found.alerts and "age" in found.alerts[DRIFT] and found.retrain
    assert found.metrics["drift_share"] == drift.share >= SETTINGS.drift_share_threshold


def test_attributions_moving_past_the_threshold_retrain_and_are_recorded(day, no_drift):
    """What the champion leans on for its live answers against its hold-out's: a shift at the
    threshold raises an alert that retrains, naming the features that moved most; under it,
    the figures are recorded and nothing is raised."""
    labelled = answered(day, right=True)
    reference = {"late_rate": 0.5, "age": 0.1, "orders_30d": 0.4}
    moved = {"late_rate": 0.2, "age": 0.4, "orders_30d": 0.4}  # 30 % of the reliance moved
    settings = SETTINGS.model_copy(update={"max_attribution_shift": 0.25})
    found = assess(settings, no_drift, labelled, 0.8, None, NOW, attributions=(reference, moved))
    assert found.metrics["attribution_shift"] == pytest.approx(0.3)
    assert found.metrics["live_attribution/age"] == 0.4
    assert list(found.alerts) == [ATTRIBUTION_SHIFT] and found.retrain and ALERT in found.metrics
    assert "age 10% -> 40%" in found.alerts[ATTRIBUTION_SHIFT]
    assert "late_rate 50% -> 20%" in found.alerts[ATTRIBUTION_SHIFT]
    calm = assess(settings, no_drift, labelled, 0.8, None, NOW, attributions=(reference, reference))
    assert calm.metrics["attribution_shift"] == 0 and calm.alerts == {}
    # a champion logged before attributions were: nothing to hold its live ones to
    bare = assess(settings, no_drift, labelled, 0.8, None, NOW, attributions=({}, moved))
    assert "attribution_shift" not in bare.metrics and bare.alerts == {}
