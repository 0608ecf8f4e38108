"""Simulate a food-delivery app's customers, one daily batch at a time, with churn labels.

The data-generating process (each day, `rows_per_day` active customers):

- age: a mixture of a young segment (mean `young_center`, sd 2.5) with share
  `young_share`, and everyone else (mean 38, sd 10); clipped to 13..80.
- tenure_months ~ Exponential(16), at most the months since the customer turned 13.
- platform: the young favour the mobile apps (ios/android/web 45/45/10 %, others 35/35/30 %).
- city_tier: metro/urban/rural 50/35/15 %; has_subscription with p = 0.15, 0.30 after a year.
- orders_30d ~ Poisson(2.5 + 4·subscription + 1.5·[tenure > 6]).
- avg_delivery_minutes ~ Normal(28 metro / 34 urban / 44 rural, 7); late_deliveries_30d
  ~ Binomial(orders, 0.6·sigmoid((delivery − 40) / 6)); complaints_90d ~ Poisson(0.15 + 0.35·late).
- discount_share ~ Beta(4, 4) under 25, else Beta(2, 4); avg_order_value ~ Gamma(8, 2.3 or 3.2).
- churned ~ Bernoulli(sigmoid(z)) with
      z = 0.2 + late_weight·late_rate + 0.5·complaints − 0.7·log(1 + orders)
          − 1.2·subscription − 0.04·min(tenure, 36) + discount_weight·discount_share
          + 0.8·[age < 25] + 0.4·[web] + 0.4·[rural]
          + rural_wait_weight·[rural]·((avg_delivery_minutes − 50) / 7)
  where late_rate = late / max(orders, 1). `scenarios.py` moves young_share, young_center,
  late_weight and discount_weight over the days, and injects data incidents;
  rural_wait_weight is 0 but in the "group-harm" world.

Each day is drawn from its own generator seeded with (seed, day), so a day's batch is the
same whatever other days are generated: deterministic for a seed, replayable day by day.
Labels for day d land on day d + label_delay_days (delayed ground truth).
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from shared.data import batch_path, features_dir, labels_dir
from shared.scenarios import DayConditions, Scenario, get_scenario
from shared.schema import DATE, FEATURES, ID, LABEL

_CATEGORIES = {c.name: c.categories for c in FEATURES if c.kind == "category"}
PLATFORMS = _CATEGORIES["platform"]  # ios, android, web: the probabilities below follow this order
CITY_TIERS = _CATEGORIES["city_tier"]  # metro, urban, rural
DELIVERY_MINUTES = {"metro": 28.0, "urban": 34.0, "rural": 44.0}
# In the "group-harm" world, rural customers stay with a service that delivers within this,
# and leave one that takes longer (their churn log-odds move by rural_wait_weight per 7 min)
RURAL_PATIENCE_MINUTES = 50.0


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate: which scenario, how many days, how big, from which seed."""

    scenario: str = "stable"
    days: int = 14
    seed: int = 42
    rows_per_day: int = 500
    label_delay_days: int = 3
    start_date: date = field(default=date(2026, 1, 1))

    def day_date(self, day: int) -> date:
        return self.start_date + timedelta(days=day)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _customers(c: DayConditions, n: int, rng: np.random.Generator) -> pd.DataFrame:
    young = rng.random(n) < c.young_share
    age = np.where(young, rng.normal(c.young_center, 2.5, n), rng.normal(38, 10, n))
    age = np.clip(np.round(age), 13, 80).astype(int)
    tenure = np.minimum(rng.exponential(16, n), (age - 13) * 12).round().clip(0, 240).astype(int)
    platform = np.where(
        young,
        rng.choice(PLATFORMS, n, p=[0.45, 0.45, 0.10]),
        rng.choice(PLATFORMS, n, p=[0.35, 0.35, 0.30]),
    )
    city = rng.choice(CITY_TIERS, n, p=[0.50, 0.35, 0.15])
    subscription = rng.random(n) < np.where(tenure > 12, 0.30, 0.15)
    orders = rng.poisson(2.5 + 4 * subscription + 1.5 * (tenure > 6)).clip(0, 200)
    delivery = pd.Series(city).map(DELIVERY_MINUTES).to_numpy() + rng.normal(0, 7, n)
    delivery = delivery.clip(5, 180).round(1)
    late = rng.binomial(orders, 0.6 * _sigmoid((delivery - 40) / 6))
    complaints = rng.poisson(0.15 + 0.35 * late).clip(0, 50)
    discount = rng.beta(np.where(age < 25, 4.0, 2.0), 4.0).round(3)
    basket = rng.gamma(8, np.where(age < 25, 2.3, 3.2)).clip(3, 500).round(2)
    return pd.DataFrame(
        {
            "age": age,
            "tenure_months": tenure,
            "orders_30d": orders,
            "avg_order_value": basket,
            "avg_delivery_minutes": delivery,
            "late_deliveries_30d": late,
            "complaints_90d": complaints,
            "discount_share": discount,
            "has_subscription": subscription,
            "platform": platform,
            "city_tier": city,
        }
    )


def churn_probability(customers: pd.DataFrame, c: DayConditions) -> np.ndarray:
    """The true churn probability of each customer under the day's conditions."""
    late_rate = customers["late_deliveries_30d"] / np.maximum(customers["orders_30d"], 1)
    z = (
        0.2
        + c.late_weight * late_rate
        + 0.5 * customers["complaints_90d"]
        - 0.7 * np.log1p(customers["orders_30d"])
        - 1.2 * customers["has_subscription"]
        - 0.04 * np.minimum(customers["tenure_months"], 36)
        + c.discount_weight * customers["discount_share"]
        + 0.8 * (customers["age"] < 25)
        + 0.4 * (customers["platform"] == "web")
        + 0.4 * (customers["city_tier"] == "rural")
    )
    if c.rural_wait_weight:  # 0 in every world but "group-harm": the others stay as they were
        wait = (customers["avg_delivery_minutes"] - RURAL_PATIENCE_MINUTES) / 7
        z = z + c.rural_wait_weight * (customers["city_tier"] == "rural") * wait
    return _sigmoid(z.to_numpy(dtype=float))


def _corrupt(batch: pd.DataFrame, incident: str, rng: np.random.Generator) -> pd.DataFrame:
    """Break a clean batch the way an upstream export breaks (see scenarios.INCIDENTS)."""
    batch = batch.copy()
    some = rng.random(len(batch))
    if incident == "nulls":
        batch.loc[some < 0.20, "avg_delivery_minutes"] = np.nan
    elif incident == "out-of-range":
        batch.loc[some < 0.05, "age"] = 999
    elif incident == "renamed-column":
        batch = batch.rename(columns={"orders_30d": "orders_last_30d"})
    elif incident == "missing-column":
        batch = batch.drop(columns=["platform"])
    elif incident == "unknown-category":
        batch.loc[some < 0.10, "platform"] = "smart_tv"
    elif incident == "wrong-type":
        batch["tenure_months"] = batch["tenure_months"].map(lambda m: f"{m} months")
    else:
        raise ValueError(f"unknown incident {incident!r}")
    return batch


def generate_day(
    config: SimulationConfig, day: int, scenario: Scenario | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The feature batch and the label file of day `day` (0-based), as they land.

    Labels are true churn outcomes of the clean customers: a broken export corrupts the
    features that land, not what the customers did. `scenario` replaces the named one of
    `config` (e.g. a comparison with its own drift days).
    """
    conditions = (scenario or get_scenario(config.scenario)).conditions(day)
    rng = np.random.default_rng([config.seed, day])
    customers = _customers(conditions, config.rows_per_day, rng)
    churned = rng.random(len(customers)) < churn_probability(customers, conditions)
    when = pd.Timestamp(config.day_date(day))
    ids = [f"{when:%Y%m%d}-{i:05d}" for i in range(len(customers))]
    features = pd.concat([pd.DataFrame({ID: ids, DATE: when}), customers], axis=1)
    labels = pd.DataFrame({ID: ids, DATE: when, LABEL: churned})
    if conditions.incident:
        features = _corrupt(features, conditions.incident, rng)
    return features, labels


def land_day(landing: Path, config: SimulationConfig, day: int) -> list[Path]:
    """Land what arrives on day `day`: its feature batch, and the labels of day − delay."""
    written = []
    features, _ = generate_day(config, day)
    path = batch_path(features_dir(landing), config.day_date(day))
    path.parent.mkdir(parents=True, exist_ok=True)
    features.to_parquet(path, index=False)
    written.append(path)
    labelled_day = day - config.label_delay_days
    if labelled_day >= 0:
        _, labels = generate_day(config, labelled_day)
        path = batch_path(labels_dir(landing), config.day_date(labelled_day))
        path.parent.mkdir(parents=True, exist_ok=True)
        labels.to_parquet(path, index=False)
        written.append(path)
    return written


def simulate(landing: Path, config: SimulationConfig, replace: bool = False) -> list[Path]:
    """Land days 0 .. days−1 into `landing` and record the config in `simulation.json`.

    `replace=True` first removes the batches an earlier simulation landed: a new world.
    """
    landing = Path(landing)
    if replace:
        for folder in (features_dir(landing), labels_dir(landing)):
            shutil.rmtree(folder, ignore_errors=True)
    landing.mkdir(parents=True, exist_ok=True)
    written = [p for day in range(config.days) for p in land_day(landing, config, day)]
    manifest = {**asdict(config), "start_date": config.start_date.isoformat()}
    (landing / "simulation.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--landing", type=Path, default=Path("var/landing"))
    parser.add_argument("--scenario", default=SimulationConfig.scenario)
    parser.add_argument("--days", type=int, default=SimulationConfig.days)
    parser.add_argument("--seed", type=int, default=SimulationConfig.seed)
    parser.add_argument("--rows-per-day", type=int, default=SimulationConfig.rows_per_day)
    parser.add_argument("--label-delay", type=int, default=SimulationConfig.label_delay_days)
    args = parser.parse_args(argv)
    get_scenario(args.scenario)  # fail before writing anything
    config = SimulationConfig(
        scenario=args.scenario,
        days=args.days,
        seed=args.seed,
        rows_per_day=args.rows_per_day,
        label_delay_days=args.label_delay,
    )
    written = simulate(args.landing, config, replace=True)
    n_labels = sum(1 for p in written if p.parent.name == "labels")
    print(
        f"landed {config.days} days of scenario '{config.scenario}' (seed {config.seed}) in "
        f"{args.landing}: {config.days} feature batches, {n_labels} label files "
        f"(labels arrive {config.label_delay_days} days late)"
    )


if __name__ == "__main__":
    main()
