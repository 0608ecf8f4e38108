"""The group-harm story: a change that harms one group of customers while the model's overall
ROC AUC moves little, through the three levels' own processes (`compare.levels`).

It plays in a world of its own (scenario "group-harm", `shared/scenarios.py`): the main
story's customers without its drift or incident, except that rural customers (15 %) leave a
slow service even when it is on time, so their churn rises with their delivery time. On
`group_harm_day` a developer pushes "search wider, drop avg_delivery_minutes"
(`compare.changes`): late_deliveries_30d seems to carry it, the export lost it once, and
over all customers it matters little. For rural customers it is the driver:

- **level 0** releases the change by hand `manual_release_days` later, retrains with it and
  hands the model over: it beats the baseline, the one check its script makes. Nobody looks
  at groups, and the overall live ROC AUC its person checks a week later has barely moved.
- **level 1** releases the code by hand too, untested; its pipeline trains with it on every
  landing and its gate rejects every candidate: the rural slice's ROC AUC fell by more than
  `max_slice_drop` below the champion's on the same hold-out. The champion keeps serving;
  the pipeline stays stuck on the change until a person reverts it, and the champion ages
  (ModelStale, ChampionDataStale).
- **level 2**'s CD judges the pushed code's candidate at the staging gate, with the same
  checks, before anything is released: the change never reaches the pipeline or production.

The gate's fairness bound does not catch this harm: equalized odds difference measures how
far apart the groups' decisions are, and rural churners were the best flagged group before
the change; it brings them down toward the others, so the gap narrows. What catches it is a
per-group comparison with the champion (the slice check). Monitoring decides nothing here
(its drift alert starts the run the day's landing starts anyway) and is left out, as in
`compare.rollouts`. The services are function calls, also with `STACK=docker`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from compare.changes import HARMED, Change, drops_delivery_minutes, initial_code
from compare.levels import LEVELS, Level, Level1, Level2, Runs, first_model
from compare.servers import InProcess
from compare.settings import CompareSettings
from compare.world import World
from shared.scenarios import get_scenario

SCENARIO = "group-harm"
WEEK = 7  # the group's figures pool a week of answers: a day has about 75 rural customers


def story_settings(settings: CompareSettings) -> CompareSettings:
    """The replay's settings for this story: its own length, the people's delays as given."""
    return settings.model_copy(update={"days": settings.start_day + settings.group_harm_days})


def replay_group_harm(
    settings: CompareSettings, progress: Callable[[str], None] = print
) -> list[Level]:
    """Levels 0, 1 and 2 through the group-harm story; [] when it is skipped."""
    if settings.group_harm_day is None:
        return []
    settings = story_settings(settings)
    world = World(settings, get_scenario(SCENARIO))
    runs = Runs(world, settings)
    initial = first_model(world, runs, initial_code(settings))
    change = harm_change(settings)
    servers = InProcess(world)
    levels = [level(world, runs, initial, servers) for level in LEVELS]
    for level in levels[1:]:
        level.watching = False  # see the module docstring
    progress(f"replaying the group-harm story: days {settings.start_day}..{settings.days - 1}, "
             f"'{change.title}' pushed on day {change.day}")  # fmt: skip
    for day in world.replay_days:
        for level in levels:
            if day == change.day:
                level.push(change, day)
            level.serve(day)
            level.end_of_day(day)
    served = ", ".join(f"L{lv.number} {len(harmful_days(lv, change))}" for lv in levels)
    progress(f"day {day:2d}: days a group-harming model served: {served}")
    return levels


def harm_change(settings: CompareSettings) -> Change:
    return drops_delivery_minutes(settings.group_harm_day)


def _in_group(level: Level, day: int) -> np.ndarray:
    """Which of the day's answers went to the harmed group's customers."""
    attribute, group = HARMED
    return level.world.answered(day)[attribute].to_numpy() == group


def harmful_days(level: Level, change: Change) -> list[int]:
    """The days the level's service answered with a model trained by the change's code."""
    return [d for d, served in sorted(level.served.items()) if change.name in served.model_code]


def stopped_by(level: Level, change: Change) -> str:
    """Where the level's process stopped the change, with the gate's reason about the group."""
    group = HARMED[1]
    if isinstance(level, Level2) and change.title in level.staged:
        verdict = level.staged[change.title]
        if not verdict.passed:
            named = [r for r in verdict.reasons if group in r] or verdict.reasons
            return f"the staging gate, before any release: {named[0]}"
    released = [e.day for e in level.events if e.kind == "release" and change.title in e.text]
    if isinstance(level, Level1) and released:
        rejected = {d: v for d, v in level.verdicts.items() if d >= released[0]
                    and v is not None and any(group in r for r in v.reasons)}  # fmt: skip
        if rejected:
            first = min(rejected)
            reason = next(r for r in rejected[first].reasons if group in r)
            return (f"the gate, on {len(rejected)} training runs from day {first} (the code was "
                    f"released untested): {reason}")  # fmt: skip
    return "nothing: a person handed it over (it beats the baseline)"


def _pooled(level: Level, days: list[int], group: bool) -> dict[str, float]:
    """ROC AUC and true-positive rate (recall) of the answers on `days` to the group (or
    to the rest): NaN where they hold one outcome only."""
    found = level.quality(
        [(d, np.flatnonzero(_in_group(level, d) == group)) for d in days if d in level.served]
    )
    return {"roc_auc": found.get("roc_auc", np.nan),
            "true_positive_rate": found.get("recall", np.nan)}  # fmt: skip


def group_table(level: Level) -> pd.DataFrame:
    """Per day, the harmed group's live ROC AUC and true-positive rate on the week of answers
    ending that day, and the other customers' (labels known at the end of the replay)."""
    rows = []
    for day in sorted(level.served):
        week = list(range(day - WEEK + 1, day + 1))
        group, rest = _pooled(level, week, True), _pooled(level, week, False)
        rows.append({"level": level.number, "day": day,
                     **{f"group_{k}": v for k, v in group.items()},
                     **{f"rest_{k}": v for k, v in rest.items()}})  # fmt: skip
    return pd.DataFrame(rows)


def figures(level: Level, table: pd.DataFrame) -> dict[str, object]:
    """One level's column: how long the harm served, whom it reached, what stopped it, and
    the last week's figures for the group, the others and everyone."""
    change = harm_change(level.settings)
    days = harmful_days(level, change)
    name = "=".join(HARMED)
    last = table.iloc[-1]
    return {
        "days a group-harming model served": len(days),
        f"{name} customers who got its answers": int(sum(_in_group(level, d).sum() for d in days)),
        "stopped by": stopped_by(level, change),
        "live ROC AUC, last week: everyone": level.live_auc(sorted(level.served)[-WEEK:]),
        f"live ROC AUC, last week: {name}": float(last.group_roc_auc),
        "live ROC AUC, last week: the others": float(last.rest_roc_auc),
        f"churners flagged, last week: {name}": float(last.group_true_positive_rate),
        "churners flagged, last week: the others": float(last.rest_true_positive_rate),
    }


def harm_frame(levels: list[Level], tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Figures as rows, levels as columns."""
    frame = pd.DataFrame(
        {str(lv.number): figures(lv, t) for lv, t in zip(levels, tables, strict=True)},
        dtype=object,
    )
    return frame.where(frame.notna(), None)
