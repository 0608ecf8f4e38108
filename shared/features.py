"""The model as one scikit-learn Pipeline: feature encoding and estimator together.

Training, evaluation and every prediction service call this same Pipeline object, so a
transformation cannot be applied in training and forgotten in serving (training-serving skew).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import FunctionTransformer, Pipeline

from shared.schema import FEATURES

# Types that skops must be told to trust when loading a saved Pipeline: our own encoding
# function, and the gradient-boosting model's tree predictor.
# tests/unit/model/test_model.py checks this list against what skops actually reports.
SKOPS_TRUSTED_TYPES = [
    "shared.features.encode",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
]

# The encoded columns, in order: the contract's features (a category as one 0/1 column per
# contract category, e.g. "platform=ios"), then the derived ones.
ENCODED_FEATURES = [
    name
    for c in FEATURES
    for name in (
        [f"{c.name}={x}" for x in c.categories or ()] if c.kind == "category" else [c.name]
    )
] + ["late_rate"]

# Domain knowledge the model must respect: more late deliveries or complaints never make a
# customer less likely to churn. Enforced by the estimator, checked by a behavioural test.
MONOTONIC = {"late_deliveries_30d": 1, "late_rate": 1, "complaints_90d": 1}


def encode(X: pd.DataFrame) -> np.ndarray:
    """Contract columns to a float matrix: numbers as they are, booleans as 0/1, a category
    as one 0/1 column per category of the contract, plus late_rate = late deliveries per order.

    Categories come from the contract, not from the training data, so the encoding is the
    same for every model. An unknown category is missing (NaN in its indicator columns)
    instead of crashing: the API rejects it first, this is the backstop.

    Plain numpy on purpose: a pandas or ColumnTransformer step costs several ms on every
    one-row prediction (measured). For the same reason the categories are indicators, not
    the estimator's native categorical support: with three categories, one split on an
    indicator is any split the native support could make (the same ROC AUC on simulated
    data, measured 2026-11-29), and the native support re-encodes every input in a
    ColumnTransformer of its own, which was half of each prediction's time.
    """
    columns = []
    for c in FEATURES:
        values = X[c.name].to_numpy()
        if c.kind == "category":
            known = np.isin(values, c.categories or ())
            for category in c.categories or ():
                columns.append(np.where(known, values == category, np.nan))
        else:
            columns.append(values.astype(float))
    late = columns[ENCODED_FEATURES.index("late_deliveries_30d")]
    orders = columns[ENCODED_FEATURES.index("orders_30d")]
    columns.append(late / np.maximum(orders, 1))
    return np.column_stack(columns)


def build_pipeline(params: dict[str, Any] | None = None, seed: int = 0) -> Pipeline:
    """An unfitted Pipeline: contract encoding, then gradient boosting with its monotonic
    constraints. `params` are estimator parameters, e.g. {"learning_rate": 0.1}."""
    model = HistGradientBoostingClassifier(
        monotonic_cst=[MONOTONIC.get(name, 0) for name in ENCODED_FEATURES],
        random_state=seed,
        **(params or {}),
    )
    return Pipeline([("encode", FunctionTransformer(encode)), ("model", model)])


def feature_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The model's input columns, in contract order, from a landed (or joined) frame."""
    return frame[[c.name for c in FEATURES]]
