"""`python -m compare [--days 60 --seed 42 ...]` (or `make compare`): replay, report, table."""

from __future__ import annotations

import time

import pandas as pd

from compare import group_harm, report, rollouts
from compare.replay import replay
from compare.settings import CompareSettings
from compare.summary import days_table, markdown, summarize, summary_frame


def main() -> None:
    settings = CompareSettings(_cli_parse_args=True)
    started = time.monotonic()
    levels, kinds = replay(settings)
    days = pd.concat([days_table(level) for level in levels], ignore_index=True)
    summary = summary_frame(
        [summarize(level, days[days.level == level.number]) for level in levels]
    )
    by_kind = rollouts.kinds_frame(kinds)
    harmed = group_harm.replay_group_harm(settings)
    harm_days = [group_harm.group_table(level) for level in harmed]
    harm = group_harm.harm_frame(harmed, harm_days) if harmed else None
    path = report.write(settings.out, settings, levels, days, summary, by_kind, harm, harm_days)
    print()
    print(markdown(summary))
    if kinds:
        print(f"\nLevel 2's rollout kinds:\n{markdown(by_kind, 'rollout')}")
    if harm is not None:
        print(f"\nThe group-harm story:\n{markdown(harm)}")
    print(
        f"\nreport: {path} (plots: {settings.out}/quality.png, drift.png) in {time.monotonic() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
