"""The canary verdict: errors, a slow tail or shifted predictions roll back; only a canary
with enough traffic inside every bound at the window's end is promoted."""

from __future__ import annotations

import time

import numpy as np

from level2_cicd.flows.cd import arm
from level2_cicd.rollout import ArmStats, Bounds, decide, psi, sampling_psi
from level2_cicd.service import ArmCounter

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
        counter.count(time.perf_counter() - ms / 1000, np.array([p]))
    return arm(counter.snapshot())


def test_two_stalls_of_the_machine_do_not_roll_a_good_canary_back_but_a_slow_one_is():
    champion = counted([5.0] * 880 + [40.0] * 20)
    stalled = counted([5.0] * 98 + [90.0] * 2)  # its p99 would be 90 ms
    assert decide(champion, stalled, BOUNDS, window_over=True).action == "promote"
    slow = counted([5.0] * 85 + [300.0] * 15)  # an injected delay on some of its requests
    decision = decide(champion, slow, BOUNDS, window_over=False)
    assert decision.action == "rollback" and "p95 300 ms" in decision.summary
