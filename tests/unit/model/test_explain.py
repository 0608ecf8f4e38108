"""Explanations (shared/explain.py): SHAP attributions per contract feature add up to the
model's own output for every record (local accuracy), and the global view ranks what the
simulated world makes churn drive above what it does not."""

from __future__ import annotations

import numpy as np
import pytest

from shared.explain import (
    EXPLAINED,
    TOLERANCE,
    Explainer,
    attribution_shift,
    explain_records,
    global_attributions,
    largest_moves,
    summary_plot,
)
from shared.features import feature_frame
from shared.schema import FEATURE_NAMES, ID


@pytest.fixture(scope="module")
def explainer(trained):
    return Explainer(trained.pipeline)


def test_attributions_add_up_to_the_models_output_for_every_record(trained, split, explainer):
    holdout = split[1]
    found = explainer.explain(feature_frame(holdout))
    assert found.attributions.shape == (len(holdout), len(EXPLAINED))
    total = found.base_value + found.attributions.sum(axis=1)
    assert np.abs(total - found.log_odds).max() < TOLERANCE
    served = trained.pipeline.predict_proba(feature_frame(holdout))[:, 1]
    assert np.abs(found.probabilities - served).max() < 1e-9  # what /predict answers


def test_a_category_is_one_attribution_and_the_record_comes_back_whole(explainer, split):
    records = split[1].head(3)[[*FEATURE_NAMES, ID]].to_dict("records")
    answer = explain_records(explainer, records)
    assert [e[ID] for e in answer["explanations"]] == [r[ID] for r in records]
    first = answer["explanations"][0]
    assert list(first["attributions"]) == list(EXPLAINED)  # platform, not platform=ios
    total = answer["base_value"] + sum(first["attributions"].values())
    assert total == pytest.approx(first["log_odds"], abs=1e-4)  # rounded to 6 places each
    assert first["churn_probability"] == pytest.approx(
        1 / (1 + np.exp(-first["log_odds"])), abs=1e-6
    )


def test_the_global_view_ranks_what_drives_churn_above_what_does_not(explainer, split, tmp_path):
    """The simulator's churn depends on complaints and orders, not on the basket's value."""
    means = global_attributions(explainer, feature_frame(split[1]))
    summary_plot(means, len(split[1]), tmp_path / "attributions.png")
    assert (tmp_path / "attributions.png").read_bytes()[:4] == b"\x89PNG"
    assert list(means.values()) == sorted(means.values(), reverse=True)
    assert set(means) == set(EXPLAINED)
    assert means["avg_order_value"] < min(means["complaints_90d"], means["orders_30d"])


def test_the_attribution_shift_is_the_share_of_reliance_that_moved_between_features():
    same = {"age": 0.4, "orders_30d": 0.2}
    assert attribution_shift(same, same) == 0
    assert attribution_shift(same, {k: 3 * v for k, v in same.items()}) == pytest.approx(0)
    # shares 50/50 -> 75/25: a quarter of the reliance moved from orders to age
    assert attribution_shift({"age": 1, "orders_30d": 1}, {"age": 3, "orders_30d": 1}) == 0.25
    assert attribution_shift({"age": 1}, {"orders_30d": 2}) == 1  # nothing in common
    assert np.isnan(attribution_shift({"age": 0.0}, same))  # nothing to compare with
    moved = largest_moves(
        {"age": 1, "orders_30d": 1, "platform": 0}, {"age": 3, "orders_30d": 1}, 2
    )
    assert moved == ["age 50% -> 75%", "orders_30d 50% -> 25%"]


def test_a_shifted_user_base_moves_the_attributions_a_stable_one_does_not(explainer, split):
    """The same model on other customers of the same world leans on the same features; on
    customers who are all young and all use discounts heavily, on others."""
    holdout = split[1]
    reference = global_attributions(explainer, holdout.iloc[: len(holdout) // 2])
    stable = global_attributions(explainer, holdout.iloc[len(holdout) // 2 :])
    shifted = holdout.assign(age=16, discount_share=0.9, has_subscription=False)
    moved = attribution_shift(reference, global_attributions(explainer, shifted))
    assert attribution_shift(reference, stable) < 0.05 < 0.1 < moved, moved
