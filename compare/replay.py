"""The replay: every level gets the same day, one day at a time.

Each day, in every level: the day's pushes reach it (morning), its service answers the
day's requests, and its process runs on what landed (evening). The services are function
calls, or with `stack="docker"` each level's real service in its container stack.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from compare import rollouts
from compare.changes import changes, initial_code
from compare.levels import LEVELS, Level, Level2, Runs, first_model
from compare.servers import InProcess, Servers
from compare.settings import CompareSettings
from compare.world import World


def replay(
    settings: CompareSettings, progress: Callable[[str], None] = print
) -> tuple[list[Level], list[Level2]]:
    """The three levels through the story; then level 2 once per rollout kind
    (compare/rollouts.py), on the same world and training runs."""
    started = time.monotonic()
    world = World(settings)
    runs = Runs(world, settings)
    initial = first_model(world, runs, initial_code(settings))
    pushes = changes(settings)
    with servers_for(settings, world, progress) as servers:
        levels = [level(world, runs, initial, servers) for level in LEVELS]
        progress(
            f"replaying days {settings.start_day}..{settings.days - 1} of scenario "
            f"'{world.scenario.name}' (seed {settings.seed}) through levels 0, 1 and 2"
            + (" in their container stacks" if settings.stack == "docker" else "")
        )
        for day in world.replay_days:
            today = [c for c in pushes if c.day == day]
            for level in levels:
                for change in today:
                    level.push(change, day)
                level.serve(day)
                level.end_of_day(day)
            versions = ", ".join(f"L{lv.number} v{lv.champion.version}" for lv in levels)
            news = [f"L{lv.number}: {e.text}" for lv in levels for e in lv.events if e.day == day]
            progress(f"day {day:2d} [{time.monotonic() - started:5.0f} s] {versions}")
            for line in news:
                progress(f"         {line}")
    return levels, rollouts.replay_kinds(world, runs, initial, progress)


def servers_for(
    settings: CompareSettings, world: World, progress: Callable[[str], None]
) -> Servers:
    """The services that answer: function calls, or the levels' container stacks."""
    if settings.stack == "docker":
        from compare.stacks import Stacks  # needs the Docker engine and the images

        return Stacks(world, progress)
    return InProcess(world)
