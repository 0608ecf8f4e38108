"""The canary's verdict: promote the candidate, roll it back, or keep watching.

Level 2's production service sends a share of live traffic to the candidate (the canary arm)
and the rest to the champion, and counts per arm: requests, errors, latency and the predicted
probabilities. After the window the CD flow compares the arms with `decide`: the candidate is
promoted only when it answered enough requests, with no more errors and no slower tail than
the bounds allow, and predictions distributed like the champion's (a model that suddenly
calls everyone a churner is wrong in production even when it passed the gate offline).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

BINS = 10  # probability histogram: [0, 0.1), [0.1, 0.2), ... [0.9, 1.0]


def bin_of(probability: float) -> int:
    """The histogram bin of a predicted probability."""
    return min(int(probability * BINS), BINS - 1)


def bin_counts(probabilities) -> list[int]:
    """How many of `probabilities` fall in each of the BINS bins."""
    counts = [0] * BINS
    for p in probabilities:
        counts[bin_of(p)] += 1
    return counts


@dataclass(frozen=True)
class ArmStats:
    """What the service counted for one arm during the window."""

    requests: int
    errors: int
    p95_ms: float  # the arm's latency tail (a p99 of the canary's ~100 requests is its max)
    histogram: tuple[int, ...] = field(default=(0,) * BINS)  # predictions per probability bin

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class Bounds:
    """How far the canary may be from the champion and still be promoted."""

    min_requests: int = 100  # fewer canary requests than this: keep watching
    max_error_rate_increase: float = 0.01  # absolute, over the champion's error rate
    max_p95_ratio: float = 1.5  # the canary's p95 over the champion's ...
    p95_slack_ms: float = 10.0  # ... plus this, so that a 2 ms vs 3 ms tail is no verdict
    max_prediction_psi: float = 0.2  # the predictions' PSI, above what chance explains


@dataclass(frozen=True)
class Decision:
    action: str  # "promote" | "rollback" | "wait"
    reasons: tuple[str, ...]

    @property
    def summary(self) -> str:
        return f"{self.action}: " + "; ".join(self.reasons)


def psi(expected: tuple[int, ...], actual: tuple[int, ...], smoothing: float = 0.5) -> float:
    """Population stability index of two histograms over the same bins (0: identical;
    above 0.2 is the usual "significant shift"). Each bin gets `smoothing` added to its
    count, so that a bin empty in one sample is not an infinite shift."""
    if not sum(expected) or not sum(actual):
        return 0.0
    e_total = sum(expected) + smoothing * len(expected)
    a_total = sum(actual) + smoothing * len(actual)
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        p, q = (e + smoothing) / e_total, (a + smoothing) / a_total
        total += (q - p) * math.log(q / p)
    return total


def sampling_psi(n_expected: int, n_actual: int, bins: int = BINS) -> float:
    """The PSI two samples of one distribution show by chance alone, about (bins − 1) ×
    (1/n₁ + 1/n₂): 0.1 for 100 canary rows against 900. The bound applies above it."""
    if not n_expected or not n_actual:
        return 0.0
    return (bins - 1) * (1 / n_expected + 1 / n_actual)


def decide(champion: ArmStats, canary: ArmStats, bounds: Bounds, window_over: bool) -> Decision:
    """Roll back as soon as the canary is clearly worse; promote only at the window's end
    with enough canary traffic inside every bound."""
    problems = []
    if canary.error_rate > champion.error_rate + bounds.max_error_rate_increase:
        problems.append(
            f"error rate {canary.error_rate:.1%} vs champion {champion.error_rate:.1%} "
            f"(bound +{bounds.max_error_rate_increase:.1%})"
        )
    slowest = champion.p95_ms * bounds.max_p95_ratio + bounds.p95_slack_ms
    if canary.requests and canary.p95_ms > slowest:
        problems.append(
            f"p95 {canary.p95_ms:.0f} ms vs champion {champion.p95_ms:.0f} ms "
            f"(bound {slowest:.0f} ms)"
        )
    shift = psi(champion.histogram, canary.histogram)
    chance = sampling_psi(sum(champion.histogram), sum(canary.histogram))
    if canary.requests >= bounds.min_requests and shift - chance > bounds.max_prediction_psi:
        problems.append(
            f"prediction PSI {shift:.2f} ({chance:.2f} expected by chance; "
            f"bound {bounds.max_prediction_psi} above that)"
        )
    enough = canary.requests >= bounds.min_requests
    if problems and (enough or canary.errors >= 5):
        return Decision("rollback", tuple(problems))
    if not enough:
        needed = f"{canary.requests} canary requests of the {bounds.min_requests} needed"
        # Unjudged is not good: a canary that got too little traffic is not promoted
        return Decision("rollback" if window_over else "wait", (needed,))
    if not window_over:
        return Decision("wait", ("within bounds so far",))
    return Decision(
        "promote",
        (
            f"{canary.requests} canary requests: error rate {canary.error_rate:.1%}, "
            f"p95 {canary.p95_ms:.0f} ms, prediction PSI {shift:.2f}, all within bounds",
        ),
    )


def pooled(replicas: list[dict]) -> dict:
    """Production's rollout figures (each replica's `GET /rollout`) taken together: what CD
    judges when production runs as several replicas, each counting the requests it answered.

    Requests, errors and the predictions' histograms add up. The p95 is the slowest replica's:
    no replica answered more than 5 % of its requests slower than it, so neither did all of
    them together (an upper bound of the pooled p95, never an underestimate). The versions are
    each replica's, so that CD can wait until every replica counts (or has unloaded) a canary.
    """
    if not replicas:
        raise ValueError("no production replica answered")

    def arms(name: str) -> dict:
        figures = [replica[name] for replica in replicas]
        return {
            "requests": sum(f["requests"] for f in figures),
            "errors": sum(f["errors"] for f in figures),
            "p95_ms": max((f["p95_ms"] for f in figures if f["requests"]), default=0.0),
            "histogram": [sum(b) for b in zip(*(f["histogram"] for f in figures), strict=True)],
        }

    return {
        "replicas": len(replicas),
        "counted_versions": sorted({str(r["counted_version"]) for r in replicas}),
        "canary_versions": sorted({str(r["canary_version"]) for r in replicas}),
        "champion": arms("champion"),
        "canary": arms("canary"),
    }
