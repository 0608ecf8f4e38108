"""Judge a fitted model on held-out data: overall metrics, per-slice metrics and the baseline.

One average hides the customers a model fails: the slices (age band, platform, city tier)
show whether quality holds for each group, which is what a drifting user base breaks first,
and their fairness (`fairness.py`) whether each group gets the same decisions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from shared.fairness import AttributeFairness, flat_fairness, group_fairness
from shared.features import feature_frame
from shared.schema import LABEL

THRESHOLD = 0.5  # probability at or above which a customer is predicted to churn
MIN_SLICE_ROWS = 30  # smaller slices are reported by size only: their metrics are noise

AGE_BANDS = ((0, 18, "under_18"), (18, 25, "18-24"), (25, 35, "25-34"), (35, 50, "35-49"))


def age_band(age: pd.Series) -> pd.Series:
    """Age bands for slicing: under_18, 18-24, 25-34, 35-49, 50_plus."""
    bands = pd.Series("50_plus", index=age.index)
    for low, high, name in AGE_BANDS:
        bands[(age >= low) & (age < high)] = name
    return bands


SLICES = {
    "age_band": lambda f: age_band(f["age"]),
    "platform": lambda f: f["platform"],
    "city_tier": lambda f: f["city_tier"],
}


def classification_metrics(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """ROC AUC, F1, precision, recall, log loss, accuracy; AUC is NaN if only one class.

    Computed with numpy, to the same values as scikit-learn's `roc_auc_score`, `f1_score`,
    `precision_score`, `recall_score` (zero_division=0) and `log_loss` (tests/unit/
    model/test_evaluate.py checks): those validate their input on every call, which costs 30 ms,
    and slices, monitoring and `make compare` call this thousands of times."""
    y = np.asarray(y_true).astype(int) == 1
    proba = np.asarray(proba, dtype=float)
    predicted = proba >= THRESHOLD
    positives, negatives = int(y.sum()), int((~y).sum())
    true_pos = int((predicted & y).sum())
    flagged = int(predicted.sum())
    # ROC AUC as the Mann-Whitney statistic: the chance that a random churner gets a higher
    # probability than a random stayer, ties counting half (the area under the ROC curve)
    ranks = rankdata(proba)
    auc = (ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives)
    clipped = np.clip(proba, 1e-6, 1 - 1e-6)
    return {
        "roc_auc": float(auc) if positives and negatives else math.nan,
        "f1": 2 * true_pos / (positives + flagged) if positives + flagged else 0.0,
        "precision": true_pos / flagged if flagged else 0.0,
        "recall": true_pos / positives if positives else 0.0,
        "log_loss": float(-np.mean(np.where(y, np.log(clipped), np.log(1 - clipped)))),
        "accuracy": float((predicted == y).mean()),
    }


@dataclass(frozen=True)
class Evaluation:
    """Metrics of one model on one data set: overall, per slice value, and the slices'
    group fairness (`fairness.py`)."""

    rows: int
    positive_rate: float
    overall: dict[str, float]
    slices: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    fairness: dict[str, AttributeFairness] = field(default_factory=dict)

    def flat(self, prefix: str = "") -> dict[str, float]:
        """Finite metrics as flat names for MLflow, e.g. 'slice/platform/web/roc_auc',
        'fairness/age_band/18-24/true_positive_rate', 'fairness/age_band/equalized_odds_difference'."""
        out = {f"{prefix}{k}": v for k, v in self.overall.items()}
        for name, values in self.slices.items():
            for value, metrics in values.items():
                for k, v in metrics.items():
                    out[f"{prefix}slice/{name}/{value}/{k}"] = v
        out |= flat_fairness(self.fairness, f"{prefix}fairness/")
        return {k: v for k, v in out.items() if not math.isnan(v)}


def evaluate(model, frame: pd.DataFrame) -> Evaluation:
    """Score `model` (anything with predict_proba) on a labelled frame."""
    if frame.empty:
        raise ValueError("cannot evaluate on an empty data set")
    y = frame[LABEL].to_numpy().astype(int)
    proba = model.predict_proba(feature_frame(frame))[:, 1]
    slices: dict[str, dict[str, dict[str, float]]] = {}
    groups = slice_groups(frame)
    for name, keys in groups.items():
        slices[name] = {}
        for value in sorted(set(keys)):
            mask = keys == value
            metrics = {"rows": float(mask.sum())}
            if mask.sum() >= MIN_SLICE_ROWS:
                metrics |= classification_metrics(y[mask], proba[mask])
            slices[name][str(value)] = metrics
    return Evaluation(
        rows=len(frame),
        positive_rate=float(y.mean()),
        overall=classification_metrics(y, proba),
        slices=slices,
        fairness=group_fairness(y, proba, groups, THRESHOLD, MIN_SLICE_ROWS),
    )


def slice_groups(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each row's group in every slice attribute: {"age_band": ["18-24", ...], ...}."""
    return {name: slicer(frame).to_numpy() for name, slicer in SLICES.items()}


def live_fairness(frame: pd.DataFrame, proba: np.ndarray) -> dict[str, AttributeFairness]:
    """Group fairness of answers already given (`proba`) to a labelled frame's customers:
    what monitoring computes where labels have landed, by the gate's own definitions."""
    y = frame[LABEL].to_numpy().astype(int)
    return group_fairness(y, proba, slice_groups(frame), THRESHOLD, MIN_SLICE_ROWS)


def beats_baseline(model: Evaluation, baseline: Evaluation, min_auc_lift: float) -> bool:
    """True when the model's ROC AUC exceeds the baseline's by at least `min_auc_lift`."""
    return model.overall["roc_auc"] >= baseline.overall["roc_auc"] + min_auc_lift
