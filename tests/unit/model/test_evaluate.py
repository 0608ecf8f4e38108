"""Evaluation: the metrics mean what they say, slices are reported per group, and small
slices are reported by size only."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from shared.evaluate import Evaluation, age_band, beats_baseline, classification_metrics, evaluate


class Fixed:
    """A stand-in model that returns given probabilities."""

    def __init__(self, proba: np.ndarray):
        self.proba = proba

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return np.column_stack([1 - self.proba, self.proba])


def test_perfect_predictions_score_perfectly():
    m = classification_metrics(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9]))
    assert m["roc_auc"] == 1 and m["f1"] == 1 and m["precision"] == 1 and m["recall"] == 1
    assert m["accuracy"] == 1 and m["log_loss"] < 0.25


def test_reversed_predictions_score_zero_auc():
    m = classification_metrics(np.array([0, 1]), np.array([0.9, 0.1]))
    assert m["roc_auc"] == 0 and m["recall"] == 0


def test_auc_is_nan_when_only_one_class_is_present():
    assert math.isnan(classification_metrics(np.array([1, 1]), np.array([0.2, 0.9]))["roc_auc"])


@pytest.mark.parametrize("seed", range(5))
def test_the_metrics_are_scikit_learns(seed):
    """Computed with numpy for speed; the values are scikit-learn's, ties and all."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 200)
    proba = np.round(np.clip(0.3 * y + rng.uniform(0, 0.7, 200), 0, 1), 2)  # ties
    proba[:3] = [0.0, 1.0, 0.5]  # the clipped ends and the threshold itself
    m = classification_metrics(y, proba)
    predicted = (proba >= 0.5).astype(int)
    expected = {
        "roc_auc": roc_auc_score(y, proba),
        "f1": f1_score(y, predicted, zero_division=0),
        "precision": precision_score(y, predicted, zero_division=0),
        "recall": recall_score(y, predicted, zero_division=0),
        "log_loss": log_loss(y, np.clip(proba, 1e-6, 1 - 1e-6), labels=[0, 1]),
        "accuracy": accuracy_score(y, predicted),
    }
    assert m == pytest.approx(expected, rel=1e-12, abs=1e-12)
    nobody_flagged = classification_metrics(y, np.zeros(200))
    assert nobody_flagged["precision"] == nobody_flagged["f1"] == 0.0


def test_age_bands_cover_teenagers_to_seniors():
    bands = age_band(pd.Series([13, 17, 18, 24, 25, 34, 35, 49, 50, 80]))
    assert list(bands) == [
        "under_18", "under_18", "18-24", "18-24", "25-34", "25-34", "35-49", "35-49",
        "50_plus", "50_plus",
    ]  # fmt: skip


def test_evaluation_reports_each_slice_and_skips_metrics_of_tiny_ones(labelled):
    proba = np.where(labelled["churned"] == 1, 0.7, 0.3)
    result = evaluate(Fixed(proba), labelled)
    assert result.overall["roc_auc"] == 1
    assert set(result.slices) == {"age_band", "platform", "city_tier"}
    assert set(result.slices["platform"]) == {"ios", "android", "web"}
    assert result.slices["platform"]["web"]["roc_auc"] == 1
    sizes = {k: v["rows"] for k, v in result.slices["age_band"].items()}
    assert sum(sizes.values()) == len(labelled)
    tiny = [k for k, v in result.slices["age_band"].items() if v["rows"] < 30]
    for band in tiny:
        assert set(result.slices["age_band"][band]) == {"rows"}


def test_flat_metric_names_are_valid_for_mlflow_and_drop_nan():
    result = Evaluation(
        rows=10,
        positive_rate=0.5,
        overall={"roc_auc": 0.8, "f1": math.nan},
        slices={"platform": {"web": {"rows": 40.0, "roc_auc": 0.7}}},
    )
    assert result.flat("holdout/") == {
        "holdout/roc_auc": 0.8,
        "holdout/slice/platform/web/rows": 40.0,
        "holdout/slice/platform/web/roc_auc": 0.7,
    }


def test_beating_the_baseline_needs_the_full_margin():
    def ev(auc: float) -> Evaluation:
        return Evaluation(rows=1, positive_rate=0.5, overall={"roc_auc": auc})

    assert beats_baseline(ev(0.56), ev(0.5), 0.05)
    assert not beats_baseline(ev(0.54), ev(0.5), 0.05)


def test_evaluating_nothing_is_an_error(labelled):
    with pytest.raises(ValueError, match="empty"):
        evaluate(Fixed(np.array([])), labelled.iloc[0:0])
