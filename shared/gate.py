"""The model gate: may a candidate replace the champion?

Level 1's pipeline (and level 2's rollout) ask this after every training run. The candidate
and the champion must be evaluated on the same data, the newest hold-out, so that the
comparison is about the models and not about the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # evaluate imports scipy and scikit-learn: settings need only GateConfig
    from shared.evaluate import Evaluation


@dataclass(frozen=True)
class GateConfig:
    """The bars a candidate must clear; every number is configurable per pipeline."""

    min_roc_auc: float = 0.70  # absolute: below this the model is not useful
    min_auc_lift_over_baseline: float = 0.05  # must beat "always predict the churn rate"
    champion_margin: float = 0.0  # candidate AUC >= champion AUC + margin
    max_slice_drop: float = 0.05  # no slice's AUC may fall more than this below the champion's


@dataclass(frozen=True)
class Check:
    """One comparison: what was measured, against which bar."""

    name: str
    passed: bool
    value: float
    threshold: float

    def describe(self) -> str:
        verb = "meets" if self.passed else "fails"
        return f"{self.name}: {self.value:.3f} {verb} {self.threshold:.3f}"


@dataclass(frozen=True)
class Verdict:
    """The gate's answer, with every check and its numbers, for the run record."""

    checks: tuple[Check, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def reasons(self) -> list[str]:
        """The failed checks, in words with numbers; empty when the gate passed."""
        return [c.describe() for c in self.checks if not c.passed]

    def summary(self) -> str:
        return (
            "passed: " + "; ".join(c.describe() for c in self.checks)
            if self.passed
            else ("rejected: " + "; ".join(self.reasons))
        )


def judge(
    candidate: Evaluation,
    baseline: Evaluation,
    champion: Evaluation | None,
    config: GateConfig,
) -> Verdict:
    """Judge a candidate against absolute bars, the dummy baseline and, if there is one,
    the current champion overall and per slice (all evaluated on the same data)."""
    from shared.evaluate import beats_baseline

    auc = candidate.overall["roc_auc"]
    lift = config.min_auc_lift_over_baseline
    checks = [
        Check("roc_auc >= minimum", auc >= config.min_roc_auc, auc, config.min_roc_auc),
        Check(
            "roc_auc >= baseline + lift",
            beats_baseline(candidate, baseline, lift),  # the same rule level 0 applies
            auc,
            baseline.overall["roc_auc"] + lift,
        ),
    ]
    if champion is not None:
        bar = champion.overall["roc_auc"] + config.champion_margin
        checks.append(Check("roc_auc >= champion + margin", auc >= bar, auc, bar))
        for name, values in candidate.slices.items():
            for value, metrics in values.items():
                theirs = champion.slices.get(name, {}).get(value, {}).get("roc_auc", math.nan)
                ours = metrics.get("roc_auc", math.nan)
                if math.isnan(ours) or math.isnan(theirs):
                    continue  # too small a slice to judge (see evaluate.MIN_SLICE_ROWS)
                bar = theirs - config.max_slice_drop
                checks.append(Check(f"slice {name}={value} roc_auc", ours >= bar, ours, bar))
    return Verdict(tuple(checks))
