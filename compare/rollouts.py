"""Level 2's rollout kinds side by side: the same pushes delivered as a canary, a shadow and
an A/B test (`rollout_kinds`), each by level 2's own process (`compare.levels.Level2`) and
rule (level2_cicd/rollout.py), on the main replay's world.

Two pushes: on `rollout_bad_day` a bad change CI cannot see, a wider search with the classes
weighed evenly (`compare.changes`): as good a ROC AUC or better, so CI and the gate pass it,
but it flags far more customers as churners; on `rollout_good_day` the story's good change,
the wider search alone. (The story's own bad push, the scoring refactor, is stopped by CI
before any rollout, whatever the kind.) What differs is who got the candidates' answers
before each rule decided, and how long it took:

- canary: its share of requests, until it has the rule's minimum of them;
- shadow: nobody; it scored a copy of every request;
- A/B: its share of customers, until enough decisions of each arm have their label (labels
  land `label_delay_days` later).

Each kind replays only until both pushes are decided (or the replay ends), and without level
1's monitoring, which decides nothing about a rollout (a drift alert starts the training run
the day's landing starts anyway): the figures are about the rollouts, the main replay's are
about the rest. The replay runs the services as
function calls, also with `STACK=docker` (the stacks replay the main story's canary).
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from compare.changes import rollout_changes
from compare.levels import Level2, Runs
from compare.served import Model
from compare.servers import InProcess
from compare.world import World


def replay_kinds(
    world: World, runs: Runs, initial: Model, progress: Callable[[str], None] = print
) -> list[Level2]:
    """Level 2 once per rollout kind, day by day, until every push is decided."""
    kinds = world.settings.rollout_kinds
    if not kinds:
        return []
    changes = rollout_changes(world.settings)
    levels = [Level2(world, runs, initial, InProcess(world), kind=kind, watching=False)
              for kind in kinds]  # fmt: skip
    progress(f"replaying level 2's rollout kinds ({', '.join(kinds)}) with "
             + " and ".join(f"'{c.title}' on day {c.day}" for c in changes))  # fmt: skip
    for day in world.replay_days:
        for level in levels:
            for change in (c for c in changes if c.day == day):
                level.push(change, day)
            level.serve(day)
            level.end_of_day(day)
        decided = [len(lv.rollouts) + undelivered(lv) for lv in levels]
        if day > max((c.day for c in changes), default=day) and min(decided) >= len(changes):
            progress(f"day {day:2d}: every kind decided every push")
            break
    return levels


def undelivered(level: Level2) -> int:
    """Pushes that never reached a rollout (CI red, stopped at the gate)."""
    return sum(1 for e in level.events if e.kind in ("ci", "gate"))


def figures(level: Level2) -> dict[str, object]:
    """One kind's column: per push, its outcome, when, who got its answers, and why."""
    column: dict[str, object] = {}
    for change in rollout_changes(level.world.settings):
        ended = [r for r in level.rollouts if r.change == change.title]
        name = f"'{change.title}'" + (" (bad)" if change.bad else "")
        if not ended:
            column[f"{name}: outcome"] = "not rolled out (CI or gate)"
            continue
        result = ended[0]
        outcome = {"promote": "promoted", "rollback": "rolled back"}[result.action]
        if result.action == "rollback" and result.kind == "shadow":
            outcome = "discarded"
        column[f"{name}: outcome"] = outcome
        column[f"{name}: days from push to decision"] = result.decided - result.pushed
        column[f"{name}: customers who got its answers"] = result.exposed
        column[f"{name}: decided on"] = result.reason
    return column


def kinds_frame(levels: list[Level2]) -> pd.DataFrame:
    """Figures as rows, kinds as columns."""
    frame = pd.DataFrame({lv.kind: figures(lv) for lv in levels}, dtype=object)
    return frame.where(frame.notna(), None)
