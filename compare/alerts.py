"""The alerts each level raised in the replay, judged against the story's known incidents.

The levels' stacks judge with Prometheus' rules (level1_ct/prometheus/rules.yml, and level 2's
beside them); the replay fires the same rules on the decisions the levels' own code made
(`compare.levels`: monitoring's drift and live-quality alerts, a quarantined batch, a canary
rolled back, a stale champion). Here they are counted:

- an alert is **raised** when its rule starts firing: it did not fire the evening before
  about the same thing (a new champion is a new alert, as the exporter's figures start afresh);
- it is **true** when one of the story's incidents it can see is going on that day, **false**
  otherwise (a staleness page when the gate kept the champion for days, with no incident
  behind it, is a false alert: it costs a person's time all the same);
- it **pages a person** when Alertmanager's routes send it to one (`compare.routing`: the
  rules' labels through the committed routes, as the level's Prometheus sends it);
- for each incident: the days from its start to the first alert that sees it, and to the first
  action taken on it (a retrain an alert started, a batch refused, a revert, a rollback, or
  CI or the staging gate stopping a change), alerted or not.

Level 0 has no monitoring and raises no alert: its person looks a week after a release.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from compare.changes import changes
from compare.levels import PIPELINE, Level
from compare.routing import pages

DRIFT_ALERTS = frozenset({"DriftHigh", "AttributionShiftHigh", "LiveQualityDrop"})


@dataclass(frozen=True)
class Incident:
    """One of the story's incidents: what the alerts `seen_by` can see from `start` to `end`,
    and what counts as acting on it (`acted`: an event of the level)."""

    name: str
    start: int
    end: int
    seen_by: frozenset[str]

    def acted(self, event) -> bool:
        if self.seen_by == DRIFT_ALERTS:  # a retrain an alert started
            return event.kind in ("promote", "train") and "drift)" in event.text
        if "BatchQuarantined" in self.seen_by:
            return event.kind == "batch-rejected"
        return event.kind in ("revert", "canary", "ci", "gate") and self.name in event.text


def incidents(level: Level, table: pd.DataFrame) -> list[Incident]:
    """The story's incidents as `level` met them. A drift can explain alerts until a model
    trained only on data after it could serve (its ramp plus level 1's training window) and
    its labels have landed; a bad change, from its push until the labels of its last day
    serving (or of its canary, which ends on its rollback) have landed."""
    settings = level.settings
    lag = settings.label_delay_days
    found = []
    for name, start, days in (
        ("covariate shift", settings.covariate_shift_day, settings.covariate_shift_days),
        ("concept drift", settings.concept_drift_day, settings.concept_drift_days),
    ):
        if start is not None:
            end = start + days + PIPELINE.window_days + lag
            found.append(Incident(name, start, end, DRIFT_ALERTS))
    if settings.incident_day is not None:
        day = settings.incident_day
        found.append(Incident("broken export", day, day, frozenset({"BatchQuarantined"})))
    for change in (c for c in changes(settings) if c.bad):
        serving = table[table.bad_changes.str.contains(change.title, regex=False)]
        ended = [e.day for e in level.events if e.kind == "canary" and change.title in e.text]
        last = max([change.day, *ended, *(int(d) + lag + 1 for d in serving.day)])
        seen_by = frozenset({"LiveQualityDrop", "CanaryRolledBack"})
        found.append(Incident(change.title, change.day, last, seen_by))
    return found


def raised(level: Level) -> list[tuple[int, str]]:
    """(day, rule) of every alert the level raised: its rule fired about something it had not
    fired about the evening before."""
    return [
        (day, rule)
        for day, firing in sorted(level.firing.items())
        for rule, about in sorted(firing)
        if (rule, about) not in level.firing.get(day - 1, set())
    ]


def _days(value: int | None) -> str:
    return "never" if value is None else str(value)


def figures(level: Level, table: pd.DataFrame) -> dict[str, object]:
    """The summary's alert figures for one level."""
    alerts = raised(level)
    known = incidents(level, table)

    def true(day: int, rule: str) -> bool:
        return any(i.start <= day <= i.end and rule in i.seen_by for i in known)

    first_alert, first_action = [], []
    for incident in known:
        seen = [
            d
            for d, rule in alerts
            if rule in incident.seen_by and incident.start <= d <= incident.end
        ]
        acted = [e.day for e in level.events if e.day >= incident.start and incident.acted(e)]
        first_alert.append(
            f"{incident.name}: {_days(min(seen) - incident.start if seen else None)}"
        )
        first_action.append(
            f"{incident.name}: {_days(min(acted) - incident.start if acted else None)}"
        )
    trues = sum(true(day, rule) for day, rule in alerts)
    return {
        "alerts raised": len(alerts),
        "true alerts": trues,
        "false alerts": len(alerts) - trues,
        "pages to a person": sum(pages(rule, level.number) for _, rule in alerts),
        "days from each incident to its first alert": "; ".join(first_alert),
        "days from each incident to its first action": "; ".join(first_action),
    }
