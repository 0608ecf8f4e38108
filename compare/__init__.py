"""`make compare`: one production story replayed through the three maturity levels.

The same simulated days (`shared/scenarios.py`, scenario "compare" by default) reach a
level-0 team, a level-1 pipeline and a level-2 platform. Each level runs its own process
around the same model code (`shared/`), day by day in compressed time; the replay records
what each one served, how good that was once labels arrived, and every step it took.
`make compare STACK=docker` replays the same story with each level's real service in its
container stack answering the customers over HTTP (the same comparison, minutes longer).

    settings.py  what to replay: scenario days, seed, delays, the code changes, rollout kinds
    world.py     the days as they land, the requests they bring, their labels
    changes.py   the model code in production and the changes a developer pushes
    levels.py    the three processes, side by side: what each does after a day
    rollouts.py  level 2 once per rollout kind (canary, shadow, A/B), side by side
    group_harm.py  a second story: a change that harms one group, through the three levels
    servers.py   the services that answer each day's customers: function calls by default
    stacks.py    ... or each level's real service in its container stack (STACK=docker)
    summary.py   per-level figures: quality, detection, recovery, lead time, manual steps
    report.py    the HTML report, its PNG plots and the markdown table
"""
