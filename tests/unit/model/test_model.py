"""The model: training converges, beats the dummy by a real margin, gives finite
probabilities, respects domain knowledge, and predicts the same after save and load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio

from shared import model_file
from shared.evaluate import evaluate
from shared.expectations import beats_the_baseline
from shared.features import (
    ENCODED_FEATURES,
    SKOPS_TRUSTED_TYPES,
    build_pipeline,
    encode,
    feature_frame,
)
from shared.schema import example_record
from shared.train import TrainingConfig, split_holdout, train, train_baseline
from tests.conftest import FAST


def test_training_converges_to_a_useful_cross_validated_score(trained):
    assert trained.cv_score > 0.72
    assert set(trained.params) == set(FAST.param_space)


def test_the_model_beats_the_dummy_baseline_by_a_real_margin(trained, split):
    train_frame, holdout = split
    model = evaluate(trained.pipeline, holdout)
    baseline = evaluate(train_baseline(train_frame), holdout)
    assert baseline.overall["roc_auc"] == 0.5
    # The check `make compare` runs on a replayed push: the same function
    assert beats_the_baseline(trained.pipeline, train_frame, holdout, min_auc_lift=0.2) is None
    assert beats_the_baseline(trained.pipeline, train_frame, holdout, min_auc_lift=0.6)
    assert model.overall["log_loss"] < baseline.overall["log_loss"]


def test_probabilities_are_finite_and_between_zero_and_one(trained, labelled):
    proba = trained.pipeline.predict_proba(feature_frame(labelled))[:, 1]
    assert np.isfinite(proba).all()
    assert ((proba >= 0) & (proba <= 1)).all()
    assert proba.std() > 0.05  # not a constant


def test_more_late_deliveries_never_lower_the_churn_probability(trained):
    base = pd.DataFrame([example_record()] * 11)
    base["orders_30d"] = 10
    base["late_deliveries_30d"] = range(11)
    proba = trained.pipeline.predict_proba(base)[:, 1]
    assert (np.diff(proba) >= 0).all()
    assert proba[-1] > proba[0]


def test_more_complaints_never_lower_the_churn_probability(trained):
    base = pd.DataFrame([example_record()] * 10)
    base["complaints_90d"] = range(10)
    assert (np.diff(trained.pipeline.predict_proba(base)[:, 1]) >= 0).all()


def test_the_same_seed_trains_the_same_model(split):
    config = TrainingConfig(n_iter=2, cv_folds=2, seed=11)
    a, b = train(split[0], config), train(split[0], config)
    X = feature_frame(split[1])
    assert a.params == b.params
    np.testing.assert_array_equal(a.pipeline.predict_proba(X), b.pipeline.predict_proba(X))


def test_the_hold_out_is_the_newest_days(labelled):
    train_frame, holdout = split_holdout(labelled, 0.2)
    assert train_frame["event_date"].max() < holdout["event_date"].min()
    assert len(train_frame) + len(holdout) == len(labelled)


def test_a_single_day_cannot_be_split(labelled):
    one_day = labelled[labelled["event_date"] == labelled["event_date"].min()]
    with pytest.raises(ValueError, match="at least 2 labelled days"):
        split_holdout(one_day, 0.2)


def test_training_on_a_single_class_is_refused(labelled):
    with pytest.raises(ValueError, match="single class"):
        train(labelled.assign(churned=0), TrainingConfig(n_iter=1))


def test_encoding_follows_the_contract_and_maps_unknown_categories_to_missing():
    frame = pd.DataFrame([example_record(), {**example_record(), "platform": "smart_tv"}])
    encoded = encode(frame)
    assert encoded.shape == (2, len(ENCODED_FEATURES)) == (2, 16)
    platform = [ENCODED_FEATURES.index(f"platform={p}") for p in ("ios", "android", "web")]
    assert encoded[0, platform].tolist() == [0, 1, 0]  # the example's platform is android
    assert np.isnan(encoded[1, platform]).all()  # unknown: missing, not a known platform
    assert encoded[1, ENCODED_FEATURES.index("city_tier=urban")] == 1  # the rest as it was
    assert encoded[0, ENCODED_FEATURES.index("late_rate")] == pytest.approx(2 / 6)


def test_an_unfitted_pipeline_is_a_fresh_object_each_time():
    assert build_pipeline() is not build_pipeline()


def test_skops_trusted_types_are_exactly_what_a_saved_model_needs(trained):
    untrusted = sio.get_untrusted_types(data=sio.dumps(trained.pipeline))
    assert sorted(untrusted) == sorted(SKOPS_TRUSTED_TYPES)


def test_the_same_input_gives_the_same_prediction_after_save_and_load(
    trained, split, tmp_path: Path
):
    card = {"name": "churn", "version": "test"}
    model_file.save(trained.pipeline, card, tmp_path)
    loaded = model_file.load(tmp_path)
    X = feature_frame(split[1])
    np.testing.assert_array_equal(
        loaded.pipeline.predict_proba(X), trained.pipeline.predict_proba(X)
    )
    assert loaded.card == card


def test_loading_from_an_empty_folder_names_the_missing_file(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="model.skops"):
        model_file.load(tmp_path)


def test_a_dropped_feature_is_not_used_by_the_trained_model(split):
    """TrainingConfig.dropped_features: the fitted model answers the same whatever the
    dropped feature's value, and still takes requests that carry it (the contract's)."""
    config = TrainingConfig(n_iter=1, cv_folds=2, seed=11, dropped_features=("avg_order_value",))
    model = train(split[0], config).pipeline
    X = feature_frame(split[1])
    varied = X.assign(avg_order_value=X["avg_order_value"][::-1].to_numpy() * 3 + 1)
    np.testing.assert_array_equal(model.predict_proba(X), model.predict_proba(varied))
    # ... whereas a model that keeps it does use it
    kept = train(split[0], TrainingConfig(n_iter=1, cv_folds=2, seed=11)).pipeline
    assert not np.array_equal(kept.predict_proba(X), kept.predict_proba(varied))


def test_dropping_a_feature_the_contract_lacks_is_refused(labelled):
    with pytest.raises(ValueError, match="not features of the contract"):
        train(labelled, TrainingConfig(n_iter=1, dropped_features=("shoe_size",)))
