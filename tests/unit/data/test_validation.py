"""The data contract: a clean batch passes, and each rule rejects its own violation with a
message that names the column and the rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shared.schema import LABEL_COLUMNS
from shared.simulator import SimulationConfig, generate_day
from shared.validation import validate


@pytest.fixture
def clean() -> pd.DataFrame:
    return generate_day(SimulationConfig(rows_per_day=50), 0)[0]


def only_violation(batch: pd.DataFrame) -> tuple[str, str, str]:
    result = validate(batch)
    assert not result.ok
    assert len(result.violations) == 1, result.summary()
    v = result.violations[0]
    return v.column, v.rule, result.summary()


def test_a_clean_batch_passes(clean):
    result = validate(clean)
    assert result.ok and result.violations == () and result.rows == 50
    assert result.summary() == "ok (50 rows)"


def test_a_missing_column_is_named(clean):
    column, rule, summary = only_violation(clean.drop(columns=["city_tier"]))
    assert (column, rule) == ("city_tier", "missing_column")
    assert "city_tier: missing_column" in summary


def test_an_unexpected_column_is_named(clean):
    column, rule, _ = only_violation(clean.assign(favourite_dish="pizza"))
    assert (column, rule) == ("favourite_dish", "unexpected_column")


def test_a_renamed_column_is_reported_as_missing_and_unexpected(clean):
    result = validate(clean.rename(columns={"age": "customer_age"}))
    found = {(v.column, v.rule) for v in result.violations}
    assert found == {("age", "missing_column"), ("customer_age", "unexpected_column")}


def test_nulls_break_the_null_policy(clean):
    clean.loc[:4, "discount_share"] = np.nan
    column, rule, summary = only_violation(clean)
    assert (column, rule) == ("discount_share", "not_null")
    assert "5 null values" in summary


def test_nulls_in_an_int_column_are_reported_once_not_as_a_type_error(clean):
    clean["age"] = clean["age"].astype(float)
    clean.loc[0, "age"] = np.nan
    assert only_violation(clean)[:2] == ("age", "not_null")


def test_values_below_the_minimum_are_counted(clean):
    clean.loc[:2, "orders_30d"] = -1
    clean.loc[:2, "late_deliveries_30d"] = -1
    clean.loc[:2, "complaints_90d"] = 0
    result = validate(clean)
    assert ("orders_30d", "min") in {(v.column, v.rule) for v in result.violations}
    assert "orders_30d: min: 3 rows below 0" in result.summary()


def test_values_above_the_maximum_are_counted(clean):
    clean.loc[:1, "age"] = 999
    column, rule, summary = only_violation(clean)
    assert (column, rule) == ("age", "max")
    assert "2 rows above 100" in summary


def test_an_unknown_category_is_named_with_the_allowed_ones(clean):
    clean.loc[0, "platform"] = "smart_tv"
    column, rule, summary = only_violation(clean)
    assert (column, rule) == ("platform", "allowed_categories")
    assert "smart_tv" in summary and "ios" in summary


def test_a_wrong_type_is_named_and_skips_range_checks(clean):
    clean["tenure_months"] = clean["tenure_months"].map(lambda m: f"{m} months")
    column, rule, summary = only_violation(clean)
    assert (column, rule) == ("tenure_months", "dtype")
    assert "expected int" in summary


def test_fractional_values_in_an_int_column_are_a_type_error(clean):
    clean["orders_30d"] = clean["orders_30d"] + 0.5
    assert ("orders_30d", "dtype") in {(v.column, v.rule) for v in validate(clean).violations}


def test_duplicate_customer_ids_are_rejected(clean):
    clean.loc[1, "customer_id"] = clean.loc[0, "customer_id"]
    assert only_violation(clean)[:2] == ("customer_id", "unique")


def test_the_cross_column_rule_rejects_more_late_deliveries_than_orders(clean):
    clean.loc[0, "late_deliveries_30d"] = clean.loc[0, "orders_30d"] + 1
    column, rule, summary = only_violation(clean)
    assert (column, rule) == ("late_deliveries_30d", "late_not_above_orders")
    assert "cannot exceed orders_30d" in summary


def test_an_empty_batch_is_rejected(clean):
    result = validate(clean.iloc[0:0])
    assert ("*", "non_empty") in {(v.column, v.rule) for v in result.violations}


def test_a_label_file_is_checked_against_the_label_contract():
    _, labels = generate_day(SimulationConfig(rows_per_day=20), 0)
    assert validate(labels, columns=LABEL_COLUMNS, row_rules=()).ok
    labels["churned"] = labels["churned"].astype(int)
    labels.loc[0, "churned"] = 2
    result = validate(labels, columns=LABEL_COLUMNS, row_rules=())
    assert ("churned", "dtype") in {(v.column, v.rule) for v in result.violations}


def test_the_result_serialises_for_the_run_record(clean):
    clean.loc[0, "age"] = 999
    as_dict = validate(clean).to_dict()
    assert as_dict["ok"] is False
    assert as_dict["violations"] == [
        {"column": "age", "rule": "max", "message": "1 rows above 100", "rows": 1}
    ]
