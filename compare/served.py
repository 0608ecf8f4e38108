"""What serves at one level of the replay: a fitted model, its version at that level, and the
training run behind it. The levels (`compare.levels`) make them; the servers
(`compare.servers`, `compare.stacks`) serve them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from compare.changes import Code


@dataclass(frozen=True)
class Fitted:
    pipeline: Any
    days: tuple[int, ...]
    train_frame: pd.DataFrame
    holdout: pd.DataFrame


@dataclass(frozen=True)
class Model:
    """A model serving at one level: its version there, and the training run behind it."""

    version: int
    code: Code
    fitted: Fitted
    holdout_auc: float
    trained: int  # the day its training run ran

    @property
    def pipeline(self) -> Any:
        return self.fitted.pipeline
