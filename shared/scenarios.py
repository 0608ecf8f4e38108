"""Named production stories for the simulator: each is a schedule of conditions over days.

A scenario says, for every simulated day, who the customers are (covariate shift), what
makes them churn (concept drift) and whether the upstream export breaks (data quality).
The simulator turns one day's conditions into one batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

INCIDENTS = (
    "nulls",  # 20 % of avg_delivery_minutes missing (an upstream join lost rows)
    "out-of-range",  # 5 % of ages exported as the sentinel 999
    "renamed-column",  # orders_30d arrives as orders_last_30d (an unannounced schema change)
    "missing-column",  # platform is not exported at all
    "unknown-category",  # a new platform "smart_tv" appears
    "wrong-type",  # tenure_months arrives as text, e.g. "14 months"
)


@dataclass(frozen=True)
class Ramp:
    """A change that starts on day `start` and is complete `days` days later."""

    start: int
    days: int

    def progress(self, day: int) -> float:
        """0 before the start, rising linearly to 1 once the change is complete."""
        if day < self.start:
            return 0.0
        return min(1.0, (day - self.start + 1) / max(self.days, 1))


@dataclass(frozen=True)
class DayConditions:
    """The generating parameters of one day; see `simulator.py` for how each is used."""

    young_share: float  # share of customers drawn from the young segment
    young_center: float  # mean age of the young segment
    late_weight: float  # churn log-odds per unit of late-delivery rate
    discount_weight: float  # churn log-odds per unit of discount share
    incident: str | None = None
    # Rural customers' churn log-odds per 7 minutes of delivery time above 50 (and below it:
    # `simulator.RURAL_PATIENCE_MINUTES`): 0 everywhere but in the "group-harm" world, where
    # rural customers leave a slow service even when it is on time (a driver of one group's)
    rural_wait_weight: float = 0.0


# Before any drift: a young segment in its early twenties, late deliveries hurt moderately,
# and discount users are loyal.
BASELINE = DayConditions(young_share=0.30, young_center=23.0, late_weight=3.0, discount_weight=-2.0)
# After covariate shift: the young segment is most of the base, and in its mid teens.
SHIFTED = DayConditions(young_share=0.65, young_center=16.0, late_weight=3.0, discount_weight=-2.0)
# After concept drift: late deliveries hurt twice as much, and discount users are now
# deal-seekers who leave (a competitor's promotion), so the old ranking of risk is wrong.
DRIFTED = DayConditions(young_share=0.30, young_center=23.0, late_weight=6.0, discount_weight=2.0)
# A harder concept drift, for the comparison: discount users, the most loyal customers,
# become deal-seekers who leave for a competitor's promotion (measured: a model trained
# before it falls from ROC AUC 0.79 to about 0.68 on it; one retrained on it reaches 0.83).
DRIFTED_HARD = DayConditions(
    young_share=0.30, young_center=23.0, late_weight=3.0, discount_weight=6.0
)


def _lerp(a: float, b: float, t: float) -> float:
    return a + (b - a) * t


@dataclass(frozen=True)
class Scenario:
    """A named schedule: optional covariate shift, concept drift and data incidents by day."""

    name: str
    description: str
    covariate_shift: Ramp | None = None
    concept_drift: Ramp | None = None
    incidents: dict[int, str] = field(default_factory=dict)
    drifted: DayConditions = DRIFTED  # where the concept drift ends
    rural_wait_weight: float = 0.0  # see DayConditions

    def conditions(self, day: int) -> DayConditions:
        """The generating parameters of day `day` (0-based)."""
        shift = self.covariate_shift.progress(day) if self.covariate_shift else 0.0
        drift = self.concept_drift.progress(day) if self.concept_drift else 0.0
        return DayConditions(
            young_share=_lerp(BASELINE.young_share, SHIFTED.young_share, shift),
            young_center=_lerp(BASELINE.young_center, SHIFTED.young_center, shift),
            late_weight=_lerp(BASELINE.late_weight, self.drifted.late_weight, drift),
            discount_weight=_lerp(BASELINE.discount_weight, self.drifted.discount_weight, drift),
            incident=self.incidents.get(day),
            rural_wait_weight=self.rural_wait_weight,
        )


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("stable", "Nothing changes: the world the first model was trained on."),
        Scenario(
            "covariate-shift",
            "From day 7 the user base gets younger, from early twenties toward teenagers, "
            "over 14 days. What drives churn stays the same.",
            covariate_shift=Ramp(start=7, days=14),
        ),
        Scenario(
            "concept-drift",
            "From day 7, over 7 days, late deliveries weigh twice as much and discount "
            "users turn from loyal to deal-seekers. The customers look the same.",
            concept_drift=Ramp(start=7, days=7),
        ),
        Scenario(
            "data-quality",
            "Every other day from day 3 the upstream export breaks in a different way.",
            incidents={3 + 2 * i: kind for i, kind in enumerate(INCIDENTS)},
        ),
        Scenario(
            "compare",
            "The story `make compare` replays over 60 days: stable, then from day 20 the "
            "user base gets younger (over 14 days), on day 35 the export loses delivery "
            "times, and from day 45, over 7 days, discount users, the most loyal customers, "
            "turn into deal-seekers who leave.",
            covariate_shift=Ramp(start=20, days=14),
            concept_drift=Ramp(start=45, days=7),
            incidents={35: "nulls"},
            drifted=DRIFTED_HARD,
        ),
        Scenario(
            "group-harm",
            "Nothing changes, but rural customers (15 %) leave a slow service even when it is "
            "on time: their churn rises with their delivery time (and, under 50 minutes, "
            "falls below the other customers'). avg_delivery_minutes matters "
            "for them alone, so a model without it ranks them far worse while its overall ROC "
            "AUC moves little (`make compare`'s group-harm story).",
            rural_wait_weight=2.5,
        ),
    )
}


def get_scenario(name: str) -> Scenario:
    """The scenario called `name`; the error lists the names that exist."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}; choose one of {sorted(SCENARIOS)}") from None
