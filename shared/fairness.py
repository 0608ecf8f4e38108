"""Group fairness of a model's decisions: does it treat each group of customers alike?

A slice's ROC AUC (`evaluate.py`) says whether the model *ranks* a group's customers well.
It does not say whether the group gets the same *decisions*: a model can rank young customers
as well as anyone and still flag far fewer of the young who leave, because their scores sit
lower. Fairness looks at the decisions (a probability at or above `evaluate.THRESHOLD`), per
group of each attribute (the same groups as the slices: age band, platform, city tier):

- true_positive_rate: of the group's churners, the share the model flags (missed churners
  get no retention offer);
- false_positive_rate: of the group's stayers, the share flagged anyway;
- selection_rate: the share of the group flagged at all;
- calibration_gap: mean predicted probability minus the observed churn rate (0 when the
  model's probabilities mean the same thing for this group as for the data as a whole).

and, per attribute, the gap between its best- and worst-treated groups:

- equalized_odds_difference: the larger of the true- and false-positive rates' gaps
  (0 when every group's churners and stayers are flagged at the same rates);
- demographic_parity_difference: the selection rates' gap;
- calibration_difference: the calibration gaps' gap.

These are fairlearn's definitions (`MetricFrame(...).difference()`,
`equalized_odds_difference`, `demographic_parity_difference`), computed here with numpy:
fairlearn's MetricFrame costs about 40 ms per attribute, and every evaluation (three per
gate, thousands in `make compare`) computes them. tests/unit/model/test_fairness.py checks
these figures against fairlearn's own on hand-made and random tables.

A group with fewer than `evaluate.MIN_SLICE_ROWS` rows, or fewer than `MIN_OUTCOMES` churners
or stayers, is reported with its size only and left out of the gaps: its rates are noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# A group's rates are judged with at least this many churners and this many stayers: below
# it, one customer moves its true- or false-positive rate by 5 points or more.
MIN_OUTCOMES = 20
EQUALIZED_ODDS = "equalized_odds_difference"  # the gap the gate holds (shared/gate.py)
# Per attribute: the gap's name, and the rates whose between-groups spread it is
GAPS = {
    EQUALIZED_ODDS: ("true_positive_rate", "false_positive_rate"),
    "demographic_parity_difference": ("selection_rate",),
    "calibration_difference": ("calibration_gap",),
}


def group_rates(y: np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, float]:
    """One group's rates (see the module docstring); y is 0/1, proba the model's."""
    churned = np.asarray(y).astype(int) == 1
    proba = np.asarray(proba, dtype=float)
    flagged = proba >= threshold
    positives, negatives = int(churned.sum()), int((~churned).sum())
    return {
        "true_positive_rate": int((flagged & churned).sum()) / positives,
        "false_positive_rate": int((flagged & ~churned).sum()) / negatives,
        "selection_rate": float(flagged.mean()),
        "calibration_gap": float(proba.mean() - churned.mean()),
    }


@dataclass(frozen=True)
class Gap:
    """An attribute's gap on one measure, with the groups at either end of it."""

    value: float
    rate: str  # which rate is spread this far: for equalized odds, the wider of the two
    high: str  # the group with the highest rate
    low: str  # and the lowest

    def describe(self, groups: dict[str, dict[str, float]]) -> str:
        rate = self.rate.replace("_", " ")
        return (f"{rate} {self.high} {groups[self.high][self.rate]:.2f} "
                f"vs {self.low} {groups[self.low][self.rate]:.2f}")  # fmt: skip


@dataclass(frozen=True)
class AttributeFairness:
    """One attribute's groups (rates, or only `rows` for a group too small to judge) and gaps."""

    groups: dict[str, dict[str, float]]
    gaps: dict[str, Gap] = field(default_factory=dict)  # empty with fewer than 2 judged groups

    def gap(self, name: str) -> float:
        return self.gaps[name].value if name in self.gaps else math.nan


def attribute_fairness(
    y: np.ndarray, proba: np.ndarray, groups: np.ndarray, threshold: float, min_rows: int
) -> AttributeFairness:
    """Rates of every group of one attribute, and the gaps between the groups large enough."""
    y, proba, groups = np.asarray(y).astype(int), np.asarray(proba, dtype=float), np.asarray(groups)
    out: dict[str, dict[str, float]] = {}
    for group in sorted(set(groups.tolist()), key=str):
        mask = groups == group
        rows = int(mask.sum())
        churners = int(y[mask].sum())
        out[str(group)] = {"rows": float(rows)}
        if rows >= min_rows and min(churners, rows - churners) >= MIN_OUTCOMES:
            out[str(group)] |= group_rates(y[mask], proba[mask], threshold)
    judged = {g: m for g, m in out.items() if "selection_rate" in m}
    gaps: dict[str, Gap] = {}
    if len(judged) >= 2:
        for name, rates in GAPS.items():
            spreads = []
            for rate in rates:
                high = max(judged, key=lambda g: judged[g][rate])
                low = min(judged, key=lambda g: judged[g][rate])
                spreads.append(Gap(judged[high][rate] - judged[low][rate], rate, high, low))
            gaps[name] = max(spreads, key=lambda gap: gap.value)
    return AttributeFairness(out, gaps)


def group_fairness(
    y: np.ndarray,
    proba: np.ndarray,
    attributes: dict[str, np.ndarray],
    threshold: float,
    min_rows: int,
) -> dict[str, AttributeFairness]:
    """`attribute_fairness` for each attribute: {name: groups of each row}."""
    return {name: attribute_fairness(y, proba, groups, threshold, min_rows)
            for name, groups in attributes.items()}  # fmt: skip


def flat_fairness(
    attributes: dict[str, AttributeFairness], prefix: str = "fairness/"
) -> dict[str, float]:
    """Every judged rate and gap under flat names, as MLflow and the monitoring table keep
    them: 'fairness/age_band/18-24/true_positive_rate', 'fairness/age_band/equalized_odds_difference'."""
    out = {}
    for name, attribute in attributes.items():
        for group, rates in attribute.groups.items():
            out |= {f"{prefix}{name}/{group}/{k}": v for k, v in rates.items() if k != "rows"}
        out |= {f"{prefix}{name}/{k}": gap.value for k, gap in attribute.gaps.items()}
    return out


def gaps_by_attribute(
    flat: dict[str, float], prefix: str = "fairness/", gap: str = EQUALIZED_ODDS
) -> dict[str, float]:
    """{attribute: its `gap`} back from `flat_fairness`'s names, as MLflow's run metrics and the
    monitoring table hold them: 'fairness/age_band/equalized_odds_difference' -> age_band."""
    found = {}
    for key, value in flat.items():
        attribute, _, name = key.removeprefix(prefix).partition("/")
        if key.startswith(prefix) and name == gap:
            found[attribute] = value
    return found
