"""The model code in production, and the two changes a developer pushes during the replay.

A code version is what a deployment of the ML code fixes: how the pipeline trains (the
search it runs over the shared Pipeline) and how the service turns the model's output into
the churn probability it answers. Both changes are real code, run as they are:

- the good change widens the hyper-parameter search (more candidates per training run);
- the bad change is a refactor of the service's scoring that reads the wrong column of
  `predict_proba`, so the service answers the probability of *staying*. Offline evaluation
  never calls the service, so a model gate cannot see it; a contract test can, and live
  quality shows it once labels arrive.

`bad` is the replay's ground truth for the summary (did a bad change reach production?);
no level's process reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from compare.settings import CompareSettings
from shared.features import feature_frame
from shared.train import TrainingConfig


def churn_probability(model, frame: pd.DataFrame) -> np.ndarray:
    """What the services answer (shared/api.py): the probability of class 1, churn."""
    return model.predict_proba(feature_frame(frame))[:, 1]


def first_column_probability(model, frame: pd.DataFrame) -> np.ndarray:
    """The bad refactor: "the churn probability is the first column" (it is class 0's)."""
    return model.predict_proba(feature_frame(frame))[:, 0]


@dataclass(frozen=True)
class Code:
    """One version of the ML code: its training search and its service's scoring."""

    name: str
    n_iter: int
    score: Callable[[object, pd.DataFrame], np.ndarray]

    def training(self, settings: CompareSettings) -> TrainingConfig:
        return TrainingConfig(
            n_iter=self.n_iter, cv_folds=settings.cv_folds, seed=settings.seed, n_jobs=settings.jobs
        )


@dataclass(frozen=True)
class Change:
    """A commit pushed on `day`: what it does to the code it lands on."""

    day: int
    name: str  # what the code's name gains, e.g. main+wider-search
    title: str
    apply: Callable[[Code], Code]
    bad: bool


def initial_code(settings: CompareSettings) -> Code:
    return Code(name="main", n_iter=settings.n_iter, score=churn_probability)


def widen_search(code: Code) -> Code:
    return replace(code, name=f"{code.name}+wider-search", n_iter=2 * code.n_iter)


def refactor_scoring(code: Code) -> Code:
    return replace(code, name=f"{code.name}+scoring-refactor", score=first_column_probability)


def widens_search(day: int) -> Change:
    return Change(day, "wider-search", "widen the hyper-parameter search", widen_search, bad=False)


def refactors_scoring(day: int) -> Change:
    return Change(
        day, "scoring-refactor", "refactor the service's scoring", refactor_scoring, bad=True
    )


def changes(settings: CompareSettings) -> list[Change]:
    """The changes pushed during the replay, oldest first."""
    found = []
    if settings.good_change_day is not None:
        found.append(widens_search(settings.good_change_day))
    if settings.bad_change_day is not None:
        found.append(refactors_scoring(settings.bad_change_day))
    return sorted(found, key=lambda c: c.day)
