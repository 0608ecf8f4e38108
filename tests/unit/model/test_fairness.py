"""Group fairness: each group's rates and each attribute's gaps are fairlearn's, on a table
made by hand (figures worked out on paper) and on random ones; groups too small to judge are
reported by size and left out of the gaps; the gate rejects a candidate whose gap is over the
bound or grew past the champion's, naming the attribute, the rate and the groups."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)

from shared.evaluate import MIN_SLICE_ROWS, THRESHOLD, Evaluation, evaluate
from shared.fairness import (
    EQUALIZED_ODDS,
    MIN_OUTCOMES,
    attribute_fairness,
    flat_fairness,
    gaps_by_attribute,
)
from shared.gate import GateConfig, judge


def table(counts: dict[str, tuple[int, int, int, int]]) -> tuple[np.ndarray, ...]:
    """Rows per group from (churners flagged, churners missed, stayers flagged, stayers
    not flagged); a flagged row scores 0.8, the others 0.2."""
    y, proba, groups = [], [], []
    for group, (tp, fn, fp, tn) in counts.items():
        for churned, flagged, n in ((1, 1, tp), (1, 0, fn), (0, 1, fp), (0, 0, tn)):
            y += [churned] * n
            proba += [0.8 if flagged else 0.2] * n
            groups += [group] * n
    return np.array(y), np.array(proba), np.array(groups)


# young: 40 churners (30 flagged), 40 stayers (8 flagged); older: 25 churners (10 flagged),
# 30 stayers (3 flagged)
BY_HAND = table({"young": (30, 10, 8, 32), "older": (10, 15, 3, 27)})


def test_rates_and_gaps_on_a_hand_made_table_are_the_paper_figures_and_fairlearns():
    y, proba, groups = BY_HAND
    result = attribute_fairness(y, proba, groups, THRESHOLD, MIN_SLICE_ROWS)
    young, older = result.groups["young"], result.groups["older"]
    assert young["true_positive_rate"] == 0.75 and older["true_positive_rate"] == 0.4
    assert young["false_positive_rate"] == 0.2 and older["false_positive_rate"] == 0.1
    assert young["selection_rate"] == 38 / 80 and older["selection_rate"] == 13 / 55
    # mean probability minus churn rate: (38·0.8 + 42·0.2)/80 − 40/80
    assert young["calibration_gap"] == pytest.approx((38 * 0.8 + 42 * 0.2) / 80 - 0.5)
    eod = result.gaps["equalized_odds_difference"]
    assert (eod.value, eod.rate, eod.high, eod.low) == (
        pytest.approx(0.35), "true_positive_rate", "young", "older")  # fmt: skip
    assert eod.describe(result.groups) == "true positive rate young 0.75 vs older 0.40"

    predicted = proba >= THRESHOLD
    assert eod.value == pytest.approx(
        equalized_odds_difference(y, predicted, sensitive_features=groups)
    )
    assert result.gap("demographic_parity_difference") == pytest.approx(
        demographic_parity_difference(y, predicted, sensitive_features=groups))  # fmt: skip


@pytest.mark.parametrize("seed", range(5))
def test_every_rate_and_gap_is_fairlearns_on_random_tables(seed):
    rng = np.random.default_rng(seed)
    n = 3000
    groups = rng.choice(["ios", "android", "web"], n, p=[0.5, 0.3, 0.2])
    proba = rng.beta(2, 3, n) + np.where(groups == "web", 0.15, 0.0)
    y = (rng.random(n) < np.clip(proba, 0, 1)).astype(int)
    predicted = proba >= THRESHOLD

    ours = attribute_fairness(y, proba, groups, THRESHOLD, MIN_SLICE_ROWS)
    frame = MetricFrame(
        metrics={"true_positive_rate": true_positive_rate,
                 "false_positive_rate": false_positive_rate, "selection_rate": selection_rate},
        y_true=y, y_pred=predicted, sensitive_features=groups)  # fmt: skip
    for group, theirs in frame.by_group.iterrows():
        for rate, value in theirs.items():
            assert ours.groups[group][rate] == pytest.approx(value), (group, rate)
    differences = frame.difference(method="between_groups")
    assert ours.gap("demographic_parity_difference") == pytest.approx(differences["selection_rate"])
    assert ours.gap("equalized_odds_difference") == pytest.approx(
        equalized_odds_difference(y, predicted, sensitive_features=groups)
    )
    calibration = pd.Series(proba - y).groupby(groups).mean()
    assert ours.gap("calibration_difference") == pytest.approx(
        calibration.max() - calibration.min()
    )


def test_a_group_too_small_or_without_enough_churners_is_reported_by_size_only():
    few_churners = MIN_OUTCOMES - 1
    y, proba, groups = table({
        "young": (30, 10, 8, 32),
        "older": (10, 15, 3, 27),
        "tiny": (5, 5, 5, 5),  # 20 rows: under MIN_SLICE_ROWS
        "loyal": (few_churners, 0, 0, 100),  # every churner flagged, but too few of them
    })  # fmt: skip
    result = attribute_fairness(y, proba, groups, THRESHOLD, MIN_SLICE_ROWS)
    assert result.groups["tiny"] == {"rows": 20.0}
    assert result.groups["loyal"] == {"rows": float(few_churners + 100)}
    # only young and older are compared: "loyal"'s perfect rate would widen the gap to 0.6
    assert result.gap("equalized_odds_difference") == pytest.approx(0.35)
    single = attribute_fairness(*table({"young": (30, 10, 8, 32)}), THRESHOLD, MIN_SLICE_ROWS)
    assert single.gaps == {} and math.isnan(single.gap("equalized_odds_difference"))


def test_an_evaluation_carries_fairness_per_slice_attribute_and_logs_it_flat(labelled):
    class Scores:  # flags the young only, whatever they do: unfair to everyone else
        def predict_proba(self, X):
            p = np.where(X["age"] < 25, 0.9, 0.1)
            return np.column_stack([1 - p, p])

    evaluation = evaluate(Scores(), labelled)
    assert set(evaluation.fairness) == {"age_band", "platform", "city_tier"}
    ages = evaluation.fairness["age_band"]
    judged = [g for g, rates in ages.groups.items() if "true_positive_rate" in rates]
    assert "18-24" in judged and {"25-34", "35-49"} & set(judged)
    assert ages.groups["18-24"]["true_positive_rate"] == 1.0
    assert ages.gap("equalized_odds_difference") == 1.0
    flat = evaluation.flat()
    assert flat["fairness/age_band/equalized_odds_difference"] == 1.0
    assert flat["fairness/age_band/18-24/selection_rate"] == 1.0
    assert "fairness/age_band/18-24/rows" not in flat  # the slice reports it
    # Read back from the flat names (MLflow's run metrics, the monitoring table): one per attribute
    gaps = gaps_by_attribute({**flat, "roc_auc": 0.8})
    assert gaps == {name: a.gap(EQUALIZED_ODDS) for name, a in evaluation.fairness.items()}
    live = flat_fairness(evaluation.fairness, prefix="live_fairness/")
    assert gaps_by_attribute(live, "live_fairness/") == gaps and gaps_by_attribute(live) == {}


def fair(eod: float, groups: tuple[str, str] = ("18-24", "35-49")) -> Evaluation:
    """An evaluation whose age bands' true-positive rates are `eod` apart."""
    low, high = 0.5 - eod / 2, 0.5 + eod / 2
    counts = {groups[0]: (round(100 * low), round(100 * (1 - low)), 10, 90),
              groups[1]: (round(100 * high), round(100 * (1 - high)), 10, 90)}  # fmt: skip
    y, proba, band = table(counts)
    attribute = attribute_fairness(y, proba, band, THRESHOLD, MIN_SLICE_ROWS)
    return Evaluation(rows=len(y), positive_rate=0.5, overall={"roc_auc": 0.8},
                      fairness={"age_band": attribute})  # fmt: skip


BASELINE = Evaluation(rows=100, positive_rate=0.3, overall={"roc_auc": 0.5})


def test_the_gate_rejects_a_gap_over_the_bound_naming_the_attribute_rate_and_groups():
    config = GateConfig(max_equalized_odds_difference=0.3)
    assert judge(fair(0.2), BASELINE, None, config).passed
    verdict = judge(fair(0.4), BASELINE, None, config)
    assert verdict.reasons == [
        "fairness age_band equalized_odds_difference <= maximum: 0.400 fails 0.300 "
        "(true positive rate 35-49 0.70 vs 18-24 0.30)"
    ]


def test_the_gate_rejects_a_candidate_less_fair_than_the_champion_by_more_than_delta():
    config = GateConfig(max_equalized_odds_difference=0.9, max_fairness_worsening=0.1)
    champion = fair(0.2)
    assert judge(fair(0.28), BASELINE, champion, config).passed  # within δ
    assert judge(fair(0.1), BASELINE, champion, config).passed  # fairer
    verdict = judge(fair(0.36), BASELINE, champion, config)
    assert verdict.reasons == [
        "fairness age_band equalized_odds_difference <= champion + worsening: 0.360 fails "
        "0.300 (true positive rate 35-49 0.68 vs 18-24 0.32)"
    ]


def test_an_attribute_the_champion_could_not_judge_is_held_to_the_bound_only():
    champion = Evaluation(rows=100, positive_rate=0.3, overall={"roc_auc": 0.8})
    verdict = judge(fair(0.4), BASELINE, champion, GateConfig())
    names = [c.name for c in verdict.checks if c.name.startswith("fairness")]
    assert names == ["fairness age_band equalized_odds_difference <= maximum"]
    assert verdict.passed
