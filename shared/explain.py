"""Why the model scored a customer as it did: SHAP attributions, per contract feature.

SHAP's tree explainer (`shap.TreeExplainer`, exact for tree ensembles, scikit-learn's
HistGradientBoostingClassifier among them) splits the model's output for one customer, in
log-odds, into a base value (the average output over the training data) plus one
attribution per encoded column. A category is several encoded columns (`platform=ios`,
`platform=android`, ...) and late_rate is derived from two contract columns: their
attributions are summed onto the contract feature they come from (`late_rate` stays its own
line: the model sees it as a feature of its own). Sums keep SHAP's additivity:

    base_value + sum(attributions) == log-odds of the model's churn probability

to within `TOLERANCE` (tests/unit/model/test_explain.py checks it on every record).

Per registered version, the pipeline logs the global view (`global_attributions`: mean
|attribution| per feature, and a summary plot); the level-1 and level-2 services answer
`POST /explain` with one customer's attributions (`explain_records`); level 1's monitoring
holds the champion's attributions on its live answers to those of its hold-out
(`attribution_shift`).

`shap` imports numba (about 5 s, 100 MB): imported on first use, so a service that never
explains pays nothing for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from shared.features import ENCODED_FEATURES
from shared.schema import FEATURE_NAMES, ID

TOLERANCE = 1e-6  # |base_value + sum(attributions) - log-odds|, in log-odds
DERIVED = ("late_rate",)  # encoded columns that are features of their own
EXPLAINED = (*FEATURE_NAMES, *DERIVED)  # the names attributions are reported under


def _feature_of(column: str) -> str:
    """The reported feature an encoded column belongs to: 'platform=ios' -> 'platform'."""
    return column.split("=", 1)[0]


# encoded column index -> position in EXPLAINED
_COLUMN_TO_FEATURE = np.array([EXPLAINED.index(_feature_of(c)) for c in ENCODED_FEATURES])


@dataclass(frozen=True)
class Explanation:
    """Attributions of some customers: rows follow the records, columns follow EXPLAINED."""

    base_value: float  # log-odds
    attributions: np.ndarray  # (records, len(EXPLAINED)), log-odds
    log_odds: np.ndarray  # the model's output per record
    probabilities: np.ndarray  # sigmoid(log_odds): what /predict answers

    def record(self, i: int) -> dict[str, float]:
        return {name: float(v) for name, v in zip(EXPLAINED, self.attributions[i], strict=True)}


class Explainer:
    """A tree explainer for one fitted Pipeline (its encoding step, then the model)."""

    def __init__(self, pipeline: Any):
        import shap  # numba: seconds to import, so only where something is explained

        self.encode, model = pipeline[:-1], pipeline[-1]
        self.model = model
        self._tree = shap.TreeExplainer(model)
        self.base_value = float(np.ravel(self._tree.expected_value)[0])

    def explain(self, frame: pd.DataFrame) -> Explanation:
        """Attributions for every row of a frame of contract features."""
        encoded = self.encode.transform(frame[list(FEATURE_NAMES)])
        values = np.asarray(self._tree.shap_values(encoded, check_additivity=False))
        summed = np.zeros((len(frame), len(EXPLAINED)))
        np.add.at(summed.T, _COLUMN_TO_FEATURE, values.T)
        log_odds = self.model.decision_function(encoded)
        return Explanation(self.base_value, summed, log_odds, 1 / (1 + np.exp(-log_odds)))


def explain_records(explainer: Explainer, records: list[dict[str, Any]]) -> dict[str, Any]:
    """What `POST /explain` answers for validated records (without the model's name)."""
    frame = pd.DataFrame(records, columns=[*FEATURE_NAMES, ID])
    found = explainer.explain(frame)
    return {
        "base_value": round(found.base_value, 6),
        "explanations": [
            {
                ID: records[i].get(ID),
                "churn_probability": round(float(found.probabilities[i]), 6),
                "log_odds": round(float(found.log_odds[i]), 6),
                "attributions": {k: round(v, 6) for k, v in found.record(i).items()},
            }
            for i in range(len(records))
        ],
    }


def global_attributions(explainer: Explainer, frame: pd.DataFrame) -> dict[str, float]:
    """Mean |attribution| per feature over `frame`, largest first: what the model leans on."""
    found = explainer.explain(frame)
    means = np.abs(found.attributions).mean(axis=0)
    order = np.argsort(-means, kind="stable")
    return {EXPLAINED[i]: float(means[i]) for i in order}


def attribution_shift(reference: dict[str, float], live: dict[str, float]) -> float:
    """How far what the model leans on moved, from `reference` to `live` (each a
    `global_attributions`): each feature's share of the total mean |attribution|, and half the
    sum of the shares' absolute changes. 0: the same reliance; 1: none of the same features.
    The share of the model's reasoning that moved from some features to others; a feature
    missing from one side counts as 0 there."""
    features = sorted(set(reference) | set(live))
    ref = np.array([reference.get(f, 0.0) for f in features])
    now = np.array([live.get(f, 0.0) for f in features])
    if ref.sum() <= 0 or now.sum() <= 0:
        return float("nan")
    return float(0.5 * np.abs(now / now.sum() - ref / ref.sum()).sum())


def largest_moves(reference: dict[str, float], live: dict[str, float], n: int = 3) -> list[str]:
    """The `n` features whose share of the mean |attribution| moved most, in words (ties in
    the features' order)."""
    ref_total, live_total = sum(reference.values()), sum(live.values())
    shares = {f: (reference.get(f, 0.0) / ref_total, live.get(f, 0.0) / live_total)
              for f in set(reference) | set(live)}  # fmt: skip
    moved = sorted(shares, key=lambda f: (-abs(shares[f][1] - shares[f][0]), f))[:n]
    return [f"{f} {shares[f][0]:.0%} -> {shares[f][1]:.0%}" for f in moved]


def summary_plot(means: dict[str, float], rows: int, path: Any) -> None:
    """A bar chart of global attributions (`global_attributions` over `rows` customers), as
    the version's run keeps it (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    names = list(means)[::-1]
    ax.barh(names, [means[n] for n in names], color="#4c72b0")
    ax.set_xlabel("mean |SHAP attribution| (log-odds of churn)")
    ax.set_title(f"What the model leans on ({rows} hold-out customers)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
