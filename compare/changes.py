"""The model code in production, and the changes a developer pushes during the replay.

A code version is what a deployment of the ML code fixes: how the pipeline trains (the
search it runs over the shared Pipeline) and how the service turns the model's output into
the churn probability it answers. Both changes are real code, run as they are:

- the good change widens the hyper-parameter search (more candidates per training run);
- the bad change is a one-line refactor of the services' scoring (`churn_probabilities` in
  `shared/api.py`) that reads the wrong column of `predict_proba`, so the service answers the
  probability of *staying*. Offline evaluation never calls the service, so a model gate
  cannot see it; a contract test can, and live quality shows it once labels arrive. The
  embedded replay runs the patched file's function; the container stacks run an image of it.
- the rebalancing change (the rollout kinds' replay, `compare.rollouts`) searches wider again
  and weighs the classes evenly in training (`class_weight="balanced"`), to catch more
  churners: the model ranks customers at least as well as before (the same ROC AUC or better,
  so CI's model tests and the gate pass it) but flags about 2.5 times as many as churners,
  and its decisions at the service's threshold are wrong more often (the retention budget
  goes to customers who stay). Only a live rollout can catch it.
- the group-harming change (the group-harm story, `compare.group_harm`) searches wider and
  drops avg_delivery_minutes from the model ("late_deliveries_30d carries it, and the export
  loses it"): in the group-harm world delivery time drives the churn of rural customers
  alone, so the model ranks them far worse while its overall ROC AUC moves little. A gate
  that judges each group against the champion can catch it; an overall check cannot.

`bad` and `HARMED` are the replay's ground truth for the summary (did a bad change reach
production? which group does the group-harming one harm?); no level's process reads them.
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
from shared.train import PARAM_SPACE, TrainingConfig

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
    class_weight: str | None = None  # the model's, in training (None: every row counts alike)
    dropped: tuple[str, ...] = ()  # features the model does not use (TrainingConfig's)

    def training(self, settings: CompareSettings) -> TrainingConfig:
        weights = {"class_weight": [self.class_weight]} if self.class_weight else {}
        return TrainingConfig(
            n_iter=self.n_iter, cv_folds=settings.cv_folds, seed=settings.seed,
            n_jobs=settings.jobs, param_space={**PARAM_SPACE, **weights},
            dropped_features=self.dropped,
        )  # fmt: skip

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


def rebalance_classes(code: Code) -> Code:
    return replace(
        code, name=f"{code.name}+rebalanced", n_iter=2 * code.n_iter, class_weight="balanced"
    )


DROPPED = "avg_delivery_minutes"  # what the group-harming change drops
HARMED = ("city_tier", "rural")  # and whom it harms in the group-harm world


def drop_delivery_minutes(code: Code) -> Code:
    return replace(code, name=f"{code.name}+no-delivery-minutes", n_iter=2 * code.n_iter,
                   dropped=(*code.dropped, DROPPED))  # fmt: skip


def widens_search(day: int) -> Change:
    return Change(day, "wider-search", "widen the hyper-parameter search", widen_search, bad=False)


def refactors_scoring(day: int) -> Change:
    return Change(
        day, "scoring-refactor", "refactor the service's scoring", refactor_scoring, bad=True
    )


def rebalances_classes(day: int) -> Change:
    return Change(day, "rebalanced", "search wider, classes weighed evenly", rebalance_classes,
                  bad=True)  # fmt: skip


def drops_delivery_minutes(day: int) -> Change:
    return Change(day, "no-delivery-minutes", f"search wider, drop {DROPPED}",
                  drop_delivery_minutes, bad=True)  # fmt: skip


def pushed(*planned: tuple[int | None, Callable[[int], Change]]) -> list[Change]:
    """The changes planned for a day (None: not pushed), oldest first."""
    return sorted((make(day) for day, make in planned if day is not None), key=lambda c: c.day)


def changes(settings: CompareSettings) -> list[Change]:
    """The changes pushed during the replay."""
    return pushed(
        (settings.good_change_day, widens_search), (settings.bad_change_day, refactors_scoring)
    )


def rollout_changes(settings: CompareSettings) -> list[Change]:
    """The changes the rollout kinds' replay pushes (compare/rollouts.py)."""
    return pushed(
        (settings.rollout_bad_day, rebalances_classes), (settings.rollout_good_day, widens_search)
    )
