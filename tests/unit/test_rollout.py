"""The rollout verdicts. Canary: errors, a slow tail or shifted predictions roll back; only a
canary with enough traffic inside every bound at the window's end is promoted. Shadow: the
same on what it would have answered, and the decisions it would change. A/B: the stated test
on labelled decisions: promote, roll back, wait, time out."""

from __future__ import annotations

import numpy as np

from level2_cicd.arms import ArmCounter
from level2_cicd.flows.cd import arm
from level2_cicd.rollout import (
    AbRule,
    ArmStats,
    Bounds,
    Labelled,
    ShadowBounds,
    decide,
    decide_ab,
    decide_shadow,
    disagree,
    psi,
    sampling_psi,
)

SPREAD = (30, 20, 15, 10, 8, 6, 4, 3, 2, 2)
BOUNDS = Bounds(min_requests=100)
CHAMPION = ArmStats(requests=900, errors=0, p95_ms=20.0, histogram=tuple(9 * n for n in SPREAD))


def canary(**changes) -> ArmStats:
    values = {"requests": 100, "errors": 0, "p95_ms": 22.0, "histogram": SPREAD} | changes
    return ArmStats(**values)


def test_a_canary_like_the_champion_is_promoted_at_the_end_of_the_window_only():
    assert decide(CHAMPION, canary(), BOUNDS, window_over=False).action == "wait"
    decision = decide(CHAMPION, canary(), BOUNDS, window_over=True)
    assert decision.action == "promote" and "within bounds" in decision.summary


def test_errors_roll_back_at_once_naming_the_rates():
    decision = decide(CHAMPION, canary(errors=10), BOUNDS, window_over=False)
    assert decision.action == "rollback"
    assert "error rate 10.0% vs champion 0.0%" in decision.summary


def test_a_few_errors_roll_back_before_the_canary_has_enough_traffic():
    assert decide(CHAMPION, canary(requests=20, errors=5), BOUNDS, False).action == "rollback"
    assert decide(CHAMPION, canary(requests=20, errors=0), BOUNDS, False).action == "wait"


def test_a_slow_tail_rolls_back_but_a_small_absolute_difference_does_not():
    assert decide(CHAMPION, canary(p95_ms=200.0), BOUNDS, True).action == "rollback"
    assert decide(CHAMPION, canary(p95_ms=38.0), BOUNDS, True).action == "promote"


def test_shifted_predictions_roll_back():
    everyone_churns = (0, 0, 0, 0, 0, 0, 0, 10, 30, 60)
    decision = decide(CHAMPION, canary(histogram=everyone_churns), BOUNDS, True)
    assert decision.action == "rollback" and "prediction PSI" in decision.summary


def test_too_little_traffic_is_not_promoted():
    decision = decide(CHAMPION, canary(requests=30, histogram=(3,) * 10), BOUNDS, True)
    assert decision.action == "rollback" and "30 canary requests" in decision.summary


def test_a_canary_that_only_differs_by_chance_is_promoted():
    # Two samples of one distribution, the canary's a small one: their PSI is not zero
    rng = np.random.default_rng(3)
    weights = np.array(SPREAD) / sum(SPREAD)
    small = tuple(int(n) for n in rng.multinomial(100, weights))
    large = tuple(int(n) for n in rng.multinomial(900, weights))
    assert psi(large, small) > 0.02
    champion = ArmStats(requests=900, errors=0, p95_ms=20.0, histogram=large)
    assert decide(champion, canary(histogram=small), BOUNDS, True).action == "promote"
    assert abs(sampling_psi(900, 100) - 0.1) < 1e-9


def test_psi_is_zero_for_the_same_distribution_and_grows_with_the_shift():
    assert psi(SPREAD, tuple(2 * n for n in SPREAD)) < 0.01
    assert psi(SPREAD, SPREAD) == 0.0
    slightly = (28, 21, 15, 11, 8, 6, 4, 3, 2, 2)
    assert 0 < psi(SPREAD, slightly) < psi(SPREAD, (0, 0, 0, 0, 0, 0, 0, 10, 30, 60))


def counted(latencies_ms: list[float]) -> ArmStats:
    """An arm as production's service counts it and CD reads it from GET /rollout."""
    counter = ArmCounter()
    probabilities = np.random.default_rng(0).beta(2, 5, len(latencies_ms))
    for ms, p in zip(latencies_ms, probabilities, strict=True):
        counter.count(ms, np.array([p]))
    return arm(counter.snapshot())


def test_two_stalls_of_the_machine_do_not_roll_a_good_canary_back_but_a_slow_one_is():
    champion = counted([5.0] * 880 + [40.0] * 20)
    stalled = counted([5.0] * 98 + [90.0] * 2)  # its p99 would be 90 ms
    assert decide(champion, stalled, BOUNDS, window_over=True).action == "promote"
    slow = counted([5.0] * 85 + [300.0] * 15)  # an injected delay on some of its requests
    decision = decide(champion, slow, BOUNDS, window_over=False)
    assert decision.action == "rollback" and "p95 300 ms" in decision.summary


# ---- shadow: judged on what it would have answered ------------------------------------------


def test_a_shadow_like_the_champion_is_promoted_at_the_end_of_the_window():
    shadow = canary(requests=900, histogram=tuple(9 * n for n in SPREAD))
    assert decide_shadow(CHAMPION, shadow, 20, BOUNDS, ShadowBounds(), False).action == "wait"
    decision = decide_shadow(CHAMPION, shadow, 20, BOUNDS, ShadowBounds(), True)
    assert decision.action == "promote" and "900 shadow requests" in decision.summary


def test_a_shadow_that_would_change_too_many_decisions_is_discarded_at_once():
    shadow = canary(requests=900, histogram=tuple(9 * n for n in SPREAD))
    decision = decide_shadow(CHAMPION, shadow, 180, BOUNDS, ShadowBounds(0.1), False)
    assert decision.action == "rollback"
    assert "would change 20.0% of the champion's decisions (bound 10%)" in decision.summary


def test_a_shadow_is_held_to_the_canarys_bounds_too():
    failing = canary(requests=900, errors=90, histogram=tuple(8 * n for n in SPREAD))
    decision = decide_shadow(CHAMPION, failing, 0, BOUNDS, ShadowBounds(), False)
    assert decision.action == "rollback" and "error rate 10.0%" in decision.summary
    too_few = canary(requests=40, histogram=(4,) * 10)
    decision = decide_shadow(CHAMPION, too_few, 0, BOUNDS, ShadowBounds(), True)
    assert decision.action == "rollback" and "40 shadow requests of the 100" in decision.summary


def test_two_models_disagree_when_their_decisions_differ_not_their_probabilities():
    assert disagree(0.49, 0.51) and disagree(0.9, 0.1)
    assert not disagree(0.51, 0.99) and not disagree(0.0, 0.49)


# ---- A/B: judged on the labels --------------------------------------------------------------

RULE = AbRule(min_labelled=300, margin=0.02, alpha=0.05, time_limit_seconds=3600)


def test_ab_waits_for_the_minimum_sample_then_times_out_keeping_the_champion():
    small = Labelled(decisions=100, correct=95)
    assert decide_ab(Labelled(1000, 800), small, RULE, elapsed_seconds=60).action == "wait"
    decision = decide_ab(Labelled(1000, 800), small, RULE, elapsed_seconds=3600)
    assert decision.action == "rollback" and "undecided at the time limit" in decision.summary


def test_ab_rolls_back_a_candidate_whose_decisions_are_worse():
    decision = decide_ab(Labelled(1000, 800), Labelled(1000, 740), RULE, 60)
    assert decision.action == "rollback" and "worse" in decision.summary


def test_ab_promotes_a_candidate_no_worse_than_the_margin():
    decision = decide_ab(Labelled(2000, 1600), Labelled(2000, 1610), RULE, 60)
    assert decision.action == "promote" and "no worse than the champion by 2%" in decision.summary


def test_ab_keeps_running_while_the_test_cannot_tell_then_keeps_the_champion():
    # 80 % against 79 % on 300 each: neither worse nor shown within the margin
    champion, candidate = Labelled(300, 240), Labelled(300, 237)
    assert decide_ab(champion, candidate, RULE, 60).action == "wait"
    assert decide_ab(champion, candidate, RULE, 3600).action == "rollback"


def test_ab_matches_the_textbook_two_proportion_test():
    """The promote bound is the one-sided Wald test of p_c - p_a > -margin, by hand."""
    from scipy.stats import norm

    champion, candidate = Labelled(1500, 1200), Labelled(1500, 1185)
    p_a, p_c = champion.accuracy, candidate.accuracy
    se = (p_a * (1 - p_a) / 1500 + p_c * (1 - p_c) / 1500) ** 0.5
    promoted = 1 - norm.cdf((p_c - p_a + RULE.margin) / se) < RULE.alpha
    assert promoted == (decide_ab(champion, candidate, RULE, 60).action == "promote")
