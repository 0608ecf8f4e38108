"""The model code in production, and the two changes a developer pushes during the replay.

A code version is what a deployment of the ML code fixes: how the pipeline trains (the
search it runs over the shared Pipeline) and how the service turns the model's output into
the churn probability it answers. Both changes are real code, run as they are:

- the good change widens the hyper-parameter search (more candidates per training run);
- the bad change is a one-line refactor of the services' scoring (`churn_probabilities` in
  `shared/api.py`) that reads the wrong column of `predict_proba`, so the service answers the
  probability of *staying*. Offline evaluation never calls the service, so a model gate
  cannot see it; a contract test can, and live quality shows it once labels arrive. The
  embedded replay runs the patched file's function; the container stacks run an image of it.

`bad` is the replay's ground truth for the summary (did a bad change reach production?);
no level's process reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd

import shared.api
from compare.settings import CompareSettings
from shared.features import feature_frame
from shared.train import TrainingConfig

API_FILE = Path(shared.api.__file__)  # where the services' scoring is: shared/api.py
SCORING = "return pipeline.predict_proba(frame)[:, 1]"
REFACTORED = "return pipeline.predict_proba(frame)[:, 0]  # refactor: churn is the first column"


@cache
def scoring_module(source: str | None) -> ModuleType:
    """shared/api.py as the service runs it: the repository's, or a changed `source`."""
    if source is None:
        return shared.api
    module = ModuleType("shared.api (changed)")
    exec(compile(source, f"{API_FILE} (changed)", "exec"), module.__dict__)
    return module


@dataclass(frozen=True)
class Code:
    """One version of the ML code: its training search and its service's scoring
    (`api_source`: the service's shared/api.py when it differs from the repository's)."""

    name: str
    n_iter: int
    api_source: str | None = None

    def training(self, settings: CompareSettings) -> TrainingConfig:
        return TrainingConfig(
            n_iter=self.n_iter, cv_folds=settings.cv_folds, seed=settings.seed, n_jobs=settings.jobs
        )

    def score(self, model, frame: pd.DataFrame) -> np.ndarray:
        """What this code's service answers for `frame`: its churn probabilities."""
        return scoring_module(self.api_source).churn_probabilities(model, feature_frame(frame))


@dataclass(frozen=True)
class Change:
    """A commit pushed on `day`: what it does to the code it lands on."""

    day: int
    name: str  # what the code's name gains, e.g. main+wider-search
    title: str
    apply: Callable[[Code], Code]
    bad: bool


def initial_code(settings: CompareSettings) -> Code:
    return Code(name="main", n_iter=settings.n_iter)


def widen_search(code: Code) -> Code:
    return replace(code, name=f"{code.name}+wider-search", n_iter=2 * code.n_iter)


def refactor_scoring(code: Code) -> Code:
    source = code.api_source or API_FILE.read_text()
    if SCORING not in source:
        raise RuntimeError(f"the bad change no longer applies: {API_FILE} has no `{SCORING}`")
    changed = source.replace(SCORING, REFACTORED)
    return replace(code, name=f"{code.name}+scoring-refactor", api_source=changed)


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
