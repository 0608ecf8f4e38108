"""Level 1's monitoring decision, as plain functions: is the champion's live traffic still
like its training data, is it still right where labels have arrived, which alerts does that
raise, and does an alert start a retrain or is monitoring cooling down from the last one?

Monitoring's flow (`flows/monitoring.py`) reads its inputs from the prediction store and
MLflow, calls `assess`, and records, publishes and emits what it decided. `make compare`
calls the same functions on the answers its replayed services gave: one rule, two callers.
No Prefect, MLflow or database here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pandas as pd

from level1_ct import reports
from level1_ct.settings import PipelineSettings
from shared.evaluate import live_fairness
from shared.explain import attribution_shift, largest_moves
from shared.fairness import EQUALIZED_ODDS, AttributeFairness, flat_fairness
from shared.schema import LABEL

ALERT = "alert"  # the metric recorded when an alert that retrains was raised (1.0)
DRIFT, LIVE_QUALITY, LIVE_FAIRNESS = "drift", "live quality", "live fairness"  # kinds of alert
ATTRIBUTION_SHIFT = "attribution shift"
# The kinds a retrain answers: the world moved, and a model fitted on newer data follows it
# (and is judged by the gate on it: a champion leaning on other features for today's
# customers than for those it was judged on is re-judged). Groups treated further apart than
# the gate allows is not one of them: a retrain on the same data learns the same treatment,
# so a person looks into it (the alert pages).
RETRAIN_KINDS = (DRIFT, LIVE_QUALITY, ATTRIBUTION_SHIFT)
SHIFT = "attribution_shift"  # the metric: shared.explain.attribution_shift, 0..1
LIVE_ATTRIBUTION = "live_attribution/"  # + feature: its mean |attribution| on live answers


def enough_to_judge(settings: PipelineSettings, rows: int) -> bool:
    """Are there enough predictions (of the champion, or labelled ones) to judge on?"""
    return rows >= settings.monitor_min_rows


def enough_labels(settings: PipelineSettings, labelled: pd.DataFrame) -> bool:
    """Live quality is judged on enough labelled predictions, with both outcomes among them
    (ROC AUC is undefined on one class)."""
    return enough_to_judge(settings, len(labelled)) and labelled[LABEL].nunique() == 2


def alerts(
    settings: PipelineSettings,
    metrics: dict[str, float],
    drifted: list[str],
    holdout_auc: float,
    fairness: dict[str, AttributeFairness] | None = None,
    moved: list[str] | None = None,
) -> dict[str, str]:
    """What crossed a threshold, by kind (DRIFT, LIVE_QUALITY, LIVE_FAIRNESS,
    ATTRIBUTION_SHIFT), in words. `fairness`: the groups of the labelled answers
    (`shared.evaluate.live_fairness`); `moved`: the features whose share of the attributions
    moved most (`shared.explain.largest_moves`)."""
    found = {}
    if metrics["drift_share"] >= settings.drift_share_threshold:
        found[DRIFT] = (
            f"{metrics['drift_share']:.0%} of features drifted (threshold "
            f"{settings.drift_share_threshold:.0%}): {', '.join(drifted)}"
        )
    auc, bar = metrics.get("live_roc_auc"), holdout_auc - settings.max_live_auc_drop
    if auc is not None and auc < bar:
        found[LIVE_QUALITY] = (
            f"live ROC AUC {auc:.3f} is below {bar:.3f} (hold-out {holdout_auc:.3f} "
            f"- {settings.max_live_auc_drop})"
        )
    shift = metrics.get(SHIFT)
    if shift is not None and shift >= settings.max_attribution_shift:  # False where NaN
        found[ATTRIBUTION_SHIFT] = (
            f"{shift:.0%} of the champion's attributions moved between features on its live "
            f"answers (threshold {settings.max_attribution_shift:.0%}): " + ", ".join(moved or [])
        )
    over = fairness_over_bound(settings, fairness or {})
    if over:
        found[LIVE_FAIRNESS] = "; ".join(over)
    return found


def fairness_over_bound(
    settings: PipelineSettings, fairness: dict[str, AttributeFairness]
) -> list[str]:
    """The attributes whose groups the answers treat further apart than the gate lets any
    candidate (`max_equalized_odds_difference`): the widest gap's rate and groups, in words.

    The bound, not the champion's own gap on its hold-out plus the gate's δ: on `make
    compare`'s story a hold-out holds 60-120 churners of a city tier, and consecutive
    champions' hold-out gaps of the same attribute ran from 0.10 to 0.52 while the live ones
    stayed within 0.32-0.51; held to "hold-out + 0.1", seven evenings of 45 paged a person
    for noise (2026-12-07)."""
    over = []
    for attribute, groups in fairness.items():
        live = groups.gap(EQUALIZED_ODDS)
        if live > settings.max_equalized_odds_difference:  # False where it is NaN
            over.append(
                f"{attribute}: equalised-odds difference {live:.2f} on labelled answers "
                f"({groups.gaps[EQUALIZED_ODDS].describe(groups.groups)}) is over the gate's "
                f"bound {settings.max_equalized_odds_difference}"
            )
    return over


def cooling(settings: PipelineSettings, last_alert: datetime | None, now: datetime) -> bool:
    """Was an alert raised less than the cooldown ago? (Then a new one starts no retrain.)"""
    return last_alert is not None and now - last_alert < timedelta(
        seconds=settings.retrain_cooldown_seconds
    )


@dataclass(frozen=True)
class Assessment:
    """One monitoring check: its figures, the drifted features, the alerts by kind, whether
    the cooldown holds them back, and the Evidently snapshots behind the figures."""

    metrics: dict[str, float]
    drifted: list[str]
    alerts: dict[str, str]
    cooling: bool
    snapshots: list = field(default_factory=list, repr=False)

    @property
    def retrain(self) -> bool:
        """An alert of a kind a retrain answers, outside the cooldown: monitoring emits the
        event that starts a retrain."""
        return any(kind in RETRAIN_KINDS for kind in self.alerts) and not self.cooling

    @property
    def pages(self) -> list[str]:
        """The alerts a person answers (Alertmanager pages them): no retrain starts for these."""
        return [text for kind, text in self.alerts.items() if kind not in RETRAIN_KINDS]


def assess(
    settings: PipelineSettings,
    drift: reports.DriftResult,
    labelled: pd.DataFrame,
    holdout_auc: float,
    last_alert: datetime | None,
    now: datetime,
    tags: list[str] | None = None,
    attributions: tuple[dict[str, float], dict[str, float]] | None = None,
) -> Assessment:
    """Monitoring's decision on one check.

    `drift`: Evidently's drift report of the champion's newest predictions against its
    reference rows (`reports.data_drift` with `settings.drift_share_threshold`); `labelled`:
    the newest predictions whose labels have arrived, whichever version gave them (feature
    columns, `probability`, `churned`): their quality and their group fairness by the gate's
    definitions (`live_fairness/...`, `shared.fairness`); `holdout_auc`: the champion's ROC AUC on its hold-out,
    the bar live quality is held to; `last_alert`: when an alert that retrains was last
    raised; `tags`: for the quality report's snapshot (the drift report's has its own);
    `attributions`: the champion's mean |attribution| per feature on its hold-out (logged with
    it) and on the same live answers as `drift` (`shared.explain.global_attributions`).
    """
    metrics = {**drift.metrics(), "rows": float(drift.rows), "labelled_rows": float(len(labelled))}
    moved = []
    if attributions is not None and all(attributions):
        reference, live = attributions
        metrics[SHIFT] = attribution_shift(reference, live)
        metrics |= {f"{LIVE_ATTRIBUTION}{k}": v for k, v in live.items()}
        moved = largest_moves(reference, live)
    snapshots = [drift.snapshot]
    if enough_labels(settings, labelled):
        frame = labelled.assign(**{reports.TARGET: labelled[LABEL].astype(int)})
        quality = reports.live_quality(
            frame.rename(columns={"probability": reports.PROBABILITY}), tags
        )
        metrics |= {f"live_{k}": v for k, v in quality.metrics.items()}
        groups = live_fairness(labelled, labelled["probability"].to_numpy())
        metrics |= flat_fairness(groups, prefix="live_fairness/")
        snapshots.append(quality.snapshot)
    else:
        groups = {}
    found = alerts(settings, metrics, drift.drifted, holdout_auc, groups, moved)
    retraining = any(kind in RETRAIN_KINDS for kind in found)
    held = retraining and cooling(settings, last_alert, now)
    if retraining and not held:
        metrics[ALERT] = 1.0
    return Assessment(metrics, drift.drifted, found, held, snapshots)
