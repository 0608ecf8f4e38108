"""The rollout's verdict: promote the candidate, roll it back, or keep watching.

Three kinds of rollout, one rule each:

- **canary** (`decide`): production's service sends a share of live traffic to the candidate
  (the canary arm) and the rest to the champion, and counts per arm: requests, errors,
  latency and the predicted probabilities. After the window CD compares the arms: the
  candidate is promoted only when it answered enough requests, with no more errors and no
  slower tail than the bounds allow, and predictions distributed like the champion's (a model
  that suddenly calls everyone a churner is wrong in production even when it passed the gate
  offline). Its share of customers got its answers.
- **shadow** (`decide_shadow`): the champion answers every request; the candidate scores a
  copy off the response path, and no customer ever gets its answer. It is judged on what it
  would have answered: the canary's checks, and how often its decision differs from the
  champion's on the same record.
- **A/B** (`decide_ab`): customers are split by a stable hash of their id and each arm's
  decisions are judged on the labels once they land: a one-sided test of the candidate's
  decision accuracy against the champion's (`AbRule` states the sample, the test and the
  bounds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from shared.evaluate import THRESHOLD

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
    return _verdict(champion, canary, bounds, window_over, [], "canary")


def _problems(champion: ArmStats, candidate: ArmStats, bounds: Bounds, shift: float) -> list[str]:
    """Where the candidate's arm is outside the bounds, against the champion's (`shift`: the
    PSI of its predictions against the champion's)."""
    problems = []
    if candidate.error_rate > champion.error_rate + bounds.max_error_rate_increase:
        problems.append(
            f"error rate {candidate.error_rate:.1%} vs champion {champion.error_rate:.1%} "
            f"(bound +{bounds.max_error_rate_increase:.1%})"
        )
    slowest = champion.p95_ms * bounds.max_p95_ratio + bounds.p95_slack_ms
    if candidate.requests and candidate.p95_ms > slowest:
        problems.append(
            f"p95 {candidate.p95_ms:.0f} ms vs champion {champion.p95_ms:.0f} ms "
            f"(bound {slowest:.0f} ms)"
        )
    chance = sampling_psi(sum(champion.histogram), sum(candidate.histogram))
    if candidate.requests >= bounds.min_requests and shift - chance > bounds.max_prediction_psi:
        problems.append(
            f"prediction PSI {shift:.2f} ({chance:.2f} expected by chance; "
            f"bound {bounds.max_prediction_psi} above that)"
        )
    return problems


def _verdict(
    champion: ArmStats,
    candidate: ArmStats,
    bounds: Bounds,
    window_over: bool,
    more_problems: list[str],
    arm: str,
) -> Decision:
    shift = psi(champion.histogram, candidate.histogram)
    problems = _problems(champion, candidate, bounds, shift) + more_problems
    enough = candidate.requests >= bounds.min_requests
    if problems and (enough or candidate.errors >= 5):
        return Decision("rollback", tuple(problems))
    if not enough:
        needed = f"{candidate.requests} {arm} requests of the {bounds.min_requests} needed"
        # Unjudged is not good: a candidate that got too little traffic is not promoted
        return Decision("rollback" if window_over else "wait", (needed,))
    if not window_over:
        return Decision("wait", ("within bounds so far",))
    return Decision(
        "promote",
        (
            f"{candidate.requests} {arm} requests: error rate {candidate.error_rate:.1%}, "
            f"p95 {candidate.p95_ms:.0f} ms, prediction PSI {shift:.2f}, all within bounds",
        ),
    )


# ---- shadow ---------------------------------------------------------------------------------


def disagree(champion_probability, candidate_probability):
    """Would the two models decide differently for this record (for arrays: each record)?
    A customer is treated as a
    churner (offered retention) at a probability of THRESHOLD or more: the decision two
    models can disagree on, and the one A/B judges on the labels."""
    return (champion_probability >= THRESHOLD) != (candidate_probability >= THRESHOLD)


@dataclass(frozen=True)
class ShadowBounds:
    """What a shadow may do differently from the champion beyond the canary's bounds."""

    max_disagreement: float = 0.10  # share of records whose decision the shadow would change


def decide_shadow(
    champion: ArmStats,
    shadow: ArmStats,
    disagreements: int,
    bounds: Bounds,
    shadow_bounds: ShadowBounds,
    window_over: bool,
) -> Decision:
    """The canary's rule on the shadow's recorded answers (its requests are copies of the
    champion's; its latency is off the response path), and one more: it may change no more
    than `max_disagreement` of the decisions. Rolled back means discarded: no customer saw it."""
    more = []
    compared = sum(shadow.histogram)  # records both models scored
    if compared and shadow.requests >= bounds.min_requests:
        rate = disagreements / compared
        if rate > shadow_bounds.max_disagreement:
            more.append(
                f"would change {rate:.1%} of the champion's decisions "
                f"(bound {shadow_bounds.max_disagreement:.0%})"
            )
    return _verdict(champion, shadow, bounds, window_over, more, "shadow")


# ---- A/B ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Labelled:
    """One arm's decisions whose outcomes have landed (delayed labels)."""

    decisions: int
    correct: int  # decisions the label confirmed

    @property
    def accuracy(self) -> float:
        return self.correct / self.decisions if self.decisions else 0.0


@dataclass(frozen=True)
class AbRule:
    """The A/B rule, stated. With at least `min_labelled` labelled decisions in each arm, two
    one-sided tests of the arms' decision accuracy (a difference of two independent
    proportions, statsmodels' `test_proportions_2indep`, Wald), each at level `alpha`:

    - roll back when the candidate is worse: H0 p_candidate >= p_champion rejected;
    - promote when it is no worse than the champion by more than `margin` (non-inferiority):
      H0 p_candidate - p_champion <= -margin rejected;
    - otherwise keep running; undecided after `time_limit_seconds`, keep the champion.

    CD looks at every check, so the chance of a wrong verdict over the whole rollout is above
    `alpha` (repeated looks); the minimum sample and the margin keep early looks from deciding
    on noise.

    The margin is what makes A/B slow or fast: the standard error of the difference of two
    accuracies near 0.8 is about sqrt(0.32 / n) with n labelled decisions per arm, so showing
    "no worse by 5 points" on a candidate as accurate as the champion takes about 350 per arm,
    "by 2 points" about 2,200 (at 250 a day per arm: 2 days against 9, after the labels'
    delay); a candidate 1.5 points less accurate, about 700 at 5 points."""

    min_labelled: int = 500
    margin: float = 0.05
    alpha: float = 0.05
    time_limit_seconds: float = 14 * 24 * 3600


def decide_ab(
    champion: Labelled, candidate: Labelled, rule: AbRule, elapsed_seconds: float
) -> Decision:
    from statsmodels.stats.proportion import test_proportions_2indep

    out_of_time = elapsed_seconds >= rule.time_limit_seconds
    figures = (
        f"accuracy {candidate.accuracy:.1%} on {candidate.decisions} labelled decisions vs "
        f"champion {champion.accuracy:.1%} on {champion.decisions}"
    )
    if min(champion.decisions, candidate.decisions) < rule.min_labelled:
        needed = f"{figures}: {rule.min_labelled} labelled decisions per arm needed"
        if out_of_time:
            return Decision("rollback", (f"undecided at the time limit: {needed}",))
        return Decision("wait", (needed,))
    counts = (candidate.correct, candidate.decisions, champion.correct, champion.decisions)
    worse = test_proportions_2indep(*counts, method="wald", alternative="smaller").pvalue
    if worse < rule.alpha:
        return Decision("rollback", (f"{figures}: worse (one-sided p {worse:.3f})",))
    no_worse = test_proportions_2indep(
        *counts, value=-rule.margin, method="wald", alternative="larger"
    ).pvalue
    if no_worse < rule.alpha:
        return Decision(
            "promote",
            (f"{figures}: no worse than the champion by {rule.margin:.0%} "
             f"(one-sided p {no_worse:.3f})",),
        )  # fmt: skip
    if out_of_time:
        return Decision("rollback", (f"undecided at the time limit: {figures}",))
    return Decision("wait", (f"{figures}: not yet decided (p {no_worse:.3f} and {worse:.3f})",))


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
        counts = ("requests", "errors", "customers", "disagreements", "dropped")
        return {
            **{k: sum(f.get(k, 0) for f in figures) for k in counts},
            "p95_ms": max((f["p95_ms"] for f in figures if f["requests"]), default=0.0),
            "histogram": [sum(b) for b in zip(*(f["histogram"] for f in figures), strict=True)],
        }

    return {
        "replicas": len(replicas),
        "kinds": sorted({str(r.get("kind")) for r in replicas}),
        "counted_versions": sorted({str(r["counted_version"]) for r in replicas}),
        "canary_versions": sorted({str(r["canary_version"]) for r in replicas}),
        "champion": arms("champion"),
        "canary": arms("canary"),
        "exposed_customers": sum(r.get("exposed_customers", 0) for r in replicas),
    }
