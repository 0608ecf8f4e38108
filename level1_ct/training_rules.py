"""Level 1's training rules: its decisions as plain functions: which batches a run trains on, whether the
data contract stops it, and how a fitted candidate is judged. The training pipeline's tasks
(level1_ct/flows/training.py) call them and add what a run records (logs, MLflow, quarantine);
`make compare` calls the same functions on its replayed days.

    window     the newest `window_days` labelled batches; fewer than 2 cannot train and hold out
    contract   the files' validation results -> the violation that stops the run, or None
    reference  the training rows kept with the model: what monitoring compares live traffic to
    judge      candidate, dummy baseline and champion on the candidate's hold-out -> the gate
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import pandas as pd

from level1_ct.settings import PipelineSettings
from shared.evaluate import Evaluation, evaluate
from shared.gate import ChampionLineage, Verdict, judge
from shared.train import train_baseline
from shared.validation import ValidationResult

Batch = TypeVar("Batch")  # a landed file, or a replayed day
MIN_BATCHES = 2  # one to train on and one to hold out, at the least


class NotEnoughData(RuntimeError):
    """Too few labelled batches to train and hold out."""


def window(labelled: Sequence[Batch], window_days: int) -> list[Batch]:
    """The newest `window_days` of the labelled batches (oldest first), as a run trains on."""
    chosen = list(labelled)[-window_days:]
    if len(chosen) < MIN_BATCHES:
        raise NotEnoughData(
            f"{len(chosen)} labelled batches: need at least {MIN_BATCHES} to train and hold out"
        )
    return chosen


def contract(results: Mapping[str, ValidationResult]) -> str | None:
    """The data contract over a run's files (by name): None when every file meets it, else
    the violation that stops the run before training, naming each bad file and its rules."""
    bad = {name: result for name, result in results.items() if not result.ok}
    if not bad:
        return None
    return "data contract violated, quarantined: " + "; ".join(
        f"{name}: {result.summary()}" for name, result in bad.items()
    )


def reference(train_frame: pd.DataFrame, settings: PipelineSettings) -> pd.DataFrame:
    """The sample of its training rows a model is registered with (`reference_rows` of them,
    always the same for the same rows): monitoring's reference for drift."""
    return train_frame.sample(min(len(train_frame), settings.reference_rows), random_state=0)


def evaluations(
    candidate: Any, train_frame: pd.DataFrame, holdout: pd.DataFrame, champion: Any | None
) -> tuple[Evaluation, Evaluation, Evaluation | None]:
    """The candidate, a dummy baseline fitted on its training rows, and the champion (if
    any), all on the candidate's hold-out."""
    return (
        evaluate(candidate, holdout),
        evaluate(train_baseline(train_frame), holdout),
        evaluate(champion, holdout) if champion is not None else None,
    )


def gate(
    evaluated: tuple[Evaluation, Evaluation, Evaluation | None],
    settings: PipelineSettings,
    lineage: str | None,
    champion_lineage: ChampionLineage | None,
) -> Verdict:
    """The model gate (shared/gate.py) with level 1's bars."""
    candidate, baseline, champion = evaluated
    return judge(candidate, baseline, champion, settings.gate(), lineage, champion_lineage)
