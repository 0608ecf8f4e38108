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
from shared.fairness import flat_fairness
from shared.schema import LABEL

ALERT = "alert"  # the metric recorded when an alert was raised (1.0)
DRIFT, LIVE_QUALITY = "drift", "live quality"  # the kinds of alert


def enough_to_judge(settings: PipelineSettings, rows: int) -> bool:
    """Are there enough predictions (of the champion, or labelled ones) to judge on?"""
    return rows >= settings.monitor_min_rows


def enough_labels(settings: PipelineSettings, labelled: pd.DataFrame) -> bool:
    """Live quality is judged on enough labelled predictions, with both outcomes among them
    (ROC AUC is undefined on one class)."""
    return enough_to_judge(settings, len(labelled)) and labelled[LABEL].nunique() == 2


def alerts(
    settings: PipelineSettings, metrics: dict[str, float], drifted: list[str], holdout_auc: float
) -> dict[str, str]:
    """What crossed a threshold, by kind (DRIFT, LIVE_QUALITY), in words."""
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
    return found


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
        """An alert outside the cooldown: monitoring emits the event that starts a retrain."""
        return bool(self.alerts) and not self.cooling


def assess(
    settings: PipelineSettings,
    drift: reports.DriftResult,
    labelled: pd.DataFrame,
    holdout_auc: float,
    last_alert: datetime | None,
    now: datetime,
    tags: list[str] | None = None,
) -> Assessment:
    """Monitoring's decision on one check.

    `drift`: Evidently's drift report of the champion's newest predictions against its
    reference rows (`reports.data_drift` with `settings.drift_share_threshold`); `labelled`:
    the newest predictions whose labels have arrived, whichever version gave them (feature
    columns, `probability`, `churned`): their quality and their group fairness by the gate's
    definitions (`live_fairness/...`, `shared.fairness`); `holdout_auc`: the champion's ROC AUC on its hold-out,
    the bar live quality is held to; `last_alert`: when an alert was last raised; `tags`:
    for the quality report's snapshot (the drift report's has its own).
    """
    metrics = {**drift.metrics(), "rows": float(drift.rows), "labelled_rows": float(len(labelled))}
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
    found = alerts(settings, metrics, drift.drifted, holdout_auc)
    held = bool(found) and cooling(settings, last_alert, now)
    if found and not held:
        metrics[ALERT] = 1.0
    return Assessment(metrics, drift.drifted, found, held, snapshots)
