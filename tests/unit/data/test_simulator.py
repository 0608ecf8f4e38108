"""The simulator: deterministic per seed, labels arrive late, and every scenario shows the
change it claims."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from shared.data import (
    feature_files,
    label_file_for,
    labelled_feature_files,
    labels_dir,
    load_labelled,
)
from shared.scenarios import INCIDENTS, SCENARIOS, Ramp, get_scenario
from shared.simulator import SimulationConfig, generate_day, main, simulate
from shared.validation import validate


def days(scenario: str, which: range, rows: int = 600) -> pd.DataFrame:
    """Features joined with labels for the given days of a scenario."""
    config = SimulationConfig(scenario=scenario, rows_per_day=rows, days=max(which) + 1)
    frames = []
    for day in which:
        features, labels = generate_day(config, day)
        frames.append(features.merge(labels, on=["customer_id", "event_date"]))
    return pd.concat(frames, ignore_index=True)


def test_same_seed_gives_identical_batches():
    config = SimulationConfig(seed=3)
    for day in (0, 5):
        assert_frame_equal(generate_day(config, day)[0], generate_day(config, day)[0])
        assert_frame_equal(generate_day(config, day)[1], generate_day(config, day)[1])


def test_another_seed_gives_other_customers():
    a, _ = generate_day(SimulationConfig(seed=1), 0)
    b, _ = generate_day(SimulationConfig(seed=2), 0)
    assert not a["age"].equals(b["age"])


def test_a_day_does_not_depend_on_the_length_of_the_simulation(tmp_path: Path):
    short, long = tmp_path / "short", tmp_path / "long"
    simulate(short, SimulationConfig(days=3))
    simulate(long, SimulationConfig(days=6))
    name = "2026-01-03.parquet"
    assert_frame_equal(
        pd.read_parquet(short / "features" / name), pd.read_parquet(long / "features" / name)
    )


def test_labels_land_label_delay_days_after_their_features(tmp_path: Path):
    simulate(tmp_path, SimulationConfig(days=6, label_delay_days=2))
    assert len(feature_files(tmp_path)) == 6
    label_days = sorted(p.stem for p in labels_dir(tmp_path).glob("*.parquet"))
    assert label_days == ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"]
    assert [p.stem for p in labelled_feature_files(tmp_path)] == label_days


def test_clean_batches_meet_the_contract():
    for day in range(4):
        features, _ = generate_day(SimulationConfig(), day)
        assert validate(features).ok, validate(features).summary()


def test_churn_rate_is_realistic_and_not_degenerate():
    rate = days("stable", range(3))["churned"].mean()
    assert 0.15 < rate < 0.40


def test_covariate_shift_makes_the_user_base_younger():
    before = days("covariate-shift", range(0, 5))
    after = days("covariate-shift", range(22, 27))
    assert after["age"].mean() < before["age"].mean() - 5
    assert (after["age"] < 18).mean() > (before["age"] < 18).mean() + 0.2


def test_concept_drift_makes_late_deliveries_drive_churn_harder():
    def late_effect(frame: pd.DataFrame) -> float:
        late = frame["late_deliveries_30d"] / frame["orders_30d"].clip(lower=1) > 0.3
        return frame.loc[late, "churned"].mean() - frame.loc[~late, "churned"].mean()

    before = days("concept-drift", range(0, 5), rows=2000)
    after = days("concept-drift", range(15, 20), rows=2000)
    assert late_effect(after) > late_effect(before) + 0.05
    # ... while the customers themselves look the same
    assert abs(after["age"].mean() - before["age"].mean()) < 1


def test_concept_drift_turns_discount_users_from_loyal_to_leaving():
    def discount_effect(frame: pd.DataFrame) -> float:
        heavy = frame["discount_share"] > 0.5
        return frame.loc[heavy, "churned"].mean() - frame.loc[~heavy, "churned"].mean()

    assert discount_effect(days("concept-drift", range(0, 5), rows=2000)) < 0
    assert discount_effect(days("concept-drift", range(15, 20), rows=2000)) > 0


def test_data_quality_days_raise_the_null_rate():
    config = SimulationConfig(scenario="data-quality")
    clean, _ = generate_day(config, 0)
    broken, _ = generate_day(config, 3)  # the "nulls" incident
    assert clean["avg_delivery_minutes"].isna().mean() == 0
    assert broken["avg_delivery_minutes"].isna().mean() > 0.1


EXPECTED_RULE = {
    "nulls": ("avg_delivery_minutes", "not_null"),
    "out-of-range": ("age", "max"),
    "renamed-column": ("orders_last_30d", "unexpected_column"),
    "missing-column": ("platform", "missing_column"),
    "unknown-category": ("platform", "allowed_categories"),
    "wrong-type": ("tenure_months", "dtype"),
}


@pytest.mark.parametrize("incident", INCIDENTS)
def test_every_data_quality_incident_is_caught_by_validation(incident: str):
    scenario = get_scenario("data-quality")
    day = next(d for d, kind in scenario.incidents.items() if kind == incident)
    features, _ = generate_day(SimulationConfig(scenario="data-quality"), day)
    result = validate(features)
    assert not result.ok
    assert EXPECTED_RULE[incident] in {(v.column, v.rule) for v in result.violations}


def test_data_quality_days_keep_the_true_labels():
    _, labels = generate_day(SimulationConfig(scenario="data-quality"), 3)
    assert labels["churned"].notna().all()


def test_in_the_group_harm_world_delivery_time_drives_the_churn_of_rural_customers_only():
    """A driver of one group's: rural customers with slow deliveries churn far more than
    rural customers with fast ones, while for everyone else delivery time matters no more
    than in the stable world (where it acts only through late deliveries)."""

    def slow_effect(frame: pd.DataFrame, tier: str) -> float:
        group = frame[frame["city_tier"] == tier]
        slow = group["avg_delivery_minutes"] > group["avg_delivery_minutes"].median()
        return group.loc[slow, "churned"].mean() - group.loc[~slow, "churned"].mean()

    harm, stable = days("group-harm", range(0, 6), 2000), days("stable", range(0, 6), 2000)
    assert slow_effect(harm, "rural") > slow_effect(stable, "rural") + 0.2
    for tier in ("metro", "urban"):
        assert abs(slow_effect(harm, tier) - slow_effect(stable, tier)) < 1e-9
    # the other customers are the stable world's, to the label
    others = harm["city_tier"] != "rural"
    assert_frame_equal(harm[others], stable[others])


def test_only_the_group_harm_world_has_a_rural_driver():
    assert {name for name, s in SCENARIOS.items() if s.conditions(30).rural_wait_weight} == {
        "group-harm"
    }


def test_every_scenario_starts_from_the_same_world():
    first = {name: s.conditions(0) for name, s in SCENARIOS.items()}
    assert len({(c.young_share, c.late_weight) for c in first.values()}) == 1


def test_ramp_rises_from_zero_to_one():
    ramp = Ramp(start=5, days=4)
    assert [ramp.progress(d) for d in (0, 4, 5, 6, 8, 20)] == [0, 0, 0.25, 0.5, 1, 1]


def test_unknown_scenario_names_the_choices():
    with pytest.raises(ValueError, match="covariate-shift"):
        get_scenario("nope")


def test_command_line_replaces_the_landing_folder(tmp_path: Path, capsys):
    main(["--landing", str(tmp_path), "--days", "4", "--scenario", "stable"])
    main(["--landing", str(tmp_path), "--days", "2", "--scenario", "covariate-shift"])
    assert len(feature_files(tmp_path)) == 2
    assert "covariate-shift" in (tmp_path / "simulation.json").read_text()
    assert "landed 2 days" in capsys.readouterr().out


def test_loading_refuses_a_label_file_that_misses_customers(tmp_path: Path):
    simulate(tmp_path, SimulationConfig(days=3, rows_per_day=20, label_delay_days=0))
    first = feature_files(tmp_path)[0]
    labels = pd.read_parquet(label_file_for(first))
    labels.iloc[:-1].to_parquet(label_file_for(first), index=False)
    with pytest.raises(ValueError, match="labels for 19 of 20 customers"):
        load_labelled([first])
