"""Fit the churn model: a time-ordered hold-out split, a randomized hyper-parameter search
over the shared Pipeline, and the dummy baseline the model has to beat.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from sklearn.dummy import DummyClassifier
from sklearn.model_selection import RandomizedSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline

from shared.features import build_pipeline, feature_frame
from shared.schema import DATE, LABEL

# The search space of the gradient-boosting estimator (keys are its parameter names).
PARAM_SPACE: dict[str, list[Any]] = {
    "learning_rate": [0.03, 0.05, 0.1, 0.2],
    "max_iter": [100, 200, 300],
    "max_leaf_nodes": [15, 31, 63],
    "min_samples_leaf": [20, 50, 100],
    "l2_regularization": [0.0, 0.1, 1.0],
}


@dataclass(frozen=True)
class TrainingConfig:
    """How to train: search size, folds, seed and how much of the newest data to hold out."""

    n_iter: int = 10
    cv_folds: int = 3
    seed: int = 42
    holdout_fraction: float = 0.2
    scoring: str = "roc_auc"
    # Processes for the search's cross-validation fits (None: one; -1: a core each). The
    # result does not depend on it: every fit has its own fixed seed.
    n_jobs: int | None = None
    param_space: dict[str, list[Any]] = field(default_factory=lambda: dict(PARAM_SPACE))
    # Contract features the model must not use (an ablation: "this feature adds nothing"):
    # training holds each at one value, so no tree splits on it and the fitted model
    # ignores it; requests still carry it, as the contract says.
    dropped_features: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrainingResult:
    """A fitted Pipeline with what the search found."""

    pipeline: Pipeline
    params: dict[str, Any]
    cv_score: float
    seconds: float
    rows: int


def split_holdout(frame: pd.DataFrame, fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out the newest days (at least one): a model is judged on data after its training
    data, as it will be used, not on a random shuffle of the past."""
    days = sorted(frame[DATE].unique())
    if len(days) < 2:
        raise ValueError(f"need at least 2 labelled days to hold one out, got {len(days)}")
    n_holdout = min(len(days) - 1, max(1, round(len(days) * fraction)))
    cutoff = days[-n_holdout]
    return frame[frame[DATE] < cutoff], frame[frame[DATE] >= cutoff]


def ablation(config: TrainingConfig) -> dict[str, str]:
    """The dropped features as a parameter of the run's recipe (lineage, model card), or
    nothing when the model uses every feature: a model without a feature is another recipe."""
    return (
        {"dropped_features": ",".join(config.dropped_features)} if config.dropped_features else {}
    )


def without(X: pd.DataFrame, dropped: tuple[str, ...]) -> pd.DataFrame:
    """X with each `dropped` feature held at its first row's value: a constant column gives
    a tree nothing to split on."""
    unknown = sorted(set(dropped) - set(X.columns))
    if unknown:
        raise ValueError(f"cannot drop {unknown}: not features of the contract")
    return X.assign(**{name: X[name].iloc[0] for name in dropped}) if dropped else X


def train(frame: pd.DataFrame, config: TrainingConfig) -> TrainingResult:
    """Search hyper-parameters by cross-validated `config.scoring`, refit the best on all of `frame`."""
    X, y = without(feature_frame(frame), config.dropped_features), frame[LABEL].astype(int)
    if y.nunique() < 2:
        raise ValueError("training data has a single class: cannot learn churn from it")
    search = RandomizedSearchCV(
        build_pipeline(seed=config.seed),
        {f"model__{k}": v for k, v in config.param_space.items()},
        n_iter=config.n_iter,
        scoring=config.scoring,
        cv=StratifiedKFold(config.cv_folds, shuffle=True, random_state=config.seed),
        random_state=config.seed,
        refit=True,
        n_jobs=config.n_jobs,
    )
    started = time.perf_counter()
    search.fit(X, y)
    return TrainingResult(
        pipeline=search.best_estimator_,
        params={k.removeprefix("model__"): v for k, v in search.best_params_.items()},
        cv_score=float(search.best_score_),
        seconds=time.perf_counter() - started,
        rows=len(frame),
    )


def train_baseline(frame: pd.DataFrame) -> DummyClassifier:
    """The dummy baseline: always predicts the training churn rate."""
    return DummyClassifier(strategy="prior").fit(feature_frame(frame), frame[LABEL].astype(int))
