"""The comparison's parts: level 2's CI checks judge the pushed code and a push waits for
the running rollout, each rollout kind decides on what it sees and exposes whom it should
(a shadow nobody, an A/B test its customers until their labels say), level 0's person retrains on schedule when asked to and reverts only
the newest release, the summary tells drift from concept drift, and a story day outside
the replay is refused."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import ValidationError

from compare import alerts, group_harm, routing
from compare.changes import (
    drops_delivery_minutes,
    initial_code,
    refactor_scoring,
    refactors_scoring,
    widen_search,
    widens_search,
)
from compare.levels import (
    ALERT_OF,
    PIPELINE,
    Event,
    Level0,
    Level1,
    Level2,
    Rollout,
    Runs,
    ci_checks,
    first_model,
)
from compare.servers import InProcess
from compare.settings import CompareSettings, level_defaults
from compare.summary import _first_alert, _lead_time, _recovery
from compare.world import World
from level1_ct import assessment
from level1_ct.settings import PipelineSettings
from level2_cicd.settings import CicdSettings
from shared.scenarios import get_scenario
from tests.replay_alerts import assert_prometheus_fires_the_same, figures, fired

SMALL = CompareSettings(days=24, start_day=8, rows_per_day=300, n_iter=1,
                        covariate_shift_day=None, incident_day=None, concept_drift_day=None,
                        good_change_day=None, bad_change_day=None, rollout_kinds=[])  # fmt: skip


@pytest.fixture(scope="module")
def world() -> World:
    return World(SMALL)


@pytest.fixture(scope="module")
def runs(world) -> Runs:
    return Runs(world, SMALL)


def test_ci_passes_the_good_change_and_names_the_bad_ones_failures(world, runs):
    code = initial_code(SMALL)
    assert ci_checks(code, runs, world) == []
    assert ci_checks(widen_search(code), runs, world) == []
    failures = ci_checks(refactor_scoring(code), runs, world)
    assert any("training/serving skew" in f for f in failures), failures
    assert any("more late deliveries and complaints" in f for f in failures), failures


def test_level0_retrains_by_hand_every_k_weeks_only_when_asked():
    for weeks, expected in ((0, []), (1, [SMALL.start_day + 6, SMALL.start_day + 13])):
        settings = SMALL.model_copy(update={"level0_retrain_weeks": weeks})
        world = World(settings)
        runs = Runs(world, settings)
        level = Level0(
            world, runs, first_model(world, runs, initial_code(settings)), InProcess(world)
        )
        for day in range(settings.start_day, settings.start_day + 14):
            level.serve(day)
            level.end_of_day(day)
        trained = [e.day for e in level.events if e.kind == "train"]
        assert trained == expected
        assert level.champion.version == 1 + len(expected)
        assert all(e.manual for e in level.events)


def level2_with_canary(world, runs, change, kind: str = "canary") -> Level2:
    """Level 2 serving the first model, with `change` rolled out as `kind` from the next day
    (pushed past CI and the gate)."""
    initial = first_model(world, runs, initial_code(SMALL))
    level = Level2(world, runs, initial, InProcess(world), kind=kind)
    code = change.apply(level.code)
    level.canary = Rollout(change, code, level.champion.fitted, SMALL.start_day, kind)
    return level


def test_a_canary_short_of_requests_waits_for_the_next_day_then_is_promoted(world, runs):
    # 300 requests a day, a 20 % canary: 60 on its first day, short of level 2's minimum of
    # 100; level 2's rule waits (it neither promotes nor rolls back an unjudged canary).
    start = SMALL.start_day
    level = level2_with_canary(world, runs, widens_search(start))
    level.serve(start + 1)
    level.judge_rollout(start + 1)
    assert level.canary is not None and level.canary.days == [start + 1]
    assert level.events == []
    level.serve(start + 2)
    level.judge_rollout(start + 2)
    assert level.canary is None
    assert [e.kind for e in level.events] == ["release", "promote"]
    assert level.champion.version == 2 and "wider-search" in level.code.name


def test_a_push_during_a_canary_waits_for_it_then_goes_through_ci(world, runs):
    start = SMALL.start_day
    good = widens_search(start)
    level = level2_with_canary(world, runs, good)
    level.push(refactors_scoring(start + 1), start + 1)
    assert [e.kind for e in level.events] == ["queued"] and level.canary.change is good
    for day in (start + 1, start + 2):
        level.serve(day)
        level.end_of_day(day)
    kinds = [e.kind for e in level.events]
    assert kinds.index("promote") < kinds.index("ci"), kinds  # the canary ended first
    assert level.queued == [] and level.canary is None
    assert "CI red for 'refactor the service's scoring'" in level.events[kinds.index("ci")].text
    assert level.bad_changes_serving == set()


def test_a_person_reverts_the_newest_release_once_and_never_an_older_one(world, runs):
    level = Level0(world, runs, first_model(world, runs, initial_code(SMALL)), InProcess(world))
    start = SMALL.start_day
    before = level.code
    level.serve(start)
    level.release(start, refactors_scoring(start), manual=True)  # inverted probabilities
    assert level.bad_changes_serving == {"refactor the service's scoring"}
    last = start + 1 + SMALL.label_delay_days + 2  # labels of three days after it landed
    for day in range(start + 1, last + 1):
        level.serve(day)
    level.revert_if_broken(last, "a person checked")
    assert level.events[-1].kind == "revert" and level.events[-1].manual
    assert level.code == before and level.bad_changes_serving == set()
    level.revert_if_broken(last + 1, "a person checked again")  # nothing left to blame
    assert level.events[-1].kind == "check" and "no release to suspect" in level.events[-1].text
    assert level.code == before


def test_drift_of_the_features_detects_a_shift_only_live_quality_a_concept_drift(world, runs):
    level = Level2(world, runs, first_model(world, runs, initial_code(SMALL)), InProcess(world))
    level.events = [
        Event(12, "alert", "40% of features drifted (threshold 30%): age"),
        Event(14, "alert", "live ROC AUC 0.610 is below 0.700 (hold-out 0.740 - 0.04)"),
    ]
    assert _first_alert(level, 10, "features drifted") == 2
    assert _first_alert(level, 10, "live ROC AUC") == 4
    assert _first_alert(level, 13, "features drifted") is None
    assert _first_alert(level, None, "live ROC AUC") is None


def test_a_canary_that_answers_the_probability_of_staying_is_rolled_back(world, runs):
    # CI would stop this change; pushed past it, the canary's prediction distribution
    # (PSI against the champion's) is what stops it in production.
    start = SMALL.start_day
    level = level2_with_canary(world, runs, refactors_scoring(start))
    initial = level.champion
    for day in (start + 1, start + 2):
        level.serve(day)
        level.judge_rollout(day)
    assert level.canary is None
    assert [e.kind for e in level.events] == ["canary"]
    assert "rolled back" in level.events[0].text and "PSI" in level.events[0].text
    assert level.code == initial.code and level.champion.version == 1
    assert level.bad_changes_serving == set()  # the canary share never counted as released
    exposed = level.rollouts[0].exposed  # its share of both days (60-odd a day: 100 needed)
    assert exposed == sum(int(level.served[d].canary.sum()) for d in (start + 1, start + 2)) > 0
    assert len(level.bad_exposed) == exposed  # they got the probability of staying


def test_the_same_change_as_a_shadow_is_discarded_with_no_customer_given_its_answers(world, runs):
    start = SMALL.start_day
    level = level2_with_canary(world, runs, refactors_scoring(start), kind="shadow")
    level.serve(start + 1)
    served = level.served[start + 1]
    assert not served.canary.any() and set(served.version for _ in [0]) == {1}
    assert len(served.shadow) == len(served.ids)  # a copy of every request, scored
    level.judge_rollout(start + 1)  # 300 copies in a day: enough to judge
    assert level.canary is None and [e.kind for e in level.events] == ["canary"]
    text = level.events[0].text
    assert "shadow of 'refactor the service's scoring' discarded" in text
    assert "would change" in text and "PSI" in text
    [result] = level.rollouts
    assert (result.kind, result.action, result.exposed) == ("shadow", "rollback", 0)
    assert level.bad_exposed == set() and level.champion.version == 1


def test_an_ab_test_waits_for_labels_and_exposes_its_customers_until_they_say(world, runs):
    start = SMALL.start_day
    level = level2_with_canary(world, runs, refactors_scoring(start), kind="ab")
    day = start
    while level.canary is not None and day < SMALL.days - 1:
        day += 1
        level.serve(day)
        level.judge_rollout(day)
        if level.canary is not None:
            assert level.events == []  # no labels yet, or too few: it waits
    [result] = level.rollouts
    assert result.action == "rollback" and "worse" in result.reason, result.reason
    # Labels land `label_delay_days` late: the test ran at least that long, and every
    # customer it answered meanwhile got the wrong answers
    assert day - start > SMALL.label_delay_days
    candidate_customers = {i for d in range(start + 1, day + 1)
                           for i in level.served[d].ids[level.served[d].canary]}  # fmt: skip
    assert result.exposed == len(candidate_customers) == len(level.bad_exposed)
    assert result.exposed > 0.4 * 300 * (day - start)  # about half of each day's customers


def days(auc: list[float], start: int = 0, **columns) -> pd.DataFrame:
    return pd.DataFrame(
        {"day": range(start, start + len(auc)), "roc_auc": auc, "bad_changes": "", **columns}
    )


def test_recovery_counts_days_from_the_concept_drift_until_the_3_day_mean_is_back():
    settings = SMALL.model_copy(
        update={"covariate_shift_day": None, "concept_drift_day": 4, "recovery_tolerance": 0.03}
    )
    #          before drift (mean 0.8) | drift: falls, then back from day 9
    auc = [0.8, 0.8, 0.8, 0.8, 0.6, 0.6, 0.6, 0.79, 0.79, 0.79, 0.79]
    assert _recovery(days(auc), settings) == (9 - 4, pytest.approx(0.8))
    assert _recovery(days(auc[:8] + [0.6] * 3), settings)[0] is None  # never back
    assert _recovery(days([0.8] * 11), settings)[0] == 0  # never fell
    # A bad change serving before the drift is not the level's healthy quality
    table = days(auc).assign(bad_changes=["x", "", "", "", *[""] * 7])
    table.loc[0, "roc_auc"] = 0.2
    assert _recovery(table, settings)[1] == pytest.approx(0.8)


def test_lead_time_is_days_from_the_push_until_a_model_of_its_code_answers():
    table = days([0.8] * 6, start=10, model_code=["main"] * 3 + ["main+wider-search"] * 3)
    assert _lead_time(table, "wider-search", pushed=10) == 3
    assert _lead_time(table, "scoring-refactor", pushed=10) is None


def test_a_story_day_outside_the_replay_is_refused_by_name():
    with pytest.raises(
        ValidationError, match="concept_drift_day=45 is outside the replay's days 0..39"
    ):
        CompareSettings(days=40)


def test_the_group_harm_day_must_fall_within_its_story():
    with pytest.raises(ValidationError, match="group_harm_day=40 is outside the group-harm"):
        CompareSettings(group_harm_day=40)
    assert CompareSettings(group_harm_day=None).group_harm_day is None


def test_the_staging_gate_stops_the_group_harming_change_naming_the_rural_slice():
    """In the group-harm world, level 2's CD judges the pushed code's candidate: CI passes it
    (it beats the baseline), the staging gate rejects it, and names the rural slice."""
    settings = SMALL.model_copy(update={"rows_per_day": 500})
    world = World(settings, get_scenario(group_harm.SCENARIO))
    runs = Runs(world, settings)
    level = Level2(world, runs, first_model(world, runs, initial_code(settings)), InProcess(world))
    change = drops_delivery_minutes(12)
    level.push(change, 12)
    assert level.canary is None and not [e for e in level.events if e.kind == "ci"]
    verdict = level.staged[change.title]
    assert any(r.startswith("slice city_tier=rural roc_auc") for r in verdict.reasons), verdict
    assert group_harm.stopped_by(level, change).startswith("the staging gate, before any release")


def test_the_replay_takes_the_levels_defaults_not_the_environment(monkeypatch):
    monkeypatch.setenv("L1_WINDOW_DAYS", "3")
    monkeypatch.setenv("L2_CANARY_MIN_REQUESTS", "1")
    assert PipelineSettings().window_days == 3  # a level's service reads it, as it must
    replayed = level_defaults(PipelineSettings)
    assert replayed.window_days == PipelineSettings.model_fields["window_days"].default == 14
    assert isinstance(replayed, PipelineSettings) and replayed.gate().champion_margin == 0.0
    assert level_defaults(CicdSettings).bounds().min_requests == 100


def test_level0s_person_follows_the_scripts_rule_for_a_bad_batch_refused_then_removed():
    """level0_manual/train.py refuses to train while a batch breaks the contract; the
    replay's person removes it and trains again, and does not meet it a second time."""
    settings = SMALL.model_copy(update={"incident_day": 5, "level0_retrain_weeks": 1})
    world = World(settings)
    assert not world.batch_ok(5)
    runs = Runs(world, settings)
    level = Level0(world, runs, first_model(world, runs, initial_code(settings)), InProcess(world))
    for day in range(settings.start_day, settings.start_day + 14):
        level.serve(day)
        level.end_of_day(day)
    refused = [e for e in level.events if e.kind == "batch-rejected"]
    assert [(e.day, e.manual) for e in refused] == [(settings.start_day + 6, True)]
    assert "training refused: days [5] break the data contract" in refused[0].text
    assert len(level.trained) == 2 and all(5 not in fitted.days for fitted in level.trained)
    assert level.trained[1].days == tuple(d for d in world.labels_landed(21) if d != 5)


def test_an_alert_is_raised_when_its_rule_starts_firing_about_something_new(world, runs):
    level = Level1(world, runs, first_model(world, runs, initial_code(SMALL)), InProcess(world))
    level.firing = {
        10: {("DriftHigh", 3)},
        11: {("DriftHigh", 3), ("BatchQuarantined", 11)},  # still firing about v3: not again
        12: {("DriftHigh", 4)},  # a new champion: a new alert
        14: {("DriftHigh", 4)},  # it stopped on day 13: a new alert
    }
    assert alerts.raised(level) == [
        (10, "DriftHigh"), (11, "BatchQuarantined"), (12, "DriftHigh"), (14, "DriftHigh")
    ]  # fmt: skip


def test_the_replays_alerts_are_rules_of_the_stacks_with_their_actions():
    labels = routing.labels()
    # Monitoring's kinds: a rule that retrains where the assessment retrains, pages otherwise
    for kind, rule in ALERT_OF.items():
        expected = "retrain" if kind in assessment.RETRAIN_KINDS else "page"
        assert labels[rule]["action"] == expected, rule
    assert set(ALERT_OF) > set(assessment.RETRAIN_KINDS)  # live fairness pages a person
    for rule in ("BatchQuarantined", "CanaryRolledBack", "ModelStale", "ChampionDataStale",
                 "LiveFairnessGapHigh"):  # fmt: skip
        assert labels[rule]["action"] == "page", rule
        assert routing.pages(rule, 1) and routing.pages(rule, 2), rule
    assert not routing.pages("DriftHigh", 1) and not routing.pages("DriftHigh", 2)


def test_the_replays_person_looks_into_live_quality_where_alertmanager_pages_one(world, runs):
    """Level 1 has no CI: Alertmanager pages a person for a live-quality drop there (and
    starts the retrain); at level 2 the retrain alone. The replay's levels follow the routes."""
    first = first_model(world, runs, initial_code(SMALL))
    assert routing.pages("LiveQualityDrop", 1) and not routing.pages("LiveQualityDrop", 2)
    assert Level1(world, runs, first, InProcess(world)).on_call
    assert not Level2(world, runs, first, InProcess(world)).on_call


def test_a_champion_kept_past_the_bounds_fires_the_staleness_rules(world, runs):
    level = Level1(world, runs, first_model(world, runs, initial_code(SMALL)), InProcess(world))
    trained, newest = level.champion.trained, max(level.champion.fitted.days)
    level.check_staleness(trained + 1)
    assert level.firing == {}
    # newest labelled day = day - label delay: the data lag passes 3 days before the age 7
    lag_day = newest + SMALL.label_delay_days + PIPELINE.max_data_lag_days + 1
    level.check_staleness(lag_day)
    assert level.firing[lag_day] == {("ChampionDataStale", 1)}
    age_day = trained + int(PIPELINE.max_model_age_days) + 1
    level.check_staleness(age_day)
    assert level.firing[age_day] == {("ChampionDataStale", 1), ("ModelStale", 1)}


def test_prometheus_fires_the_staleness_rules_on_the_evenings_the_replay_does(
    world, runs, tmp_path
):
    """On each side of both bounds, `promtool test rules` on the exporter's figures fires what
    the replay fired (tests/replay_alerts.py; monitoring's rules: tests/integration/)."""
    level = Level1(world, runs, first_model(world, runs, initial_code(SMALL)), InProcess(world))
    trained, newest = level.champion.trained, max(level.champion.fitted.days)
    lag_day = newest + SMALL.label_delay_days + PIPELINE.max_data_lag_days + 1
    age_day = trained + int(PIPELINE.max_model_age_days) + 1
    days = [trained + 1, lag_day - 1, lag_day, age_day - 1, age_day]
    for day in days:
        level.check_staleness(day)
    expected = [fired(level, day) for day in days]
    assert expected == [[], [], ["ChampionDataStale"], ["ChampionDataStale"],
                        ["ChampionDataStale", "ModelStale"]]  # fmt: skip
    champion = level.champion
    evenings = [figures(level, day, champion, champion) for day in days]
    assert_prometheus_fires_the_same(evenings, expected, tmp_path)


def test_alerts_are_judged_true_or_false_against_the_storys_incidents(world, runs):
    settings = SMALL.model_copy(update={"incident_day": 12, "bad_change_day": 10})
    level = Level1(world, runs, first_model(world, runs, initial_code(SMALL)), InProcess(world))
    level.settings = settings
    level.firing = {
        9: {("ModelStale", 1)},  # no incident going on: a false page
        12: {("BatchQuarantined", 12)},  # the broken export, the day it lands: true
        13: {("LiveQualityDrop", 1)},  # the bad change serves: true, a page at level 1
    }
    level.events = [
        Event(12, "batch-rejected", "run stopped before training: nulls"),
        Event(15, "revert", "since 'refactor the service's scoring' ...; reverted by hand"),
    ]
    table = days([0.8] * 8, start=8, bad_changes=[""] * 5 + ["refactor the service's scoring"] * 3)
    found = alerts.figures(level, table)
    assert found["alerts raised"] == 3 and found["pages to a person"] == 3
    assert (found["true alerts"], found["false alerts"]) == (2, 1)
    assert found["days from each incident to its first alert"] == (
        "broken export: 0; refactor the service's scoring: 3"
    )
    assert found["days from each incident to its first action"] == (
        "broken export: 0; refactor the service's scoring: 5"
    )
    level0 = Level0(world, runs, first_model(world, runs, initial_code(SMALL)), InProcess(world))
    level0.settings = settings
    assert alerts.figures(level0, table)["alerts raised"] == 0


def test_a_canary_rolled_back_and_late_quality_alerts_are_true_alerts(world, runs):
    settings = SMALL.model_copy(update={"bad_change_day": 10})
    level = Level2(world, runs, first_model(world, runs, initial_code(SMALL)), InProcess(world))
    level.settings = settings
    title = "refactor the service's scoring"
    # Pushed on day 10, never served to all: its canary is rolled back on day 12
    level.firing = {12: {("CanaryRolledBack", 2)}}
    level.events = [Event(12, "canary", f"canary of '{title}' rolled back: PSI 0.9")]
    found = alerts.figures(level, days([0.8] * 8, start=8))
    assert (found["true alerts"], found["false alerts"]) == (1, 0)
    assert found["days from each incident to its first alert"] == f"{title}: 2"
    assert found["days from each incident to its first action"] == f"{title}: 2"
    # Served on days 10 and 11 at level 1: its answers' labels land 3 days later, so live
    # quality can see it until day 11 + 3 + 1
    level1 = Level1(world, runs, first_model(world, runs, initial_code(SMALL)), InProcess(world))
    level1.settings = settings
    level1.firing = {15: {("LiveQualityDrop", 1)}, 16: {("LiveQualityDrop", 2)}}
    served = days([0.8] * 8, start=8, bad_changes=["", "", title, title, "", "", "", ""])
    found = alerts.figures(level1, served)
    assert (found["true alerts"], found["false alerts"]) == (1, 1)
