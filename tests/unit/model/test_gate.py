"""The model gate: a candidate passes only when it clears the absolute bar, beats the
baseline, beats the champion by the margin and regresses on no slice; every rejection
says which check failed, with its numbers."""

from __future__ import annotations

from shared.evaluate import Evaluation, evaluate
from shared.gate import GateConfig, judge
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
