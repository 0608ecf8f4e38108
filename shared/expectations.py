"""What a pushed commit's model and service must do, as checks that return their failure in
words (None when they hold): level 2's CI runs them in its ML Test Score sections
(tests/unit/model, tests/unit/infrastructure), and `make compare` runs the same functions on
the code a replayed push would deploy.

`score(pipeline, frame)` is a service's scoring, the code that turns the model's output into
the churn probability the API answers (`shared.api.churn_probabilities`, or a change to it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from shared.evaluate import beats_baseline, evaluate
from shared.features import feature_frame
from shared.schema import example_record
from shared.train import train_baseline

Score = Callable[[Any, pd.DataFrame], Any]


def beats_the_baseline(
    pipeline: Any, train_frame: pd.DataFrame, holdout: pd.DataFrame, min_auc_lift: float
) -> str | None:
    """model: the hold-out ROC AUC beats the dummy baseline's by `min_auc_lift`."""
    model = evaluate(pipeline, holdout)
    baseline = evaluate(train_baseline(train_frame), holdout)
    if beats_baseline(model, baseline, min_auc_lift):
        return None
    return (
        f"model: hold-out ROC AUC {model.overall['roc_auc']:.3f} does not beat the baseline's "
        f"{baseline.overall['roc_auc']:.3f} by {min_auc_lift}"
    )


def serving_matches_the_model(score: Score, pipeline: Any, frame: pd.DataFrame) -> str | None:
    """infrastructure: the service answers the probability the model gives offline, the
    probability of churn (no training/serving skew)."""
    features = feature_frame(frame)
    answered = np.asarray(score(pipeline, features), dtype=float)
    offline = pipeline.predict_proba(features)[:, 1]
    if np.allclose(answered, offline):
        return None
    worst = int(np.argmax(np.abs(answered - offline)))
    return (
        f"infrastructure: the service answers {answered[worst]:.3f} where the model gives "
        f"{offline[worst]:.3f} (training/serving skew)"
    )


def riskier_when_late_and_complaining(score: Score, pipeline: Any) -> str | None:
    """infrastructure: a customer with more late deliveries and complaints is answered a
    higher churn probability than the same customer without (a directional expectation)."""
    calm = pd.DataFrame([example_record()])
    risky = calm.assign(late_deliveries_30d=6, complaints_90d=5)
    answered = np.asarray(
        score(pipeline, feature_frame(pd.concat([calm, risky], ignore_index=True))), dtype=float
    )
    if answered[1] > answered[0]:
        return None
    return (
        f"infrastructure: more late deliveries and complaints scored {answered[1]:.3f}, "
        f"below {answered[0]:.3f}"
    )
