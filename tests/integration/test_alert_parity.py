"""The alerts `make compare` counts are the ones Prometheus would raise: level 1 replayed through
a story with each kind of incident (tests/e2e/test_compare.py's short story: a covariate shift,
a broken export, an untested refactor released by hand, a concept drift), and on every evening
`promtool test rules` fires exactly the rules the replay fired, on the figures level 1's
exporter would publish from what the replay decided (tests/replay_alerts.py)."""

from __future__ import annotations

from compare.changes import changes, initial_code
from compare.levels import Level1, Runs, first_model
from compare.servers import InProcess
from compare.settings import CompareSettings
from compare.world import World
from tests.e2e.test_compare import SHORT
from tests.replay_alerts import assert_prometheus_fires_the_same, figures, fired


def test_prometheus_fires_what_the_replay_fired_on_every_evening_of_a_story(tmp_path, monkeypatch):
    for name, value in SHORT.items():  # read as `make compare` reads them
        monkeypatch.setenv(name, value)
    settings = CompareSettings()
    world = World(settings)
    runs = Runs(world, settings)
    level = Level1(world, runs, first_model(world, runs, initial_code(settings)), InProcess(world))
    pushes = changes(settings)
    evenings, expected = [], []
    for day in world.replay_days:  # as compare.replay does, for level 1 alone
        for change in (c for c in pushes if c.day == day):
            level.push(change, day)
        level.serve(day)
        monitored = level.champion
        level.end_of_day(day)
        evenings.append(figures(level, day, monitored, level.champion))
        expected.append(fired(level, day))
    # The story gives each replayed rule of monitoring and the contract a day to fire
    raised = {rule for rules in expected for rule in rules}
    assert {"DriftHigh", "LiveQualityDrop", "BatchQuarantined"} <= raised, expected
    assert [] in expected  # and quiet evenings
    assert_prometheus_fires_the_same(evenings, expected, tmp_path)
