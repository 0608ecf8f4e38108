"""`make compare STACK=docker`: the levels' real services in their container stacks answer
the replay's customers over HTTP, and they answer what the embedded replay's function calls
answer, day by day: the same model versions, canary split, refusals and probabilities, so
both give the same comparison; and the stacks are removed afterwards.

The embedded run has the variables a shell set up for the stacks may export, the stacks' run
has none: equal tables also show that a seed gives the same comparison twice, whatever the
shell exports (the replay takes the levels' defaults, not the environment)."""

from __future__ import annotations

import json
import subprocess
import uuid

import pandas as pd
import pytest

from tests.e2e.test_compare import SHORT, compare

# The short story, with the good change pushed on the first day: it passes level 2's staging
# gate then (later its champion is ahead), so production runs a canary arm too.
STORY = {**SHORT, "COMPARE_GOOD_CHANGE_DAY": "8"}
# What a shell set up for the stacks may export: each would change a level's decisions, were
# the replay to read the levels' settings from the environment.
STACK_EXPORTS = {
    "L0_MIN_AUC_LIFT": "0.3",
    "L1_WINDOW_DAYS": "3",
    "L1_CHAMPION_MARGIN": "0.2",
    "L1_DRIFT_SHARE_THRESHOLD": "0.01",
    "L2_CANARY_MIN_REQUESTS": "1",
    "L2_SERVE_CANARY_SHARE": "0.9",
}
# Projects of the test's own (a `make compare STACK=docker` of a person may be running)
PROJECT = f"l0test-compare-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def both_runs(images, tmp_path_factory) -> tuple[pd.DataFrame, pd.DataFrame, str, list[dict]]:
    """The embedded run, with the exports, and the stacks' run: their days and the output."""
    out = tmp_path_factory.mktemp("compare")
    compare(out / "embedded", **STORY, **STACK_EXPORTS)
    stacked = compare(out / "stacks", STACK="docker", COMPARE_STACK_PROJECT=PROJECT, **STORY)
    embedded = pd.read_csv(out / "embedded" / "days.csv", keep_default_na=False)
    stacks = pd.read_csv(out / "stacks" / "days.csv", keep_default_na=False)
    summaries = [
        json.loads((out / run / "summary.json").read_text()) for run in ("embedded", "stacks")
    ]
    return embedded, stacks, stacked.stdout, summaries


def test_the_stacks_serve_what_the_replay_decided_as_the_embedded_services_do(both_runs):
    embedded, stacks, *_ = both_runs
    # Versions, canary split, refusals and, from the same rounded answers, the same quality
    pd.testing.assert_frame_equal(stacks, embedded)


def test_the_embedded_and_the_stacks_runs_give_the_same_comparison(both_runs):
    first, second = both_runs[3]
    assert first == second
    # Not the same by accident: the short story has its events, seen by level 1
    assert first["1 (continuous training)"]["bad batches rejected"] == 1
    assert first["1 (continuous training)"]["training runs"] >= 10


def test_the_short_story_went_through_every_kind_of_change_in_the_stacks(both_runs):
    _, stacks, output, _ = both_runs
    level = {n: stacks[stacks.level == n] for n in (0, 1, 2)}
    # Level 0: a file handed over and the service restarted on it
    assert level[0].version.nunique() >= 2
    # Levels 0 and 1 ran the bad refactor's image (answers inverted), then went back
    for n in (0, 1):
        served_bad = level[n][level[n].bad_changes != ""]
        assert len(served_bad) > 0 and (level[n].bad_changes == "").iloc[-1]
        assert served_bad.roc_auc.max() < 0.5  # the probability of staying, ranked as churn
    # Level 1's registry moved its champion; level 2's production ran a canary arm
    assert level[1].version.nunique() >= 3
    assert level[2].canary_requests.sum() > 0
    assert level[2].failed.sum() == level[0].failed.sum() > 0  # the broken export's 422s
    assert "in their container stacks" in output and "level 2's stack is up" in output


def test_the_stacks_are_gone_after_the_replay(both_runs):
    def left(*command: str) -> list[str]:
        found = subprocess.run(["docker", *command], capture_output=True, text=True, check=True)
        return [name for name in found.stdout.split() if name.startswith(f"{PROJECT}-level")]

    assert left("ps", "-a", "--format", "{{.Names}}") == []
    assert left("volume", "ls", "--format", "{{.Name}}") == []
    assert left("images", "--format", "{{.Repository}}") == []  # the changed code's images
