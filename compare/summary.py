"""What the replay shows, per level: a row per day, and the figures a workshop compares.

Quality is measured on what each level's service answered, by the day it answered, once
that day's labels are known (the replay knows them all at the end).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from compare import alerts
from compare.changes import changes
from compare.levels import Level
from compare.settings import CompareSettings

NEVER = None  # a figure that never happened within the replay


def days_table(level: Level) -> pd.DataFrame:
    """One row per replayed day: what served, how many requests failed, live quality."""
    rows = []
    for day, served in sorted(level.served.items()):
        metrics = level.quality([(day, np.arange(len(served.ids)))])
        rows.append(
            {
                "level": level.number,
                "day": day,
                "version": served.version,
                "model_code": served.model_code,
                "serving_code": served.serving_code,
                "requests": served.requests,
                "failed": served.failed,
                "canary_requests": int(served.canary.sum()),
                "roc_auc": metrics["roc_auc"],
                "f1": metrics["f1"],
                "drift_share": level.drift.get(day, math.nan),
                "attribution_shift": level.shift.get(day, math.nan),
                "bad_changes": ",".join(served.bad_changes),
            }
        )
    return pd.DataFrame(rows)


def _first_alert(level: Level, onset: int | None, what: str) -> int | None:
    """Days from `onset` to the first alert whose text contains `what`: drift of the
    features shows a covariate shift, only live quality shows a concept drift."""
    if onset is None or not level.monitored:
        return NEVER
    days = [e.day for e in level.events if e.kind == "alert" and e.day >= onset and what in e.text]
    return min(days) - onset if days else NEVER


def _recovery(table: pd.DataFrame, settings: CompareSettings) -> tuple[int | None, float]:
    """Days from the concept drift's start until the 3-day mean ROC AUC is back within the
    tolerance of the mean before any drift (0: it never fell out of it); and that mean."""
    first_drift = min(
        d
        for d in (settings.covariate_shift_day, settings.concept_drift_day, settings.days)
        if d is not None
    )
    healthy = table[(table.day < first_drift) & (table.bad_changes == "")]
    before = float(healthy.roc_auc.mean())
    onset = settings.concept_drift_day
    if onset is None:
        return NEVER, before
    rolling = table.set_index("day").roc_auc.rolling(3, min_periods=3).mean()
    after = rolling[rolling.index >= onset]
    bar = before - settings.recovery_tolerance
    below = after[after < bar]
    if below.empty:
        return 0, before
    back = after[(after.index > below.index[0]) & (after >= bar)]
    return (int(back.index[0]) - onset if not back.empty else NEVER), before


def _lead_time(table: pd.DataFrame, change_name: str, pushed: int) -> int | None:
    """Days from a push until production answers with a model trained by its code."""
    shipped = table[(table.day > pushed) & table.model_code.str.contains(change_name, regex=False)]
    return int(shipped.day.min()) - pushed if not shipped.empty else NEVER


def summarize(level: Level, table: pd.DataFrame) -> dict[str, object]:
    settings = level.settings
    recovery, before = _recovery(table, settings)
    weekly = table.set_index("day").roc_auc.rolling(7, min_periods=7).mean()
    good = [c for c in changes(settings) if not c.bad]
    bad_data = sum(1 for f in level.trained for d in f.days if not level.world.batch_ok(d))
    served_bad = {name for names in table.bad_changes for name in names.split(",") if name}
    return {
        "level": f"{level.number} ({level.title})",
        "mean ROC AUC": float(table.roc_auc.mean()),
        "worst-week ROC AUC": float(weekly.min()),
        "mean F1": float(table.f1.mean()),
        "ROC AUC before drift": before,
        "days to detect covariate shift": _first_alert(
            level, settings.covariate_shift_day, "features drifted"
        ),
        "days to detect concept drift": _first_alert(
            level, settings.concept_drift_day, "live ROC AUC"
        ),
        "days to recover from concept drift": recovery,
        "lead time of the good change (days)": _lead_time(table, good[0].name, good[0].day)
        if good
        else NEVER,
        "model versions served": int(table.version.nunique()),
        "code releases": sum(1 for e in level.events if e.kind == "release"),
        "training runs": len(level.trained),
        "training runs triggered by drift": sum(
            "drift" in r for r in getattr(level, "run_reasons", [])
        ),
        "bad deployments in production": len(served_bad),
        "days a bad change served": int((table.bad_changes != "").sum()),
        "customers who got a bad change's answers": len(level.bad_exposed),
        "reverts and rollbacks": sum(1 for e in level.events if e.kind in ("revert", "canary")),
        "bad batches rejected": len(level.rejected_days),
        "bad data that reached training": bad_data,
        "failed requests (422)": int(table.failed.sum()),
        "manual steps": sum(1 for e in level.events if e.manual),
        **alerts.figures(level, table),
    }


def summary_frame(summaries: list[dict[str, object]]) -> pd.DataFrame:
    """Figures as rows, levels as columns: the comparison table."""
    frame = pd.DataFrame(summaries, dtype=object).set_index("level").T  # None stays "never"
    frame.columns.name = None
    return frame


def fmt(value: object) -> str:
    if value is None:
        return "never"
    if isinstance(value, float | np.floating):
        return "n/a" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def markdown(frame: pd.DataFrame, columns: str = "level") -> str:
    header = "| figure | " + " | ".join(f"{columns} {c}" for c in frame.columns) + " |"
    lines = [header, "|" + "---|" * (len(frame.columns) + 1)]
    for figure, row in frame.iterrows():
        lines.append(f"| {figure} | " + " | ".join(fmt(v) for v in row) + " |")
    return "\n".join(lines)
