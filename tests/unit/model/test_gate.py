"""The model gate: a candidate passes only when it clears the absolute bar, beats the
baseline, reaches the champion plus the margin, regresses on no slice and is not the
champion's own recipe (same data, code and params) again; every rejection says which check
failed, with its numbers or, for the lineage, the champion's version."""

from __future__ import annotations

from shared.evaluate import Evaluation, evaluate
from shared.gate import ChampionLineage, GateConfig, judge
from shared.lineage import fingerprint
from shared.train import train_baseline

CONFIG = GateConfig(min_roc_auc=0.70, min_auc_lift_over_baseline=0.05, champion_margin=0.01)
BASELINE = Evaluation(rows=100, positive_rate=0.3, overall={"roc_auc": 0.5})


def model(auc: float, slices: dict[str, float] | None = None) -> Evaluation:
    return Evaluation(
        rows=100,
        positive_rate=0.3,
        overall={"roc_auc": auc},
        slices={"platform": {k: {"rows": 50.0, "roc_auc": v} for k, v in (slices or {}).items()}},
    )


def test_a_good_first_model_passes_without_a_champion():
    verdict = judge(model(0.80), BASELINE, None, CONFIG)
    assert verdict.passed and verdict.reasons == []
    assert [c.name for c in verdict.checks] == ["roc_auc >= minimum", "roc_auc >= baseline + lift"]


def test_a_model_below_the_absolute_bar_is_rejected_with_its_numbers():
    verdict = judge(model(0.65), BASELINE, None, CONFIG)
    assert not verdict.passed
    assert verdict.reasons == ["roc_auc >= minimum: 0.650 fails 0.700"]


def test_a_model_that_barely_beats_the_baseline_is_rejected():
    config = GateConfig(min_roc_auc=0.5, min_auc_lift_over_baseline=0.05)
    verdict = judge(model(0.53), BASELINE, None, config)
    assert verdict.reasons == ["roc_auc >= baseline + lift: 0.530 fails 0.550"]


def test_a_candidate_must_beat_the_champion_by_the_margin():
    champion = model(0.80)
    assert judge(model(0.815), BASELINE, champion, CONFIG).passed
    verdict = judge(model(0.805), BASELINE, champion, CONFIG)
    assert verdict.reasons == ["roc_auc >= champion + margin: 0.805 fails 0.810"]


RECIPE = fingerprint("sha256:data1", "c0ffee", {"learning_rate": 0.1, "seed": 42})


def test_a_twin_of_the_champion_is_rejected_naming_the_champion_version():
    """The same data, code and params as the champion, hence the same evaluation: rejected
    whatever the margin (a negative one would let an equal model through), with the reason."""
    champion = model(0.791)
    for margin in (0.0, -0.02):
        config = GateConfig(champion_margin=margin)
        verdict = judge(model(0.791), BASELINE, champion, config, RECIPE,
                        ChampionLineage("3", RECIPE))  # fmt: skip
        assert not verdict.passed and verdict.same_as_champion
        assert verdict.reasons == [
            "lineage differs from champion: same data, code and params as champion version 3"
        ]
        assert "same data, code and params as champion version 3" in verdict.summary()


def test_identical_lineage_is_rejected_even_when_the_evaluation_differs():
    """Lineage decides, not the numbers: a recipe run twice is the champion again even if a
    float's last digit moved (a better-looking twin is still a twin)."""
    verdict = judge(model(0.83), BASELINE, model(0.80), CONFIG, RECIPE,
                    ChampionLineage("7", RECIPE))  # fmt: skip
    assert verdict.same_as_champion
    assert verdict.reasons == [
        "lineage differs from champion: same data, code and params as champion version 7"
    ]


def test_a_better_candidate_of_a_new_lineage_passes():
    newer = fingerprint("sha256:data2", "c0ffee", {"learning_rate": 0.1, "seed": 42})
    verdict = judge(model(0.83), BASELINE, model(0.80), CONFIG, newer, ChampionLineage("3", RECIPE))
    assert verdict.passed and not verdict.same_as_champion
    assert "data, code or params differ from champion version 3's" in verdict.summary()


def test_an_equal_model_from_new_code_passes_a_zero_margin():
    """A refactor trains the champion's model again under a new code version: not worse, not
    a twin. Level 2 delivers such commits through this gate."""
    refactored = fingerprint("sha256:data1", "beef00", {"learning_rate": 0.1, "seed": 42})
    config = GateConfig(champion_margin=0.0)
    verdict = judge(model(0.791), BASELINE, model(0.791), config, refactored,
                    ChampionLineage("3", RECIPE))  # fmt: skip
    assert verdict.passed


def test_without_both_fingerprints_the_lineage_is_not_judged():
    """A champion registered before fingerprints, or code of unknown version."""
    for ours, theirs in ((RECIPE, ChampionLineage("3", None)), (None, ChampionLineage("3", RECIPE)),
                         (RECIPE, None)):  # fmt: skip
        verdict = judge(model(0.80), BASELINE, model(0.80), GateConfig(), ours, theirs)
        assert verdict.passed
        assert all(c.name != "lineage differs from champion" for c in verdict.checks)


def test_a_better_average_does_not_excuse_a_slice_that_got_much_worse():
    champion = model(0.80, {"ios": 0.80, "web": 0.80})
    candidate = model(0.85, {"ios": 0.90, "web": 0.70})
    verdict = judge(candidate, BASELINE, champion, CONFIG)
    assert not verdict.passed
    assert verdict.reasons == ["slice platform=web roc_auc: 0.700 fails 0.750"]


def test_slices_too_small_to_score_are_not_judged():
    champion = model(0.80, {"web": 0.80})
    candidate = model(0.85)
    candidate.slices["platform"]["web"] = {"rows": 10.0}  # no roc_auc: too few rows
    assert judge(candidate, BASELINE, champion, CONFIG).passed


def test_the_summary_lists_every_check_when_passed_and_the_failures_when_not():
    assert judge(model(0.80), BASELINE, None, CONFIG).summary().startswith("passed: roc_auc")
    assert judge(model(0.60), BASELINE, None, CONFIG).summary().startswith("rejected: roc_auc")


def test_a_trained_model_passes_against_its_own_dummy_and_not_against_a_perfect_champion(
    trained, split
):
    train_frame, holdout = split
    candidate = evaluate(trained.pipeline, holdout)
    baseline = evaluate(train_baseline(train_frame), holdout)
    assert judge(candidate, baseline, None, CONFIG).passed
    perfect = Evaluation(rows=1, positive_rate=0.3, overall={"roc_auc": 1.0})
    assert not judge(candidate, baseline, perfect, CONFIG).passed
